//! Secret conversations: the commands, the devices and safety overlays,
//! and the verification overlay's keys (y / n / Esc / Tab).

use super::{App, CONFIRM_DELAY, Mode};
use crate::client::update::{DevicesView, IdentityNote};
use crate::client::{Action, Update};
use crate::ui::fixtures::*;
use crate::ui::strings;
use crossterm::event::KeyCode;
use std::time::{Duration, Instant};

fn command(a: &mut App, line: &str, t: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    if a.mode != Mode::Insert {
        out.extend(a.handle_event(ch('i'), t));
    }
    out.extend(type_str(a, line, t));
    out.extend(a.handle_event(key(KeyCode::Enter), t));
    out
}

fn fresh(t: Instant) -> App {
    app(base_model(), 100, 24, t)
}

fn devices(user: &str, safety: Option<&str>) -> Update {
    Update::Devices(DevicesView {
        user: user.into(),
        trust: "unverified".into(),
        safety_number: safety.map(str::to_string),
        ..DevicesView::default()
    })
}

const NUMBER: &str = "12345 67890 11111 22222 33333 44444 55555 66666 77777 88888 99999 00000";

#[test]
fn secret_commands_become_actions() {
    let t = Instant::now();
    let cases: Vec<(&str, Action)> = vec![
        (
            "/dm frank --secret",
            Action::CreateSecret {
                name: None,
                users: vec!["frank".into()],
            },
        ),
        (
            "/dm alice --secret",
            Action::CreateSecret {
                name: None,
                users: vec!["alice".into()],
            },
        ),
        (
            "/group ops2 --secret bob erin",
            Action::CreateSecret {
                name: Some("ops2".into()),
                users: vec!["bob".into(), "erin".into()],
            },
        ),
        (
            "/verify bob",
            Action::Verify {
                user: "bob".into(),
                device_id: None,
            },
        ),
        (
            "/verify bob PHONE",
            Action::Verify {
                user: "bob".into(),
                device_id: Some("PHONE".into()),
            },
        ),
        ("/accept bob", Action::AcceptIdentity { user: "bob".into() }),
    ];
    for (line, want) in cases {
        let mut a = fresh(t);
        assert_eq!(command(&mut a, line, t), vec![want], "{line}");
    }
    let mut a = fresh(t);
    let out = command(&mut a, "/dm bob --sekret", t);
    assert!(out.is_empty());
    assert_eq!(a.status.as_deref(), Some("Usage: /dm USER [--secret]"));
}

#[test]
fn plain_and_secret_dms_are_told_apart() {
    let t = Instant::now();
    let mut m = base_model();
    let mut secret = conv(
        "s-alice",
        crate::proto::ConvKind::Dm,
        "alice",
        &["alice", ME],
    );
    secret.encrypted = true;
    // The secret DM listed first: a plain `/dm` still finds the plain one.
    m.conversations.insert(0, secret);
    let mut a = app(m, 100, 24, t);
    let open = |c: &str| Action::OpenConversation { conv: c.into() };
    assert_eq!(command(&mut a, "/dm alice", t), vec![open("d-alice")]);
    assert_eq!(
        command(&mut a, "/dm alice --secret", t),
        vec![open("s-alice")]
    );
    assert_eq!(
        command(&mut a, "/dm bob --secret", t),
        vec![Action::CreateSecret {
            name: None,
            users: vec!["bob".into()],
        }]
    );
}

#[test]
fn tab_completes_the_new_commands_and_their_users() {
    let t = Instant::now();
    let mut a = fresh(t);
    a.handle_event(ch('i'), t);
    for (typed, want) in [
        ("/saf", "/safety "),
        ("/acc", "/accept "),
        ("/verify ", "/verify alice "),
        ("/devices b", "/devices bob "),
        ("/accept ca", "/accept carol "),
    ] {
        a.handle_event(ctrl('u'), t);
        type_str(&mut a, typed, t);
        a.handle_event(key(KeyCode::Tab), t);
        assert_eq!(a.composer.text(), want, "{typed}");
    }
}

