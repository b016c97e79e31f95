//! Insert mode: editing the composer, sending (messages, replies, edits and
//! slash commands), input history and my typing indicator.
//!
//! Typing signals follow the protocol's debounce: `start` at most once a
//! second while keys change the text, `stop` after 3 s idle (checked on
//! tick), on send, and when leaving the conversation.

use super::{App, Mode};
use crate::client::Action;
use crate::ui::{commands, strings};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::time::{Duration, Instant};

pub const TYPING_REFRESH: Duration = Duration::from_secs(1);
pub const TYPING_IDLE: Duration = Duration::from_secs(3);

impl App {
    pub(super) fn insert_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        if !matches!(k.code, KeyCode::Tab | KeyCode::BackTab) {
            self.completion = None;
        }
        let before = self.composer.text().len();
        let mut edited = true;
        match k.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.reply_to = None;
                if self.editing.take().is_some() {
                    self.composer.take();
                }
                edited = false;
            }
            KeyCode::Enter if alt || shift || ctrl => self.composer.insert_char('\n'),
            KeyCode::Char('j') if ctrl => self.composer.insert_char('\n'),
            KeyCode::Enter => {
                self.submit(out);
                edited = false;
            }
            KeyCode::Tab => {
                self.complete(true);
                edited = false;
            }
            KeyCode::BackTab => {
                self.complete(false);
                edited = false;
            }
            KeyCode::Char('n') if ctrl => {
                self.cycle_conversation(1, out);
                edited = false;
            }
            KeyCode::Char('p') if ctrl => {
                self.cycle_conversation(-1, out);
                edited = false;
            }
            KeyCode::Char('k') if ctrl => {
                self.open_switcher();
                edited = false;
            }
            KeyCode::Char('w') if ctrl => self.composer.delete_word(),
            KeyCode::Char('u') if ctrl => {
                self.composer.take();
            }
            KeyCode::Char('a') if ctrl => self.composer.home(),
            KeyCode::Char('e') if ctrl => {
                self.open_editor();
                edited = false;
            }
            KeyCode::Char(c) if !ctrl => self.composer.insert_char(c),
            KeyCode::Backspace => self.composer.backspace(),
            KeyCode::Delete => self.composer.delete(),
            KeyCode::Left => self.composer.left(),
            KeyCode::Right => self.composer.right(),
            KeyCode::Home => self.composer.home(),
            KeyCode::End => self.composer.end(),
            KeyCode::Up if self.composer.is_empty() || self.composer.on_first_line() => {
                self.composer.history_prev();
                edited = false;
            }
            KeyCode::Down if self.composer.is_empty() || self.composer.on_last_line() => {
                self.composer.history_next();
                edited = false;
            }
            KeyCode::Up => self.composer.up(),
            KeyCode::Down => self.composer.down(),
            KeyCode::PageUp => self.scroll_lines(self.page_height() as isize),
            KeyCode::PageDown => self.scroll_lines(-(self.page_height() as isize)),
            _ => edited = false,
        }
        if edited && self.composer.text().len() != before {
            self.typing_keypress(self.now, out);
        }
    }

    pub(super) fn insert_paste(&mut self, text: &str, out: &mut Vec<Action>) {
        self.completion = None;
        self.composer.insert_str(text);
        self.typing_keypress(self.now, out);
    }

    /// Enter: run a command, save an edit, or send (with the reply target).
    fn submit(&mut self, out: &mut Vec<Action>) {
        let text = self.composer.text().to_string();
        if text.trim().is_empty() {
            return;
        }
        if text.starts_with('/') && !text.starts_with("//") {
            self.composer.push_history(&text);
            self.composer.take();
            match commands::parse(&text) {
                Ok(cmd) => self.execute(cmd, out),
                Err(msg) => {
                    self.composer.set(&text);
                    self.status = Some(msg);
                }
            }
            return;
        }
        let Some(conv) = self.focused.clone() else {
            self.status = Some(strings::NO_CONVERSATION.to_string());
            return;
        };
        self.composer.take();
        self.stop_typing(out);
        if let Some(seq) = self.editing.take() {
            out.push(Action::Edit {
                conv,
                seq,
                body: text,
            });
            self.mode = Mode::Normal;
            return;
        }
        self.composer.push_history(&text);
        let body = text.strip_prefix('/').filter(|_| text.starts_with("//"));
        out.push(Action::Send {
            conv,
            body: body.map_or(text.clone(), str::to_string),
            reply_to: self.reply_to.take(),
        });
        self.selected = None;
        self.scroll = 0;
    }

    /// A key changed the composer text at `now`.
    pub(crate) fn typing_keypress(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(conv) = self.focused.clone() else {
            return;
        };
        if self.composer.text().starts_with('/') || self.editing.is_some() {
            return;
        }
        self.typing.last_key = Some(now);
        let fresh = self.typing.conv.as_deref() == Some(conv.as_str())
            && self
                .typing
                .sent_at
                .is_some_and(|t| now.saturating_duration_since(t) < TYPING_REFRESH);
        if !fresh && !self.composer.is_empty() {
            self.typing.conv = Some(conv.clone());
            self.typing.sent_at = Some(now);
            out.push(Action::Typing { conv, active: true });
        }
    }

    /// Sends `stop` after [`TYPING_IDLE`] without a key.
    pub(crate) fn typing_idle_check(&mut self, now: Instant, out: &mut Vec<Action>) {
        let idle = self
            .typing
            .last_key
            .is_none_or(|t| now.saturating_duration_since(t) >= TYPING_IDLE);
        if idle {
            self.stop_typing(out);
        }
    }

    pub(crate) fn stop_typing(&mut self, out: &mut Vec<Action>) {
        if let Some(conv) = self.typing.conv.take() {
            out.push(Action::Typing {
                conv,
                active: false,
            });
        }
        self.typing.sent_at = None;
        self.typing.last_key = None;
    }
}
