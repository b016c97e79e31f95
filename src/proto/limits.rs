//! Protocol limits and their defaults.
//!
//! Every resource a peer can make the server spend is bounded by one of these.
//! chatd reads them from the `[limits]` table of its config file; the client
//! uses the same defaults to refuse oversize input before sending it.

use serde::{Deserialize, Serialize};

/// The version of the protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Bounds on what a peer may send and what the server keeps per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest text frame answered normally; a larger one gets `too_large`.
    pub max_frame_bytes: usize,
    /// Frames above this are not read at all: the connection is closed (1009).
    pub hard_frame_bytes: usize,
    /// Largest message body (send, edit), in bytes of UTF-8.
    pub max_body_bytes: usize,
    /// Most events one `history` reply carries; larger `limit`s are capped.
    pub history_page_cap: u32,
    /// Minimum interval between two `typing` starts per user and conversation.
    pub typing_interval_ms: u64,
    /// Frames queued for one connection before it is disconnected as too slow.
    pub outbound_queue: usize,
    /// Requests answered concurrently per connection before reading pauses.
    pub max_inflight: usize,
    /// Sustained requests per second per user, all their connections
    /// together (token bucket rate; a request costs 1 to 10 by type).
    pub requests_per_sec: u32,
    /// Burst of requests a user may make above the sustained rate.
    pub request_burst: u32,
    /// Simultaneous connections per user.
    pub max_connections_per_user: usize,
    /// Members a group or channel may hold.
    pub max_members: usize,
    /// Length of a conversation name, in bytes.
    pub max_name_bytes: usize,
    /// Length of a client_msg_id, in bytes.
    pub max_client_msg_id_bytes: usize,
    /// Length of a reaction emoji, in bytes.
    pub max_emoji_bytes: usize,
    /// Length of a device name, in bytes.
    pub max_device_bytes: usize,
    /// Shortest password a new account may have, in characters.
    pub min_password_chars: usize,
    /// Length of a password, in bytes.
    pub max_password_bytes: usize,
    /// Device sessions one account keeps; a new login ends the oldest.
    pub max_sessions_per_user: usize,
    /// Unexpired, unrevoked invitations one account may hold at once.
    pub max_invites_per_user: usize,
    /// Accounts one invitation may create.
    pub max_invite_uses: u32,
    /// Conversations one `sync` may name in its cursors.
    pub max_sync_cursors: usize,
    /// Conversations one page of `sync` or `conversations` describes (a page
    /// also ends before its reply passes [`Limits::reply_bytes`]).
    pub sync_page_cap: u32,
    /// Entries one page of `channels` or `members` lists.
    pub list_page_cap: u32,
    /// Hits one `search` reply carries; larger `limit`s are capped.
    pub search_page_cap: u32,
    /// Failed handshakes a connection may make before it is closed.
    pub max_auth_failures: u32,
    /// Seconds a new connection has to authenticate.
    pub auth_timeout_secs: u64,
    /// Seconds between server pings.
    pub ping_interval_secs: u64,
    /// Seconds without any frame from the peer before the connection is closed.
    pub idle_timeout_secs: u64,
    /// Connections from one client address that have not authenticated yet.
    pub max_unauthenticated_per_address: usize,
    /// `register` and `login` requests per second, server-wide (token
    /// bucket rate).
    pub handshakes_per_sec: u32,
    /// Burst of `register` and `login` requests above the sustained rate.
    pub handshake_burst: u32,
    /// Connections open at once, server-wide; more are closed at once.
    pub max_connections: usize,
    /// Conversations one user may be a member of; creating, adding or
    /// joining beyond gets `limit_exceeded`.
    pub max_conversations_per_user: usize,
    /// Conversations one user may create (`create` requests) in an hour.
    pub max_creates_per_hour: usize,
    /// Seconds an HTTP event stream's session outlives its connection,
    /// waiting to be resumed (pushes meanwhile wait in its queue).
    pub stream_linger_secs: u64,
    /// Frames an HTTP event stream keeps after sending them, so that a
    /// stream resumed from a lost connection misses none.
    pub stream_replay_frames: usize,
    /// Posts per second one incoming webhook may make, sustained.
    pub webhook_posts_per_sec: u32,
    /// Posts one incoming webhook may make at once above that rate.
    pub webhook_burst: u32,
    /// Devices with keys one user may have (secret conversations).
    pub max_devices_per_user: usize,
    /// Unclaimed one-time keys one device may hold.
    pub max_one_time_keys: usize,
    /// Messages one device's inbox may hold before senders get
    /// `limit_exceeded`.
    pub max_inbox_messages: usize,
    /// Size of one to-device message's `body`, in bytes of JSON.
    pub max_to_device_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            hard_frame_bytes: 1024 * 1024,
            max_body_bytes: 16 * 1024,
            history_page_cap: 500,
            typing_interval_ms: 1000,
            outbound_queue: 1024,
            max_inflight: 64,
            requests_per_sec: 200,
            request_burst: 1000,
            max_connections_per_user: 64,
            max_members: 10_000,
            max_name_bytes: 64,
            max_client_msg_id_bytes: 64,
            max_emoji_bytes: 32,
            max_device_bytes: 64,
            min_password_chars: 8,
            max_password_bytes: 1024,
            max_sessions_per_user: 100,
            max_invites_per_user: 100,
            max_invite_uses: 1000,
            max_sync_cursors: 10_000,
            sync_page_cap: 500,
            list_page_cap: 1000,
            search_page_cap: 50,
            max_auth_failures: 5,
            auth_timeout_secs: 10,
            ping_interval_secs: 20,
            idle_timeout_secs: 60,
            max_unauthenticated_per_address: 128,
            handshakes_per_sec: 100,
            handshake_burst: 500,
            max_connections: 16_384,
            max_conversations_per_user: 10_000,
            max_creates_per_hour: 100,
            stream_linger_secs: 30,
            stream_replay_frames: 256,
            webhook_posts_per_sec: 1,
            webhook_burst: 10,
            max_devices_per_user: 10,
            max_one_time_keys: 100,
            max_inbox_messages: 10_000,
            max_to_device_bytes: 8 * 1024,
        }
    }
}

