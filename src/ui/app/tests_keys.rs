//! Key handling: slash commands, completion, conversation switching, the
//! quick switcher.

use super::Mode;
use crate::client::Action;
use crate::ui::fixtures::*;
use crossterm::event::KeyCode;
use std::time::Instant;

fn run_command(line: &str) -> (crate::ui::app::App, Vec<Action>) {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, line, t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    (a, out)
}

#[test]
fn commands_become_actions() {
    let conv = || "c-general".to_string();
    let cases: Vec<(&str, Vec<Action>)> = vec![
        (
            "/join #rust",
            vec![Action::Join {
                name: "rust".into(),
            }],
        ),
        (
            "/dm frank",
            vec![Action::OpenDm {
                user: "frank".into(),
            }],
        ),
        (
            "/dm alice",
            vec![Action::OpenConversation {
                conv: "d-alice".into(),
            }],
        ),
        (
            "/group ops2 bob erin",
            vec![Action::CreateGroup {
                name: "ops2".into(),
                users: vec!["bob".into(), "erin".into()],
            }],
        ),
        (
            "/channel news",
            vec![Action::CreateChannel {
                name: "news".into(),
            }],
        ),
        (
            "/invite frank",
            vec![Action::Invite {
                conv: conv(),
                users: vec!["frank".into()],
            }],
        ),
        ("/leave", vec![Action::Leave { conv: conv() }]),
        (
            "/webhook create deploys",
            vec![Action::Webhook {
                conv: conv(),
                op: crate::client::action::WebhookOp::Create("deploys".into()),
            }],
        ),
        (
            "/mute",
            vec![Action::Mute {
                conv: conv(),
                muted: true,
            }],
        ),
        (
            "/unmute",
            vec![Action::Mute {
                conv: conv(),
                muted: false,
            }],
        ),
        (
            "/back",
            vec![Action::SetPresence(crate::proto::PresenceStatus::Online)],
        ),
        (
            "/edit Reviewed",
            vec![Action::Edit {
                conv: conv(),
                seq: 5,
                body: "Reviewed".into(),
            }],
        ),
        (
            "/react 👍",
            vec![Action::React {
                conv: conv(),
                seq: 7,
                emoji: "👍".into(),
            }],
        ),
        (
            "/reply sure",
            vec![Action::Send {
                conv: conv(),
                body: "sure".into(),
                reply_to: Some(7),
            }],
        ),
        (
            "//not a command",
            vec![Action::Send {
                conv: conv(),
                body: "/not a command".into(),
                reply_to: None,
            }],
        ),
        ("/quit", vec![Action::Quit]),
    ];
    for (line, want) in cases {
        let (_, out) = run_command(line);
        assert_eq!(out, want, "{line}");
    }
}

#[test]
fn command_errors_go_to_the_status_line() {
    let (a, out) = run_command("/frobnicate now");
    assert!(out.is_empty());
    assert!(a.status.as_deref().unwrap_or("").contains("/frobnicate"));
    assert_eq!(a.composer.text(), "/frobnicate now", "kept for fixing");
    let (a, _) = run_command("/edit");
    assert_eq!((a.editing, a.composer.text()), (Some(5), "Reviewing now"));
    let (a, _) = run_command("/delete");
    assert_eq!(a.mode, Mode::ConfirmDelete { seq: 5 });
    let (a, _) = run_command("/help");
    assert_eq!(a.mode, Mode::Help);
}

#[test]
fn tab_completes_commands_and_names() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    let tab = || key(KeyCode::Tab);
    type_str(&mut a, "/jo", t);
    a.handle_event(tab(), t);
    assert_eq!(a.composer.text(), "/join ");
    a.handle_event(tab(), t);
    assert_eq!(a.composer.text(), "/join #general ");
    a.handle_event(ctrl('u'), t);
    type_str(&mut a, "/dm ", t);
    a.handle_event(tab(), t);
    assert_eq!(a.composer.text(), "/dm alice ");
    a.handle_event(tab(), t);
    assert_eq!(a.composer.text(), "/dm bob ");
    a.handle_event(key(KeyCode::BackTab), t);
    assert_eq!(a.composer.text(), "/dm alice ");
    a.handle_event(ctrl('u'), t);
    type_str(&mut a, "thanks @ca", t);
    a.handle_event(tab(), t);
    assert_eq!(a.composer.text(), "thanks @carol ");
    a.handle_event(ctrl('u'), t);
    type_str(&mut a, "/del", t);
    a.handle_event(tab(), t);
    assert_eq!(a.composer.text(), "/delete ");
    type_str(&mut a, "zz", t);
    a.handle_event(tab(), t);
    assert!(a.status.is_some());
}

#[test]
fn switching_conversations() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    let open = |c: &str| Action::OpenConversation { conv: c.into() };
    assert_eq!(a.handle_event(key(KeyCode::Tab), t), vec![open("d-alice")]);
    assert_eq!(a.handle_event(ctrl('n'), t), vec![open("g-ops")]);
    assert_eq!(a.handle_event(ctrl('p'), t), vec![open("d-alice")]);
    assert_eq!(
        a.handle_event(key(KeyCode::BackTab), t),
        vec![open("c-general")]
    );
    assert_eq!(
        a.handle_event(key(KeyCode::BackTab), t),
        vec![open("d-bob")]
    );
    a.handle_event(ch('i'), t);
    let out = a.handle_event(ctrl('n'), t);
    assert!(out.contains(&open("c-general")), "works from the composer");
}

#[test]
fn switching_away_stops_typing() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, "hal", t);
    let out = a.handle_event(ctrl('n'), t);
    assert_eq!(
        out,
        vec![
            Action::Typing {
                conv: "c-general".into(),
                active: false
            },
            Action::OpenConversation {
                conv: "d-alice".into()
            },
        ]
    );
}

#[test]
fn quick_switcher_filters_and_opens() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    a.handle_event(ctrl('k'), t);
    assert_eq!(a.mode, Mode::QuickSwitcher);
    assert_eq!(
        a.switcher_items().len(),
        8,
        "5 conversations + carol, erin, frank"
    );
    type_str(&mut a, "fr", t);
    let labels: Vec<String> = a.switcher_items().into_iter().map(|i| i.label).collect();
    assert_eq!(labels, vec!["frank (new DM)"]);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::OpenDm {
            user: "frank".into()
        }]
    );
    assert_eq!(a.mode, Mode::Normal);
    a.handle_event(ctrl('k'), t);
    type_str(&mut a, "ps", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::OpenConversation {
            conv: "g-ops".into()
        }]
    );
    a.handle_event(ctrl('k'), t);
    type_str(&mut a, "zzz", t);
    assert!(a.switcher_items().is_empty());
    assert!(a.handle_event(key(KeyCode::Enter), t).is_empty());
    a.handle_event(key(KeyCode::Esc), t);
    assert_eq!(a.mode, Mode::Normal);
}
