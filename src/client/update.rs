//! What the engine publishes: plain typed data a front end applies to its
//! own state (the TUI's model), prints (the command line) or asserts (the
//! tests). The engine never reaches into a front end's state.

use crate::client::view::{ConnState, ConvSummary, Incoming, MessageRow, PresenceView};
use crate::proto::{Event, ProtoError, ReceiptPair, SearchHit, SessionInfo};
use std::collections::BTreeMap;

/// Why a shared file is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// To open with the system's opener (kept in the data dir).
    Open,
    /// To keep: into the downloads directory.
    Save,
    /// To draw inline (an image; kept in the data dir, fetched quietly).
    Show,
}

/// Where a file transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    Running,
    Done,
    Failed(String),
}

/// One upload or download, as its progress is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferView {
    /// Numbers the transfers of this run.
    pub id: u64,
    /// The file's name (cleaned).
    pub name: String,
    /// Bytes moved so far, of `total` (0 while an upload's size is read).
    pub done: u64,
    pub total: u64,
    pub upload: bool,
    pub state: TransferState,
}

/// One change, in the order the engine made it. The engine sends them in
/// batches (one batch per publish, about a screen refresh apart).
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The connection's state changed.
    Conn(ConnState),
    /// Authenticated as `user`.
    LoggedIn { user: String },
    /// Connected over the HTTP fallback (`true`: the WebSocket did not get
    /// through) or the WebSocket.
    Transport { http: bool },
    /// The server refused the credentials (the front end asks for new ones).
    AuthFailed { message: String },
    /// The first sync after a (re)connect has been applied: the conversation
    /// list is the server's.
    Synced,
    /// A sync is under way over several pages: this many conversations
    /// described so far.
    Syncing { conversations: usize },
    /// A sync failed; it is tried again in this many seconds.
    SyncFailed { retry_in_secs: u64 },
    /// The whole conversation list, most recent activity first.
    Conversations(Vec<ConvSummary>),
    /// The window of the focused conversation, sorted by seq.
    Messages { conv: String, rows: Vec<MessageRow> },
    /// Every member's delivered/read pointers in `conv`.
    Receipts {
        conv: String,
        receipts: BTreeMap<String, ReceiptPair>,
    },
    /// A typing push: `active` refreshes the indicator, inactive clears it.
    Typing {
        conv: String,
        user: String,
        active: bool,
    },
    /// Presence of users as last heard.
    Presence(Vec<(String, PresenceView)>),
    /// Users known to exist (for completion).
    Users(Vec<String>),
    /// A one-line message for the user.
    Notice(String),
    /// This account's device sessions, most recently used first.
    Sessions(Vec<SessionInfo>),
    /// Messages from others that just arrived live (for notifications).
    Incoming(Vec<Incoming>),
    /// A conversation just created or joined at the user's request.
    Focus(String),
    /// Whether an older page of the focused conversation is being fetched.
    LoadingOlder(bool),
    /// Followed conversations: the next events, contiguous from the last
    /// batch, each exactly once.
    Events { conv: String, events: Vec<Event> },
    /// The server acknowledged an outbox entry.
    Acked {
        client_msg_id: String,
        conv: String,
        seq: u64,
    },
    /// An upload or download moved on, finished or failed.
    Transfer(TransferView),
    /// A shared file is on disk at `path`, fetched for `purpose`.
    FileReady {
        digest: String,
        path: std::path::PathBuf,
        purpose: Fetch,
    },
    /// Hits of search `id` from one source.
    SearchHits {
        id: u64,
        source: HitSource,
        hits: Vec<SearchHit>,
    },
    /// Search `id` is over: the server answered, or why it did not.
    SearchEnded { id: u64, error: Option<String> },
    /// The server refused an outbox entry for good.
    Refused {
        client_msg_id: String,
        conv: String,
        error: ProtoError,
    },
    /// A user's devices and the trust in them (secret conversations).
    Devices(DevicesView),
    /// A verification of a device under way or finished.
    Verification(VerificationView),
    /// A verification could not start (`transaction_id` none: no such
    /// device, several to choose from, no keys), or stopped on this side
    /// with an error; `why` in words, for the status line.
    VerificationFailed {
        user: String,
        transaction_id: Option<String>,
        why: String,
    },
    /// Something happened to a user's identity key (secret conversations).
    Identity { user: String, note: IdentityNote },
}

/// What happened to a user's identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityNote {
    /// It changed from a key nobody had verified; the new one is used
    /// (compare safety numbers again).
    Changed,
    /// It changed from a key verified in person: nothing goes to the user
    /// until the change is accepted
    /// ([`Action::AcceptIdentity`](super::Action::AcceptIdentity)).
    ChangedBlocking,
    /// The change was accepted; the key is held again, unverified.
    Accepted,
    /// The key was marked verified (the safety number matched).
    Verified,
}

impl IdentityNote {
    /// A change, holding sending back (`blocking`) or not.
    pub fn changed(blocking: bool) -> IdentityNote {
        if blocking {
            IdentityNote::ChangedBlocking
        } else {
            IdentityNote::Changed
        }
    }
}

/// A user's devices as this device knows them, with the safety number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicesView {
    pub user: String,
    /// Their identity key, grouped for reading aloud.
    pub identity_key: Option<String>,
    /// How far their identity key is trusted, in words.
    pub trust: String,
    /// The safety number to compare with them (groups of five digits).
    pub safety_number: Option<String>,
    pub devices: Vec<DeviceLine>,
    /// Why the devices could not be shown.
    pub error: Option<String>,
}

/// One device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLine {
    pub device_id: String,
    pub name: String,
    /// Its signing key, grouped for comparing by eye.
    pub fingerprint: String,
    /// Certified by its user's identity key.
    pub certified: bool,
    /// Verified in person.
    pub verified: bool,
    pub this_device: bool,
}

/// A verification of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationView {
    pub transaction_id: String,
    pub user: String,
    pub device_id: String,
    pub state: String,
    /// The seven emoji to compare, once known.
    pub emoji: Vec<String>,
    pub done: bool,
    pub cancelled: Option<String>,
}

/// Where a search hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitSource {
    Cache,
    Server,
}

impl HitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            HitSource::Cache => "cache",
            HitSource::Server => "server",
        }
    }
}
