//! The rules against a store made of maps: every decision without a
//! database.

use super::fixture::World;
use super::*;
use std::collections::BTreeMap;

const LIMITS: WriteLimits = WriteLimits {
    max_members: 4,
    max_conversations_per_user: 3,
};

/// ann owns group `g` (bob admin, cat member), and everyone has a DM with
/// ann; dan is in nothing.
fn world() -> World {
    let mut w = World::default();
    for u in ["ann", "bob", "cat", "dan"] {
        w.users.insert(u.into());
    }
    w.kinds.insert("g".into(), ConvKind::Group);
    w.members.insert(
        "g".into(),
        BTreeMap::from([
            ("ann".into(), MemberRole::Owner),
            ("bob".into(), MemberRole::Admin),
            ("cat".into(), MemberRole::Member),
        ]),
    );
    w.kinds.insert("d".into(), ConvKind::Dm);
    w.members.insert(
        "d".into(),
        BTreeMap::from([
            ("ann".into(), MemberRole::Member),
            ("cat".into(), MemberRole::Member),
        ]),
    );
    w.targets.insert(
        ("g".into(), 2),
        Target {
            sender: "cat".into(),
            kind: "message".into(),
            deleted: false,
        },
    );
    w
}

fn code<T: std::fmt::Debug>(r: Result<T, StoreError>) -> ErrorCode {
    match r {
        Err(StoreError::Rejected(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn text() -> EventBody {
    EventBody::Message {
        body: "hi".into(),
        reply_to: None,
        encrypted: None,
    }
}

#[test]
fn only_members_post_and_unknown_conversations_are_not_found() {
    let mut w = world();
    assert_eq!(
        decide_now(event(&mut w, "cat", "g", Some("m1"), &text())).unwrap(),
        Decision::Write(())
    );
    assert_eq!(
        code(decide_now(event(&mut w, "dan", "g", Some("m1"), &text()))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(decide_now(event(&mut w, "cat", "nope", None, &text()))),
        ErrorCode::NotFound
    );
}

#[test]
fn a_blocked_sender_cannot_write_in_the_dm() {
    let mut w = world();
    w.blocks.insert(("ann".into(), "cat".into()));
    assert_eq!(
        code(decide_now(event(&mut w, "cat", "d", None, &text()))),
        ErrorCode::Forbidden
    );
    // The blocker still writes.
    assert!(decide_now(event(&mut w, "ann", "d", None, &text())).is_ok());
}

#[test]
fn edits_are_the_authors_and_deletions_the_moderators_too() {
    let mut w = world();
    let edit = EventBody::Edit {
        target_seq: 2,
        body: "x".into(),
        encrypted: None,
    };
    let delete = EventBody::Delete { target_seq: 2 };
    assert!(decide_now(event(&mut w, "cat", "g", Some("e"), &edit)).is_ok());
    assert_eq!(
        code(decide_now(event(&mut w, "bob", "g", Some("e"), &edit))),
        ErrorCode::Forbidden
    );
    assert!(decide_now(event(&mut w, "bob", "g", Some("d"), &delete)).is_ok());
    w.targets.get_mut(&("g".to_string(), 2)).unwrap().deleted = true;
    assert_eq!(
        code(decide_now(event(&mut w, "cat", "g", Some("e2"), &edit))),
        ErrorCode::NotFound
    );
}

#[test]
fn a_retry_gets_its_original_answer_and_a_reuse_is_a_conflict() {
    let mut w = world();
    w.priors.insert(
        ("cat".into(), "r1".into()),
        Prior {
            conversation_id: "g".into(),
            seq: 7,
            ts: 70,
            kind: "reaction".into(),
        },
    );
    let react = EventBody::Reaction {
        target_seq: 2,
        emoji: "+1".into(),
        remove: false,
        encrypted: None,
    };
    // The target is gone by now; the retry still gets seq 7.
    w.targets.clear();
    assert_eq!(
        decide_now(event(&mut w, "cat", "g", Some("r1"), &react)).unwrap(),
        Decision::Done(Appended {
            conversation_id: "g".into(),
            seq: Some((7, 70)),
        })
    );
    let edit = EventBody::Edit {
        target_seq: 2,
        body: "x".into(),
        encrypted: None,
    };
    assert_eq!(
        code(decide_now(event(&mut w, "cat", "g", Some("r1"), &edit))),
        ErrorCode::Conflict
    );
}

#[test]
fn a_dm_has_two_members_and_is_found_again() {
    let mut w = world();
    assert_eq!(
        code(decide_now(create(
            &mut w,
            &LIMITS,
            "ann",
            ConvKind::Dm,
            None,
            vec!["bob".into(), "cat".into()]
        ))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        decide_now(create(
            &mut w,
            &LIMITS,
            "cat",
            ConvKind::Dm,
            None,
            vec!["ann".into()]
        ))
        .unwrap(),
        Decision::Done(Appended {
            conversation_id: "d".into(),
            seq: None,
        })
    );
}

#[test]
fn creating_checks_names_members_blocks_and_caps() {
    let mut w = world();
    let new = decide_now(create(
        &mut w,
        &LIMITS,
        "dan",
        ConvKind::Group,
        Some("team".into()),
        vec!["bob".into(), "bob".into()],
    ))
    .unwrap();
    assert_eq!(
        new,
        Decision::Write(NewConversation {
            members: vec!["bob".into(), "dan".into()],
            name: Some("team".into()),
            dm_key: None,
        })
    );
    let group = |w: &mut World, members: Vec<String>| {
        decide_now(create(
            w,
            &LIMITS,
            "dan",
            ConvKind::Group,
            Some("t".into()),
            members,
        ))
    };
    assert_eq!(code(group(&mut w, vec!["zed".into()])), ErrorCode::NotFound);
    assert_eq!(
        code(group(
            &mut w,
            vec![
                "ann".into(),
                "bob".into(),
                "cat".into(),
                "dan".into(),
                "eve".into()
            ]
        )),
        ErrorCode::NotFound
    );
    w.users.insert("eve".into());
    assert_eq!(
        code(group(
            &mut w,
            vec!["ann".into(), "bob".into(), "cat".into(), "eve".into()]
        )),
        ErrorCode::TooLarge
    );
    w.blocks.insert(("bob".into(), "dan".into()));
    assert_eq!(
        code(group(&mut w, vec!["bob".into()])),
        ErrorCode::Forbidden
    );
    // ann is in two conversations; a third is allowed, a fourth is not.
    w.kinds.insert("x".into(), ConvKind::Group);
    w.members.insert(
        "x".into(),
        BTreeMap::from([("ann".into(), MemberRole::Owner)]),
    );
    assert_eq!(
        code(group(&mut w, vec!["ann".into()])),
        ErrorCode::LimitExceeded
    );
}

#[test]
fn only_managers_add_and_the_cap_counts_new_members_only() {
    let mut w = world();
    assert_eq!(
        code(decide_now(add_members(
            &mut w,
            &LIMITS,
            "cat",
            "g",
            vec!["dan".into()]
        ))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        decide_now(add_members(
            &mut w,
            &LIMITS,
            "bob",
            "g",
            vec!["cat".into(), "dan".into(), "dan".into()]
        ))
        .unwrap(),
        Decision::Write(vec!["dan".into()])
    );
    w.users.insert("eve".into());
    assert_eq!(
        code(decide_now(add_members(
            &mut w,
            &LIMITS,
            "bob",
            "g",
            vec!["dan".into(), "eve".into()]
        ))),
        ErrorCode::TooLarge
    );
    assert_eq!(
        code(decide_now(add_members(
            &mut w,
            &LIMITS,
            "ann",
            "d",
            vec!["dan".into()]
        ))),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn an_owner_who_leaves_hands_over_to_an_admin_first() {
    let mut w = world();
    assert_eq!(
        decide_now(leave(&mut w, "ann", "g")).unwrap(),
        Some("bob".to_string())
    );
    w.members
        .get_mut("g")
        .unwrap()
        .insert("bob".into(), MemberRole::Member);
    assert_eq!(
        decide_now(leave(&mut w, "ann", "g")).unwrap(),
        Some("bob".to_string()),
        "no admin: the first member by name"
    );
    assert_eq!(decide_now(leave(&mut w, "cat", "g")).unwrap(), None);
    assert_eq!(
        code(decide_now(leave(&mut w, "ann", "d"))),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn removing_and_roles_follow_rank() {
    let mut w = world();
    assert_eq!(
        code(decide_now(remove_members(
            &mut w,
            "bob",
            "g",
            vec!["ann".into()]
        ))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(decide_now(remove_members(
            &mut w,
            "bob",
            "g",
            vec!["bob".into()]
        ))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        decide_now(remove_members(&mut w, "bob", "g", vec!["cat".into()])).unwrap(),
        Decision::Write(vec!["cat".into()])
    );
    assert_eq!(
        code(decide_now(set_role(
            &mut w,
            "bob",
            "g",
            "cat",
            MemberRole::Owner
        ))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        decide_now(set_role(&mut w, "ann", "g", "cat", MemberRole::Owner)).unwrap(),
        Decision::Write(RoleChange { hand_over: true })
    );
    assert_eq!(
        code(decide_now(set_role(
            &mut w,
            "bob",
            "g",
            "ann",
            MemberRole::Member
        ))),
        ErrorCode::Forbidden
    );
}

#[test]
fn a_removed_user_cannot_rejoin_a_channel_and_private_ones_stay_hidden() {
    let mut w = world();
    w.kinds.insert("c".into(), ConvKind::Channel);
    w.members.insert("c".into(), BTreeMap::new());
    w.channels.insert("general".into(), "c".into());
    assert_eq!(
        decide_now(join(&mut w, &LIMITS, "dan", None, Some("#general".into()))).unwrap(),
        Decision::Write("c".to_string())
    );
    w.removed.insert(("c".into(), "dan".into()));
    assert_eq!(
        code(decide_now(join(
            &mut w,
            &LIMITS,
            "dan",
            Some("c".into()),
            None
        ))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(decide_now(join(
            &mut w,
            &LIMITS,
            "dan",
            Some("g".into()),
            None
        ))),
        ErrorCode::Forbidden
    );
}

#[test]
fn a_shared_file_must_be_the_senders_upload_of_that_size() {
    let mut w = world();
    let file = |size| EventBody::File {
        file: Box::new(
            serde_json::from_value(serde_json::json!({
                "digest": "ab", "name": "f", "size": size, "media_type": "text/plain"
            }))
            .unwrap(),
        ),
        caption: None,
        reply_to: None,
        encrypted: None,
    };
    assert_eq!(
        code(decide_now(event(&mut w, "cat", "g", None, &file(3)))),
        ErrorCode::NotFound
    );
    w.uploads.insert(("cat".into(), "ab".into()), 3);
    assert!(decide_now(event(&mut w, "cat", "g", None, &file(3))).is_ok());
    assert_eq!(
        code(decide_now(event(&mut w, "cat", "g", None, &file(4)))),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn receipts_stay_within_the_log_and_delivered_covers_read() {
    assert_eq!(receipt_bounds(10, 3, 5), (5, 5));
    assert_eq!(receipt_bounds(10, 20, 20), (10, 10));
    assert_eq!(receipt_bounds(10, 8, 2), (8, 2));
}
