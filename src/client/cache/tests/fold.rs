//! Folding events into message rows.

use super::*;
use crate::client::view::{MessageRow, MessageView, ReactionView, SendState};
use crate::proto::EventBody;

fn edit(conv: &str, seq: u64, sender: &str, target: u64, body: &str) -> Event {
    ev(
        conv,
        seq,
        sender,
        EventBody::Edit {
            target_seq: target,
            body: body.into(),
            encrypted: None,
        },
    )
}

fn react(seq: u64, sender: &str, target: u64, emoji: &str, remove: bool) -> Event {
    ev(
        "c",
        seq,
        sender,
        EventBody::Reaction {
            target_seq: target,
            emoji: emoji.into(),
            remove,
            encrypted: None,
        },
    )
}

fn reply(seq: u64, sender: &str, target: u64, text: &str) -> Event {
    ev(
        "c",
        seq,
        sender,
        EventBody::Message {
            body: text.into(),
            reply_to: Some(target),
            encrypted: None,
        },
    )
}

fn views(rows: &[MessageRow]) -> Vec<&MessageView> {
    rows.iter()
        .filter_map(|r| match r {
            MessageRow::Message(v) => Some(v),
            _ => None,
        })
        .collect()
}

fn one(c: &Cache, seq: u64) -> MessageView {
    views(&c.messages("c", None, 1000).unwrap())
        .into_iter()
        .find(|v| v.seq == Some(seq))
        .cloned()
        .expect("row present")
}

#[test]
fn edits_by_the_author_only_even_before_the_target() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        edit("c", 3, "bob", 1, "fixed"),
        edit("c", 2, "carol", 1, "hijack"),
    ])
    .unwrap();
    assert!(views(&c.messages("c", None, 10).unwrap()).is_empty());
    c.apply_events(&[msg("c", 1, "bob", "typo")]).unwrap();
    let v = one(&c, 1);
    assert_eq!(
        (v.body.as_str(), v.edited, v.send_state),
        ("fixed", true, None)
    );
    let rows = c.messages("c", None, 10).unwrap();
    assert_eq!(rows.len(), 1, "edits are not rows: {rows:?}");
}

#[test]
fn deletion_empties_the_body_and_wins_over_later_edits() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("c", 1, "alice", "secret"),
        ev("c", 2, "alice", EventBody::Delete { target_seq: 1 }),
        edit("c", 3, "alice", 1, "back"),
        react(4, "bob", 1, "x", false),
    ])
    .unwrap();
    let v = one(&c, 1);
    assert!(v.deleted);
    assert_eq!(v.body, "");
    assert!(v.reactions.is_empty());
    assert_eq!(v.send_state, Some(SendState::Sent));
}

/// The text of a deleted message does not stay in the cache file, whether
/// the deletion arrives after it or (filling a gap) before it and its edits.
#[test]
fn deleted_text_is_not_kept() {
    let stored = |c: &Cache| -> Vec<String> {
        c.conn
            .prepare("SELECT coalesce(text, '') || data FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("c", 1, "bob", "secret one"),
        edit("c", 2, "bob", 1, "secret two"),
    ])
    .unwrap();
    c.apply_events(&[ev("c", 3, "carol", EventBody::Delete { target_seq: 1 })])
        .unwrap();
    let mut out_of_order = cache_as("alice");
    out_of_order
        .apply_events(&[ev("c", 3, "bob", EventBody::Delete { target_seq: 1 })])
        .unwrap();
    out_of_order
        .apply_events(&[
            edit("c", 2, "bob", 1, "secret two"),
            msg("c", 1, "bob", "secret one"),
        ])
        .unwrap();
    for c in [&c, &out_of_order] {
        let rows = stored(c);
        assert_eq!(rows.len(), 3);
        assert!(!rows.iter().any(|r| r.contains("secret")), "{rows:?}");
        let v = one(c, 1);
        assert!(v.deleted);
    }
}

