//! What the App renders of the engine's world: the engine's [`Update`]s
//! applied in order ([`Model::apply`]), plus the few pure queries the UI
//! needs (typing expiry, lookups); no I/O.

use crate::client::Update;
use crate::client::view::{ConnState, ConvSummary, MessageRow, PresenceView};
use crate::proto::{ReceiptPair, SessionInfo};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How long a typing indicator lives without a refresh.
pub const TYPING_TTL: Duration = Duration::from_secs(5);

/// A sync that is not done, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncNote {
    /// Pages are coming in: this many conversations so far.
    Paging { conversations: usize },
    /// The last attempt failed; the next is this many seconds away.
    Failed { retry_in_secs: u64 },
}

#[derive(Debug, Clone)]
pub struct Model {
    /// My username (empty before login).
    pub me: String,
    /// The server as shown in the header (`host:port`).
    pub server: String,
    pub conn: ConnState,
    /// Connected over the HTTP fallback rather than the WebSocket.
    pub via_http: bool,
    /// Sorted by the engine (most recent activity first).
    pub conversations: Vec<ConvSummary>,
    /// The loaded window of each open conversation, by conversation id,
    /// sorted by seq.
    pub messages: HashMap<String, Vec<MessageRow>>,
    /// Who is typing where, with the instant each indicator expires.
    pub typing: HashMap<String, Vec<(String, Instant)>>,
    pub presence: HashMap<String, PresenceView>,
    /// Per conversation, per member: delivered/read pointers.
    pub receipts: HashMap<String, BTreeMap<String, ReceiptPair>>,
    /// Known users, for the quick switcher and completion.
    pub users: Vec<String>,
    /// An older page is being fetched for the focused conversation.
    pub loading_older: bool,
    /// Where the sync after connecting stands, until it is done.
    pub sync: Option<SyncNote>,
    /// No credentials: show the login screen.
    pub needs_login: bool,
    /// The last login/register failure, shown on the login screen.
    pub login_error: Option<String>,
    /// A one-line message from the engine for the status line.
    pub notice: Option<String>,
    /// This account's device sessions as last listed (`None`: not yet).
    pub sessions: Option<Vec<SessionInfo>>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            me: String::new(),
            server: String::new(),
            conn: ConnState::Connecting,
            via_http: false,
            conversations: Vec::new(),
            messages: HashMap::new(),
            typing: HashMap::new(),
            presence: HashMap::new(),
            receipts: HashMap::new(),
            users: Vec::new(),
            loading_older: false,
            sync: None,
            needs_login: false,
            login_error: None,
            notice: None,
            sessions: None,
        }
    }
}

impl Model {
    /// Apply one of the engine's updates. Updates that are events for the
    /// App rather than state (incoming messages, a focus request) and those
    /// meant for other front ends leave the model as it is.
    pub fn apply(&mut self, update: Update, now: Instant) {
        match update {
            Update::Conn(state) => {
                if state != ConnState::Connected {
                    self.sync = None;
                }
                self.conn = state;
            }
            Update::Syncing { conversations } => {
                self.sync = Some(SyncNote::Paging { conversations });
            }
            Update::SyncFailed { retry_in_secs } => {
                self.sync = Some(SyncNote::Failed { retry_in_secs });
            }
            Update::Synced => self.sync = None,
            Update::Transport { http } => self.via_http = http,
            Update::LoggedIn { user } => {
                self.me = user;
                self.needs_login = false;
                self.login_error = None;
            }
            Update::AuthFailed { message } => {
                self.needs_login = true;
                self.login_error = Some(message);
                self.sessions = None;
            }
            Update::Conversations(list) => {
                self.add_users(list.iter().flat_map(|c| c.members.iter().cloned()));
                self.conversations = list;
            }
            Update::Messages { conv, rows } => {
                // Only the focused conversation's window is kept in memory.
                self.messages.retain(|k, _| *k == conv);
                self.messages.insert(conv, rows);
            }
            Update::Receipts { conv, receipts } => {
                self.receipts.insert(conv, receipts);
            }
            Update::Typing { conv, user, active } => self.set_typing(&conv, &user, active, now),
            Update::Presence(list) => self.presence.extend(list),
            Update::Users(users) => self.add_users(users),
            Update::Notice(text) => self.notice = Some(text),
            Update::Sessions(list) => self.sessions = Some(list),
            Update::LoadingOlder(loading) => self.loading_older = loading,
            Update::Incoming(_)
            | Update::Focus(_)
            | Update::Events { .. }
            | Update::Acked { .. }
            | Update::Transfer(_)
            | Update::FileReady { .. }
            | Update::Refused { .. }
            | Update::SearchHits { .. }
            | Update::SearchEnded { .. }
            | Update::Devices(_)
            | Update::Verification(_)
            | Update::Identity { .. } => {}
        }
    }

