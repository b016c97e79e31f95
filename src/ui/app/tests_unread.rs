//! Unread navigation: `]u` / `]m`, the unread-only filter and where the
//! "new messages" line goes.

use crate::client::Action;
use crate::ui::fixtures::*;
use crossterm::event::KeyCode;
use std::time::Instant;

fn opened(actions: &[Action]) -> Option<&str> {
    actions.iter().find_map(|a| match a {
        Action::OpenConversation { conv } => Some(conv.as_str()),
        _ => None,
    })
}

fn press(a: &mut crate::ui::app::App, keys: &str, t: Instant) -> Vec<Action> {
    keys.chars()
        .flat_map(|c| a.handle_event(ch(c), t))
        .collect()
}

#[test]
fn next_unread_wraps_in_list_order() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    assert_eq!(a.focused.as_deref(), Some("c-general"));
    assert_eq!(opened(&press(&mut a, "]u", t)), Some("d-alice"));
    assert_eq!(opened(&press(&mut a, "]u", t)), Some("g-ops"));
    assert_eq!(opened(&press(&mut a, "]u", t)), Some("c-random"));
    assert_eq!(opened(&press(&mut a, "]u", t)), Some("d-alice"));
    assert_eq!(a.status, None);
}

#[test]
fn next_mention_and_nothing_left() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    assert_eq!(opened(&press(&mut a, "]m", t)), Some("d-alice"));
    let out = press(&mut a, "]m", t);
    assert_eq!(opened(&out), None);
    assert_eq!(a.focused.as_deref(), Some("d-alice"));
    assert_eq!(
        a.status.as_deref(),
        Some(crate::ui::strings::NO_UNREAD_MENTIONS)
    );
    let mut m = base_model();
    for c in &mut m.conversations {
        c.unread = 0;
        c.mentions = 0;
    }
    let mut a = app(m, 100, 24, t);
    assert_eq!(opened(&press(&mut a, "]u", t)), None);
    assert_eq!(a.status.as_deref(), Some(crate::ui::strings::NO_UNREAD));
}

#[test]
fn a_lone_prefix_does_nothing_and_esc_forgets_it() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    assert!(press(&mut a, "]", t).is_empty());
    a.handle_event(key(KeyCode::Esc), t);
    // `u` alone is unbound: no jump.
    assert_eq!(opened(&press(&mut a, "u", t)), None);
    // `]` then a key that completes no sequence is dropped.
    press(&mut a, "]x", t);
    assert_eq!(a.focused.as_deref(), Some("c-general"));
}

#[test]
fn unread_only_filter_keeps_the_focused_one() {
    let t = Instant::now();
    let mut a = app(base_model(), 100, 24, t);
    let ids = |a: &crate::ui::app::App| -> Vec<String> {
        a.listed_conversations()
            .iter()
            .map(|c| c.id.clone())
            .collect()
    };
    assert_eq!(ids(&a).len(), 5);
    a.handle_event(ch('U'), t);
    assert!(a.unread_only);
    assert_eq!(ids(&a), ["c-general", "d-alice", "g-ops", "c-random"]);
    // Tab goes through the listed conversations only; the one left drops out.
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(a.focused.as_deref(), Some("d-alice"));
    assert_eq!(ids(&a), ["d-alice", "g-ops", "c-random"]);
    a.handle_event(ch('U'), t);
    assert_eq!(ids(&a).len(), 5);
    // The slash command toggles it too.
    a.handle_event(ch('i'), t);
    type_str(&mut a, "/unread", t);
    a.handle_event(key(KeyCode::Enter), t);
    assert!(a.unread_only);
}

#[test]
fn new_messages_line_stays_until_reopened() {
    let t = Instant::now();
    let mut m = base_model();
    m.conversations[0].read_seq = 4;
    let mut a = app(m, 100, 24, t);
    // Seq 5 is mine; the first message from others above 4 is seq 6.
    assert_eq!(a.new_messages_index(), Some(5));
    // The read pointer moves on; the line stays while the conversation is open.
    a.model.conversations[0].read_seq = 7;
    a.handle_event(ch('j'), t);
    assert_eq!(a.new_messages_index(), Some(5));
    // Away and back with nothing new: gone.
    a.handle_event(key(KeyCode::Tab), t);
    a.handle_event(key(KeyCode::BackTab), t);
    assert_eq!(a.focused.as_deref(), Some("c-general"));
    assert_eq!(a.new_messages_index(), None);
}
