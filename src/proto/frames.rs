//! Frames: what a client sends (requests) and what a server sends (replies and
//! pushes), with the decoding rules that turn any text into either a request
//! or the right error answer.

use super::error::{ErrorCode, ProtoError};
use super::keys::{
    DeviceDiff, DeviceRef, DevicesPush, Encrypted, InboxMessage, KeysUpload, ToDeviceMessage,
};
use super::types::{
    Account, ConvKind, Conversation, Event, FileInfo, Invite, MemberRole, Millis, Presence,
    PresenceStatus, Role, SessionInfo, WebhookInfo, is_false,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A request from a client. The `id` travels beside it (see [`decode_request`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Register {
        username: String,
        password: String,
        #[serde(default)]
        device: Option<String>,
        /// An invitation code, needed where registration is by invitation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<String>,
    },
    Login {
        username: String,
        password: String,
        #[serde(default)]
        device: Option<String>,
    },
    Auth {
        token: String,
    },
    /// Revoke the token of this connection's session.
    Logout {},
    Create {
        kind: ConvKind,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        members: Vec<String>,
        /// A secret (end-to-end encrypted) DM or group.
        #[serde(default, skip_serializing_if = "is_false")]
        encrypted: bool,
    },
    /// Join a channel, by id or (an addition to the core) by name.
    Join {
        #[serde(default)]
        conversation_id: Option<String>,
        #[serde(default)]
        name: Option<String>,
    },
    Leave {
        conversation_id: String,
    },
    AddMembers {
        conversation_id: String,
        members: Vec<String>,
    },
    /// Remove members from a group or channel (its admins).
    RemoveMembers {
        conversation_id: String,
        members: Vec<String>,
    },
    /// Give a member a role in a group or channel; `owner` hands it over.
    SetMemberRole {
        conversation_id: String,
        user: String,
        role: MemberRole,
    },
    Rename {
        conversation_id: String,
        #[serde(default)]
        client_msg_id: Option<String>,
        name: String,
    },
    /// A page of the conversations the user belongs to, by id, after
    /// `after` (an addition to the core: the reply's `next` names the
    /// next page's `after`).
    Conversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Public channels, to find one to join: a page by name, after `after`.
    Channels {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// A page of a conversation's members, by name, after `after`, with
    /// their roles and receipts (for conversations too large to list them
    /// inline).
    Members {
        conversation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Users whose name starts with `prefix` (for completion and switching).
    Users {
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Send {
        conversation_id: String,
        client_msg_id: String,
        body: String,
        #[serde(default)]
        reply_to: Option<u64>,
        /// In a secret conversation: the Megolm ciphertext instead of the
        /// text, and the room keys shared with it (see `docs/PROTOCOL.md`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<Encrypted>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shares: Vec<ToDeviceMessage>,
    },
    /// Share a file uploaded before (`POST /files`) as a `file` event.
    SendFile {
        conversation_id: String,
        client_msg_id: String,
        file: FileInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// In a secret conversation: the Megolm ciphertext instead of the
        /// text, and the room keys shared with it (see `docs/PROTOCOL.md`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<Encrypted>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shares: Vec<ToDeviceMessage>,
    },
    Edit {
        conversation_id: String,
        client_msg_id: String,
        target_seq: u64,
        body: String,
        /// In a secret conversation: the Megolm ciphertext instead of the
        /// text, and the room keys shared with it (see `docs/PROTOCOL.md`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<Encrypted>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shares: Vec<ToDeviceMessage>,
    },
    Delete {
        conversation_id: String,
        client_msg_id: String,
        target_seq: u64,
    },
    React {
        conversation_id: String,
        client_msg_id: String,
        target_seq: u64,
        emoji: String,
        #[serde(default)]
        remove: bool,
        /// In a secret conversation: the Megolm ciphertext instead of the
        /// text, and the room keys shared with it (see `docs/PROTOCOL.md`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted: Option<Box<Encrypted>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shares: Vec<ToDeviceMessage>,
    },
    Sync {
        #[serde(default)]
        cursors: HashMap<String, u64>,
        /// For some cursors, the `eid` of the event the client holds at that
        /// seq (an addition to the core): the server answers which
        /// conversations the client's copy has diverged in.
        #[serde(default, skip_serializing_if = "HashMap::is_empty")]
        heads: HashMap<String, String>,
        /// The page of conversations to describe: those with an id after
        /// `after`, at most `limit` (an addition to the core). `limit: 0`
        /// only checks the cursors (for a client holding more of them than
        /// one request carries).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Search the messages of the conversations one belongs to (see
    /// [`crate::proto::search`] for the query language).
    Search {
        query: String,
        /// Only this conversation.
        #[serde(default)]
        conversation_id: Option<String>,
        #[serde(default)]
        order: SearchOrder,
        /// The `next` of the previous page.
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    History {
        conversation_id: String,
        #[serde(default)]
        after: Option<u64>,
        #[serde(default)]
        before: Option<u64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Receipt {
        conversation_id: String,
        #[serde(default)]
        delivered: Option<u64>,
        #[serde(default)]
        read: Option<u64>,
    },
    Typing {
        conversation_id: String,
        active: bool,
    },
    Presence {
        status: PresenceStatus,
    },
    /// Block a user: they cannot open a DM with you, add you to a group or
    /// see your presence. Nobody is told.
    Block {
        user: String,
    },
    Unblock {
        user: String,
    },
    /// The users you block.
    Blocks {},
    /// Change this account's password; every other session is revoked.
    ChangePassword {
        old_password: String,
        new_password: String,
    },
    /// This account's device sessions.
    Sessions {},
    /// Revoke one of this account's sessions by id, or (`others`) every
    /// session but this connection's.
    RevokeSession {
        #[serde(default)]
        session_id: Option<String>,
        #[serde(default)]
        others: bool,
    },
    /// Create an invitation (admins; members where the server allows it).
    InviteCreate {
        /// How many accounts it may create (default 1).
        #[serde(default)]
        uses: Option<u32>,
        /// Seconds until it expires (default: never).
        #[serde(default)]
        expires_in_secs: Option<u64>,
    },
    /// Invitations, newest first: all of them for an admin, one's own for
    /// a member; a page after the invitation `after`.
    InviteList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    InviteRevoke {
        code: String,
    },
    /// The accounts, with role, state and last seen (admins): a page by
    /// name, after `after`.
    AdminUsers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    AdminCreateUser {
        username: String,
        password: String,
        #[serde(default)]
        role: Option<Role>,
    },
    /// Set a new password and revoke every session of the account.
    AdminResetPassword {
        username: String,
        password: String,
    },
    /// Deactivate (disconnected at once, cannot log in) or reactivate.
    AdminSetActive {
        username: String,
        active: bool,
    },
    AdminSetRole {
        username: String,
        role: Role,
    },
    /// Erase an account: deactivated for good, its messages deleted and
    /// their text removed from the server.
    AdminErase {
        username: String,
    },
    /// Create a bot account (admins): no password; the reply carries its
    /// token, shown once.
    AdminCreateBot {
        username: String,
    },
    /// The bot accounts, by name (admins): a page after `after`.
    AdminBots {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// End every session of a bot and give it a new token (admins).
    AdminBotToken {
        username: String,
    },
    /// Create an incoming webhook in a group or channel (its owner and
    /// admins): a bot account named `name` that posts what is sent to a
    /// secret URL.
    WebhookCreate {
        conversation_id: String,
        name: String,
    },
    /// The webhooks of a conversation (its owner and admins).
    WebhookList {
        conversation_id: String,
    },
    /// Stop a webhook for good (its conversation's owner and admins, and
    /// its creator).
    WebhookRevoke {
        webhook_id: String,
    },
    /// Publish this session's device and its keys (see [`KeysUpload`]).
    KeysUpload(KeysUpload),
    /// Certify another device of one's own with the identity key.
    KeysSign {
        device_id: String,
        certificate: String,
    },
    /// The identity key and devices of some users.
    KeysQuery {
        users: Vec<String>,
    },
    /// Take one one-time key (or the fallback key) of each device.
    KeysClaim {
        devices: Vec<DeviceRef>,
    },
    /// Messages to other devices' inboxes.
    ToDevice {
        messages: Vec<ToDeviceMessage>,
    },
    /// A page of this session's device inbox, after `after`.
    Inbox {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Drop this device's inbox messages up to `upto`.
    InboxAck {
        upto: u64,
    },
    /// Share a Megolm session of a secret conversation ahead of a send.
    KeysShare {
        conversation_id: String,
        session_id: String,
        shares: Vec<ToDeviceMessage>,
    },
}

/// Every `type` a client may send.
pub const REQUEST_TYPES: &[&str] = &[
    "register",
    "login",
    "auth",
    "logout",
    "create",
    "join",
    "leave",
    "add_members",
    "remove_members",
    "set_member_role",
    "rename",
    "conversations",
    "members",
    "channels",
    "users",
    "send",
    "send_file",
    "edit",
    "delete",
    "react",
    "sync",
    "history",
    "search",
    "receipt",
    "typing",
    "presence",
    "block",
    "unblock",
    "blocks",
    "change_password",
    "sessions",
    "revoke_session",
    "invite_create",
    "invite_list",
    "invite_revoke",
    "admin_users",
    "admin_create_user",
    "admin_reset_password",
    "admin_set_active",
    "admin_set_role",
    "admin_erase",
    "admin_create_bot",
    "admin_bots",
    "admin_bot_token",
    "webhook_create",
    "webhook_list",
    "webhook_revoke",
    "keys_upload",
    "keys_sign",
    "keys_query",
    "keys_claim",
    "to_device",
    "inbox",
    "inbox_ack",
    "keys_share",
];

impl Request {
    /// The wire name of this request's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Register { .. } => "register",
            Request::Login { .. } => "login",
            Request::Auth { .. } => "auth",
            Request::Logout {} => "logout",
            Request::Create { .. } => "create",
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::AddMembers { .. } => "add_members",
            Request::RemoveMembers { .. } => "remove_members",
            Request::SetMemberRole { .. } => "set_member_role",
            Request::Rename { .. } => "rename",
            Request::Conversations { .. } => "conversations",
            Request::Channels { .. } => "channels",
            Request::Users { .. } => "users",
            Request::Send { .. } => "send",
            Request::SendFile { .. } => "send_file",
            Request::Edit { .. } => "edit",
            Request::Delete { .. } => "delete",
            Request::React { .. } => "react",
            Request::Sync { .. } => "sync",
            Request::Members { .. } => "members",
            Request::History { .. } => "history",
            Request::Search { .. } => "search",
            Request::Receipt { .. } => "receipt",
            Request::Typing { .. } => "typing",
            Request::Presence { .. } => "presence",
            Request::Block { .. } => "block",
            Request::Unblock { .. } => "unblock",
            Request::Blocks {} => "blocks",
            Request::ChangePassword { .. } => "change_password",
            Request::Sessions {} => "sessions",
            Request::RevokeSession { .. } => "revoke_session",
            Request::InviteCreate { .. } => "invite_create",
            Request::InviteList { .. } => "invite_list",
            Request::InviteRevoke { .. } => "invite_revoke",
            Request::AdminUsers { .. } => "admin_users",
            Request::AdminCreateUser { .. } => "admin_create_user",
            Request::AdminResetPassword { .. } => "admin_reset_password",
            Request::AdminSetActive { .. } => "admin_set_active",
            Request::AdminSetRole { .. } => "admin_set_role",
            Request::AdminErase { .. } => "admin_erase",
            Request::AdminCreateBot { .. } => "admin_create_bot",
            Request::AdminBots { .. } => "admin_bots",
            Request::AdminBotToken { .. } => "admin_bot_token",
            Request::WebhookCreate { .. } => "webhook_create",
            Request::WebhookList { .. } => "webhook_list",
            Request::WebhookRevoke { .. } => "webhook_revoke",
            Request::KeysUpload(_) => "keys_upload",
            Request::KeysSign { .. } => "keys_sign",
            Request::KeysQuery { .. } => "keys_query",
            Request::KeysClaim { .. } => "keys_claim",
            Request::ToDevice { .. } => "to_device",
            Request::Inbox { .. } => "inbox",
            Request::InboxAck { .. } => "inbox_ack",
            Request::KeysShare { .. } => "keys_share",
        }
    }

    /// Whether this request is part of the handshake.
    pub fn is_handshake(&self) -> bool {
        matches!(
            self,
            Request::Register { .. } | Request::Login { .. } | Request::Auth { .. }
        )
    }

    /// Requests that may be sent without an `id` (and then get no reply).
    pub fn id_optional(&self) -> bool {
        matches!(self, Request::Typing { .. } | Request::Presence { .. })
    }

    /// Encode as a frame with the given id.
    pub fn encode(&self, id: Option<u64>) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let (Some(id), Some(obj)) = (id, v.as_object_mut()) {
            obj.insert("id".into(), id.into());
        }
        v.to_string()
    }
}

/// Why a text did not decode into a request, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The id to echo; `None` when the frame had no usable id.
    pub id: Option<u64>,
    pub error: ProtoError,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Decode one text frame into `(id, request)` or the error to answer with.
///
/// - not JSON, not an object, no string `type`, or an id that is not a
///   non-negative integer: `bad_frame` with `id: null`;
/// - an unknown `type`: `unknown_type`;
/// - missing or ill-typed fields: `invalid_argument`;
/// - no `id` on a request that needs one: `bad_frame`.
pub fn decode_request(text: &str) -> Result<(Option<u64>, Request), DecodeError> {
    let head: Head = serde_json::from_str(text).map_err(|e| DecodeError {
        id: None,
        error: ProtoError::new(
            ErrorCode::BadFrame,
            format!("frame is not a JSON object: {e}"),
        ),
    })?;
    let id = match head.id {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => {
                return Err(DecodeError {
                    id: None,
                    error: ProtoError::new(
                        ErrorCode::BadFrame,
                        "id must be a non-negative integer",
                    ),
                });
            }
        },
    };
    let Some(ty) = head.ty else {
        return Err(DecodeError {
            id: None,
            error: ProtoError::new(ErrorCode::BadFrame, "frame has no string \"type\""),
        });
    };
    if !REQUEST_TYPES.contains(&ty.as_ref()) {
        return Err(DecodeError {
            id,
            error: ProtoError::new(
                ErrorCode::UnknownType,
                format!("unknown request type {:?}", truncate(&ty, 40)),
            ),
        });
    }
    let req: Request = serde_json::from_str(text).map_err(|e| DecodeError {
        id,
        error: ProtoError::invalid(format!("bad {ty} request: {e}")),
    })?;
    if id.is_none() && !req.id_optional() {
        return Err(DecodeError {
            id: None,
            error: ProtoError::new(ErrorCode::BadFrame, format!("{ty} request needs an id")),
        });
    }
    Ok((id, req))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ---------------------------------------------------------------------------
// Server → client

/// A frame from the server, as a client decodes it.
///
/// `ok` replies keep their fields as a JSON map: the client knows which
/// request an id belongs to and reads the matching reply type from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Ok(OkFrame),
    Error(ErrorFrame),
    Event(Event),
    Conversation {
        conversation: Conversation,
    },
    Receipt(ReceiptPush),
    Typing(TypingPush),
    Presence(Presence),
    /// A message arrived in this connection's device inbox.
    ToDevice(InboxMessage),
    /// A user's devices changed.
    Devices(DevicesPush),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OkFrame {
    pub id: u64,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl OkFrame {
    /// Read the reply's fields as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.fields))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: milliseconds to wait before trying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `devices_changed`: devices that must get the Megolm session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<super::keys::DeviceRef>>,
    /// With `devices_changed`: devices that hold it and should not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Vec<super::keys::DeviceRef>>,
}

impl ErrorFrame {
    /// The error it carries.
    pub fn into_proto(self) -> ProtoError {
        let devices = (self.missing.is_some() || self.extra.is_some()).then(|| {
            Box::new(DeviceDiff {
                missing: self.missing.unwrap_or_default(),
                extra: self.extra.unwrap_or_default(),
            })
        });
        ProtoError {
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
            devices,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPush {
    pub conversation_id: String,
    pub user: String,
    pub delivered: u64,
    pub read: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingPush {
    pub conversation_id: String,
    pub user: String,
    pub active: bool,
}

impl ServerFrame {
    /// Decode a frame from the server. chatd writes `type` first, so an
    /// `event` written that way is decoded straight into an [`Event`]
    /// (which ignores `type`), without the copy of every field that
    /// serde's derive for a tagged enum makes first: that copy was most of
    /// a client's work per pushed message. Any other frame takes the
    /// derive, with the same result.
    pub fn decode(text: &str) -> Result<ServerFrame, serde_json::Error> {
        match leading_tag(text, "type") {
            Some("event") => serde_json::from_str(text).map(ServerFrame::Event),
            _ => serde_json::from_str(text),
        }
    }
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The string value of `key` in a JSON object that starts with it,
/// written without spaces or escapes (as chatd writes its tags); `None`
/// where it does not, and the caller parses.
pub(crate) fn leading_tag<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let rest = text
        .strip_prefix("{\"")?
        .strip_prefix(key)?
        .strip_prefix("\":\"")?;
    let tag = &rest[..rest.find('"')?];
    (!tag.contains('\\')).then_some(tag)
}

// Reply bodies (the fields of `ok`, after `type` and `id`).

/// Reply to `register`, `login` and `auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthOk {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub protocol: u32,
    /// The account's role (an addition to the core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// Reply to `send`, `edit`, `delete`, `react`, `rename`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOk {
    pub seq: u64,
    pub ts: Millis,
}

/// Reply to `create`, `join`, `leave`, `add_members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationOk {
    pub conversation: Conversation,
}

/// Reply to `conversations` and `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationsOk {
    pub conversations: Vec<Conversation>,
    /// Presence of every contact (an addition to the core, on `sync`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<Presence>,
    /// On `sync`: conversations whose history the client holds differs
    /// from the server's (its cursor is past the server's last seq, or the
    /// event at its cursor is another one). The client drops its copy,
    /// fetches it again, and sends its own messages again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diverged: Vec<String>,
    /// On `sync`, where the server keeps message text for a limited time:
    /// the text of messages and edits older than this is gone, and clients
    /// clear their copies too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_cutoff: Option<Millis>,
    /// More conversations follow: ask again with this as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchOrder {
    /// Most recently sent first.
    #[default]
    Newest,
    /// Best match first (bm25).
    Rank,
}

/// One message a search found: where it is, who sent it when, and the part
/// of its current text around what matched, with the byte ranges in
/// `snippet` of the matched words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    pub conversation_id: String,
    pub seq: u64,
    pub ts: Millis,
    pub sender: String,
    pub snippet: String,
    #[serde(default)]
    pub highlights: Vec<[usize; 2]>,
}

/// Reply to `search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchOk {
    pub hits: Vec<SearchHit>,
    /// The `after` of the next page, if there may be more.
    #[serde(default)]
    pub next: Option<String>,
}

/// Reply to `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryOk {
    pub events: Vec<Event>,
    pub last_seq: u64,
}

/// Reply to `receipt`: the pointers after the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptOk {
    pub delivered: u64,
    pub read: u64,
}

/// Reply to `channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsOk {
    pub channels: Vec<super::types::ChannelInfo>,
    /// More channels follow: ask again with this as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Reply to `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersOk {
    pub members: Vec<super::types::MemberEntry>,
    /// More members follow: ask again with this as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Reply to `users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersOk {
    pub users: Vec<UserEntry>,
}

/// One user found by `users`: presence only for contacts (people who share
/// a conversation with the caller) and the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PresenceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
    /// A bot account (an addition to the core).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
}

impl UserEntry {
    /// The presence it carries, if the caller may see it.
    pub fn presence(&self) -> Option<Presence> {
        self.status.map(|status| Presence {
            user: self.user.clone(),
            status,
            last_seen: self.last_seen,
        })
    }
}

/// Reply to `blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksOk {
    pub users: Vec<String>,
}

/// Reply to `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsOk {
    pub sessions: Vec<SessionInfo>,
}

/// Reply to `revoke_session`: how many sessions ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedOk {
    pub revoked: u32,
}