    /// Add users to the known list, kept sorted and without repeats; each
    /// name is a binary search, so a publish that carries large groups
    /// stays cheap.
    fn add_users(&mut self, users: impl IntoIterator<Item = String>) {
        for u in users {
            if let Err(at) = self.users.binary_search(&u) {
                self.users.insert(at, u);
            }
        }
    }

    pub fn conversation(&self, id: &str) -> Option<&ConvSummary> {
        self.conversations.iter().find(|c| c.id == id)
    }

    pub fn rows(&self, conv: &str) -> &[MessageRow] {
        self.messages.get(conv).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Records a typing push: `active` refreshes the indicator for
    /// [`TYPING_TTL`] from `now`, inactive removes it.
    pub fn set_typing(&mut self, conv: &str, user: &str, active: bool, now: Instant) {
        let list = self.typing.entry(conv.to_string()).or_default();
        list.retain(|(u, _)| u != user);
        if active {
            list.push((user.to_string(), now + TYPING_TTL));
        }
        if list.is_empty() {
            self.typing.remove(conv);
        }
    }

    /// Who is typing in `conv` at `now`, in the order they started.
    pub fn typists(&self, conv: &str, now: Instant) -> Vec<&str> {
        self.typing
            .get(conv)
            .map(|list| {
                list.iter()
                    .filter(|(u, expiry)| *expiry > now && *u != self.me)
                    .map(|(u, _)| u.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every expired typing indicator. Returns whether anything changed.
    pub fn expire_typing(&mut self, now: Instant) -> bool {
        let before: usize = self.typing.values().map(Vec::len).sum();
        for list in self.typing.values_mut() {
            list.retain(|(_, expiry)| *expiry > now);
        }
        self.typing.retain(|_, list| !list.is_empty());
        let after: usize = self.typing.values().map(Vec::len).sum();
        before != after
    }

    /// The DM conversation with `user`, if one exists.
    pub fn dm_with(&self, user: &str) -> Option<&ConvSummary> {
        self.conversations
            .iter()
            .find(|c| c.kind == crate::proto::ConvKind::Dm && c.title == user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_expires_five_seconds_after_last_refresh() {
        let t0 = Instant::now();
        let mut m = Model::default();
        m.set_typing("c", "alice", true, t0);
        assert_eq!(m.typists("c", t0 + Duration::from_secs(4)), vec!["alice"]);
        m.set_typing("c", "alice", true, t0 + Duration::from_secs(4));
        assert_eq!(m.typists("c", t0 + Duration::from_secs(8)), vec!["alice"]);
        assert!(m.typists("c", t0 + Duration::from_secs(9)).is_empty());
        assert!(m.expire_typing(t0 + Duration::from_secs(9)));
        assert!(m.typing.is_empty());
    }

    #[test]
    fn typing_stop_removes_at_once_and_keeps_order() {
        let t0 = Instant::now();
        let mut m = Model::default();
        m.set_typing("c", "alice", true, t0);
        m.set_typing("c", "bob", true, t0);
        assert_eq!(m.typists("c", t0), vec!["alice", "bob"]);
        m.set_typing("c", "alice", false, t0);
        assert_eq!(m.typists("c", t0), vec!["bob"]);
        assert!(!m.expire_typing(t0));
    }
}
