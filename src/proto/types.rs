//! The data model shared by both sides: conversations, events, receipts,
//! presence. These are the shapes that travel inside frames.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// What a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvKind {
    /// Exactly two members.
    Dm,
    /// Private; members are added by members.
    Group,
    /// Public within the server; anyone may join.
    Channel,
}

impl ConvKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConvKind::Dm => "dm",
            ConvKind::Group => "group",
            ConvKind::Channel => "channel",
        }
    }
    pub fn parse(s: &str) -> Option<ConvKind> {
        match s {
            "dm" => Some(ConvKind::Dm),
            "group" => Some(ConvKind::Group),
            "channel" => Some(ConvKind::Channel),
            _ => None,
        }
    }
}

/// A user's two forward-only pointers into a conversation's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPair {
    pub delivered: u64,
    pub read: u64,
}

/// A conversation as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub kind: ConvKind,
    /// Group and channel names; `null` for DMs (show the other member).
    #[serde(default)]
    pub name: Option<String>,
    /// Every member, sorted; empty when the conversation has more than
    /// [`INLINE_MEMBERS`] (see `member_count`).
    #[serde(default)]
    pub members: Vec<String>,
    /// How many members there are (an addition to the core). Above
    /// [`INLINE_MEMBERS`], `members` is empty, `roles` and `receipts` hold
    /// only the reader's own (none in pushes), and `members` requests page
    /// through the rest.
    #[serde(default)]
    pub member_count: u64,
    pub last_seq: u64,
    #[serde(default)]
    pub receipts: BTreeMap<String, ReceiptPair>,
    /// The owner and admins of a group or channel (an addition to the core);
    /// everyone else is a member.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, MemberRole>,
    /// A secret conversation: its messages are end-to-end encrypted (an
    /// addition to the core; absent when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypted: bool,
}

/// Conversations with more members than this are described without
/// their member list (it would make every description of them large).
pub const INLINE_MEMBERS: usize = 100;

impl Conversation {
    /// Members, whether or not they are listed.
    pub fn member_total(&self) -> u64 {
        self.member_count.max(self.members.len() as u64)
    }

    /// Whether `members` lists everyone.
    pub fn members_listed(&self) -> bool {
        self.members.len() as u64 >= self.member_count
    }
}

/// One member, as `members` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    pub user: String,
    #[serde(default)]
    pub role: MemberRole,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub read: u64,
    /// A bot account.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
}

/// A member's role in a group or channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Made it or was handed it; one per conversation.
    Owner,
    /// Adds and removes members, renames, sets roles, deletes any message.
    Admin,
    #[default]
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<MemberRole> {
        match s {
            "owner" => Some(MemberRole::Owner),
            "admin" => Some(MemberRole::Admin),
            "member" => Some(MemberRole::Member),
            _ => None,
        }
    }
    /// Owner or admin.
    pub fn manages(self) -> bool {
        self != MemberRole::Member
    }
}

/// One entry of a conversation's log. Decoded in one pass (`event_de`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub conversation_id: String,
    pub seq: u64,
    pub ts: Millis,
    pub sender: String,
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// A random id the server gave the event when it wrote it (an addition
    /// to the core): a client proves with it that the event it holds at a
    /// seq is the one the server holds (see `sync`'s `heads`). `None` only
    /// from a server without ids. (Not `id`: that is the
    /// envelope's request id, which pushes never carry.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    /// The sender is a bot account (an addition to the core): set by the
    /// server when it writes the event, absent for people.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    #[serde(flatten)]
    pub body: EventBody,
}

/// For `skip_serializing_if`: leave a `false` flag out of the JSON.
pub fn is_false(b: &bool) -> bool {
    !*b
}

/// The kind-specific part of an event, tagged by `kind`. Decoded in one
/// pass (`event_de`): a field added here is added there too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Message {
        body: String,
        #[serde(default)]
        reply_to: Option<u64>,
        /// In a secret conversation: the Megolm ciphertext (the text
        /// fields are empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<super::keys::Encrypted>>,
    },
    Edit {
        target_seq: u64,
        body: String,
        /// In a secret conversation: the Megolm ciphertext (the text
        /// fields are empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<super::keys::Encrypted>>,
    },
    Delete {
        target_seq: u64,
    },
    Reaction {
        target_seq: u64,
        emoji: String,
        #[serde(default)]
        remove: bool,
        /// In a secret conversation: the Megolm ciphertext (the text
        /// fields are empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<super::keys::Encrypted>>,
    },
    /// Users joined or were added (by `sender`).
    Join {
        members: Vec<String>,
    },
    /// Users left (`sender` itself).
    Leave {
        members: Vec<String>,
    },
    /// Users removed by `sender`, an admin of the conversation.
    Remove {
        members: Vec<String>,
    },
    /// `sender` gave `user` a role; `owner` hands the conversation over and
    /// the previous owner becomes an admin.
    Role {
        user: String,
        role: MemberRole,
    },
    Rename {
        name: String,
    },
    /// A file shared in the conversation (an addition to the core). Its
    /// bytes are uploaded over HTTP first (`POST /files`); members download
    /// them by digest (`GET /files/{digest}`).
    File {
        file: Box<FileInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// In a secret conversation: the Megolm ciphertext (the text
        /// fields are empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<super::keys::Encrypted>>,
    },
    /// The first event of every conversation.
    Create {
        #[serde(default)]
        name: Option<String>,
        members: Vec<String>,
    },
}