impl Limits {
    /// The bytes a paged reply's entries may take: the largest frame
    /// chatd sends is `hard_frame_bytes`, less room for what a reply
    /// echoes of its request (at most `max_frame_bytes`) and its envelope.
    pub fn reply_bytes(&self) -> usize {
        self.hard_frame_bytes
            .saturating_sub(self.max_frame_bytes + 1024)
            .max(64 * 1024)
    }
}

/// What a page of a reply may still take, in bytes: the first entry always
/// fits (each is far below the budget), the rest while they do.
pub struct ByteBudget {
    left: usize,
    first: bool,
}

impl ByteBudget {
    pub fn new(bytes: usize) -> ByteBudget {
        ByteBudget {
            left: bytes,
            first: true,
        }
    }

    /// Whether an entry of `size` bytes still fits; if so it is counted.
    pub fn admit(&mut self, size: usize) -> bool {
        if !self.first && size > self.left {
            return false;
        }
        self.first = false;
        self.left = self.left.saturating_sub(size);
        true
    }
}

/// Usernames: 2–32 characters of `a-z 0-9 _ . -`.
pub fn valid_username(name: &str) -> bool {
    (2..=32).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(valid_username("al"));
        assert!(valid_username("alice_1.b-c"));
        assert!(!valid_username("a"));
        assert!(!valid_username("Alice"));
        assert!(!valid_username("al ice"));
        assert!(!valid_username(&"a".repeat(33)));
        assert!(!valid_username("émile"));
    }

    #[test]
    fn defaults_match_the_documented_core() {
        let l = Limits::default();
        assert_eq!(l.max_frame_bytes, 65536);
        assert_eq!(l.max_body_bytes, 16384);
        assert_eq!(l.history_page_cap, 500);
        assert_eq!(l.idle_timeout_secs, 60);
    }
}
