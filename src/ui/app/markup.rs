//! How bodies show and leave: rendered markdown or raw text (per message or
//! for all), copying a message's code to the clipboard, and writing the
//! draft in an external editor. The terminal work these need (OSC 52, the
//! editor) is asked of the UI loop through [`TerminalRequest`]s; the App
//! itself does no I/O.

use super::{App, Mode};
use crate::ui::render::markdown;
use crate::ui::strings;
use std::collections::HashSet;

/// UI state for message markup.
pub struct Markup {
    /// Parsed and highlighted bodies (rendering fills it through `&App`).
    pub cache: markdown::Cache,
    /// Every body raw.
    pub raw_all: bool,
    /// Bodies shown the other way round from `raw_all`, by (conversation, seq).
    pub raw_flipped: HashSet<(String, u64)>,
    /// Terminal hyperlinks (OSC 8) for URLs, where the terminal has them.
    pub hyperlinks: bool,
}

impl Default for Markup {
    fn default() -> Self {
        Markup {
            cache: markdown::Cache::default(),
            raw_all: false,
            raw_flipped: HashSet::new(),
            hyperlinks: true,
        }
    }
}

/// Terminal work for the UI loop, drained after each batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalRequest {
    /// Put `text` on the clipboard (OSC 52).
    Copy(String),
    /// Open the draft in `$EDITOR`; the result comes back through
    /// [`App::editor_done`].
    Edit(String),
    /// Open a file with the system's opener, detached.
    Open(std::path::PathBuf),
}

impl App {
    /// Whether message `seq` of the focused conversation shows as raw text.
    pub fn shows_raw(&self, seq: Option<u64>) -> bool {
        let flipped = match (&self.focused, seq) {
            (Some(conv), Some(seq)) => self.markup.raw_flipped.contains(&(conv.clone(), seq)),
            _ => false,
        };
        self.markup.raw_all != flipped
    }

    /// Raw text for the selected message, or for all when none is selected.
    pub(crate) fn toggle_raw(&mut self) {
        match (self.selected, self.focused.clone()) {
            (Some(seq), Some(conv)) => {
                if !self.markup.raw_flipped.remove(&(conv.clone(), seq)) {
                    self.markup.raw_flipped.insert((conv, seq));
                }
            }
            _ => {
                self.markup.raw_all = !self.markup.raw_all;
                self.markup.raw_flipped.clear();
                self.status = Some(if self.markup.raw_all {
                    strings::RAW_ON.to_string()
                } else {
                    strings::RAW_OFF.to_string()
                });
            }
        }
    }

    /// Copies the target message's first fenced code block (or its whole
    /// body) to the clipboard.
    pub(crate) fn copy_code(&mut self) {
        let Some(body) = self.message_target(false).map(|m| m.body.clone()) else {
            return;
        };
        let text = markdown::first_code_block(&body).unwrap_or(body);
        let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
        self.status = Some(strings::copied(text.lines().count().max(1)));
        self.terminal_requests.push(TerminalRequest::Copy(text));
    }

    /// Ctrl-E in the composer: edit the draft in an external editor.
    pub(crate) fn open_editor(&mut self) {
        let draft = self.composer.text().to_string();
        self.terminal_requests.push(TerminalRequest::Edit(draft));
    }

    /// The editor closed: its text replaces the draft (not sent). On
    /// failure the draft stays and the status line says why.
    pub fn editor_done(&mut self, result: Result<String, String>) {
        match result {
            Ok(text) => {
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                self.composer.set(text);
                if self.mode == Mode::Normal {
                    self.mode = Mode::Insert;
                }
            }
            Err(e) => self.status = Some(strings::editor_failed(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::fixtures::*;
    use std::time::Instant;

    const CODE: &str = "try:\n```sh\ncargo build\ncargo test\n```\nthen push";

    fn with_code() -> App {
        let mut m = base_model();
        let rows = vec![
            row(msg(2, "alice", T0, CODE)),
            row(msg(3, "bob", T0 + MIN, "no code here\njust words")),
        ];
        m.messages.insert("c-general".into(), rows);
        app(m, 80, 20, Instant::now())
    }

    #[test]
    fn y_copies_the_code_block_or_the_body() {
        let now = Instant::now();
        let mut a = with_code();
        a.handle_event(ch('y'), now);
        assert_eq!(
            a.terminal_requests.pop(),
            Some(TerminalRequest::Copy("no code here\njust words".into()))
        );
        assert!(
            a.status
                .as_deref()
                .is_some_and(|s| s.starts_with("copied 2 lines"))
        );
        a.handle_event(ch('k'), now);
        a.handle_event(ch('k'), now);
        a.handle_event(ch('y'), now);
        assert_eq!(
            a.terminal_requests,
            vec![TerminalRequest::Copy("cargo build\ncargo test".into())]
        );
    }

    #[test]
    fn r_toggles_raw_for_the_selection_or_all() {
        let now = Instant::now();
        let mut a = with_code();
        assert!(!a.shows_raw(Some(2)));
        a.handle_event(ch('R'), now);
        assert!(a.shows_raw(Some(2)) && a.shows_raw(Some(3)));
        a.handle_event(ch('R'), now);
        a.handle_event(ch('k'), now);
        a.handle_event(ch('R'), now);
        assert!(a.shows_raw(Some(3)) && !a.shows_raw(Some(2)));
        a.handle_event(ch('R'), now);
        assert!(!a.shows_raw(Some(3)));
    }

    #[test]
    fn ctrl_e_asks_for_the_editor_and_takes_its_text() {
        let now = Instant::now();
        let mut a = with_code();
        a.handle_event(ch('i'), now);
        type_str(&mut a, "draft", now);
        let actions = a.handle_event(ctrl('e'), now);
        assert!(actions.is_empty(), "nothing is sent: {actions:?}");
        assert_eq!(
            a.terminal_requests,
            vec![TerminalRequest::Edit("draft".into())]
        );
        a.editor_done(Err("cannot start vi".into()));
        assert_eq!(a.composer.text(), "draft");
        assert!(
            a.status
                .as_deref()
                .is_some_and(|s| s.contains("cannot start vi"))
        );
        a.editor_done(Ok("longer\ndraft\n".into()));
        assert_eq!(a.composer.text(), "longer\ndraft");
        assert_eq!(a.mode, Mode::Insert);
    }
}
