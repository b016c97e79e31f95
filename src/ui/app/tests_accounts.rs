//! Accounts on the screen: the invitation field of the register form, the
//! way back to the login screen when a session ends, and the sessions
//! overlay's keys.

use super::Mode;
use crate::client::{Action, Update};
use crate::proto::SessionInfo;
use crate::ui::event::UiEvent;
use crate::ui::fixtures::*;
use crossterm::event::KeyCode;
use std::time::Instant;

pub fn session(
    id: &str,
    device: &str,
    seen: i64,
    address: Option<&str>,
    current: bool,
) -> SessionInfo {
    SessionInfo {
        id: id.into(),
        device: device.into(),
        created_at: T0 - 30 * DAY,
        last_seen: seen,
        last_address: address.map(str::to_string),
        expires_at: seen + 30 * DAY,
        current,
    }
}

#[test]
fn register_sends_the_invitation_when_given() {
    let t = Instant::now();
    let mut m = base_model();
    m.needs_login = true;
    let mut a = app(m, 80, 24, t);
    a.handle_event(ctrl('r'), t);
    type_str(&mut a, "erin", t);
    a.handle_event(key(KeyCode::Tab), t);
    type_str(&mut a, "long password", t);
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(a.login.field, 2);
    type_str(&mut a, " 3f6c0d1e ", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::Register {
            username: "erin".into(),
            password: "long password".into(),
            invite: Some("3f6c0d1e".into()),
        }]
    );
    // Tab wraps around three fields when registering, two when logging in.
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(a.login.field, 0);
    a.handle_event(key(KeyCode::Up), t);
    assert_eq!(a.login.field, 2);
    a.handle_event(ctrl('r'), t);
    assert_eq!(a.login.field, 1);
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(a.login.field, 0);
}

#[test]
fn an_ended_session_shows_the_login_screen_with_the_reason() {
    let t = Instant::now();
    let mut a = app(base_model(), 80, 20, t);
    assert_eq!(a.mode, Mode::Normal);
    let reason = "this session was ended from another device or by an admin: log in again";
    a.handle_event(
        UiEvent::Engine(vec![Update::AuthFailed {
            message: reason.into(),
        }]),
        t,
    );
    assert_eq!(a.mode, Mode::Login);
    assert_eq!(a.model.login_error.as_deref(), Some(reason));
    // Same account: only the password to type.
    assert_eq!(a.login.username, ME);
    assert_eq!(a.login.field, 1);
    let screen = draw(&a);
    assert!(screen.contains("this session was ended"), "{screen}");
    type_str(&mut a, "pw", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::Login {
            username: ME.into(),
            password: "pw".into()
        }]
    );
}

#[test]
fn sessions_overlay_revokes_the_selected_or_all_others() {
    let t = Instant::now();
    let mut a = app(base_model(), 80, 20, t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, "/sessions", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(a.mode, Mode::Sessions);
    assert!(out.contains(&Action::Sessions), "{out:?}");
    a.handle_event(
        UiEvent::Engine(vec![Update::Sessions(vec![
            session("aaaa", "laptop", T0, None, true),
            session("bbbb", "phone", T0 - DAY, None, false),
        ])]),
        t,
    );
    // The one in use is not ended from here.
    assert!(a.handle_event(ch('x'), t).is_empty());
    assert!(a.status.is_some());
    a.handle_event(key(KeyCode::Down), t);
    assert_eq!(
        a.handle_event(ch('x'), t),
        vec![Action::RevokeSession { id: "bbbb".into() }]
    );
    assert_eq!(
        a.handle_event(ch('o'), t),
        vec![Action::RevokeOtherSessions]
    );
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.mode, Mode::Normal);
    // The same from the composer.
    a.handle_event(ch('i'), t);
    type_str(&mut a, "/sessions revoke bbbb", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert!(
        out.contains(&Action::RevokeSession { id: "bbbb".into() }),
        "{out:?}"
    );
}
