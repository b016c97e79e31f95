//! What the App renders of the engine's world: the engine's [`Update`]s
//! applied in order ([`Model::apply`]), plus the few pure queries the UI
//! needs (typing expiry, lookups); no I/O.

use crate::client::Update;
use crate::client::update::{DevicesView, IdentityNote, VerificationView};
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
    /// Each user's devices and safety number as last shown, by user.
    pub devices: HashMap<String, DevicesView>,
    /// Verifications as last reported, oldest first (by transaction id:
    /// one entry each).
    pub verifications: Vec<VerificationView>,
    /// Users whose identity key changed and is not accepted or verified
    /// since: what secret conversations with them warn about.
    pub identity_changes: BTreeMap<String, IdentityNote>,
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
            devices: HashMap::new(),
            verifications: Vec::new(),
            identity_changes: BTreeMap::new(),
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
            Update::Notice(text) | Update::VerificationFailed { why: text, .. } => {
                self.notice = Some(text)
            }
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
            | Update::SearchEnded { .. } => {}
            Update::Devices(view) => {
                self.devices.insert(view.user.clone(), view);
            }
            Update::Verification(view) => self.set_verification(view),
            Update::Identity { user, note } => match note {
                IdentityNote::Changed | IdentityNote::ChangedBlocking => {
                    self.identity_changes.insert(user, note);
                }
                IdentityNote::Accepted | IdentityNote::Verified => {
                    self.identity_changes.remove(&user);
                }
            },
        }
    }

    /// Records a verification's latest state; a new transaction goes last.
    fn set_verification(&mut self, view: VerificationView) {
        match self.verification_mut(&view.transaction_id) {
            Some(v) => *v = view,
            None => self.verifications.push(view),
        }
    }

    pub fn verification(&self, txn: &str) -> Option<&VerificationView> {
        self.verifications.iter().find(|v| v.transaction_id == txn)
    }

    pub fn verification_mut(&mut self, txn: &str) -> Option<&mut VerificationView> {
        self.verifications
            .iter_mut()
            .find(|v| v.transaction_id == txn)
    }

    /// The changed identity keys a conversation warns about: those of its
    /// listed members, if it is a secret one.
    pub fn identity_warnings(&self, conv: &str) -> Vec<(&str, IdentityNote)> {
        let Some(c) = self.conversation(conv).filter(|c| c.encrypted) else {
            return Vec::new();
        };
        self.identity_changes
            .iter()
            .filter(|(user, _)| c.members.iter().any(|m| m == *user))
            .map(|(user, note)| (user.as_str(), *note))
            .collect()
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

    /// The (plain) DM conversation with `user`, if one exists.
    pub fn dm_with(&self, user: &str) -> Option<&ConvSummary> {
        self.find_dm(user, false)
    }

    /// The secret DM conversation with `user`, if one exists.
    pub fn secret_dm_with(&self, user: &str) -> Option<&ConvSummary> {
        self.find_dm(user, true)
    }

    fn find_dm(&self, user: &str, encrypted: bool) -> Option<&ConvSummary> {
        self.conversations.iter().find(|c| {
            c.kind == crate::proto::ConvKind::Dm && c.title == user && c.encrypted == encrypted
        })
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

    fn secret_model() -> Model {
        let conv = |id: &str, encrypted: bool, members: &[&str]| ConvSummary {
            encrypted,
            ..crate::ui::fixtures::conv(id, crate::proto::ConvKind::Group, id, members)
        };
        Model {
            me: "dana".into(),
            conversations: vec![
                conv("secret-ops", true, &["bob", "dana", "erin"]),
                conv("secret-dm", true, &["alice", "dana"]),
                conv("plain-ops", false, &["bob", "dana"]),
            ],
            ..Model::default()
        }
    }

    fn identity(user: &str, note: IdentityNote) -> Update {
        Update::Identity {
            user: user.into(),
            note,
        }
    }

    #[test]
    fn identity_warnings_follow_the_notes_in_secret_conversations_only() {
        let t0 = Instant::now();
        let mut m = secret_model();
        m.apply(identity("bob", IdentityNote::ChangedBlocking), t0);
        m.apply(identity("alice", IdentityNote::Changed), t0);
        assert_eq!(
            m.identity_warnings("secret-ops"),
            vec![("bob", IdentityNote::ChangedBlocking)]
        );
        assert_eq!(
            m.identity_warnings("secret-dm"),
            vec![("alice", IdentityNote::Changed)]
        );
        assert!(m.identity_warnings("plain-ops").is_empty(), "not secret");
        assert!(m.identity_warnings("nowhere").is_empty());
        m.apply(identity("bob", IdentityNote::Accepted), t0);
        assert!(m.identity_warnings("secret-ops").is_empty());
        m.apply(identity("alice", IdentityNote::Verified), t0);
        assert!(m.identity_warnings("secret-dm").is_empty());
        assert!(m.identity_changes.is_empty());
    }

    fn verification(txn: &str, user: &str, emoji: usize) -> VerificationView {
        VerificationView {
            transaction_id: txn.into(),
            user: user.into(),
            device_id: "DEV".into(),
            state: "started".into(),
            emoji: (0..emoji).map(|i| format!("🐶 Dog{i}")).collect(),
            done: false,
            cancelled: None,
        }
    }

    #[test]
    fn verifications_are_kept_by_transaction_in_arrival_order() {
        let t0 = Instant::now();
        let mut m = secret_model();
        m.apply(Update::Verification(verification("t1", "bob", 0)), t0);
        m.apply(Update::Verification(verification("t2", "alice", 0)), t0);
        m.apply(Update::Verification(verification("t1", "bob", 7)), t0);
        let order: Vec<&str> = m
            .verifications
            .iter()
            .map(|v| v.transaction_id.as_str())
            .collect();
        assert_eq!(order, vec!["t1", "t2"]);
        assert_eq!(m.verification("t1").map(|v| v.emoji.len()), Some(7));
        let mut done = verification("t2", "alice", 7);
        done.done = true;
        m.apply(Update::Verification(done), t0);
        assert!(m.verification("t2").is_some_and(|v| v.done));
        assert!(m.verification("t3").is_none());
    }

    #[test]
    fn devices_are_kept_per_user() {
        let t0 = Instant::now();
        let mut m = Model::default();
        let view = |user: &str, trust: &str| DevicesView {
            user: user.into(),
            trust: trust.into(),
            ..DevicesView::default()
        };
        m.apply(Update::Devices(view("bob", "unverified")), t0);
        m.apply(Update::Devices(view("alice", "verified")), t0);
        m.apply(Update::Devices(view("bob", "verified")), t0);
        assert_eq!(m.devices.len(), 2);
        assert_eq!(m.devices["bob"].trust, "verified");
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
