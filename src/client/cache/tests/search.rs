//! The cache's search index: current text whatever the arrival order,
//! deletions, retention, forgotten conversations, filters, and the upgrade
//! of a cache written before the index.

use super::*;
use crate::proto::search::SearchQuery;

fn find(c: &Cache, q: &str) -> Vec<(String, u64)> {
    let q = SearchQuery::parse(q).unwrap();
    c.search(&q, None, 50)
        .unwrap()
        .into_iter()
        .map(|h| (h.conversation_id, h.seq))
        .collect()
}

fn edit(conv: &str, seq: u64, sender: &str, target: u64, text: &str) -> Event {
    ev(
        conv,
        seq,
        sender,
        EventBody::Edit {
            target_seq: target,
            body: text.into(),
            encrypted: None,
        },
    )
}

#[test]
fn the_index_holds_current_text_in_any_order() {
    let mut c = cache_as("alice");
    // An edit that arrives before its message still wins.
    c.apply_events(&[edit("d", 3, "bob", 2, "rotated token")])
        .unwrap();
    c.apply_events(&[
        msg("d", 2, "bob", "old deploy key"),
        msg("d", 1, "alice", "deploy now"),
    ])
    .unwrap();
    assert_eq!(find(&c, "deploy"), [("d".into(), 1)]);
    assert_eq!(find(&c, "token"), [("d".into(), 2)]);
    // Someone else's "edit" changes nothing.
    c.apply_events(&[edit("d", 4, "mallory", 1, "hijacked")])
        .unwrap();
    assert!(find(&c, "hijacked").is_empty());
    // Deleted: gone, in either order.
    c.apply_events(&[ev("d", 5, "bob", EventBody::Delete { target_seq: 2 })])
        .unwrap();
    assert!(find(&c, "token").is_empty());
    c.apply_events(&[ev("d", 7, "bob", EventBody::Delete { target_seq: 6 })])
        .unwrap();
    c.apply_events(&[msg("d", 6, "bob", "never seen")]).unwrap();
    assert!(find(&c, "seen").is_empty());
    // Snippets come from the current text.
    let q = SearchQuery::parse("deploy").unwrap();
    let hit = &c.search(&q, None, 5).unwrap()[0];
    assert_eq!(hit.snippet, "deploy now");
    assert_eq!(hit.highlights, [[0, 6]]);
}

#[test]
fn filters_apply_locally() {
    let mut c = cache_as("alice");
    c.upsert_conversation(&conversation(
        "ops",
        ConvKind::Channel,
        Some("ops"),
        &["alice", "bob"],
    ))
    .unwrap();
    c.upsert_conversation(&conversation("dm", ConvKind::Dm, None, &["alice", "bob"]))
        .unwrap();
    c.upsert_conversation(&conversation(
        "g",
        ConvKind::Group,
        Some("team"),
        &["alice", "carol"],
    ))
    .unwrap();
    c.apply_events(&[
        msg("ops", 1, "bob", "release today"),
        msg("ops", 2, "alice", "release soon"),
    ])
    .unwrap();
    c.apply_events(&[msg("dm", 1, "bob", "release notes")])
        .unwrap();
    c.apply_events(&[msg("g", 1, "carol", "release party")])
        .unwrap();
    assert_eq!(find(&c, "release").len(), 5 - 1);
    assert_eq!(find(&c, "release from:bob").len(), 2);
    assert_eq!(
        find(&c, "release in:#ops"),
        [("ops".into(), 2), ("ops".into(), 1)]
    );
    assert_eq!(find(&c, "release in:@bob"), [("dm".into(), 1)]);
    assert_eq!(find(&c, "release in:team"), [("g".into(), 1)]);
    assert!(find(&c, "release in:#nowhere").is_empty());
    assert_eq!(find(&c, "from:carol"), [("g".into(), 1)]);
    // ts is 1000 * seq: day filters against 1970-01-01.
    assert!(find(&c, "release after:1970-01-01").is_empty());
    assert_eq!(find(&c, "release before:1970-01-02").len(), 4);
    let q = SearchQuery::parse("release").unwrap();
    assert_eq!(c.search(&q, Some("ops"), 50).unwrap().len(), 2);
    assert_eq!(c.search(&q, None, 1).unwrap().len(), 1);
}

#[test]
fn retention_and_forgetting_leave_the_index() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("a", 1, "bob", "old secret"),
        msg("a", 50, "bob", "new secret"),
    ])
    .unwrap();
    c.apply_events(&[msg("b", 20, "bob", "other secret")])
        .unwrap();
    c.forget_text_before(10_000).unwrap();
    assert_eq!(find(&c, "secret"), [("a".into(), 50), ("b".into(), 20)]);
    c.reset_history("a").unwrap();
    assert_eq!(find(&c, "secret"), [("b".into(), 20)]);
    c.remove_conversation("b").unwrap();
    assert!(find(&c, "secret").is_empty());
}

#[test]
fn a_cache_from_before_the_index_is_filled_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &super::super::schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(
            r#"INSERT INTO conversations (id, kind) VALUES ('d', 'dm');
               INSERT INTO events (conversation_id, seq, ts, sender, kind, target_seq, text, data) VALUES
                 ('d', 1, 1, 'bob', 'message', NULL, 'deploy key', '{"body":"deploy key","reply_to":null}'),
                 ('d', 2, 2, 'bob', 'edit', 1, 'rotated token', '{"target_seq":1,"body":"rotated token"}'),
                 ('d', 3, 3, 'bob', 'message', NULL, '', '{"body":"","reply_to":null}'),
                 ('d', 4, 4, 'bob', 'delete', 3, NULL, '{"target_seq":3}'),
                 ('d', 5, 5, 'alice', 'message', NULL, 'token two', '{"body":"token two","reply_to":null}');"#,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let c = Cache::open(&path).unwrap();
    assert!(find(&c, "deploy").is_empty());
    assert_eq!(find(&c, "token"), [("d".into(), 5), ("d".into(), 1)]);
}

#[test]
fn shared_files_are_found_by_name_and_caption() {
    let mut c = cache_as("alice");
    let file = |name: &str| crate::proto::FileInfo {
        digest: "a".repeat(64),
        name: name.into(),
        size: 10,
        media_type: "application/pdf".into(),
        width: None,
        height: None,
        preview: None,
        key: None,
    };
    c.apply_events(&[
        ev(
            "d",
            1,
            "bob",
            EventBody::File {
                file: Box::new(file("quarterly-report.pdf")),
                caption: Some("the numbers for Q3".into()),
                reply_to: None,
                encrypted: None,
            },
        ),
        ev(
            "d",
            2,
            "bob",
            EventBody::File {
                file: Box::new(file("notes.txt")),
                caption: None,
                reply_to: None,
                encrypted: None,
            },
        ),
    ])
    .unwrap();
    assert_eq!(find(&c, "quarterly"), [("d".into(), 1)]);
    assert_eq!(find(&c, "numbers"), [("d".into(), 1)]);
    assert_eq!(find(&c, "notes"), [("d".into(), 2)]);
    let q = SearchQuery::parse("report").unwrap();
    assert_eq!(
        c.search(&q, None, 5).unwrap()[0].snippet,
        "quarterly-report.pdf — the numbers for Q3"
    );
    c.apply_events(&[ev("d", 3, "bob", EventBody::Delete { target_seq: 1 })])
        .unwrap();
    assert!(find(&c, "quarterly").is_empty());
}