impl EventBody {
    /// The wire name of the event kind.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Message { .. } => "message",
            EventBody::Edit { .. } => "edit",
            EventBody::Delete { .. } => "delete",
            EventBody::Reaction { .. } => "reaction",
            EventBody::Join { .. } => "join",
            EventBody::Leave { .. } => "leave",
            EventBody::Remove { .. } => "remove",
            EventBody::Role { .. } => "role",
            EventBody::Rename { .. } => "rename",
            EventBody::Create { .. } => "create",
            EventBody::File { .. } => "file",
        }
    }

    /// The ciphertext of a message, edit, reaction or file of a secret
    /// conversation.
    pub fn encrypted(&self) -> Option<&super::keys::Encrypted> {
        match self {
            EventBody::Message { encrypted, .. }
            | EventBody::Edit { encrypted, .. }
            | EventBody::Reaction { encrypted, .. }
            | EventBody::File { encrypted, .. } => encrypted.as_deref(),
            _ => None,
        }
    }

    /// The message an edit, deletion or reaction points at.
    pub fn target_seq(&self) -> Option<u64> {
        match self {
            EventBody::Edit { target_seq, .. }
            | EventBody::Delete { target_seq }
            | EventBody::Reaction { target_seq, .. } => Some(*target_seq),
            _ => None,
        }
    }
}

/// What a `file` event says about its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The SHA-256 of its bytes, 64 lowercase hex digits: the name it is
    /// downloaded by.
    pub digest: String,
    /// The file's name as the sender's client gave it (no directories).
    pub name: String,
    /// Its size in bytes, as stored.
    pub size: u64,
    /// Its media type as the sender's client guessed it (`image/png`,
    /// `text/plain`, `application/octet-stream`).
    pub media_type: String,
    /// An image's size in pixels, where the sender's client could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A small preview of an image: a PNG or JPEG of a few KiB, in
    /// standard base64, where the sender's client could make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// In a secret conversation, the key of the file's ciphertext as the
    /// decrypted message gave it. Kept by the client only: it never
    /// travels in the clear (chatd refuses a `file` that carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Box<FileKey>>,
}

/// The AES-256-GCM key and nonce of a secret conversation's file
/// (unpadded base64).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    pub key: String,
    pub nonce: String,
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl FileInfo {
    /// Whether the file is an image by its media type.
    pub fn is_image(&self) -> bool {
        self.media_type.starts_with("image/")
    }
}

/// Presence states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "online",
            PresenceStatus::Away => "away",
            PresenceStatus::Offline => "offline",
        }
    }
}

/// A user's presence as pushed to their contacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user: String,
    pub status: PresenceStatus,
    /// When the user was last connected; `null` if never seen since start.
    #[serde(default)]
    pub last_seen: Option<Millis>,
}

/// A public channel as listed by `channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub id: String,
    pub name: String,
    pub members: u64,
    pub last_seq: u64,
}

/// An account's role on the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages accounts and invitations.
    Admin,
    #[default]
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// An account as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    pub role: Role,
    /// `false` once deactivated: cannot log in, messages stay.
    pub active: bool,
    pub created_at: Millis,
    /// When the account last used any session (`null`: never).
    #[serde(default)]
    pub last_seen: Option<Millis>,
    /// Connected right now.
    #[serde(default)]
    pub online: bool,
    /// A bot account (no password; a token or a webhook URL is its
    /// credential).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
}

/// An incoming webhook as its conversation's admins see it (never its
/// secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookInfo {
    pub id: String,
    /// The name of the bot account it posts as.
    pub name: String,
    pub conversation_id: String,
    pub created_by: String,
    pub created_at: Millis,
    /// When it last posted (kept to about a minute); `null`: never.
    #[serde(default)]
    pub last_used: Option<Millis>,
}

/// One device session of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Public id, for `revoke_session` (not the token).
    pub id: String,
    pub device: String,
    pub created_at: Millis,
    pub last_seen: Millis,
    /// The client address it was last used from.
    #[serde(default)]
    pub last_address: Option<String>,
    /// When it expires unless used again.
    pub expires_at: Millis,
    /// The session of the connection that asked.
    #[serde(default)]
    pub current: bool,
}

/// An invitation code and its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub code: String,
    pub created_by: String,
    pub created_at: Millis,
    /// `null`: never expires.
    #[serde(default)]
    pub expires_at: Option<Millis>,
    /// Accounts it may create in all.
    pub max_uses: u32,
    /// Accounts created with it, oldest first.
    #[serde(default)]
    pub used_by: Vec<String>,
    #[serde(default)]
    pub revoked: bool,
}
