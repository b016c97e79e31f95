//! The search overlay's flow: `s` opens the prompt, Enter runs the query,
//! the cache's hits show at once and the server's merge in (each message
//! once, newest first, answers of an older search dropped), Enter on a hit
//! opens its conversation and selects the message once its row is loaded,
//! Esc closes; `/search QUERY` runs at once.

use super::{App, Mode};
use crate::client::view::MessageRow;
use crate::client::{Action, HitSource, Update};
use crate::proto::SearchHit;
use crate::ui::event::UiEvent;
use crate::ui::fixtures::*;
use crossterm::event::KeyCode;
use std::time::Instant;

fn hit(conv: &str, seq: u64, ts: i64) -> SearchHit {
    SearchHit {
        conversation_id: conv.into(),
        seq,
        ts,
        sender: "alice".into(),
        snippet: "deploy".into(),
        highlights: vec![[0, 6]],
    }
}

fn typed(a: &mut App, text: &str, now: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    for c in text.chars() {
        out.extend(a.handle_event(key(KeyCode::Char(c)), now));
    }
    out
}

#[test]
fn search_runs_merges_and_jumps() {
    let now = Instant::now();
    let mut a = app(base_model(), 90, 24, now);
    a.handle_event(key(KeyCode::Char('s')), now);
    assert_eq!(a.mode, Mode::Search);
    assert!(typed(&mut a, "deploy", now).is_empty());
    let out = a.handle_event(key(KeyCode::Enter), now);
    assert_eq!(
        out,
        [Action::Search {
            id: 1,
            query: "deploy".into(),
            conv: None
        }]
    );
    // The cache answers, then the server: merged, each message once.
    a.handle_event(
        UiEvent::Engine(vec![Update::SearchHits {
            id: 1,
            source: HitSource::Cache,
            hits: vec![hit("c-general", 7, T0)],
        }]),
        now,
    );
    a.handle_event(
        UiEvent::Engine(vec![
            Update::SearchHits {
                id: 1,
                source: HitSource::Server,
                hits: vec![hit("c-general", 7, T0), hit("d-alice", 2, T0 + MIN)],
            },
            Update::SearchEnded { id: 1, error: None },
            // A late answer to an older search is dropped.
            Update::SearchHits {
                id: 0,
                source: HitSource::Server,
                hits: vec![hit("d-alice", 9, T0 + DAY)],
            },
        ]),
        now,
    );
    let got: Vec<(&str, u64, HitSource)> = a
        .search
        .hits
        .iter()
        .map(|(h, s)| (h.conversation_id.as_str(), h.seq, *s))
        .collect();
    assert_eq!(
        got,
        [
            ("d-alice", 2, HitSource::Server),
            ("c-general", 7, HitSource::Cache)
        ]
    );
    // Down, Enter: the conversation opens at the message.
    a.handle_event(key(KeyCode::Down), now);
    let out = a.handle_event(key(KeyCode::Enter), now);
    assert!(out.contains(&Action::JumpTo {
        conv: "c-general".into(),
        seq: 7
    }));
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(a.focused.as_deref(), Some("c-general"));
    // The row arrives with the window the engine loads: it is selected.
    let mut rows: Vec<MessageRow> = a.model.rows("c-general").to_vec();
    if !rows.iter().any(|r| super::row_seq(r) == Some(7)) {
        rows.insert(0, row(msg(7, "alice", T0, "the deploy key")));
        a.handle_event(
            UiEvent::Engine(vec![Update::Messages {
                conv: "c-general".into(),
                rows,
            }]),
            now,
        );
    }
    assert_eq!(a.selected, Some(7));
}

#[test]
fn slash_search_runs_at_once_and_esc_closes() {
    let now = Instant::now();
    let mut a = app(base_model(), 90, 24, now);
    a.handle_event(key(KeyCode::Char('i')), now);
    typed(&mut a, "/search from:alice", now);
    let out = a.handle_event(key(KeyCode::Enter), now);
    assert!(out.contains(&Action::Search {
        id: 1,
        query: "from:alice".into(),
        conv: None
    }));
    assert_eq!(a.mode, Mode::Search);
    a.handle_event(key(KeyCode::Esc), now);
    assert_eq!(a.mode, Mode::Normal);
}
