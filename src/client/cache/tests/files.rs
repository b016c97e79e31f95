//! Shared files in the cache: they fold like messages (rows with their
//! file, unread, deletable, reacted to, replied to) and a deletion forgets
//! the caption.

use super::*;
use crate::client::view::{MessageRow, MessageView};
use crate::proto::{EventBody, FileInfo};

fn info(name: &str) -> FileInfo {
    FileInfo {
        digest: "3a".repeat(32),
        name: name.into(),
        size: 48213,
        media_type: "image/png".into(),
        width: Some(640),
        height: Some(480),
        preview: Some("iVBORw0KGgo=".into()),
        key: None,
    }
}

fn file(seq: u64, sender: &str, caption: Option<&str>) -> Event {
    ev(
        "c",
        seq,
        sender,
        EventBody::File {
            file: Box::new(info("shot.png")),
            caption: caption.map(Into::into),
            reply_to: None,
            encrypted: None,
        },
    )
}

fn row(c: &Cache, seq: u64) -> MessageView {
    c.messages("c", None, 100)
        .unwrap()
        .into_iter()
        .find_map(|r| match r {
            MessageRow::Message(v) if v.seq == Some(seq) => Some(v),
            _ => None,
        })
        .expect("row present")
}

fn unread(c: &Cache) -> (u64, u64) {
    let list = c.conversations().unwrap();
    let s = list.iter().find(|s| s.id == "c").unwrap();
    (s.unread, s.mentions)
}

#[test]
fn a_file_is_a_row_with_its_file_and_caption() {
    let mut c = cache_as("alice");
    c.apply_events(&[msg("c", 1, "bob", "look"), file(2, "bob", Some("the run"))])
        .unwrap();
    let v = row(&c, 2);
    assert_eq!(v.file.as_deref(), Some(&info("shot.png")));
    assert_eq!(v.body, "the run");
    assert_eq!(c.messages("c", None, 100).unwrap().len(), 2);
}

#[test]
fn files_from_others_count_as_unread_and_captions_mention() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        file(1, "bob", None),
        file(2, "bob", Some("for @alice")),
        file(3, "alice", Some("mine")),
    ])
    .unwrap();
    assert_eq!(unread(&c), (2, 1));
    c.apply_events(&[ev("c", 4, "bob", EventBody::Delete { target_seq: 2 })])
        .unwrap();
    assert_eq!(unread(&c), (1, 0), "a deleted file no longer counts");
}

#[test]
fn a_file_is_deleted_and_reacted_to_like_a_message() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        file(1, "bob", Some("secret plan")),
        file(2, "bob", None),
        ev(
            "c",
            3,
            "alice",
            EventBody::Reaction {
                target_seq: 2,
                emoji: "👍".into(),
                remove: false,
                encrypted: None,
            },
        ),
        ev("c", 4, "bob", EventBody::Delete { target_seq: 1 }),
        ev(
            "c",
            5,
            "bob",
            EventBody::Edit {
                target_seq: 2,
                body: "not editable".into(),
                encrypted: None,
            },
        ),
    ])
    .unwrap();
    let gone = row(&c, 1);
    assert!(gone.deleted && gone.file.is_none() && gone.body.is_empty());
    let stored = c.event("c", 1).unwrap().unwrap();
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains("secret plan"),
        "the caption of a deleted file is forgotten"
    );
    let kept = row(&c, 2);
    assert_eq!(kept.reactions.len(), 1);
    assert!(!kept.edited && kept.body.is_empty(), "files are not edited");
}

#[test]
fn a_reply_quotes_a_file_by_its_caption() {
    let mut c = cache_as("alice");
    c.apply_events(&[
        file(1, "bob", Some("deploy log")),
        ev(
            "c",
            2,
            "alice",
            EventBody::Message {
                body: "thanks".into(),
                reply_to: Some(1),
                encrypted: None,
            },
        ),
    ])
    .unwrap();
    let q = row(&c, 2).reply_to.unwrap();
    assert_eq!(
        (q.sender.as_str(), q.excerpt.as_str()),
        ("bob", "deploy log")
    );
}

#[test]
fn an_outbox_file_shows_as_a_pending_file_row() {
    let mut c = cache_as("alice");
    c.apply_events(&[msg("c", 1, "bob", "hi")]).unwrap();
    c.outbox_push(&crate::client::cache::OutboxItem {
        client_msg_id: "f1".into(),
        conversation_id: "c".into(),
        request: crate::client::cache::OutboxRequest::SendFile {
            file: info("up.png"),
            caption: Some("new".into()),
            reply_to: None,
        },
        created_at: 5,
    })
    .unwrap();
    let rows = c.messages("c", None, 100).unwrap();
    let Some(MessageRow::Message(last)) = rows.last() else {
        panic!("{rows:?}")
    };
    assert_eq!(last.file.as_ref().map(|f| f.name.as_str()), Some("up.png"));
    assert_eq!(
        last.send_state,
        Some(crate::client::view::SendState::Pending)
    );
}

#[test]
fn a_cache_from_before_files_counts_them_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("before.db");
    {
        let mut c = Cache::open(&path).unwrap();
        c.set_me("alice").unwrap();
        c.apply_events(&[file(1, "bob", Some("hi @alice"))])
            .unwrap();
        // As the version before files stored it: no text, no flags (and
        // no bot marks, crypto tables or secret marks, which came after).
        c.conn
            .execute_batch(
                "UPDATE events SET text = NULL, counts_unread = 0, mentions_me = 0;
                 ALTER TABLE events DROP COLUMN bot;
                 DROP TABLE e2e_account; DROP TABLE e2e_olm_sessions;
                 DROP TABLE e2e_outbound; DROP TABLE e2e_inbound;
                 DROP TABLE e2e_seen; DROP TABLE e2e_users;
                 DROP TABLE e2e_undecrypted;
                 ALTER TABLE conversations DROP COLUMN encrypted;",
            )
            .unwrap();
        c.conn.pragma_update(None, "user_version", 5).unwrap();
    }
    let c = Cache::open(&path).unwrap();
    assert_eq!(unread(&c), (1, 1));
}
