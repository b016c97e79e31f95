//! Events, cursors, gaps, the floor, receipts and the conversation list.

use super::*;
use crate::proto::{ConvKind, EventBody, ReceiptPair};

#[test]
fn applying_is_idempotent() {
    let mut c = cache_as("alice");
    let events = vec![msg("c1", 1, "bob", "a"), msg("c1", 2, "bob", "b")];
    let first = c.apply_events(&events).unwrap();
    assert!(first.stored_any());
    assert_eq!(first.conversations["c1"].stored, vec![1, 2]);
    assert_eq!(first.conversations["c1"].cursor, 2);
    let again = c.apply_events(&events).unwrap();
    assert!(!again.stored_any());
    assert_eq!(again.conversations["c1"].cursor, 2);
    let mut changed = msg("c1", 1, "bob", "rewritten");
    changed.ts = 99;
    c.apply_events(&[changed]).unwrap();
    assert_eq!(c.event("c1", 1).unwrap().unwrap(), events[0]);
}

#[test]
fn cursor_and_missing_ranges() {
    let mut c = cache_as("alice");
    let out = c
        .apply_events(&[9, 2, 5, 1, 3, 6].map(|s| msg("c1", s, "bob", "x")))
        .unwrap();
    let p = &out.conversations["c1"];
    assert_eq!((p.cursor, p.last_seq), (3, 9));
    assert_eq!(p.missing, vec![(4, 4), (7, 8)]);
    c.set_last_seq("c1", 11).unwrap();
    c.set_last_seq("c1", 4).unwrap();
    assert_eq!(
        c.missing_ranges("c1").unwrap(),
        vec![(4, 4), (7, 8), (10, 11)]
    );
    c.apply_events(&[msg("c1", 4, "bob", "x")]).unwrap();
    assert_eq!(c.cursor("c1").unwrap(), 6);
    c.apply_events(&[7, 8, 10, 11].map(|s| msg("c1", s, "bob", "x")))
        .unwrap();
    assert_eq!(c.cursor("c1").unwrap(), 11);
    assert!(c.missing_ranges("c1").unwrap().is_empty());
    assert_eq!(c.cursors().unwrap()["c1"], 11);
    assert_eq!(c.cursor("nope").unwrap(), 0);
    assert!(c.missing_ranges("nope").unwrap().is_empty());
}

#[test]
fn unknown_conversation_gets_a_stub() {
    let mut c = cache_as("alice");
    c.apply_events(&[msg("x", 2, "bob", "early")]).unwrap();
    let list = c.conversations().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].last_seq, list[0].cursor, list[0].has_gap),
        (2, 0, true)
    );
    let mut conv = conversation("x", ConvKind::Dm, None, &["alice", "bob"]);
    conv.last_seq = 1;
    c.upsert_conversation(&conv).unwrap();
    let list = c.conversations().unwrap();
    assert_eq!(list[0].title, "bob");
    assert_eq!(list[0].last_seq, 2, "last_seq is never lowered");
    assert_eq!(c.conversation("x").unwrap().unwrap().kind, ConvKind::Dm);
}

#[test]
fn floor_separates_scrollback_from_gaps() {
    let mut c = cache_as("alice");
    c.set_last_seq("c1", 1000).unwrap();
    c.set_floor("c1", 951).unwrap();
    assert_eq!(c.cursor("c1").unwrap(), 950);
    assert_eq!(c.oldest_held("c1").unwrap(), None);
    assert_eq!(c.missing_ranges("c1").unwrap(), vec![(951, 1000)]);
    let page: Vec<_> = (951..=1000).map(|s| msg("c1", s, "bob", "x")).collect();
    c.apply_events(&page).unwrap();
    assert_eq!(c.cursor("c1").unwrap(), 1000);
    assert_eq!(c.oldest_held("c1").unwrap(), Some(951));
    assert!(c.missing_ranges("c1").unwrap().is_empty());

    let older: Vec<_> = (901..=950).map(|s| msg("c1", s, "bob", "x")).collect();
    c.apply_events(&older).unwrap();
    assert_eq!(c.oldest_held("c1").unwrap(), Some(901));
    c.apply_events(&[msg("c1", 1002, "bob", "x")]).unwrap();
    assert_eq!(c.missing_ranges("c1").unwrap(), vec![(1001, 1001)]);

    c.set_floor("c1", 1).unwrap();
    assert_eq!(c.cursor("c1").unwrap(), 0);
    assert_eq!(
        c.missing_ranges("c1").unwrap(),
        vec![(1, 900), (1001, 1001)]
    );
}

#[test]
fn a_page_without_set_floor_leaves_the_old_history_missing() {
    let mut c = cache_as("alice");
    let page: Vec<_> = (51..=60).map(|s| msg("c1", s, "bob", "x")).collect();
    c.apply_events(&page).unwrap();
    assert_eq!(c.missing_ranges("c1").unwrap(), vec![(1, 50)]);
    c.set_floor("c1", 51).unwrap();
    assert!(c.missing_ranges("c1").unwrap().is_empty());
    assert_eq!(c.cursor("c1").unwrap(), 60);
}

