//! The outbox lifecycle and its optimistic rows.

use super::*;
use crate::client::view::{MessageRow, SendState};
use crate::proto::EventBody;

fn item(id: &str, conv: &str, request: OutboxRequest, at: i64) -> OutboxItem {
    OutboxItem {
        client_msg_id: id.into(),
        conversation_id: conv.into(),
        request,
        created_at: at,
    }
}

fn send(id: &str, body: &str, at: i64) -> OutboxItem {
    item(
        id,
        "c",
        OutboxRequest::Send {
            body: body.into(),
            reply_to: None,
        },
        at,
    )
}

fn acked(seq: u64, id: &str, body: &str) -> Event {
    let mut e = msg("c", seq, "alice", body);
    e.client_msg_id = Some(id.into());
    e
}

fn last_view(c: &Cache) -> crate::client::view::MessageView {
    match c.messages("c", None, 100).unwrap().pop() {
        Some(MessageRow::Message(v)) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn pending_then_sent_then_held() {
    let mut c = cache_as("alice");
    c.apply_events(&[msg("c", 1, "bob", "hi")]).unwrap();
    c.outbox_push(&send("m1", "first", 10)).unwrap();
    c.outbox_push(&send("m2", "second", 10)).unwrap();
    c.outbox_push(&send("m1", "dup", 11)).unwrap();
    let pending = c.outbox_pending().unwrap();
    let ids: Vec<&str> = pending.iter().map(|i| i.client_msg_id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(pending[0].created_at, 10);

    let rows = c.messages("c", None, 100).unwrap();
    assert_eq!(rows.len(), 3);
    let v = last_view(&c);
    assert_eq!(
        (v.seq, v.send_state.clone(), v.body.as_str()),
        (None, Some(SendState::Pending), "second")
    );

    c.outbox_mark_sent("m1", 2).unwrap();
    assert_eq!(c.outbox_pending().unwrap().len(), 1);
    let rows = c.messages("c", None, 100).unwrap();
    assert_eq!(
        rows.len(),
        3,
        "sent but not held still shows once: {rows:?}"
    );

    c.apply_events(&[acked(2, "m1", "first")]).unwrap();
    let rows = c.messages("c", None, 100).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    match &rows[1] {
        MessageRow::Message(v) => assert_eq!(
            (v.seq, v.send_state.clone()),
            (Some(2), Some(SendState::Sent))
        ),
        other => panic!("{other:?}"),
    }

    c.apply_events(&[acked(3, "m2", "second")]).unwrap();
    c.outbox_mark_sent("m2", 3).unwrap();
    assert!(c.outbox_pending().unwrap().is_empty());
    assert_eq!(c.messages("c", None, 100).unwrap().len(), 3);
}

#[test]
fn failures_are_kept_apart() {
    let mut c = cache_as("alice");
    c.outbox_push(&send("m1", "too big", 1)).unwrap();
    c.outbox_push(&send("m2", "fine", 2)).unwrap();
    c.outbox_mark_failed("m1", "too_large: body over limit")
        .unwrap();
    let pending: Vec<String> = c
        .outbox_pending()
        .unwrap()
        .into_iter()
        .map(|i| i.client_msg_id)
        .collect();
    assert_eq!(pending, ["m2"]);
    let failed = c.outbox_failed("c").unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1, "too_large: body over limit");
    match &c.messages("c", None, 10).unwrap()[0] {
        MessageRow::Message(v) => {
            assert_eq!(
                v.send_state,
                Some(SendState::Failed("too_large: body over limit".into()))
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        c.messages("c", Some(5), 10).unwrap().is_empty(),
        "outbox rows only on the newest page"
    );
    c.outbox_discard("m1").unwrap();
    assert!(c.outbox_failed("c").unwrap().is_empty());
}

#[test]
fn pending_changes_show_optimistically() {
    let mut c = cache_as("alice");
    c.apply_events(&[msg("c", 1, "alice", "typo"), msg("c", 2, "bob", "theirs")])
        .unwrap();
    let edit = OutboxRequest::Edit {
        target_seq: 1,
        body: "fixed".into(),
    };
    c.outbox_push(&item("e1", "c", edit, 1)).unwrap();
    c.outbox_push(&item(
        "e2",
        "c",
        OutboxRequest::Edit {
            target_seq: 2,
            body: "no".into(),
        },
        2,
    ))
    .unwrap();
    let react = OutboxRequest::React {
        target_seq: 2,
        emoji: "+1".into(),
        remove: false,
    };
    c.outbox_push(&item("r1", "c", react, 3)).unwrap();
    let views: Vec<_> = c
        .messages("c", None, 10)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            MessageRow::Message(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(views.len(), 2, "edits and reactions are not rows");
    assert_eq!((views[0].body.as_str(), views[0].edited), ("fixed", true));
    assert_eq!(views[1].body, "theirs");
    assert_eq!(views[1].reactions[0].users, ["alice"]);

    let mut e = ev(
        "c",
        3,
        "alice",
        EventBody::Edit {
            target_seq: 1,
            body: "fixed".into(),
            encrypted: None,
        },
    );
    e.client_msg_id = Some("e1".into());
    c.apply_events(&[e]).unwrap();
    c.outbox_push(&item("d1", "c", OutboxRequest::Delete { target_seq: 1 }, 4))
        .unwrap();
    let pending: Vec<String> = c
        .outbox_pending()
        .unwrap()
        .into_iter()
        .map(|i| i.client_msg_id)
        .collect();
    assert_eq!(pending, ["e2", "r1", "d1"]);
    match &c.messages("c", None, 10).unwrap()[0] {
        MessageRow::Message(v) => assert!(v.deleted && v.body.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn someone_elses_client_msg_id_does_not_ack_mine() {
    let mut c = cache_as("alice");
    c.outbox_push(&send("same", "mine", 1)).unwrap();
    let mut theirs = msg("c", 1, "bob", "theirs");
    theirs.client_msg_id = Some("same".into());
    c.apply_events(&[theirs]).unwrap();
    assert_eq!(c.outbox_pending().unwrap().len(), 1);
}

#[test]
fn the_next_entries_are_the_oldest_pending_of_each_conversation() {
    let mut c = cache_as("alice");
    let in_d = |id: &str, at: i64| {
        item(
            id,
            "d",
            OutboxRequest::Send {
                body: id.into(),
                reply_to: None,
            },
            at,
        )
    };
    c.outbox_push(&send("c1", "one", 10)).unwrap();
    c.outbox_push(&in_d("d1", 11)).unwrap();
    c.outbox_push(&send("c2", "two", 12)).unwrap();
    c.outbox_push(&in_d("d2", 13)).unwrap();
    let next = |c: &Cache| -> Vec<String> {
        c.outbox_next()
            .unwrap()
            .into_iter()
            .map(|i| i.client_msg_id)
            .collect()
    };
    assert_eq!(next(&c), ["c1", "d1"]);
    // Acknowledged or refused, an entry lets the next one of its
    // conversation go.
    c.outbox_mark_sent("c1", 1).unwrap();
    assert_eq!(next(&c), ["d1", "c2"]);
    c.outbox_mark_failed("d1", "no").unwrap();
    assert_eq!(next(&c), ["c2", "d2"]);
    c.outbox_mark_sent("c2", 2).unwrap();
    c.outbox_mark_sent("d2", 1).unwrap();
    assert!(next(&c).is_empty());
}
