//! The search overlay: a prompt, then the hits (the cache's at once, the
//! server's merged in when they come, each message once), arrows to move,
//! Enter to open the conversation at that message, Esc to close.

use super::{App, Mode};
use crate::client::{Action, HitSource};
use crate::proto::SearchHit;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the server has said about the current search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServerState {
    /// No search run yet.
    #[default]
    Idle,
    Waiting,
    Answered,
    /// Not reached, or refused: why.
    Failed(String),
}

#[derive(Debug, Clone, Default)]
pub struct SearchPanel {
    /// The query being typed.
    pub query: String,
    /// The query whose hits are shown (`None`: none run yet).
    pub ran: Option<String>,
    /// The number of the search whose hits are shown; answers of older
    /// searches are dropped.
    pub id: u64,
    /// Hits, newest first, each message once, with where each came from.
    pub hits: Vec<(SearchHit, HitSource)>,
    pub selected: usize,
    pub server: ServerState,
}

impl SearchPanel {
    pub(super) fn edit(&mut self, text: &str) {
        self.query.push_str(text);
    }

    /// Merge hits of search `id` (dropped when a newer search runs).
    pub(super) fn add(&mut self, id: u64, source: HitSource, hits: Vec<SearchHit>) {
        if id != self.id {
            return;
        }
        for h in hits {
            if !self
                .hits
                .iter()
                .any(|(x, _)| x.conversation_id == h.conversation_id && x.seq == h.seq)
            {
                self.hits.push((h, source));
            }
        }
        self.hits
            .sort_by(|a, b| b.0.ts.cmp(&a.0.ts).then(b.0.seq.cmp(&a.0.seq)));
    }

    pub(super) fn ended(&mut self, id: u64, error: Option<String>) {
        if id != self.id {
            return;
        }
        self.server = match error {
            None => ServerState::Answered,
            Some(e) => ServerState::Failed(e),
        };
    }
}

impl App {
    /// Open the search overlay; with a query, run it at once.
    pub(crate) fn open_search(&mut self, query: String, out: &mut Vec<Action>) {
        self.mode = Mode::Search;
        self.search.query = query.trim().to_string();
        if !self.search.query.is_empty() {
            self.run_search(out);
        }
    }

    fn run_search(&mut self, out: &mut Vec<Action>) {
        let s = &mut self.search;
        s.id += 1;
        s.hits.clear();
        s.selected = 0;
        s.ran = Some(s.query.clone());
        s.server = ServerState::Waiting;
        out.push(Action::Search {
            id: s.id,
            query: s.query.clone(),
            conv: None,
        });
    }

    pub(super) fn search_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let n = self.search.hits.len();
        let sel = &mut self.search.selected;
        match k.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Down | KeyCode::Tab => *sel = (*sel + 1).min(n.saturating_sub(1)),
            KeyCode::Char('n') if ctrl => *sel = (*sel + 1).min(n.saturating_sub(1)),
            KeyCode::Up | KeyCode::BackTab => *sel = sel.saturating_sub(1),
            KeyCode::Char('p') if ctrl => *sel = sel.saturating_sub(1),
            KeyCode::Backspace => {
                self.search.query.pop();
            }
            KeyCode::Char('u') if ctrl => self.search.query.clear(),
            KeyCode::Char(c) if !ctrl => self.search.query.push(c),
            KeyCode::Enter => {
                let fresh = self.search.ran.as_deref() != Some(self.search.query.trim());
                if fresh && !self.search.query.trim().is_empty() {
                    self.search.query = self.search.query.trim().to_string();
                    self.run_search(out);
                } else if let Some((hit, _)) = self.search.hits.get(self.search.selected) {
                    let (conv, seq) = (hit.conversation_id.clone(), hit.seq);
                    self.jump(conv, seq, out);
                }
            }
            _ => {}
        }
    }

    /// Open `conv` at message `seq`: the engine loads the messages around
    /// it; the selection lands on it once its row is there.
    fn jump(&mut self, conv: String, seq: u64, out: &mut Vec<Action>) {
        self.mode = Mode::Normal;
        if self.model.conversation(&conv).is_none() {
            return;
        }
        self.focus(conv.clone(), out);
        out.push(Action::JumpTo {
            conv: conv.clone(),
            seq,
        });
        self.jump_target = Some((conv, seq));
    }

    /// Select the message a jump aims at once its row is loaded.
    pub(super) fn land_jump(&mut self) {
        let Some((conv, seq)) = self.jump_target.clone() else {
            return;
        };
        if self.focused.as_deref() != Some(conv.as_str()) {
            self.jump_target = None;
            return;
        }
        if self.rows().iter().any(|r| super::row_seq(r) == Some(seq)) {
            self.selected = Some(seq);
            self.jump_target = None;
        }
    }
}