/// Reply to `invite_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteOk {
    pub invite: Invite,
}

/// Reply to `invite_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitesOk {
    pub invites: Vec<Invite>,
    /// More follow: ask again with this as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Reply to `admin_users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsOk {
    pub users: Vec<Account>,
    /// More follow: ask again with this as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Reply to `admin_create_user`, `admin_set_active` and `admin_set_role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOk {
    pub user: Account,
}

/// Reply to `admin_create_bot` and `admin_bot_token`: the bot and its
/// token, which the server does not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotOk {
    pub user: Account,
    pub token: String,
}

/// Reply to `webhook_create`: the webhook and the path of its URL
/// (`/hooks/{id}/{secret}`), which holds the secret and is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookOk {
    pub webhook: WebhookInfo,
    pub path: String,
}

/// Reply to `webhook_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhooksOk {
    pub webhooks: Vec<WebhookInfo>,
}

/// Encode an `ok` reply: `{"type":"ok","id":id, ...body}`.
pub fn encode_ok<T: Serialize>(id: u64, body: &T) -> String {
    #[derive(Serialize)]
    struct Ok<'a, T> {
        #[serde(rename = "type")]
        ty: &'static str,
        id: u64,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Ok { ty: "ok", id, body }).unwrap_or_else(|_| {
        format!(r#"{{"type":"error","id":{id},"code":"internal","message":"encoding failed"}}"#)
    })
}