/// Text older than the server's retention cutoff is cleared; newer stays.
#[test]
fn text_before_the_retention_cutoff_is_cleared() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("c", 1, "bob", "old"),
        edit("c", 2, "bob", 1, "old edit"),
        msg("c", 3, "bob", "new"),
    ])
    .unwrap();
    // `msg` stamps seq n at n seconds.
    assert_eq!(c.forget_text_before(2_500).unwrap(), 2);
    assert_eq!(one(&c, 1).body, "");
    assert_eq!(one(&c, 3).body, "new");
    assert_eq!(c.forget_text_before(2_500).unwrap(), 0, "once");
}

/// A deletion by someone other than the author is a moderator's.
#[test]
fn a_deletion_by_another_is_a_moderators() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("c", 1, "bob", "spam"),
        msg("c", 2, "bob", "oops"),
        ev("c", 3, "carol", EventBody::Delete { target_seq: 1 }),
        ev("c", 4, "bob", EventBody::Delete { target_seq: 2 }),
    ])
    .unwrap();
    let (spam, oops) = (one(&c, 1), one(&c, 2));
    assert!(spam.deleted && spam.moderated);
    assert!(oops.deleted && !oops.moderated);
}

#[test]
fn reactions_count_each_user_once() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("c", 1, "bob", "ship it"),
        react(2, "carol", 1, "+1", false),
        react(3, "carol", 1, "+1", false),
        react(4, "bob", 1, "🎉", false),
        react(5, "alice", 1, "+1", false),
        react(6, "bob", 1, "🎉", true),
        react(7, "dave", 1, "🎉", false),
        react(8, "erin", 1, "+1", true),
    ])
    .unwrap();
    let v = one(&c, 1);
    assert_eq!(
        v.reactions,
        vec![
            ReactionView {
                emoji: "+1".into(),
                users: vec!["carol".into(), "alice".into()]
            },
            ReactionView {
                emoji: "🎉".into(),
                users: vec!["dave".into()]
            },
        ]
    );
}

#[test]
fn replies_quote_the_current_first_line() {
    let mut c = cache_as("alice");
    let long = "x".repeat(200);
    c.apply_events(&[
        msg("c", 1, "bob", "first line\nsecond"),
        msg("c", 2, "carol", &long),
        msg("c", 3, "bob", "gone"),
        reply(4, "alice", 1, "re 1"),
        reply(5, "alice", 2, "re 2"),
        reply(6, "alice", 3, "re 3"),
        reply(7, "alice", 99, "re missing"),
        edit("c", 8, "bob", 1, "edited line\nmore"),
        ev("c", 9, "bob", EventBody::Delete { target_seq: 3 }),
    ])
    .unwrap();
    let q = |seq| one(&c, seq).reply_to.expect("a quote");
    assert_eq!(
        (q(4).seq, q(4).sender.as_str(), q(4).excerpt.as_str()),
        (1, "bob", "edited line")
    );
    assert_eq!(q(5).excerpt.chars().count(), 81);
    assert_eq!((q(6).sender.as_str(), q(6).excerpt.as_str()), ("bob", ""));
    assert_eq!((q(7).sender.as_str(), q(7).excerpt.as_str()), ("", ""));

    let rows = c.messages("c", None, 1).unwrap();
    let vs = views(&rows);
    assert_eq!(vs.len(), 1);
    let q = vs[0].reply_to.as_ref().unwrap();
    assert_eq!((q.seq, q.excerpt.as_str()), (99, ""));
    let rows = c.messages("c", Some(5), 1).unwrap();
    let q = views(&rows)[0].reply_to.clone().unwrap();
    assert_eq!(
        (q.seq, q.excerpt.as_str()),
        (1, "edited line"),
        "target outside the window"
    );
}

#[test]
fn system_rows() {
    let mut c = cache_as("alice");
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    c.apply_events(&[
        ev(
            "c",
            1,
            "alice",
            EventBody::Create {
                name: Some("launch".into()),
                members: v(&["alice"]),
            },
        ),
        ev(
            "c",
            2,
            "alice",
            EventBody::Join {
                members: v(&["bob", "carol"]),
            },
        ),
        ev(
            "c",
            3,
            "bob",
            EventBody::Leave {
                members: v(&["bob"]),
            },
        ),
        ev(
            "c",
            4,
            "alice",
            EventBody::Rename {
                name: "liftoff".into(),
            },
        ),
        ev(
            "c",
            5,
            "dave",
            EventBody::Join {
                members: v(&["dave"]),
            },
        ),
    ])
    .unwrap();
    let texts: Vec<String> = c
        .messages("c", None, 10)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            MessageRow::System { sender, change, .. } => {
                crate::client::text::system_line(&sender, &change)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "alice created launch",
            "alice added bob, carol",
            "bob left",
            "alice renamed this to liftoff",
            "dave joined"
        ]
    );
}

