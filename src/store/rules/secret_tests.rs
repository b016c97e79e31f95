//! The secret rules against a store made of maps.

use super::*;
use crate::proto::{FileInfo, MemberRole};
use crate::store::rules::decide_now;
use crate::store::rules::fixture::World;

fn dev(user: &str, id: &str) -> DeviceRef {
    DeviceRef {
        user: user.into(),
        device_id: id.into(),
    }
}

const ALICE: &str = "AAAAAAAAAA";
const BOB1: &str = "BBBBBBBBBB";
const BOB2: &str = "CCCCCCCCCC";

/// alice (one device) and bob (two) in the secret group `g`.
fn world() -> World {
    let mut w = World::default();
    let mut m = BTreeMap::new();
    m.insert("alice".to_string(), MemberRole::Owner);
    m.insert("bob".to_string(), MemberRole::Member);
    w.kinds.insert("g".into(), ConvKind::Group);
    w.members.insert("g".into(), m);
    w.secret.insert("g".into());
    w.users.extend(["alice".to_string(), "bob".to_string()]);
    w.devices.insert("alice".into(), vec![ALICE.into()]);
    w.devices
        .insert("bob".into(), vec![BOB1.into(), BOB2.into()]);
    w
}

fn message(session: &str) -> EventBody {
    EventBody::Message {
        body: String::new(),
        reply_to: None,
        encrypted: Some(Box::new(Encrypted {
            algorithm: MEGOLM.into(),
            device_id: ALICE.into(),
            session_id: session.into(),
            ciphertext: "AwgA".into(),
        })),
    }
}

fn send(w: &mut World, session: &str, shares: &[DeviceRef]) -> Result<SecretWrite, StoreError> {
    match decide_now(event(
        w,
        10,
        "alice",
        Some(ALICE),
        "g",
        Some("m1"),
        &message(session),
        shares,
    ))? {
        Decision::Write(w) => Ok(w),
        Decision::Done(_) => panic!("nothing to write"),
    }
}

fn diff(e: StoreError) -> DeviceDiff {
    match e {
        StoreError::Rejected(p) if p.code == ErrorCode::DevicesChanged => {
            *p.devices.expect("the difference")
        }
        other => panic!("not devices_changed: {other:?}"),
    }
}

#[test]
fn coverage_wants_exactly_the_other_devices() {
    let mut w = world();
    let d = diff(send(&mut w, "S", &[dev("bob", BOB1)]).unwrap_err());
    assert_eq!(d.missing, [dev("bob", BOB2)]);
    assert!(d.extra.is_empty());
    let ok = send(&mut w, "S", &[dev("bob", BOB1), dev("bob", BOB2)]).unwrap();
    assert!(ok.new_session);
    assert_eq!(ok.device, dev("alice", ALICE));
    // Recorded holders count as shared; one that left is extra.
    w.holders.insert(
        ("g".into(), "S".into()),
        vec![
            dev("bob", BOB1),
            dev("bob", BOB2),
            dev("carol", "DDDDDDDDDD"),
        ],
    );
    let d = diff(send(&mut w, "S", &[]).unwrap_err());
    assert!(d.missing.is_empty());
    assert_eq!(d.extra, [dev("carol", "DDDDDDDDDD")]);
}

#[test]
fn a_session_belongs_to_its_first_device() {
    let mut w = world();
    w.owners.insert(("g".into(), "S".into()), dev("bob", BOB1));
    let e = send(&mut w, "S", &[dev("bob", BOB1), dev("bob", BOB2)]).unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::Forbidden);
    w.owners
        .insert(("g".into(), "S".into()), dev("alice", ALICE));
    let ok = send(&mut w, "S", &[dev("bob", BOB1), dev("bob", BOB2)]).unwrap();
    assert!(!ok.new_session);
}

#[test]
fn text_and_plain_sends_are_refused_where_they_do_not_belong() {
    let mut w = world();
    let plain = EventBody::Message {
        body: "hi".into(),
        reply_to: None,
        encrypted: None,
    };
    let e = decide_now(crate::store::rules::event(
        &mut w,
        "alice",
        "g",
        Some("p"),
        &plain,
    ))
    .unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::InvalidArgument);
    // Text beside the ciphertext.
    let mut both = message("S");
    if let EventBody::Message { body, .. } = &mut both {
        *body = "leak".into();
    }
    let e = decide_now(event(
        &mut w,
        10,
        "alice",
        Some(ALICE),
        "g",
        None,
        &both,
        &[],
    ))
    .unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::InvalidArgument);
    // Ciphertext in a normal conversation.
    w.secret.clear();
    let e = send(&mut w, "S", &[dev("bob", BOB1), dev("bob", BOB2)]).unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::InvalidArgument);
    // A session without a device.
    let mut w = world();
    let e = decide_now(event(
        &mut w,
        10,
        "alice",
        None,
        "g",
        None,
        &message("S"),
        &[],
    ))
    .unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::Forbidden);
}

