//! Screen snapshots of secret conversations: the devices, safety-number
//! and verification overlays, and the warning about a changed identity
//! key; wide and at 40 columns (emoji are two cells wide).

use super::app::{App, CONFIRM_DELAY};
use super::fixtures::*;
use crate::client::Update;
use crate::client::update::{DeviceLine, DevicesView, IdentityNote};
use insta::assert_snapshot;
use std::time::Instant;

const NUMBER: &str = "05312 88401 27719 60033 41528 99104 17286 53390 04471 82265 36918 70542";

fn bob_devices() -> DevicesView {
    DevicesView {
        user: "bob".into(),
        identity_key: Some("Xk3q 9Lmd Pq2w Rt7u Vb4n Hs8e Jc6y Fa1o Gz5i Kd0x Mw".into()),
        trust: "verified".into(),
        safety_number: Some(NUMBER.into()),
        devices: vec![
            DeviceLine {
                device_id: "QWERTY1234".into(),
                name: "bob's laptop".into(),
                fingerprint: "aB3d eF6h iJ9k lM2n oP5q rS8t uV1w xY4z Ab7c De0f Gh".into(),
                certified: true,
                verified: true,
                this_device: false,
            },
            DeviceLine {
                device_id: "ZXCV9876".into(),
                // Another user chose this name: its escape must not reach
                // the terminal.
                name: "phone\u{1b}[31m".into(),
                fingerprint: "Mn3b Vc6x Zl9k Jh2g Fd5s Aq8w Er1t Yu4i Op7a Sd0f Gh".into(),
                certified: false,
                verified: false,
                this_device: false,
            },
        ],
        error: None,
    }
}

fn shown(mut a: App, line: &str, updates: Vec<Update>, now: Instant) -> App {
    a.handle_event(ch('i'), now);
    type_str(&mut a, line, now);
    a.handle_event(key(crossterm::event::KeyCode::Enter), now);
    a.handle_event(super::event::UiEvent::Engine(updates), now);
    a
}

#[test]
fn devices_overlay() {
    let now = Instant::now();
    let a = shown(
        app(base_model(), 80, 24, now),
        "/devices bob",
        vec![Update::Devices(bob_devices())],
        now,
    );
    let screen = draw(&a);
    assert!(!screen.contains('\u{1b}'), "{screen}");
    assert_snapshot!("devices_wide", screen);
    let a = shown(
        app(base_model(), 40, 20, now),
        "/devices bob",
        vec![Update::Devices(bob_devices())],
        now,
    );
    assert_snapshot!("devices_narrow", draw(&a));
}

#[test]
fn devices_overlay_mine_and_failed() {
    let now = Instant::now();
    let mine = DevicesView {
        user: ME.into(),
        identity_key: None,
        trust: "no identity key".into(),
        safety_number: None,
        devices: vec![DeviceLine {
            device_id: "HOME01".into(),
            name: String::new(),
            fingerprint: "Qa1s Wd2f".into(),
            certified: false,
            verified: true,
            this_device: true,
        }],
        error: None,
    };
    let a = shown(
        app(base_model(), 72, 16, now),
        "/devices",
        vec![Update::Devices(mine)],
        now,
    );
    let screen = draw(&a);
    assert!(screen.contains("My devices"), "{screen}");
    assert!(screen.contains("this device"), "{screen}");
    let failed = DevicesView {
        user: "bob".into(),
        error: Some("the server was not reached".into()),
        ..DevicesView::default()
    };
    let a = shown(
        app(base_model(), 72, 16, now),
        "/devices bob",
        vec![Update::Devices(failed)],
        now,
    );
    assert!(draw(&a).contains("the server was not reached"));
    let waiting = shown(app(base_model(), 72, 16, now), "/devices bob", vec![], now);
    assert!(draw(&waiting).contains("Asking the server…"));
}

#[test]
fn safety_overlay() {
    let now = Instant::now();
    let a = shown(
        app(base_model(), 80, 24, now),
        "/safety bob",
        vec![Update::Devices(bob_devices())],
        now,
    );
    assert_snapshot!("safety_wide", draw(&a));
    let mut unverified = bob_devices();
    unverified.trust = "identity key CHANGED (not accepted)".into();
    let a = shown(
        app(base_model(), 40, 24, now),
        "/safety bob",
        vec![
            Update::Identity {
                user: "bob".into(),
                note: IdentityNote::ChangedBlocking,
            },
            Update::Devices(unverified),
        ],
        now,
    );
    assert_snapshot!("safety_narrow_changed", draw(&a));
}

#[test]
fn verification_overlay() {
    let now = Instant::now();
    let mut a = shown(
        app(base_model(), 80, 24, now),
        "/verify bob",
        vec![Update::Verification(verification(
            "t1",
            "bob",
            "QWERTY1234",
            false,
        ))],
        now,
    );
    assert!(draw(&a).contains("Waiting for bob's device to show the emoji…"));
    a.handle_event(
        engine(Update::Verification(verification(
            "t1",
            "bob",
            "QWERTY1234",
            true,
        ))),
        now,
    );
    assert_snapshot!("verification_wide", draw(&a));
    a.size = (40, 24);
    assert_snapshot!("verification_narrow", draw(&a));
    a.size = (80, 24);
    a.handle_event(ch('y'), now + CONFIRM_DELAY);
    assert!(draw(&a).contains("Waiting for the other device to confirm…"));
    let mut done = verification("t1", "bob", "QWERTY1234", true);
    done.done = true;
    done.state = "verified".into();
    a.handle_event(engine(Update::Verification(done)), now);
    assert_snapshot!("verification_done", draw(&a));
    let mut cancelled = verification("t2", ME, "LAPTOP", false);
    cancelled.cancelled = Some("m_timeout: the other device did not answer".into());
    a.handle_event(engine(Update::Verification(cancelled)), now);
    let screen = draw(&a);
    assert!(screen.contains("Verify my device LAPTOP"), "{screen}");
    assert!(
        screen.contains("Cancelled: m_timeout: the other device did not"),
        "{screen}"
    );
    assert!(screen.contains("2 of 2 · Tab next"), "{screen}");
}

#[test]
fn identity_warning_in_secret_conversations() {
    let now = Instant::now();
    let mut m = base_model();
    for c in m.conversations.iter_mut().filter(|c| c.id == "c-general") {
        c.encrypted = true;
    }
    let mut a = app(m, 80, 16, now);
    a.handle_event(
        engine(Update::Identity {
            user: "bob".into(),
            note: IdentityNote::ChangedBlocking,
        }),
        now,
    );
    a.handle_event(
        engine(Update::Identity {
            user: "alice".into(),
            note: IdentityNote::Changed,
        }),
        now,
    );
    assert_snapshot!("identity_warning_wide", draw(&a));
    a.size = (40, 14);
    assert_snapshot!("identity_warning_narrow", draw(&a));
    a.handle_event(
        engine(Update::Identity {
            user: "bob".into(),
            note: IdentityNote::Accepted,
        }),
        now,
    );
    a.handle_event(
        engine(Update::Identity {
            user: "alice".into(),
            note: IdentityNote::Verified,
        }),
        now,
    );
    a.size = (80, 16);
    assert!(!draw(&a).contains("identity key changed"));
}