#[test]
fn devices_overlay_defaults_to_me_and_refreshes() {
    let t = Instant::now();
    let mut a = fresh(t);
    let out = command(&mut a, "/devices", t);
    assert_eq!(out, vec![Action::Devices { user: ME.into() }]);
    assert_eq!(a.mode, Mode::Devices { user: ME.into() });
    a.handle_event(engine(devices(ME, None)), t);
    assert!(a.model.devices.contains_key(ME));
    let out = a.handle_event(ch('r'), t);
    assert_eq!(out, vec![Action::Devices { user: ME.into() }]);
    assert!(!a.model.devices.contains_key(ME), "the stale list goes");
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.mode, Mode::Normal);
    let out = command(&mut a, "/devices @bob", t);
    assert_eq!(out, vec![Action::Devices { user: "bob".into() }]);
    assert_eq!(a.mode, Mode::Devices { user: "bob".into() });
}

#[test]
fn safety_overlay_marks_verified_once_the_number_is_there() {
    let t = Instant::now();
    let mut a = fresh(t);
    let out = command(&mut a, "/safety bob", t);
    assert_eq!(out, vec![Action::Devices { user: "bob".into() }]);
    assert_eq!(a.mode, Mode::Safety { user: "bob".into() });
    assert!(a.handle_event(ch('v'), t).is_empty(), "no number yet");
    assert_eq!(a.status.as_deref(), Some(strings::SAFETY_NOT_YET));
    a.handle_event(engine(devices("bob", Some(NUMBER))), t);
    assert_eq!(
        a.handle_event(ch('v'), t),
        vec![Action::MarkVerified { user: "bob".into() }]
    );
    let accept = a.handle_event(ch('a'), t);
    assert_eq!(accept, vec![Action::AcceptIdentity { user: "bob".into() }]);
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.mode, Mode::Normal);
    let out = command(&mut a, &format!("/safety {ME}"), t);
    assert!(out.is_empty(), "no safety number with myself");
    assert_eq!(a.status.as_deref(), Some(strings::SAFETY_SELF));
}

#[test]
fn y_confirms_only_once_the_emoji_have_been_seen() {
    let t = Instant::now();
    let later = t + CONFIRM_DELAY + Duration::from_millis(1);
    let mut a = fresh(t);
    command(&mut a, "/verify bob", t);
    a.handle_event(
        engine(Update::Verification(verification(
            "t1", "bob", "PHONE", false,
        ))),
        t,
    );
    assert_eq!(a.mode, Mode::Verification);
    assert_eq!(a.verify.shown.as_deref(), Some("t1"));
    assert!(a.handle_event(ch('y'), later).is_empty(), "no emoji yet");
    a.handle_event(
        engine(Update::Verification(verification(
            "t1", "bob", "PHONE", true,
        ))),
        t,
    );
    assert!(a.handle_event(ch('y'), t).is_empty(), "too soon");
    assert_eq!(a.status.as_deref(), Some(strings::VERIFY_TOO_SOON));
    let ok = Action::ConfirmVerification {
        transaction_id: "t1".into(),
        ok: true,
    };
    assert_eq!(a.handle_event(ch('y'), later), vec![ok]);
    assert!(a.handle_event(ch('y'), later).is_empty(), "answered once");
    assert!(a.handle_event(ch('n'), later).is_empty(), "answered once");
    let mut done = verification("t1", "bob", "PHONE", true);
    done.done = true;
    a.handle_event(engine(Update::Verification(done)), later);
    assert_eq!(a.mode, Mode::Verification, "still shown");
    a.handle_event(key(KeyCode::Esc), later);
    assert_eq!(a.mode, Mode::Insert, "back where the user was");
    assert!(a.model.verifications.is_empty(), "finished ones go");
}

