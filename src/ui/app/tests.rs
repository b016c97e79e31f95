//! Update logic: sending, typing debounce, read pointers, scrollback,
//! message actions, login, notifications.

use super::Mode;
use crate::client::view::MessageRow;
use crate::client::{Action, Update};
use crate::proto::PresenceStatus;
use crate::ui::event::UiEvent;
use crate::ui::fixtures::*;
use crate::ui::notify::Incoming;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use std::time::{Duration, Instant};

fn secs(t: Instant, s: f64) -> Instant {
    t + Duration::from_secs_f64(s)
}

fn send(conv: &str, body: &str, reply_to: Option<u64>) -> Action {
    Action::Send {
        conv: conv.into(),
        body: body.into(),
        reply_to,
    }
}

#[test]
fn first_conversation_is_opened() {
    let t = Instant::now();
    let mut a = crate::ui::app::App::new(base_model(), t);
    let out = a.handle_event(UiEvent::Tick, t);
    assert!(out.contains(&Action::OpenConversation {
        conv: "c-general".into()
    }));
    assert_eq!(a.focused.as_deref(), Some("c-general"));
}

#[test]
fn enter_sends_and_stops_typing() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    assert_eq!(a.mode, Mode::Insert);
    let typed = type_str(&mut a, "hello", t);
    assert_eq!(
        typed,
        vec![Action::Typing {
            conv: "c-general".into(),
            active: true
        }]
    );
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![
            Action::Typing {
                conv: "c-general".into(),
                active: false
            },
            send("c-general", "hello", None)
        ]
    );
    assert!(a.composer.is_empty());
    assert!(
        a.handle_event(key(KeyCode::Enter), t).is_empty(),
        "empty composer sends nothing"
    );
}

#[test]
fn alt_and_shift_enter_insert_newlines() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, "a", t);
    a.handle_event(
        UiEvent::Term(Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT))),
        t,
    );
    type_str(&mut a, "b", t);
    a.handle_event(
        UiEvent::Term(Event::Key(KeyEvent::new(
            KeyCode::Enter,
            KeyModifiers::SHIFT,
        ))),
        t,
    );
    type_str(&mut a, "c", t);
    assert_eq!(a.composer.text(), "a\nb\nc");
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert!(out.contains(&send("c-general", "a\nb\nc", None)));
}

#[test]
fn bracketed_paste_goes_in_as_is() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    let long = "line one\nline two 日本語 👍\n".repeat(50);
    a.handle_event(UiEvent::Term(Event::Paste(long.clone())), t);
    assert_eq!(a.mode, Mode::Insert);
    assert_eq!(a.composer.text(), long);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert!(out.contains(&send("c-general", &long, None)));
}

#[test]
fn typing_is_debounced_and_stops_when_idle() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    let start = Action::Typing {
        conv: "c-general".into(),
        active: true,
    };
    let stop = Action::Typing {
        conv: "c-general".into(),
        active: false,
    };
    assert_eq!(a.handle_event(ch('h'), t), vec![start.clone()]);
    assert!(a.handle_event(ch('e'), secs(t, 0.5)).is_empty());
    assert_eq!(a.handle_event(ch('l'), secs(t, 1.1)), vec![start]);
    assert!(a.handle_event(UiEvent::Tick, secs(t, 3.0)).is_empty());
    assert_eq!(a.handle_event(UiEvent::Tick, secs(t, 4.2)), vec![stop]);
    assert!(a.handle_event(UiEvent::Tick, secs(t, 9.0)).is_empty());
    a.handle_event(ctrl('u'), t);
    assert!(
        type_str(&mut a, "/away", t).is_empty(),
        "commands do not signal typing"
    );
}

#[test]
fn history_recalls_sent_lines() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    for line in ["one", "two"] {
        type_str(&mut a, line, t);
        a.handle_event(key(KeyCode::Enter), t);
    }
    a.handle_event(key(KeyCode::Up), t);
    assert_eq!(a.composer.text(), "two");
    a.handle_event(key(KeyCode::Up), t);
    assert_eq!(a.composer.text(), "one");
    a.handle_event(key(KeyCode::Down), t);
    assert_eq!(a.composer.text(), "two");
    a.handle_event(key(KeyCode::Down), t);
    assert_eq!(a.composer.text(), "");
}

