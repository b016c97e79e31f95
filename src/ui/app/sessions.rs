//! The sessions overlay: this account's device sessions, the one in use
//! marked; ending the selected one or all the others.

use super::{App, Mode};
use crate::client::Action;
use crate::ui::strings;
use crossterm::event::{KeyCode, KeyEvent};

impl App {
    /// Show the overlay and ask the engine for a fresh list.
    pub(crate) fn open_sessions(&mut self, out: &mut Vec<Action>) {
        self.mode = Mode::Sessions;
        self.sessions_selected = 0;
        out.push(Action::Sessions);
    }

    pub(super) fn sessions_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        let n = self.model.sessions.as_ref().map_or(0, Vec::len);
        let sel = &mut self.sessions_selected;
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Down | KeyCode::Char('j') => *sel = (*sel + 1).min(n.saturating_sub(1)),
            KeyCode::Up | KeyCode::Char('k') => *sel = sel.saturating_sub(1),
            KeyCode::Char('r') => out.push(Action::Sessions),
            KeyCode::Char('o') => out.push(Action::RevokeOtherSessions),
            KeyCode::Char('x') | KeyCode::Delete => {
                let chosen = self
                    .model
                    .sessions
                    .as_ref()
                    .and_then(|list| list.get(self.sessions_selected.min(n.saturating_sub(1))));
                match chosen {
                    Some(s) if s.current => {
                        self.status = Some(strings::SESSIONS_NOT_CURRENT.to_string());
                    }
                    Some(s) => out.push(Action::RevokeSession { id: s.id.clone() }),
                    None => {}
                }
            }
            _ => {}
        }
    }
}