/// Encode an `ok` reply with no fields.
pub fn encode_ok_empty(id: u64) -> String {
    format!(r#"{{"type":"ok","id":{id}}}"#)
}

/// Encode an `error` reply.
pub fn encode_error(id: Option<u64>, err: &ProtoError) -> String {
    let diff: Option<&DeviceDiff> = err.devices.as_deref();
    ServerFrame::Error(ErrorFrame {
        id,
        code: err.code,
        message: err.message.clone(),
        retry_after_ms: err.retry_after_ms,
        missing: diff.map(|d| d.missing.clone()),
        extra: diff.map(|d| d.extra.clone()),
    })
    .encode()
}

/// Encode an `event` push.
pub fn encode_event(ev: &Event) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        #[serde(flatten)]
        ev: &'a Event,
    }
    serde_json::to_string(&Push { ty: "event", ev }).unwrap_or_default()
}

/// [`encode_event`] for an event whose body is already encoded (`body_json`,
/// the JSON object the store keeps for it): the same text, without
/// serializing the body again.
pub fn encode_event_with_body(ev: &Event, body_json: &str) -> String {
    use std::fmt::Write;
    let string = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let cmid = ev.client_msg_id.as_deref().map_or("null".into(), string);
    let mut out = String::with_capacity(body_json.len() + 180);
    let _ = write!(
        out,
        r#"{{"type":"event","conversation_id":{},"seq":{},"ts":{},"sender":{},"client_msg_id":{}"#,
        string(&ev.conversation_id),
        ev.seq,
        ev.ts,
        string(&ev.sender),
        cmid,
    );
    if let Some(eid) = &ev.eid {
        let _ = write!(out, r#","eid":{}"#, string(eid));
    }
    if ev.bot {
        out.push_str(r#","bot":true"#);
    }
    match body_json.strip_prefix('{') {
        Some(rest) if rest.trim_start() != "}" => {
            out.push(',');
            out.push_str(rest);
        }
        _ => out.push('}'),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::types::EventBody;

    #[test]
    fn decodes_every_core_example() {
        let examples = [
            r#"{"type":"register","id":1,"username":"alice","password":"correct horse","device":"laptop"}"#,
            r#"{"type":"login","id":1,"username":"alice","password":"correct horse","device":"laptop"}"#,
            r#"{"type":"auth","id":1,"token":"abc"}"#,
            r#"{"type":"create","id":2,"kind":"dm","members":["bob"]}"#,
            r#"{"type":"create","id":3,"kind":"group","name":"launch","members":["bob","carol"]}"#,
            r#"{"type":"create","id":4,"kind":"channel","name":"general"}"#,
            r#"{"type":"join","id":5,"conversation_id":"c1"}"#,
            r#"{"type":"leave","id":6,"conversation_id":"c1"}"#,
            r#"{"type":"add_members","id":7,"conversation_id":"c1","members":["dave"]}"#,
            r#"{"type":"conversations","id":8}"#,
            r#"{"type":"send","id":9,"conversation_id":"c1","client_msg_id":"0f1c","body":"hello","reply_to":null}"#,
            r#"{"type":"edit","id":10,"conversation_id":"c1","client_msg_id":"x","target_seq":43,"body":"hello!"}"#,
            r#"{"type":"delete","id":11,"conversation_id":"c1","client_msg_id":"y","target_seq":43}"#,
            r#"{"type":"react","id":12,"conversation_id":"c1","client_msg_id":"z","target_seq":43,"emoji":"👍","remove":false}"#,
            r#"{"type":"sync","id":13,"cursors":{"c1":40}}"#,
            r#"{"type":"history","id":14,"conversation_id":"c1","after":40,"limit":200}"#,
            r#"{"type":"history","id":15,"conversation_id":"c1","before":41,"limit":200}"#,
            r#"{"type":"receipt","id":16,"conversation_id":"c1","delivered":43,"read":43}"#,
            r#"{"type":"typing","conversation_id":"c1","active":true}"#,
            r#"{"type":"presence","status":"away"}"#,
        ];
        for text in examples {
            let (_, req) = decode_request(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            // Round trip through our own encoder.
            let again = decode_request(&req.encode(Some(99))).unwrap();
            assert_eq!(again.1, req);
            assert_eq!(again.0, Some(99));
        }
    }

    #[test]
    fn classifies_bad_input() {
        let cases = [
            ("not json", None, ErrorCode::BadFrame),
            ("[1,2]", None, ErrorCode::BadFrame),
            (r#"{"id":3}"#, None, ErrorCode::BadFrame),
            (r#"{"type":"send","id":"x"}"#, None, ErrorCode::BadFrame),
            (r#"{"type":"send","id":-1}"#, None, ErrorCode::BadFrame),
            (r#"{"type":"fly","id":4}"#, Some(4), ErrorCode::UnknownType),
            (
                r#"{"type":"send","id":5}"#,
                Some(5),
                ErrorCode::InvalidArgument,
            ),
            (
                r#"{"type":"send","id":6,"conversation_id":1,"client_msg_id":"a","body":"b"}"#,
                Some(6),
                ErrorCode::InvalidArgument,
            ),
            (r#"{"type":"conversations"}"#, None, ErrorCode::BadFrame),
        ];
        for (text, id, code) in cases {
            let err = decode_request(text).unwrap_err();
            assert_eq!((err.id, err.error.code), (id, code), "{text}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let (id, req) =
            decode_request(r#"{"type":"conversations","id":8,"future":{"x":1}}"#).unwrap();
        assert_eq!(id, Some(8));
        assert_eq!(
            req,
            Request::Conversations {
                after: None,
                limit: None
            }
        );
    }

    #[test]
    fn server_frames_round_trip() {
        let ev = Event {
            conversation_id: "c1".into(),
            seq: 43,
            ts: 1764250000123,
            sender: "alice".into(),
            client_msg_id: Some("0f1c".into()),
            eid: None,
            bot: false,
            body: EventBody::Message {
                body: "hello".into(),
                reply_to: None,
                encrypted: None,
            },
        };
        let text = encode_event(&ev);
        assert!(text.starts_with(r#"{"type":"event""#), "{text}");
        assert!(text.contains(r#""kind":"message""#));
        assert_eq!(ServerFrame::decode(&text).unwrap(), ServerFrame::Event(ev));

        let ok = encode_ok(9, &AppendOk { seq: 43, ts: 5 });
        assert_eq!(ok, r#"{"type":"ok","id":9,"seq":43,"ts":5}"#);
        match ServerFrame::decode(&ok).unwrap() {
            ServerFrame::Ok(f) => {
                assert_eq!(f.id, 9);
                assert_eq!(f.parse::<AppendOk>().unwrap(), AppendOk { seq: 43, ts: 5 });
            }
            other => panic!("{other:?}"),
        }

        let err = encode_error(None, &ProtoError::new(ErrorCode::BadFrame, "nope"));
        assert_eq!(
            err,
            r#"{"type":"error","id":null,"code":"bad_frame","message":"nope"}"#
        );
    }

    #[test]
    fn a_frame_decodes_the_same_whether_type_comes_first_or_not() {
        let frames = [
            r#"{"type":"event","conversation_id":"c","seq":2,"ts":5,"sender":"bob","client_msg_id":null,"kind":"message","body":"hi"}"#,
            r#"{"type":"ok","id":4,"seq":2,"ts":5}"#,
            r#"{"type":"ok","id":4}"#,
            r#"{"type":"typing","conversation_id":"c","user":"bob","active":true}"#,
            r#"{"type":"error","id":3,"code":"forbidden","message":"no"}"#,
        ];
        for text in frames {
            let fast = ServerFrame::decode(text).unwrap();
            // The same fields with `type` last, which only the derive reads.
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut map = v.as_object().unwrap().clone();
            let ty = map.remove("type").unwrap();
            let mut moved = serde_json::to_string(&map).unwrap();
            moved.pop();
            let sep = if map.is_empty() { "" } else { "," };
            moved.push_str(&format!(r#"{sep}"type":{ty}}}"#));
            assert_eq!(leading_tag(&moved, "type"), None, "{moved}");
            assert_eq!(ServerFrame::decode(&moved).unwrap(), fast, "{text}");
            if let ServerFrame::Ok(ok) = fast {
                assert!(!ok.fields.contains_key("type"), "{text}");
            }
        }
        // A broken event is an error either way, not another frame.
        assert!(ServerFrame::decode(r#"{"type":"event","seq":1}"#).is_err());
        assert_eq!(leading_tag(r#"{"type":"ev\"ent"}"#, "type"), None);
        assert_eq!(leading_tag(r#"{ "type":"event"}"#, "type"), None);
    }

    #[test]
    fn an_event_encoded_from_its_stored_body_is_the_same_text() {
        let bodies = [
            EventBody::Message {
                body: "hi \"there\" \u{1F600}\n".into(),
                reply_to: Some(3),
                encrypted: None,
            },
            EventBody::Message {
                body: String::new(),
                reply_to: None,
                encrypted: None,
            },
            EventBody::Edit {
                target_seq: 4,
                body: "fixed".into(),
                encrypted: None,
            },
            EventBody::Delete { target_seq: 4 },
            EventBody::Reaction {
                target_seq: 2,
                emoji: "👍".into(),
                remove: false,
                encrypted: None,
            },
            EventBody::Create {
                name: Some("g".into()),
                members: vec!["a".into(), "b".into()],
            },
            EventBody::Join {
                members: vec!["c".into()],
            },
            EventBody::Leave {
                members: vec!["c".into()],
            },
            EventBody::Rename { name: "n".into() },
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            for cmid in [None, Some("m\"1".to_string())] {
                let ev = Event {
                    conversation_id: "c\\1".into(),
                    seq: 10 + i as u64,
                    ts: 1_700_000_000_000,
                    sender: "al\"ice".into(),
                    client_msg_id: cmid,
                    eid: None,
                    bot: i % 2 == 1,
                    body: body.clone(),
                };
                let stored = serde_json::to_string(&ev.body).unwrap();
                assert_eq!(encode_event_with_body(&ev, &stored), encode_event(&ev));
            }
        }
    }
}