#[test]
fn mark_read_only_forward_and_only_when_focused() {
    let t = Instant::now();
    let mut m = base_model();
    m.conversations[0].read_seq = 5;
    let mut a = App::new(m, t);
    a.tz = crate::client::clock::TimeZone::Utc;
    let out = a.handle_event(UiEvent::Tick, t);
    assert!(out.contains(&Action::MarkRead {
        conv: "c-general".into(),
        seq: 7
    }));
    assert!(a.handle_event(UiEvent::Tick, t).is_empty(), "asked once");
    a.handle_event(UiEvent::Term(Event::FocusLost), t);
    let new_msg = appended(&a, "c-general", msg(8, "bob", T0 + 3 * MIN, "new"));
    assert!(a.handle_event(new_msg, t).is_empty(), "terminal unfocused");
    let out = a.handle_event(UiEvent::Term(Event::FocusGained), t);
    assert_eq!(
        out,
        vec![Action::MarkRead {
            conv: "c-general".into(),
            seq: 8
        }]
    );
}

#[test]
fn no_mark_read_when_scrolled_up() {
    let t = Instant::now();
    let mut m = base_model();
    m.conversations[0].read_seq = 2;
    let mut a = app(m, 60, 12, t);
    a.handle_event(ch('g'), t);
    assert!(a.scroll > 0);
    let new_msg = appended(&a, "c-general", msg(8, "bob", T0 + 3 * MIN, "new"));
    let out = a.handle_event(new_msg, t);
    assert!(!out.iter().any(|x| matches!(x, Action::MarkRead { .. })));
    let out = a.handle_event(ch('G'), t);
    assert_eq!(
        out,
        vec![Action::MarkRead {
            conv: "c-general".into(),
            seq: 8
        }]
    );
}

use crate::ui::app::App;

/// The engine's update that adds `m` to the window of `conv`.
fn appended(a: &App, conv: &str, m: crate::client::view::MessageView) -> UiEvent {
    let mut rows = a.model.rows(conv).to_vec();
    rows.push(MessageRow::Message(m));
    UiEvent::Engine(vec![Update::Messages {
        conv: conv.into(),
        rows,
    }])
}

fn long_history(first: u64, last: u64) -> Vec<MessageRow> {
    (first..=last)
        .map(|s| MessageRow::Message(msg(s, "bob", T0 + s as i64 * MIN, "hello")))
        .collect()
}

#[test]
fn scrolling_to_the_top_loads_older_once() {
    let t = Instant::now();
    let mut m = base_model();
    m.messages.insert("c-general".into(), long_history(40, 80));
    let mut a = app(m, 80, 16, t);
    let older = Action::LoadOlder {
        conv: "c-general".into(),
        before_seq: 40,
    };
    let mut seen = 0;
    for _ in 0..60 {
        let out = a.handle_event(ch('k'), t);
        seen += out.iter().filter(|x| **x == older).count();
    }
    assert_eq!(seen, 1);
    a.handle_event(UiEvent::Engine(vec![Update::LoadingOlder(true)]), t);
    let out = a.handle_event(key(KeyCode::PageUp), t);
    assert!(!out.iter().any(|x| matches!(x, Action::LoadOlder { .. })));
    let page = UiEvent::Engine(vec![
        Update::LoadingOlder(false),
        Update::Messages {
            conv: "c-general".into(),
            rows: long_history(20, 80),
        },
    ]);
    assert!(
        a.handle_event(page, t).is_empty(),
        "the new page pushes the top off screen"
    );
    let mut asked = Vec::new();
    for _ in 0..10 {
        asked.extend(a.handle_event(key(KeyCode::PageUp), t));
    }
    assert_eq!(
        asked,
        vec![Action::LoadOlder {
            conv: "c-general".into(),
            before_seq: 20
        }]
    );
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 0,
        row: 0,
        modifiers: KeyModifiers::NONE,
    };
    let before = a.scroll;
    a.handle_event(UiEvent::Term(Event::Mouse(wheel)), t);
    assert_eq!(a.scroll, before - 3);
}