#[test]
fn holes_show_in_place_and_at_the_end() {
    let mut c = cache_as("alice");
    c.apply_events(&[1, 2, 5, 6, 8].map(|s| msg("c", s, "bob", "x")))
        .unwrap();
    c.set_last_seq("c", 10).unwrap();
    let rows = c.messages("c", None, 100).unwrap();
    let shape: Vec<String> = rows
        .iter()
        .map(|r| match r {
            MessageRow::Message(v) => v.seq.unwrap_or(0).to_string(),
            MessageRow::Missing { from, to } => format!("{from}-{to}"),
            MessageRow::System { seq, .. } => format!("s{seq}"),
        })
        .collect();
    assert_eq!(shape, ["1", "2", "3-4", "5", "6", "7-7", "8", "9-10"]);

    let page = c.messages("c", Some(8), 2).unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page[2], MessageRow::Missing { from: 7, to: 7 });
    let empty = cache_as("alice");
    assert!(empty.messages("c", None, 10).unwrap().is_empty());
    let mut only_known = cache_as("alice");
    only_known.set_last_seq("c", 3).unwrap();
    assert_eq!(
        only_known.messages("c", None, 10).unwrap(),
        [MessageRow::Missing { from: 1, to: 3 }]
    );
}

#[test]
fn paging_walks_back_by_seq() {
    let mut c = cache_as("alice");
    let events: Vec<_> = (1..=30)
        .map(|s| {
            if s % 3 == 0 {
                react(s, "bob", s - 1, "x", false)
            } else {
                msg("c", s, "bob", "m")
            }
        })
        .collect();
    c.apply_events(&events).unwrap();
    let newest = c.messages("c", None, 5).unwrap();
    let seqs: Vec<u64> = views(&newest).iter().filter_map(|v| v.seq).collect();
    assert_eq!(seqs, [23, 25, 26, 28, 29]);
    let counts: Vec<usize> = views(&newest).iter().map(|v| v.reactions.len()).collect();
    assert_eq!(counts, [1, 0, 1, 0, 1]);
    let older = c.messages("c", Some(23), 5).unwrap();
    let seqs: Vec<u64> = views(&older).iter().filter_map(|v| v.seq).collect();
    assert_eq!(seqs, [16, 17, 19, 20, 22]);
}

#[test]
fn mentions_and_my_messages() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        msg("c", 1, "bob", "hey @alice"),
        msg("c", 2, "alice", "hi bob"),
    ])
    .unwrap();
    assert!(one(&c, 1).mentions_me);
    assert_eq!(one(&c, 1).send_state, None);
    assert!(!one(&c, 2).mentions_me);
    assert_eq!(one(&c, 2).send_state, Some(SendState::Sent));
}

#[test]
fn reading_the_newest_page_of_a_long_conversation_is_fast() {
    let mut c = cache_as("alice");
    let mut events = Vec::with_capacity(100_000);
    for s in 1..=100_000u64 {
        events.push(match s % 10 {
            0 => react(s, "carol", s - 1, "+1", false),
            5 => edit("c", s, "bob", s - 1, "edited"),
            7 => reply(s, "bob", s / 2, "a reply"),
            _ => msg("c", s, "bob", "an ordinary message body"),
        });
    }
    c.apply_events(&events).unwrap();
    c.messages("c", None, 200).unwrap();
    let start = std::time::Instant::now();
    let rows = c.messages("c", None, 200).unwrap();
    let took = start.elapsed();
    assert_eq!(rows.len(), 200);
    assert!(took.as_millis() < 100, "newest page took {took:?}");
}
