//! Test fixtures: a small fixed world (users, conversations, messages at
//! fixed UTC times) and helpers to drive an App and draw it on a
//! `TestBackend`.

use super::app::App;
use super::event::UiEvent;
use super::model::Model;
use crate::client::clock::TimeZone;
use crate::client::view::{
    ConnState, ConvSummary, MessageRow, MessageView, PresenceView, ReactionView, ReplyQuote,
    SendState,
};
use crate::proto::{ConvKind, Millis, PresenceStatus};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::Instant;

/// Tue 24 Nov 2026 09:05 UTC.
pub const T0: Millis = 1_795_511_100_000;
pub const MIN: Millis = 60_000;
pub const DAY: Millis = 86_400_000;
pub const ME: &str = "dana";

pub fn conv(id: &str, kind: ConvKind, title: &str, members: &[&str]) -> ConvSummary {
    ConvSummary {
        id: id.into(),
        kind,
        title: title.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        member_count: members.len() as u64,
        last_seq: 0,
        cursor: 0,
        read_seq: 0,
        unread: 0,
        mentions: 0,
        last_activity: T0,
        muted: false,
        has_gap: false,
        encrypted: false,
    }
}

pub fn msg(seq: u64, sender: &str, ts: Millis, body: &str) -> MessageView {
    MessageView {
        seq: Some(seq),
        client_msg_id: None,
        sender: sender.into(),
        ts,
        body: body.into(),
        file: None,
        edited: false,
        deleted: false,
        moderated: false,
        reactions: Vec::new(),
        reply_to: None,
        send_state: (sender == ME).then_some(SendState::Sent),
        mentions_me: body.contains("@dana"),
        bot: false,
    }
}

pub fn row(m: MessageView) -> MessageRow {
    MessageRow::Message(m)
}

pub fn reaction(emoji: &str, users: &[&str]) -> ReactionView {
    ReactionView {
        emoji: emoji.into(),
        users: users.iter().map(|u| u.to_string()).collect(),
    }
}

/// #general: day separator, edits, deletion, reactions, a reply, a mention.
pub fn general_rows() -> Vec<MessageRow> {
    let y = T0 - DAY;
    let mut edited = msg(3, "bob", y + 5 * MIN, "I pushed the fix for the login bug");
    edited.edited = true;
    edited.reactions = vec![
        reaction("👍", &["alice", "dana"]),
        reaction("🎉", &["carol"]),
    ];
    let mut deleted = msg(4, "carol", y + 7 * MIN, "");
    deleted.deleted = true;
    let mut reply = msg(
        6,
        "alice",
        T0 + MIN,
        "Looks good to me. Can you also check the reconnect path when the server restarts?",
    );
    reply.reply_to = Some(ReplyQuote {
        seq: 3,
        sender: "bob".into(),
        excerpt: "I pushed the fix for the login bug".into(),
    });
    vec![
        MessageRow::System {
            seq: 1,
            ts: y,
            sender: "alice".into(),
            change: crate::client::view::SystemChange::Created {
                name: Some("#general".into()),
            },
        },
        row(msg(2, "alice", y + 2 * MIN, "Morning all!")),
        row(edited),
        row(deleted),
        row(msg(5, "dana", T0, "Reviewing now")),
        row(reply),
        row(msg(
            7,
            "bob",
            T0 + 2 * MIN,
            "@dana can you take the release notes?\nThey are due today.",
        )),
    ]
}

pub fn base_model() -> Model {
    let mut m = Model {
        me: ME.into(),
        server: "chat.example.org".into(),
        conn: ConnState::Connected,
        ..Model::default()
    };
    let mut general = conv(
        "c-general",
        ConvKind::Channel,
        "general",
        &["alice", "bob", "carol", "dana"],
    );
    general.last_seq = 7;
    general.read_seq = 7;
    let mut alice = conv("d-alice", ConvKind::Dm, "alice", &["alice", "dana"]);
    alice.unread = 3;
    alice.mentions = 1;
    let mut ops = conv("g-ops", ConvKind::Group, "ops", &["bob", "dana", "erin"]);
    ops.unread = 12;
    ops.muted = true;
    let mut random = conv("c-random", ConvKind::Channel, "random", &["bob", "dana"]);
    random.unread = 2;
    let bob = conv("d-bob", ConvKind::Dm, "bob", &["bob", "dana"]);
    m.conversations = vec![general, alice, ops, random, bob];
    m.messages.insert("c-general".into(), general_rows());
    m.users = ["alice", "bob", "carol", "dana", "erin", "frank"]
        .map(String::from)
        .to_vec();
    let presence = |status| PresenceView {
        status,
        last_seen: None,
    };
    m.presence
        .insert("alice".into(), presence(PresenceStatus::Online));
    m.presence
        .insert("bob".into(), presence(PresenceStatus::Away));
    m
}

/// An App over `model` at `w`×`h`, UTC times, settled by one tick.
pub fn app(model: Model, w: u16, h: u16, now: Instant) -> App {
    let mut app = App::new(model, now);
    app.tz = TimeZone::Utc;
    app.size = (w, h);
    app.handle_event(UiEvent::Tick, now);
    app
}

pub fn draw(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(app.size.0, app.size.1)).expect("terminal");
    terminal.draw(|f| super::render(app, f)).expect("draw");
    terminal.backend().to_string()
}

pub fn key(code: KeyCode) -> UiEvent {
    UiEvent::Term(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

pub fn ctrl(c: char) -> UiEvent {
    UiEvent::Term(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    )))
}

pub fn ch(c: char) -> UiEvent {
    key(KeyCode::Char(c))
}

/// Types `text` into the App one key at a time.
pub fn type_str(app: &mut App, text: &str, now: Instant) -> Vec<crate::client::Action> {
    text.chars()
        .flat_map(|c| app.handle_event(ch(c), now))
        .collect()
}

/// Seven SAS emoji as the engine words them (one with a variation
/// selector, one long name).
pub const SAS_EMOJI: [&str; 7] = [
    "🐶 Dog",
    "☂️ Umbrella",
    "🦋 Butterfly",
    "🔑 Key",
    "🎧 Headphones",
    "🍕 Pizza",
    "🚀 Rocket",
];

/// A verification of `user`'s device `device` as the engine reports it,
/// with the emoji when `emoji`.
pub fn verification(
    txn: &str,
    user: &str,
    device: &str,
    emoji: bool,
) -> crate::client::update::VerificationView {
    crate::client::update::VerificationView {
        transaction_id: txn.into(),
        user: user.into(),
        device_id: device.into(),
        state: if emoji { "compare emoji" } else { "started" }.into(),
        emoji: if emoji {
            SAS_EMOJI.iter().map(|e| e.to_string()).collect()
        } else {
            Vec::new()
        },
        done: false,
        cancelled: None,
    }
}

/// An engine batch of one update.
pub fn engine(update: crate::client::Update) -> UiEvent {
    UiEvent::Engine(vec![update])
}
