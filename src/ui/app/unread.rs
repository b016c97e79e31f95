//! Unread navigation: `]u` / `]m` jump to the next conversation with unread
//! messages / mentions, the unread-only filter of the conversation list,
//! the "new messages" line (above the first message from others past the
//! read pointer the conversation had when it was opened), and the two-key
//! sequences those jumps are bound to.

use super::App;
use crate::client::Action;
use crate::client::view::{ConvSummary, MessageRow};
use crate::ui::keys::{KeyCmd, KeyLookup};
use crate::ui::strings;
use crossterm::event::KeyEvent;

impl App {
    /// The command a normal-mode key stands for, with two-key sequences:
    /// the first key of a sequence is remembered and yields nothing.
    pub(super) fn key_command(&mut self, k: &KeyEvent) -> Option<KeyCmd> {
        match self.keymap.lookup_after(self.pending_key.take(), k) {
            KeyLookup::Cmd(cmd) => Some(cmd),
            KeyLookup::Prefix(chord) => {
                self.pending_key = Some(chord);
                None
            }
            KeyLookup::Unbound => None,
        }
    }

    /// The conversations the list shows, in order: all of them, or with
    /// the unread-only filter those with unread messages plus the focused one.
    pub fn listed_conversations(&self) -> Vec<&ConvSummary> {
        self.model
            .conversations
            .iter()
            .filter(|c| !self.unread_only || c.unread > 0 || self.is_focused(&c.id))
            .collect()
    }

    fn is_focused(&self, id: &str) -> bool {
        self.focused.as_deref() == Some(id)
    }

    /// Shows only conversations with unread messages, or all again.
    pub(crate) fn toggle_unread_only(&mut self) {
        self.unread_only = !self.unread_only;
    }

    /// Focuses the next conversation after the focused one (in list order,
    /// wrapping) with unread messages, or with unread mentions when
    /// `mentions`. Says so on the status line when there is none.
    pub(crate) fn jump_unread(&mut self, mentions: bool, out: &mut Vec<Action>) {
        let list = &self.model.conversations;
        let start = self
            .focused
            .as_deref()
            .and_then(|f| list.iter().position(|c| c.id == f))
            .map_or(0, |i| i + 1);
        let wanted = |c: &ConvSummary| {
            if mentions {
                c.mentions > 0
            } else {
                c.unread > 0
            }
        };
        let found = (0..list.len())
            .map(|i| &list[(start + i) % list.len()])
            .find(|c| wanted(c) && !self.is_focused(&c.id))
            .map(|c| c.id.clone());
        match found {
            Some(id) => self.focus(id, out),
            None if mentions => self.status = Some(strings::NO_UNREAD_MENTIONS.to_string()),
            None => self.status = Some(strings::NO_UNREAD.to_string()),
        }
    }

    /// Remembers my read pointer of the conversation being opened, for the
    /// "new messages" line.
    pub(super) fn remember_read_pointer(&mut self, conv: &str) {
        let read = self.model.conversation(conv).map_or(0, |c| c.read_seq);
        self.opened_read = Some((conv.to_string(), read));
    }

    /// Index into `rows()` of the first message from someone else above the
    /// read pointer the focused conversation had when it was opened: the
    /// "new messages" line goes above it.
    pub fn new_messages_index(&self) -> Option<usize> {
        let (conv, read) = self.opened_read.as_ref()?;
        if !self.is_focused(conv) {
            return None;
        }
        let me = self.model.me.as_str();
        self.rows().iter().position(|r| match r {
            MessageRow::Message(m) => m.sender != me && m.seq.is_some_and(|s| s > *read),
            _ => false,
        })
    }
}
