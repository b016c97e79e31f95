//! What a front end (the TUI, the command line, a test) asks the engine to
//! do. Front ends never perform the work themselves: they send an
//! [`Action`], and the engine answers with [`Update`](super::Update)s.

use crate::client::update::Fetch;
use crate::proto::{FileInfo, PresenceStatus};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        conv: String,
        body: String,
        reply_to: Option<u64>,
    },
    /// A send whose `client_msg_id` the caller chose, so it can recognise
    /// the answer ([`Update::Acked`](super::Update::Acked) or
    /// [`Update::Refused`](super::Update::Refused)).
    SendWithId {
        conv: String,
        body: String,
        client_msg_id: String,
    },
    /// Upload a file in the background and share it in `conv` (progress
    /// as [`Update::Transfer`](super::Update::Transfer)).
    Upload {
        conv: String,
        path: PathBuf,
        caption: Option<String>,
    },
    /// Fetch a shared file in the background; when it is on disk,
    /// [`Update::FileReady`](super::Update::FileReady).
    Download {
        file: FileInfo,
        purpose: Fetch,
    },
    /// Print-style following: publish every event of `conv` exactly once,
    /// in seq order, as [`Update::Events`](super::Update::Events), starting
    /// with the last `last` events held by the server.
    Follow {
        conv: String,
        last: u64,
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
    /// Create a secret (end-to-end encrypted) DM (one user, no name) or
    /// group.
    CreateSecret {
        name: Option<String>,
        users: Vec<String>,
    },
    /// Ask for a user's devices, their trust and the safety number
    /// ([`Update::Devices`](super::Update::Devices)).
    Devices {
        user: String,
    },
    /// Start verifying a device ([`Update::Verification`](super::Update::Verification));
    /// without `device_id`, the user's only device (other than this one).
    Verify {
        user: String,
        device_id: Option<String>,
    },
    /// Make a new identity key for this user (after losing every device
    /// that held the old one); contacts see the change.
    ResetIdentity,
    /// Stop a verification under way (the other side is told).
    CancelVerification {
        transaction_id: String,
    },
    /// Accept a user's changed identity key (after comparing the safety
    /// number again): sending to them resumes.
    AcceptIdentity {
        user: String,
    },
    /// The safety number with a user matched: their identity key is
    /// marked verified, and a later change of it holds sending back.
    MarkVerified {
        user: String,
    },
    /// The emoji of a verification match (`ok`) or not.
    ConfirmVerification {
        transaction_id: String,
        ok: bool,
    },
    Invite {
        conv: String,
        users: Vec<String>,
    },
    /// Remove members (admins of the conversation).
    Kick {
        conv: String,
        users: Vec<String>,
    },
    /// Make a member an admin, or an admin a member.
    SetAdmin {
        conv: String,
        user: String,
        admin: bool,
    },
    /// Start (`on`) or stop blocking a user.
    Block {
        user: String,
        on: bool,
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
        /// An invitation code, where the server needs one.
        invite: Option<String>,
    },
    /// List this account's device sessions
    /// ([`Update::Sessions`](super::Update::Sessions)).
    Sessions,
    /// End one of this account's sessions by its public id.
    RevokeSession {
        id: String,
    },
    /// End every session of this account but this one.
    RevokeOtherSessions,
    /// Incoming webhooks of a group or channel (its admins); answers are
    /// notices (a new webhook's URL is shown once).
    Webhook {
        conv: String,
        op: WebhookOp,
    },
    /// Change the password; the other sessions end, this one stays.
    ChangePassword {
        old: String,
        new: String,
    },
    /// Search: the cache's hits at once, then the server's, as
    /// [`Update::SearchHits`](super::Update::SearchHits) numbered `id`,
    /// ended by [`Update::SearchEnded`](super::Update::SearchEnded).
    Search {
        id: u64,
        query: String,
        conv: Option<String>,
    },
    /// Focus `conv` with message `seq` loaded (fetched if not held).
    JumpTo {
        conv: String,
        seq: u64,
    },
    Quit,
}

/// What to do with a conversation's webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOp {
    /// A new webhook posting as the new bot account of this name.
    Create(String),
    List,
    /// Revoke the webhook with this id.
    Revoke(String),
}
