//! What the screen shows, as plain data: the client engine fills these from
//! the cache, the TUI renders them. No I/O and no behaviour here.

use crate::proto::{ConvKind, EventBody, FileInfo, MemberRole, Millis, PresenceStatus};

/// One row of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSummary {
    pub id: String,
    pub kind: ConvKind,
    /// Group/channel name; for a DM, the other member's username.
    pub title: String,
    pub members: Vec<String>,
    /// Members, listed or not (large conversations are not listed).
    pub member_count: u64,
    /// The server's last seq of this conversation (as far as we know).
    pub last_seq: u64,
    /// Highest seq up to which the cache holds every event.
    pub cursor: u64,
    /// My read pointer.
    pub read_seq: u64,
    /// Messages from others above `read_seq` (not edits, deletions,
    /// reactions, system events or my own messages; not deleted ones).
    pub unread: u64,
    /// Of those, the ones whose current body mentions me.
    pub mentions: u64,
    /// Timestamp of the newest event held (for sorting by activity).
    pub last_activity: Millis,
    pub muted: bool,
    /// Whether events between `cursor` and `last_seq` are still missing.
    pub has_gap: bool,
    /// A secret (end-to-end encrypted) conversation.
    pub encrypted: bool,
}

/// Delivery state of one of my own messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendState {
    /// In the outbox, not yet acknowledged.
    Pending,
    /// Refused by the server; never retried.
    Failed(String),
    /// Acknowledged with a seq.
    Sent,
}

/// A reaction folded into its message: emoji, count, and who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionView {
    pub emoji: String,
    pub users: Vec<String>,
}

/// The quoted target of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyQuote {
    pub seq: u64,
    pub sender: String,
    /// First line of the target's current body (empty if deleted/unknown).
    pub excerpt: String,
}

/// One row of the message view: a message with its edits, deletion and
/// reactions folded in, a system line (join/leave/rename/create), a pending
/// outbox entry, or the marker of a range still being fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRow {
    Message(MessageView),
    /// A membership or naming event ("alice joined"); its sentence comes
    /// from [`crate::client::text::system_line`].
    System {
        seq: u64,
        ts: Millis,
        sender: String,
        change: SystemChange,
    },
    /// Events `from..=to` are known to exist but are not held yet.
    Missing {
        from: u64,
        to: u64,
    },
}

/// What a system row records, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemChange {
    Created {
        name: Option<String>,
    },
    Joined {
        members: Vec<String>,
    },
    Left {
        members: Vec<String>,
    },
    /// Removed by the sender, an admin of the conversation.
    Removed {
        members: Vec<String>,
    },
    /// The sender gave `user` a role.
    RoleSet {
        user: String,
        role: MemberRole,
    },
    Renamed {
        name: String,
    },
}

impl SystemChange {
    /// The change an event makes, for the events shown as system rows.
    pub fn of(body: &EventBody) -> Option<SystemChange> {
        Some(match body {
            EventBody::Create { name, .. } => SystemChange::Created { name: name.clone() },
            EventBody::Join { members } => SystemChange::Joined {
                members: members.clone(),
            },
            EventBody::Leave { members } => SystemChange::Left {
                members: members.clone(),
            },
            EventBody::Remove { members } => SystemChange::Removed {
                members: members.clone(),
            },
            EventBody::Role { user, role } => SystemChange::RoleSet {
                user: user.clone(),
                role: *role,
            },
            EventBody::Rename { name } => SystemChange::Renamed { name: name.clone() },
            EventBody::Message { .. }
            | EventBody::File { .. }
            | EventBody::Edit { .. }
            | EventBody::Delete { .. }
            | EventBody::Reaction { .. } => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// The message's seq; `None` for an outbox entry not yet acknowledged.
    pub seq: Option<u64>,
    pub client_msg_id: Option<String>,
    pub sender: String,
    pub ts: Millis,
    /// Current body (after edits), or a shared file's caption; empty when
    /// deleted.
    pub body: String,
    /// The file a `file` event shares (`None` once deleted).
    pub file: Option<Box<FileInfo>>,
    pub edited: bool,
    pub deleted: bool,
    /// Deleted by someone other than its author: a moderator.
    pub moderated: bool,
    pub reactions: Vec<ReactionView>,
    pub reply_to: Option<ReplyQuote>,
    /// `Some` for my own messages.
    pub send_state: Option<SendState>,
    /// Whether the body mentions me.
    pub mentions_me: bool,
    /// Sent by a bot account.
    pub bot: bool,
}

/// A message from someone else that just arrived live, as a notifier needs
/// to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub conv: String,
    pub conv_title: String,
    pub is_dm: bool,
    pub sender: String,
    pub body: String,
    pub mentions_me: bool,
    pub muted: bool,
}

/// Presence of another user as last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceView {
    pub status: PresenceStatus,
    pub last_seen: Option<Millis>,
}

/// The connection as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    /// Waiting to reconnect; `in_secs` until the next attempt.
    Reconnecting {
        in_secs: u64,
        reason: String,
    },
    /// Not trying (logged out, or no server configured).
    Offline {
        reason: String,
    },
}
