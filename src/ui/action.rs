//! What the UI asks the engine to do. The App never performs I/O itself: every
//! request leaves `App::handle_event` as an [`Action`], and the engine answers
//! by updating the [`Model`](super::model::Model).

use crate::proto::PresenceStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        conv: String,
        body: String,
        reply_to: Option<u64>,
    },
    Edit {
        conv: String,
        seq: u64,
        body: String,
    },
    Delete {
        conv: String,
        seq: u64,
    },
    React {
        conv: String,
        seq: u64,
        emoji: String,
    },
    /// Move my read pointer forward to `seq`.
    MarkRead {
        conv: String,
        seq: u64,
    },
    Typing {
        conv: String,
        active: bool,
    },
    SetPresence(PresenceStatus),
    /// Join a public channel by name (without the leading `#`).
    Join {
        name: String,
    },
    Leave {
        conv: String,
    },
    OpenDm {
        user: String,
    },
    CreateGroup {
        name: String,
        users: Vec<String>,
    },
    CreateChannel {
        name: String,
    },
    Invite {
        conv: String,
        users: Vec<String>,
    },
    Mute {
        conv: String,
        muted: bool,
    },
    /// Load the page of history just before `before_seq`.
    LoadOlder {
        conv: String,
        before_seq: u64,
    },
    /// The user focused a conversation: load its window into the model.
    OpenConversation {
        conv: String,
    },
    Login {
        username: String,
        password: String,
    },
    Register {
        username: String,
        password: String,
    },
    Quit,
}