#[test]
fn a_secret_file_keeps_only_its_digest_and_size() {
    let enc = Encrypted {
        algorithm: MEGOLM.into(),
        device_id: ALICE.into(),
        session_id: "S".into(),
        ciphertext: "x".into(),
    };
    let mut file = FileInfo {
        digest: "0".repeat(64),
        name: String::new(),
        size: 10,
        media_type: "application/octet-stream".into(),
        width: None,
        height: None,
        preview: None,
        key: None,
    };
    let body = |file: &FileInfo| EventBody::File {
        file: Box::new(file.clone()),
        caption: None,
        reply_to: None,
        encrypted: None,
    };
    assert!(check_encrypted(&enc, &body(&file)).is_ok());
    file.name = "plans.pdf".into();
    assert!(check_encrypted(&enc, &body(&file)).is_err());
}

#[test]
fn inboxes_are_capped_and_must_exist() {
    let mut w = world();
    w.inbox.insert(dev("bob", BOB1), 9);
    let e = send(&mut w, "S", &[dev("bob", BOB1), dev("bob", BOB2)]);
    assert!(e.is_ok(), "{e:?}");
    w.inbox.insert(dev("bob", BOB1), 10);
    let e = send(&mut w, "S", &[dev("bob", BOB1), dev("bob", BOB2)]).unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::LimitExceeded);
    let e = decide_now(to_device(
        &mut w,
        10,
        "alice",
        Some(ALICE),
        &[dev("bob", "ZZZZZZZZZZ")],
    ))
    .unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::NotFound);
}

#[test]
fn keys_share_goes_only_to_current_devices() {
    let mut w = world();
    let ok = decide_now(share(
        &mut w,
        10,
        "alice",
        Some(ALICE),
        "g",
        "S",
        &[dev("bob", BOB1)],
    ));
    assert!(ok.unwrap().new_session);
    let d = diff(
        decide_now(share(
            &mut w,
            10,
            "alice",
            Some(ALICE),
            "g",
            "S",
            &[dev("mallory", "MMMMMMMMMM")],
        ))
        .unwrap_err(),
    );
    assert_eq!(d.extra, [dev("mallory", "MMMMMMMMMM")]);
}

#[test]
fn secret_conversations_are_dms_and_small_groups() {
    let limits = WriteLimits {
        max_members: 10_000,
        max_conversations_per_user: 10_000,
    };
    let mut w = world();
    let e = decide_now(create(
        &mut w,
        &limits,
        "alice",
        ConvKind::Channel,
        Some("c".into()),
        vec![],
    ))
    .unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::InvalidArgument);
    let many: Vec<String> = (0..MAX_SECRET_MEMBERS).map(|i| format!("u{i}")).collect();
    w.users.extend(many.iter().cloned());
    let e = decide_now(create(
        &mut w,
        &limits,
        "alice",
        ConvKind::Group,
        Some("g".into()),
        many.clone(),
    ))
    .unwrap_err();
    assert_eq!(e.to_proto().code, ErrorCode::LimitExceeded);
    let ok = decide_now(create(
        &mut w,
        &limits,
        "alice",
        ConvKind::Group,
        Some("g".into()),
        many[..99].to_vec(),
    ))
    .unwrap();
    assert!(matches!(ok, Decision::Write(n) if n.members.len() == 100));
    // The secret DM has a key of its own.
    let dm = decide_now(create(
        &mut w,
        &limits,
        "alice",
        ConvKind::Dm,
        None,
        vec!["bob".into()],
    ))
    .unwrap();
    let Decision::Write(dm) = dm else {
        panic!("a new DM")
    };
    assert_eq!(dm.dm_key.as_deref(), Some("secret\nalice\nbob"));
    assert_ne!(dm.dm_key, Some(crate::store::rules::dm_key(&dm.members)));
}

#[test]
fn a_write_says_what_to_record_and_deliver() {
    let mut w = world();
    let shares = [dev("bob", BOB1), dev("bob", BOB2)];
    let first = send(&mut w, "S", &shares).unwrap();
    assert_eq!(first.conversation_id, "g");
    assert_eq!(first.session, "S");
    assert_eq!(first.owner(), Some(&dev("alice", ALICE)));
    assert_eq!(first.holders, shares);
    // Once the session is recorded as alice's, only the holders are new.
    w.owners
        .insert(("g".into(), "S".into()), dev("alice", ALICE));
    w.holders.insert(("g".into(), "S".into()), shares.to_vec());
    let again = send(&mut w, "S", &[]).unwrap();
    assert_eq!(again.owner(), None);
    assert!(again.holders.is_empty());
    let shared = decide_now(share(
        &mut w,
        10,
        "alice",
        Some(ALICE),
        "g",
        "T",
        &[dev("bob", BOB1)],
    ))
    .unwrap();
    assert_eq!(shared.session, "T");
    assert_eq!(shared.owner(), Some(&dev("alice", ALICE)));
    assert_eq!(shared.holders, [dev("bob", BOB1)]);
}