#[test]
fn receipts_only_move_forward() {
    let mut c = cache_as("alice");
    c.apply_receipt("c1", "bob", 5, 3).unwrap();
    c.apply_receipt("c1", "bob", 4, 4).unwrap();
    assert_eq!(
        c.receipts("c1").unwrap()["bob"],
        ReceiptPair {
            delivered: 5,
            read: 4
        }
    );
    let mut conv = conversation("c1", ConvKind::Group, Some("g"), &["alice", "bob"]);
    conv.receipts.insert(
        "bob".into(),
        ReceiptPair {
            delivered: 1,
            read: 9,
        },
    );
    conv.receipts.insert(
        "alice".into(),
        ReceiptPair {
            delivered: 7,
            read: 6,
        },
    );
    c.upsert_conversation(&conv).unwrap();
    assert_eq!(
        c.receipts("c1").unwrap()["bob"],
        ReceiptPair {
            delivered: 5,
            read: 9
        }
    );
    assert_eq!(c.my_read_seq("c1").unwrap(), 6);
    c.apply_receipt("c1", "alice", 0, 2).unwrap();
    assert_eq!(c.my_read_seq("c1").unwrap(), 6);
    assert_eq!(c.my_read_seq("other").unwrap(), 0);
}

#[test]
fn conversation_list() {
    let mut c = cache_as("alice");
    let mut dm = conversation("d", ConvKind::Dm, None, &["alice", "bob"]);
    dm.last_seq = 4;
    dm.receipts.insert(
        "alice".into(),
        ReceiptPair {
            delivered: 4,
            read: 1,
        },
    );
    c.upsert_conversation(&dm).unwrap();
    c.upsert_conversation(&conversation(
        "g",
        ConvKind::Group,
        Some("launch"),
        &["alice", "carol"],
    ))
    .unwrap();
    c.upsert_conversation(&conversation(
        "e",
        ConvKind::Channel,
        Some("empty"),
        &["alice"],
    ))
    .unwrap();
    c.apply_events(&[
        msg("d", 1, "bob", "hi @alice"),
        msg("d", 2, "bob", "@alice again"),
        msg("d", 3, "alice", "@alice me"),
        msg("d", 4, "bob", "@alicia no"),
        msg("g", 1, "carol", "@ALICE, yes"),
    ])
    .unwrap();
    c.set_muted("g", true).unwrap();
    c.set_last_seq("g", 3).unwrap();
    let list = c.conversations().unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["d", "g", "e"]);
    assert_eq!(c.conversation_ids_by_activity().unwrap(), ["d", "g", "e"]);
    let d = &list[0];
    assert_eq!(
        (d.title.as_str(), d.unread, d.mentions, d.read_seq),
        ("bob", 2, 1, 1)
    );
    assert_eq!((d.last_activity, d.has_gap, d.muted), (4000, false, false));
    let g = &list[1];
    assert_eq!((g.title.as_str(), g.unread, g.mentions), ("launch", 1, 1));
    assert!(g.has_gap && g.muted);
    assert_eq!((list[2].last_activity, list[2].unread), (0, 0));
}

#[test]
fn removing_a_conversation_forgets_it() {
    let mut c = cache_as("alice");
    c.apply_events(&[msg("c1", 1, "bob", "x")]).unwrap();
    c.apply_receipt("c1", "bob", 1, 1).unwrap();
    c.outbox_push(&OutboxItem {
        client_msg_id: "m".into(),
        conversation_id: "c1".into(),
        request: OutboxRequest::Send {
            body: "b".into(),
            reply_to: None,
        },
        created_at: 1,
    })
    .unwrap();
    c.remove_conversation("c1").unwrap();
    assert!(c.conversations().unwrap().is_empty());
    assert!(c.events("c1", 0, u64::MAX).unwrap().is_empty());
    assert!(c.receipts("c1").unwrap().is_empty());
    assert!(c.outbox_pending().unwrap().is_empty());
    assert_eq!(c.conversation("c1").unwrap(), None);
}

#[test]
fn out_of_range_seqs_are_ignored() {
    let mut c = cache_as("alice");
    let out = c
        .apply_events(&[
            msg("c1", 0, "bob", "zero"),
            msg("c1", u64::MAX, "bob", "huge"),
        ])
        .unwrap();
    assert!(out.conversations.is_empty());
    assert!(c.event("c1", u64::MAX).unwrap().is_none());
}

#[test]
fn ten_thousand_events_apply_quickly() {
    let mut c = cache_as("alice");
    let events: Vec<_> = (1..=10_000)
        .map(|s| {
            if s % 5 == 0 {
                ev(
                    "c1",
                    s,
                    "bob",
                    EventBody::Reaction {
                        target_seq: s - 1,
                        emoji: "+1".into(),
                        remove: false,
                        encrypted: None,
                    },
                )
            } else {
                msg("c1", s, "bob", "some message body of ordinary length")
            }
        })
        .collect();
    let start = std::time::Instant::now();
    c.apply_events(&events).unwrap();
    let took = start.elapsed();
    assert_eq!(c.cursor("c1").unwrap(), 10_000);
    assert!(
        took.as_secs_f64() < 3.0,
        "applying 10k events took {took:?}"
    );
}
