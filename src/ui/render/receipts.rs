//! Read receipts as the message view shows them: "seen by …" under the last
//! message each other member has read (groups and channels), and the
//! sent / delivered / read mark on my messages in a DM.

use crate::client::view::{MessageRow, MessageView, SendState};
use crate::proto::{ConvKind, ReceiptPair};
use crate::ui::app::App;
use crate::ui::strings;
use crate::ui::theme::Theme;
use ratatui::style::Style;
use std::collections::HashMap;

pub struct Receipts {
    /// Row index → members whose read pointer stops at that row.
    pub seen_by: HashMap<usize, Vec<String>>,
    /// In a DM, the other member's pointers.
    pub peer: Option<ReceiptPair>,
}

impl Receipts {
    pub fn compute(app: &App, conv: &str, rows: &[MessageRow]) -> Receipts {
        let me = app.model.me.as_str();
        let summary = app.model.conversation(conv);
        let pointers = app.model.receipts.get(conv);
        let mut seen_by: HashMap<usize, Vec<String>> = HashMap::new();
        let mut peer = None;
        match (summary, pointers) {
            (Some(s), Some(p)) if s.kind == ConvKind::Dm => {
                let other = s
                    .members
                    .iter()
                    .find(|m| m.as_str() != me)
                    .unwrap_or(&s.title);
                peer = Some(p.get(other).copied().unwrap_or_default());
            }
            (Some(_), Some(p)) => {
                for (user, pair) in p.iter().filter(|(u, pr)| u.as_str() != me && pr.read > 0) {
                    let last = rows.iter().enumerate().rev().find_map(|(i, r)| match r {
                        MessageRow::Message(m) if m.seq.is_some_and(|s| s <= pair.read) => {
                            Some((i, m.sender.as_str()))
                        }
                        _ => None,
                    });
                    match last {
                        Some((i, sender)) if sender != user => {
                            seen_by.entry(i).or_default().push(user.clone());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        for users in seen_by.values_mut() {
            users.sort();
        }
        Receipts { seen_by, peer }
    }

    /// The delivery mark after one of my messages.
    pub fn mark(&self, m: &MessageView, theme: &Theme) -> Option<(String, Style)> {
        let dim = theme.dimmed();
        match (&m.send_state, m.seq, self.peer) {
            (None, _, _) | (Some(SendState::Failed(_)), _, _) => None,
            (Some(SendState::Pending), _, _) | (Some(SendState::Sent), None, _) => {
                Some((strings::PENDING_MARK.to_string(), dim))
            }
            (Some(SendState::Sent), Some(seq), Some(peer)) if seq <= peer.read => Some((
                strings::READ_MARK.to_string(),
                Style::default().fg(theme.accent),
            )),
            (Some(SendState::Sent), Some(seq), Some(peer)) if seq <= peer.delivered => {
                Some((strings::DELIVERED_MARK.to_string(), dim))
            }
            (Some(SendState::Sent), Some(_), _) => Some((strings::SENT_MARK.to_string(), dim)),
        }
    }
}
