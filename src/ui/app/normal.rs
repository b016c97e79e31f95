//! Normal mode: navigation through the key map, selection, and the
//! message actions (reply, edit, delete, react) on the selection.

use super::view::row_seq;
use super::{App, Mode};
use crate::client::Action;
use crate::client::view::{MessageRow, MessageView, SendState};
use crate::ui::keys::KeyCmd;
use crate::ui::strings;
use crossterm::event::{KeyCode, KeyEvent};

impl App {
    pub(super) fn normal_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        if k.code == KeyCode::Esc {
            self.selected = None;
            return;
        }
        let Some(cmd) = self.key_command(&k) else {
            return;
        };
        let page = self.page_height();
        match cmd {
            KeyCmd::Quit => self.request_quit(out),
            KeyCmd::Help => self.open_help(),
            KeyCmd::Compose => self.start_insert(),
            KeyCmd::Command => {
                self.start_insert();
                if self.composer.is_empty() {
                    self.composer.insert_char('/');
                }
            }
            KeyCmd::Up => self.select_step(-1),
            KeyCmd::Down => self.select_step(1),
            KeyCmd::PageUp => self.scroll_lines(page.saturating_sub(1).max(1) as isize),
            KeyCmd::PageDown => self.scroll_lines(-(page.saturating_sub(1).max(1) as isize)),
            KeyCmd::HalfUp => self.scroll_lines((page / 2).max(1) as isize),
            KeyCmd::HalfDown => self.scroll_lines(-((page / 2).max(1) as isize)),
            KeyCmd::Top => {
                self.selected = self.rows().iter().find_map(row_seq);
                self.scroll = usize::MAX / 2;
            }
            KeyCmd::Bottom => {
                self.selected = None;
                self.scroll = 0;
            }
            KeyCmd::NextConversation => self.cycle_conversation(1, out),
            KeyCmd::PrevConversation => self.cycle_conversation(-1, out),
            KeyCmd::QuickSwitcher => self.open_switcher(),
            KeyCmd::Reply => self.begin_reply(),
            KeyCmd::Edit => self.begin_edit(None, out),
            KeyCmd::Delete => self.begin_delete(),
            KeyCmd::React => {
                if self.message_target(false).is_some() {
                    self.start_insert();
                    self.composer.set("/react ");
                }
            }
            KeyCmd::CopyCode => self.copy_code(),
            KeyCmd::ToggleRaw => self.toggle_raw(),
            KeyCmd::NextUnread => self.jump_unread(false, out),
            KeyCmd::NextMention => self.jump_unread(true, out),
            KeyCmd::UnreadOnly => self.toggle_unread_only(),
            KeyCmd::OpenFile => self.fetch_selected(crate::client::update::Fetch::Open, out),
            KeyCmd::SaveFile => self.fetch_selected(crate::client::update::Fetch::Save, out),
            // On a selected file, `s` saves it; elsewhere it searches.
            KeyCmd::Search if self.selected_file() => {
                self.fetch_selected(crate::client::update::Fetch::Save, out)
            }
            KeyCmd::Search => self.open_search(String::new(), out),
        }
    }

    /// Focus the composer. Without an open conversation it still opens, so
    /// that `/dm`, `/join` and `/channel` can start one.
    pub(crate) fn start_insert(&mut self) {
        self.mode = Mode::Insert;
        if self.focused.is_none() {
            self.status = Some(strings::NO_CONVERSATION.to_string());
        }
    }

    /// Moves the selection by one selectable row; past the newest it clears
    /// (back to following new messages); from nothing, Up selects the newest.
    fn select_step(&mut self, delta: isize) {
        let seqs: Vec<u64> = self.rows().iter().filter_map(row_seq).collect();
        let Some(&newest) = seqs.last() else {
            return;
        };
        let pos = self
            .selected
            .and_then(|s| seqs.iter().position(|x| *x == s));
        self.selected = match (pos, delta < 0) {
            (None, true) => Some(newest),
            (None, false) => None,
            (Some(0), true) => {
                self.scroll = usize::MAX / 2;
                Some(seqs[0])
            }
            (Some(p), true) => Some(seqs[p - 1]),
            (Some(p), false) if p + 1 < seqs.len() => Some(seqs[p + 1]),
            (Some(_), false) => {
                self.scroll = 0;
                None
            }
        };
    }

    fn message_at(&self, seq: u64) -> Option<&MessageView> {
        self.rows().iter().find_map(|r| match r {
            MessageRow::Message(m) if m.seq == Some(seq) => Some(m),
            _ => None,
        })
    }

    /// The message an action applies to: the selection, or else the newest
    /// (own, when `own`) live message. Sets the status line when none fits.
    pub(crate) fn message_target(&mut self, own: bool) -> Option<&MessageView> {
        if self.focused.is_none() {
            self.status = Some(strings::NO_CONVERSATION.to_string());
            return None;
        }
        let me = self.model.me.clone();
        let result = match self.selected {
            Some(seq) => match self.message_at(seq) {
                Some(m) if own && m.sender != me => Err(strings::NOT_YOURS),
                Some(m) if m.deleted => Err(strings::NO_MESSAGE_SELECTED),
                Some(m)
                    if matches!(
                        m.send_state,
                        Some(SendState::Pending | SendState::Failed(_))
                    ) =>
                {
                    Err(strings::MESSAGE_NOT_SENT)
                }
                Some(m) => Ok(m.seq),
                None => Err(strings::NO_MESSAGE_SELECTED),
            },
            None => self
                .rows()
                .iter()
                .rev()
                .find_map(|r| match r {
                    MessageRow::Message(m)
                        if m.seq.is_some() && !m.deleted && (!own || m.sender == me) =>
                    {
                        Some(m.seq)
                    }
                    _ => None,
                })
                .ok_or(strings::NO_MESSAGE_SELECTED),
        };
        match result {
            Ok(Some(seq)) => self.message_at(seq),
            Ok(None) => None,
            Err(e) => {
                self.status = Some(e.to_string());
                None
            }
        }
    }

    pub(crate) fn begin_reply(&mut self) {
        if let Some(seq) = self.message_target(false).and_then(|m| m.seq) {
            self.reply_to = Some(seq);
            self.editing = None;
            self.start_insert();
        }
    }

    /// Edits the target: with `text`, at once; without, loads its body into
    /// the composer.
    pub(crate) fn begin_edit(&mut self, text: Option<String>, out: &mut Vec<Action>) {
        let Some((seq, body)) = self
            .message_target(true)
            .and_then(|m| Some((m.seq?, m.body.clone())))
        else {
            return;
        };
        let Some(conv) = self.focused.clone() else {
            return;
        };
        match text {
            Some(body) => out.push(Action::Edit { conv, seq, body }),
            None => {
                self.editing = Some(seq);
                self.reply_to = None;
                self.composer.set(&body);
                self.start_insert();
            }
        }
    }

    pub(crate) fn begin_delete(&mut self) {
        if let Some(seq) = self.message_target(true).and_then(|m| m.seq) {
            self.selected = Some(seq);
            self.mode = Mode::ConfirmDelete { seq };
        }
    }
}