#[test]
fn n_says_the_emoji_differ_and_cancels() {
    let t = Instant::now();
    let mut a = fresh(t);
    a.handle_event(
        engine(Update::Verification(verification(
            "t1", "bob", "PHONE", true,
        ))),
        t,
    );
    assert!(a.handle_event(ch('n'), t).is_empty(), "too soon");
    let later = t + CONFIRM_DELAY;
    let out = a.handle_event(ch('n'), later);
    assert_eq!(
        out,
        vec![Action::ConfirmVerification {
            transaction_id: "t1".into(),
            ok: false,
        }]
    );
    let shown = a.shown_verification().and_then(|v| v.cancelled.clone());
    assert_eq!(shown.as_deref(), Some(strings::VERIFY_MISMATCH));
    assert!(a.handle_event(ch('y'), later).is_empty(), "cancelled");
    a.handle_event(key(KeyCode::Enter), later);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn an_incoming_verification_interrupts_typing_without_taking_keys() {
    let t = Instant::now();
    let mut a = fresh(t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, "hel", t);
    // My other device asks to verify this one, emoji and all.
    a.handle_event(
        engine(Update::Verification(verification(
            "in1", ME, "LAPTOP", true,
        ))),
        t,
    );
    assert_eq!(a.mode, Mode::Verification);
    let typed = type_str(&mut a, "and yes", t + Duration::from_millis(300));
    assert!(
        typed.is_empty(),
        "keys meant for the composer answer nothing"
    );
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.mode, Mode::Insert);
    assert_eq!(a.composer.text(), "hel", "the draft is kept");
    assert_eq!(a.model.verifications.len(), 1, "kept: not finished");
    // `/verify` brings it back (the draft stays in history for later).
    a.composer.take();
    command(&mut a, "/verify", t);
    assert_eq!(a.mode, Mode::Verification);
    assert_eq!(a.verify.shown.as_deref(), Some("in1"));
}

#[test]
fn several_verifications_show_the_newest_and_tab_cycles() {
    let t = Instant::now();
    let mut a = fresh(t);
    let v = |txn, user, emoji| engine(Update::Verification(verification(txn, user, "D", emoji)));
    a.handle_event(v("t1", "bob", false), t);
    a.handle_event(v("t2", "alice", false), t);
    assert_eq!(a.verify.shown.as_deref(), Some("t2"), "the newest");
    a.handle_event(v("t1", "bob", false), t);
    assert_eq!(
        a.verify.shown.as_deref(),
        Some("t2"),
        "an old one stays behind"
    );
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(a.verify.shown.as_deref(), Some("t1"));
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(a.verify.shown.as_deref(), Some("t2"));
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.mode, Mode::Normal);
    // Emoji coming for a hidden one bring the overlay back on it.
    a.handle_event(v("t1", "bob", true), t);
    assert_eq!(a.mode, Mode::Verification);
    assert_eq!(a.verify.shown.as_deref(), Some("t1"));
    let later = t + CONFIRM_DELAY;
    assert_eq!(
        a.handle_event(ch('y'), later),
        vec![Action::ConfirmVerification {
            transaction_id: "t1".into(),
            ok: true,
        }]
    );
}

#[test]
fn verify_alone_without_any_says_how() {
    let t = Instant::now();
    let mut a = fresh(t);
    assert!(command(&mut a, "/verify", t).is_empty());
    assert_eq!(a.status.as_deref(), Some(strings::VERIFY_NONE));
    assert_eq!(a.mode, Mode::Insert);
}

#[test]
fn identity_notes_reach_the_model() {
    let t = Instant::now();
    let mut a = fresh(t);
    for c in a.model.conversations.iter_mut() {
        c.encrypted = c.id == "g-ops";
    }
    let note = |note| {
        engine(Update::Identity {
            user: "bob".into(),
            note,
        })
    };
    a.handle_event(note(IdentityNote::ChangedBlocking), t);
    assert_eq!(
        a.model.identity_warnings("g-ops"),
        vec![("bob", IdentityNote::ChangedBlocking)]
    );
    assert!(a.model.identity_warnings("c-general").is_empty());
    a.handle_event(note(IdentityNote::Accepted), t);
    assert!(a.model.identity_warnings("g-ops").is_empty());
}