#[test]
fn delete_needs_own_message_and_confirmation() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('k'), t);
    assert_eq!(a.selected, Some(7));
    a.handle_event(ch('d'), t);
    assert_eq!(a.mode, Mode::Normal);
    assert!(a.status.is_some(), "not mine");
    a.handle_event(ch('k'), t);
    a.handle_event(ch('k'), t);
    assert_eq!(a.selected, Some(5));
    a.handle_event(ch('d'), t);
    assert_eq!(a.mode, Mode::ConfirmDelete { seq: 5 });
    assert!(a.handle_event(ch('n'), t).is_empty());
    a.handle_event(ch('d'), t);
    let out = a.handle_event(ch('y'), t);
    assert_eq!(
        out,
        vec![Action::Delete {
            conv: "c-general".into(),
            seq: 5
        }]
    );
}

#[test]
fn reply_edit_and_react_on_selection() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('k'), t);
    a.handle_event(ch('r'), t);
    assert_eq!((a.mode.clone(), a.reply_to), (Mode::Insert, Some(7)));
    type_str(&mut a, "on it", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert!(out.contains(&send("c-general", "on it", Some(7))));
    a.handle_event(key(KeyCode::Esc), t);
    a.handle_event(ch('e'), t);
    assert_eq!((a.editing, a.composer.text()), (Some(5), "Reviewing now"));
    type_str(&mut a, "!", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::Edit {
            conv: "c-general".into(),
            seq: 5,
            body: "Reviewing now!".into()
        }]
    );
    a.handle_event(ch('k'), t);
    a.handle_event(ch('+'), t);
    assert_eq!(a.composer.text(), "/react ");
    type_str(&mut a, "🎉", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::React {
            conv: "c-general".into(),
            seq: 7,
            emoji: "🎉".into()
        }]
    );
}

#[test]
fn login_form_submits_and_toggles_register() {
    let t = Instant::now();
    let mut m = base_model();
    m.needs_login = true;
    let mut a = app(m, 80, 24, t);
    assert_eq!(a.mode, Mode::Login);
    type_str(&mut a, "dana", t);
    a.handle_event(key(KeyCode::Enter), t);
    type_str(&mut a, "pw ✓", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::Login {
            username: "dana".into(),
            password: "pw ✓".into()
        }]
    );
    a.handle_event(ctrl('r'), t);
    type_str(&mut a, "x", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::Register {
            username: "dana".into(),
            password: "x".into(),
            invite: None,
        }]
    );
    let done = UiEvent::Engine(vec![Update::LoggedIn {
        user: "dana".into(),
    }]);
    a.handle_event(done, t);
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn quit_keys_and_presence_commands() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    assert_eq!(a.handle_event(ctrl('c'), t), vec![Action::Quit]);
    let mut a = app(base_model(), 100, 24, t);
    type_str(&mut a, "/away", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(out, vec![Action::SetPresence(PresenceStatus::Away)]);
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.handle_event(ch('q'), t), vec![Action::Quit]);
    assert!(a.quit);
}

#[test]
fn incoming_messages_become_notifications() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    let incoming = |conv: &str| Incoming {
        conv: conv.into(),
        conv_title: conv.into(),
        is_dm: false,
        sender: "bob".into(),
        body: "hi".into(),
        mentions_me: false,
        muted: false,
    };
    let (here, there) = (incoming("c-general"), incoming("c-random"));
    a.handle_event(
        UiEvent::Engine(vec![Update::Incoming(vec![here, there])]),
        t,
    );
    assert_eq!(a.notifications.len(), 1);
    assert_eq!(a.notifications[0].conv, "c-random");
}

#[test]
fn a_clicked_notification_opens_its_conversation() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    assert_eq!(a.focused.as_deref(), Some("c-general"));
    let out = a.handle_event(UiEvent::OpenConversation("c-random".into()), t);
    assert_eq!(a.focused.as_deref(), Some("c-random"));
    assert!(out.contains(&Action::OpenConversation {
        conv: "c-random".into()
    }));
    // A conversation that is gone by the time of the click changes nothing.
    a.handle_event(UiEvent::OpenConversation("c-gone".into()), t);
    assert_eq!(a.focused.as_deref(), Some("c-random"));
}
