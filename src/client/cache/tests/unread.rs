//! Unread and mention counts: only messages from others count, mentions
//! follow the current body, and an old cache upgrades in place.

use super::*;

fn counts(c: &Cache, conv: &str) -> (u64, u64) {
    let list = c.conversations().unwrap();
    let s = list.iter().find(|s| s.id == conv).unwrap();
    (s.unread, s.mentions)
}

fn body(target_seq: u64, text: &str) -> EventBody {
    EventBody::Edit {
        target_seq,
        body: text.into(),
        encrypted: None,
    }
}

#[test]
fn only_messages_from_others_count() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        ev(
            "g",
            1,
            "bob",
            EventBody::Create {
                name: Some("launch".into()),
                members: vec!["alice".into(), "bob".into()],
            },
        ),
        msg("g", 2, "bob", "hello"),
        msg("g", 3, "alice", "hi @alice"),
        ev("g", 4, "bob", body(2, "hello there")),
        ev(
            "g",
            5,
            "bob",
            EventBody::Reaction {
                target_seq: 3,
                emoji: "👍".into(),
                remove: false,
                encrypted: None,
            },
        ),
        ev(
            "g",
            6,
            "bob",
            EventBody::Join {
                members: vec!["carol".into()],
            },
        ),
        ev(
            "g",
            7,
            "carol",
            EventBody::Rename {
                name: "liftoff".into(),
            },
        ),
        ev(
            "g",
            8,
            "carol",
            EventBody::Leave {
                members: vec!["carol".into()],
            },
        ),
        msg("g", 9, "carol", "bye"),
        ev("g", 10, "carol", EventBody::Delete { target_seq: 9 }),
        msg("g", 11, "bob", "one more"),
    ])
    .unwrap();
    assert_eq!(counts(&c, "g"), (2, 0));
    c.apply_receipt("g", "alice", 2, 2).unwrap();
    assert_eq!(counts(&c, "g"), (1, 0));
    c.apply_receipt("g", "alice", 11, 11).unwrap();
    assert_eq!(counts(&c, "g"), (0, 0));
}

#[test]
fn mentions_are_flagged_on_store_and_follow_edits() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("g", 1, "bob", "hi @alice"),
        msg("g", 2, "bob", "plain"),
        msg("g", 3, "alice", "@alice talking to myself"),
        msg("g", 4, "bob", "@alicia is someone else"),
    ])
    .unwrap();
    assert_eq!(counts(&c, "g"), (3, 1));
    // An edit adding a mention raises the flag, one removing it clears it.
    c.apply_events(&[ev("g", 5, "bob", body(2, "plain, @Alice"))])
        .unwrap();
    assert_eq!(counts(&c, "g"), (3, 2));
    c.apply_events(&[ev("g", 6, "bob", body(1, "hi all"))])
        .unwrap();
    assert_eq!(counts(&c, "g"), (3, 1));
    // Only the sender's edits count; a deletion drops the message.
    c.apply_events(&[ev("g", 7, "carol", body(4, "@alice"))])
        .unwrap();
    assert_eq!(counts(&c, "g"), (3, 1));
    c.apply_events(&[ev("g", 8, "bob", EventBody::Delete { target_seq: 2 })])
        .unwrap();
    assert_eq!(counts(&c, "g"), (2, 0));
}

#[test]
fn flags_do_not_depend_on_arrival_order() {
    let events = [
        msg("g", 1, "bob", "plain"),
        ev("g", 2, "bob", body(1, "now @alice")),
        msg("g", 3, "carol", "@alice gone soon"),
        ev("g", 4, "carol", EventBody::Delete { target_seq: 3 }),
        msg("g", 5, "carol", "@alice stays"),
    ];
    let mut forward = cache_as("alice");
    forward.apply_events(&events).unwrap();
    let mut backward = cache_as("alice");
    for e in events.iter().rev() {
        backward.apply_events(std::slice::from_ref(e)).unwrap();
    }
    assert_eq!(counts(&forward, "g"), (2, 2));
    assert_eq!(counts(&backward, "g"), (2, 2));
}

#[test]
fn flags_follow_me_set_after_events() {
    let mut c = Cache::open_in_memory().unwrap();
    c.apply_events(&[
        msg("g", 1, "bob", "hi @alice"),
        msg("g", 2, "alice", "hi bob"),
    ])
    .unwrap();
    c.set_me("alice").unwrap();
    assert_eq!(counts(&c, "g"), (1, 1));
    c.set_me("bob").unwrap();
    assert_eq!(counts(&c, "g"), (1, 0));
}

#[test]
fn the_count_uses_the_unread_index() {
    let c = cache_as("alice");
    let plan: Vec<String> = c
        .conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events u WHERE u.conversation_id = 'g'
             AND u.counts_unread = 1 AND u.seq > 5 AND u.mentions_me = 1",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("events_unread")),
        "plan: {plan:?}"
    );
}

/// A cache as the first schema version wrote it: `me` known, events and
/// receipts held, no unread flags.
fn write_v1_cache(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute_batch(
        r#"
        INSERT INTO meta VALUES ('me', 'alice');
        INSERT INTO conversations(id, kind, name, members, last_seq, cursor)
            VALUES ('g', 'group', 'launch', '["alice","bob"]', 5, 5);
        INSERT INTO receipts VALUES ('g', 'alice', 1, 1);
        INSERT INTO events VALUES
            ('g', 1, 1000, 'bob', NULL, 'message', NULL, 'first', '{"kind":"message","body":"first"}'),
            ('g', 2, 2000, 'bob', NULL, 'message', NULL, 'hey @alice', '{"kind":"message","body":"hey @alice"}'),
            ('g', 3, 3000, 'alice', NULL, 'message', NULL, 'mine', '{"kind":"message","body":"mine"}'),
            ('g', 4, 4000, 'bob', NULL, 'reaction', 3, NULL, '{"kind":"reaction","target_seq":3,"emoji":"x"}'),
            ('g', 5, 5000, 'bob', NULL, 'message', NULL, 'later', '{"kind":"message","body":"later"}');
        "#,
    )
    .unwrap();
}

#[test]
fn an_old_cache_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    write_v1_cache(&path);
    let c = Cache::open(&path).unwrap();
    let v: u32 = c
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::latest_version());
    assert_eq!(c.me().unwrap().as_deref(), Some("alice"));
    assert_eq!(counts(&c, "g"), (2, 1));
    assert_eq!(c.my_read_seq("g").unwrap(), 1);
    let rows = c.messages("g", None, 10).unwrap();
    assert_eq!(rows.len(), 4);
    drop(c);
    // Reopening does not recompute or change anything.
    let c = Cache::open(&path).unwrap();
    assert_eq!(counts(&c, "g"), (2, 1));
}

#[test]
fn a_message_state_looks_up_edits_and_deletions_by_index() {
    let c = cache_as("alice");
    let plan: Vec<String> = c
        .conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {} AND m.conversation_id = 'g' AND m.seq = 5",
            crate::client::cache::unread::MESSAGE_STATE
        ))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let by_index = plan.iter().filter(|p| p.contains("events_target")).count();
    assert_eq!(by_index, 2, "plan: {plan:?}");
    assert!(
        !plan
            .iter()
            .any(|p| p.contains("PRIMARY KEY (conversation_id=?)")),
        "a subquery walks the conversation: {plan:?}"
    );
}
