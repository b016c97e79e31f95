//! Tests of the cache: opening, recovery and persistence here; events and
//! cursors, folding, the outbox and the whole-sync property in submodules.

mod files;
mod fold;
mod outbox;
mod prop;
mod search;
mod sync;
mod unread;

use super::*;
use crate::proto::{ConvKind, Conversation, Event, EventBody, ReceiptPair};
use std::collections::BTreeMap;

pub(super) fn ev(conv: &str, seq: u64, sender: &str, body: EventBody) -> Event {
    Event {
        conversation_id: conv.into(),
        seq,
        ts: 1_000 * seq as i64,
        sender: sender.into(),
        client_msg_id: None,
        eid: None,
        bot: false,
        body,
    }
}

pub(super) fn msg(conv: &str, seq: u64, sender: &str, text: &str) -> Event {
    ev(
        conv,
        seq,
        sender,
        EventBody::Message {
            body: text.into(),
            reply_to: None,
            encrypted: None,
        },
    )
}

pub(super) fn conversation(
    id: &str,
    kind: ConvKind,
    name: Option<&str>,
    members: &[&str],
) -> Conversation {
    Conversation {
        id: id.into(),
        kind,
        name: name.map(Into::into),
        members: members.iter().map(|m| m.to_string()).collect(),
        member_count: members.len() as u64,
        last_seq: 0,
        receipts: BTreeMap::new(),
        roles: BTreeMap::new(),
        encrypted: false,
    }
}

pub(super) fn cache_as(me: &str) -> Cache {
    let mut cache = Cache::open_in_memory().expect("in-memory cache");
    cache.set_me(me).expect("set me");
    cache
}

#[test]
fn meta_round_trip() {
    let mut c = Cache::open_in_memory().unwrap();
    assert_eq!(c.meta("x").unwrap(), None);
    assert_eq!(c.me().unwrap(), None);
    c.set_meta("x", "1").unwrap();
    c.set_meta("x", "2").unwrap();
    c.set_me("alice").unwrap();
    assert_eq!(c.meta("x").unwrap().as_deref(), Some("2"));
    assert_eq!(c.me().unwrap().as_deref(), Some("alice"));
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    {
        let mut c = Cache::open(&path).unwrap();
        c.set_me("alice").unwrap();
        let mut conv = conversation("c1", ConvKind::Group, Some("launch"), &["alice", "bob"]);
        conv.last_seq = 3;
        conv.receipts.insert(
            "bob".into(),
            ReceiptPair {
                delivered: 2,
                read: 1,
            },
        );
        c.upsert_conversation(&conv).unwrap();
        c.apply_events(&[msg("c1", 1, "bob", "one"), msg("c1", 2, "alice", "two")])
            .unwrap();
        c.set_muted("c1", true).unwrap();
        c.outbox_push(&OutboxItem {
            client_msg_id: "m1".into(),
            conversation_id: "c1".into(),
            request: OutboxRequest::Send {
                body: "hi".into(),
                reply_to: None,
            },
            created_at: 5,
        })
        .unwrap();
    }
    let c = Cache::open(&path).unwrap();
    assert_eq!(c.me().unwrap().as_deref(), Some("alice"));
    assert_eq!(c.cursor("c1").unwrap(), 2);
    assert_eq!(c.missing_ranges("c1").unwrap(), vec![(3, 3)]);
    assert_eq!(
        c.receipts("c1").unwrap()["bob"],
        ReceiptPair {
            delivered: 2,
            read: 1
        }
    );
    assert_eq!(c.outbox_pending().unwrap().len(), 1);
    let list = c.conversations().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].muted);
    assert_eq!(list[0].title, "launch");
    assert_eq!(c.events("c1", 1, u64::MAX).unwrap().len(), 2);
}

#[test]
fn file_is_wal_with_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path().join("c.db")).unwrap();
    let mode: String = c
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: bool = c
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert!(fk);
    let v: u32 = c
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::latest_version());
}

#[test]
fn garbage_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = Cache::open(&path).unwrap_err();
    assert!(err.is_corruption(), "{err}");

    let (mut c, moved) = Cache::open_or_recover(&path).unwrap();
    let moved = moved.expect("the bad file is reported");
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("cache.db.corrupt-"), "{name}");
    assert_eq!(std::fs::read(&moved).unwrap(), garbage);

    c.apply_events(&[msg("c1", 1, "bob", "hi")]).unwrap();
    drop(c);
    let (c, moved) = Cache::open_or_recover(&path).unwrap();
    assert_eq!(moved, None);
    assert_eq!(c.cursor("c1").unwrap(), 1);
}

#[test]
fn short_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.db");
    std::fs::write(&short, b"hello").unwrap();
    let (_, moved) = Cache::open_or_recover(&short).unwrap();
    assert!(moved.is_some());
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let (_, moved) = Cache::open_or_recover(&empty).unwrap();
    assert_eq!(moved, None);
}

#[test]
fn damaged_pages_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    {
        let mut c = Cache::open(&path).unwrap();
        let events: Vec<Event> = (1..=2000)
            .map(|s| msg("c1", s, "bob", &format!("message number {s}")))
            .collect();
        c.apply_events(&events).unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024);
    for b in &mut bytes[4096 * 3..4096 * 12] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (c, moved) = Cache::open_or_recover(&path).unwrap();
    assert!(moved.is_some());
    assert_eq!(c.cursor("c1").unwrap(), 0);
}

#[test]
fn newer_schema_is_refused_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    {
        let c = Cache::open(&path).unwrap();
        c.conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let err = Cache::open_or_recover(&path).unwrap_err();
    assert!(
        matches!(err, CacheError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(path.exists());
}

#[test]
fn moving_aside_takes_the_companion_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    for (suffix, data) in [("", "db"), ("-wal", "wal"), ("-shm", "shm")] {
        std::fs::write(dir.path().join(format!("cache.db{suffix}")), data).unwrap();
    }
    let first = move_aside(&path).unwrap();
    std::fs::write(&path, "again").unwrap();
    let second = move_aside(&path).unwrap();
    assert_ne!(first, second);
    for (suffix, data) in [("", "db"), ("-wal", "wal"), ("-shm", "shm")] {
        assert_eq!(
            std::fs::read_to_string(with_suffix(&first, suffix)).unwrap(),
            data
        );
        assert!(!with_suffix(&path, suffix).exists());
    }
    assert_eq!(std::fs::read_to_string(&second).unwrap(), "again");
}
