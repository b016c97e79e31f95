//! The hub: what chatd keeps in memory about conversations and connections,
//! and fan-out.
//!
//! The writer reports each committed change here ([`CommitSink`]) in commit
//! order; the hub updates membership, last seqs and receipts, encodes each
//! push once and hands the same bytes to every recipient connection's bounded
//! queue without waiting. A connection whose queue is full is kicked (it will
//! resync when it reconnects) rather than ever making fan-out wait.
//!
//! With a bus (several nodes on one database), the hub also tells the bus
//! what other nodes must hear, applies committed events strictly in seq
//! order, and keeps other nodes' presence: see `cluster`.

mod cluster;
pub use cluster::Gap;
mod devices;
mod ids;
use ids::IdSet;

use super::bus::Link;
use super::queue::{Ended, PushQueue};
use crate::proto::{
    ChannelInfo, ConvKind, Conversation, Event, EventBody, INLINE_MEMBERS, MemberEntry, MemberRole,
    Millis, Presence, PresenceStatus, ProtoError, ReceiptPair, ReceiptPush, ServerFrame,
    TypingPush, UserEntry, now_millis,
};
use crate::store::log::{Blocks, CommitSink, Committed, Snapshot};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded frame, shared among recipients.
pub type Frame = Utf8Bytes;

/// A user's or a conversation's name as the hub keeps it: one allocation
/// per distinct name ([`State::name`]), shared by every map that holds it.
/// Every node keeps every conversation's members, so a name is held in
/// several places per membership; as a `String` each copy cost its own
/// heap block.
type Name = Arc<str>;

/// The hub's end of one connection.
#[derive(Clone)]
struct Conn {
    id: u64,
    queue: Arc<PushQueue>,
    /// SHA-256 of the session token it authenticated with.
    token: [u8; 32],
}

#[derive(Debug)]
struct ConvState {
    kind: ConvKind,
    name: Option<String>,
    members: BTreeSet<Name>,
    last_seq: u64,
    /// Read and delivered pointers; a member without one is at (0, 0).
    receipts: HashMap<Name, ReceiptPair>,
    /// Owner and admins.
    roles: BTreeMap<String, MemberRole>,
    /// A secret conversation.
    encrypted: bool,
}

struct Online {
    conns: Vec<Conn>,
    status: PresenceStatus,
}

#[derive(Default)]
struct State {
    convs: HashMap<Name, ConvState>,
    /// user → conversations they belong to, in id order (pages follow it).
    memberships: HashMap<Name, IdSet>,
    /// Channel name → id, in name order.
    channels: BTreeMap<String, String>,
    online: HashMap<String, Online>,
    /// Other nodes' connected users: node → user → status.
    remote: HashMap<String, HashMap<Name, PresenceStatus>>,
    /// Users whose offline from another node is held back (see
    /// `Hub::remote_presence`): the status their contacts last heard.
    held_offline: HashMap<String, PresenceStatus>,
    last_seen: HashMap<Name, Millis>,
    /// Every name the maps above hold, once.
    names: HashSet<Name>,
    /// (blocker, blocked): the blocked user does not see the blocker's
    /// presence.
    blocks: Blocks,
    /// Frames queued to connections, and frames refused by a full (or
    /// already kicked) queue: changed only under the lock, read without it.
    pushed: AtomicU64,
    dropped: AtomicU64,
}

/// Shared in-memory state. Locks are held briefly and never across `.await`.
pub struct Hub {
    state: Mutex<State>,
    next_conn: AtomicU64,
    max_conns_per_user: usize,
    /// Set by [`Hub::shutdown_all`]; a connection registering after it is
    /// told at once.
    shutting_down: AtomicBool,
    /// The bus to the other nodes, once attached.
    bus: OnceLock<Link>,
}

/// Registration of one connection; unregisters on drop.
/// A conversation a user may read, as [`Hub::readable`] lists it.
#[derive(Debug, Clone)]
pub struct Readable {
    pub id: String,
    pub kind: ConvKind,
    pub name: Option<String>,
    /// For a DM: the other member.
    pub dm_with: Option<String>,
}

pub struct Registration {
    hub: Arc<Hub>,
    user: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.user, self.id);
    }
}

/// What [`Hub::fanout_stats`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Users with at least one authenticated connection.
    pub users: usize,
    /// Authenticated connections.
    pub connections: usize,
    /// Frames waiting in all their push queues.
    pub queued: usize,
    /// Frames waiting in the fullest queue.
    pub largest_queue: usize,
    /// Frames ever queued to connections.
    pub pushed: u64,
    /// Frames refused because the connection's queue was full (it is then
    /// closed) or it had been closed so already.
    pub dropped: u64,
}

/// One conversation of a page, and the presence of the contacts it is the
/// first on the page to introduce.
pub struct PageItem {
    pub conversation: Conversation,
    pub presence: Vec<Presence>,
}

/// A page of the conversations a user belongs to.
pub struct ConvPage {
    pub items: Vec<PageItem>,
    /// Whether conversations follow the last item.
    pub more: bool,
}

impl ConvState {
    /// Whether the members are listed wherever it is described.
    fn small(&self) -> bool {
        self.members.len() <= INLINE_MEMBERS
    }
}

impl State {
    /// A conversation as `viewer` sees it, or as a push to every member
    /// (`None`): above [`INLINE_MEMBERS`] without the member list, and with
    /// only the viewer's own receipts and role.
    fn conversation(&self, id: &str, viewer: Option<&str>) -> Option<Conversation> {
        let c = self.convs.get(id)?;
        let (members, receipts, roles) = if c.small() {
            (
                c.members.iter().map(|m| m.to_string()).collect(),
                c.members
                    .iter()
                    .map(|m| {
                        (
                            m.to_string(),
                            c.receipts.get(m).copied().unwrap_or_default(),
                        )
                    })
                    .collect::<BTreeMap<_, _>>(),
                c.roles.clone(),
            )
        } else {
            let me = viewer.filter(|v| c.members.contains(*v));
            (
                Vec::new(),
                me.map(|v| {
                    let r = c.receipts.get(v).copied().unwrap_or_default();
                    (v.to_string(), r)
                })
                .into_iter()
                .collect(),
                me.and_then(|v| c.roles.get(v).map(|r| (v.to_string(), *r)))
                    .into_iter()
                    .collect(),
            )
        };
        Some(Conversation {
            id: id.to_string(),
            kind: c.kind,
            name: c.name.clone(),
            members,
            member_count: c.members.len() as u64,
            last_seq: c.last_seq,
            receipts,
            roles,
            encrypted: c.encrypted,
        })
    }

    /// Whether `viewer` may see `user`'s presence: `user` does not block
    /// them.
    fn sees(&self, viewer: &str, user: &str) -> bool {
        !self.blocks.blocks(user, viewer)
    }

    /// Whom `user`'s presence goes to: the members of their DMs and of
    /// conversations small enough to list their members. In larger ones
    /// presence is not pushed (a user coming online would otherwise wake
    /// thousands); `users` still answers it for anyone sharing one.
    fn contacts(&self, user: &str) -> BTreeSet<Name> {
        let mut out = BTreeSet::new();
        if let Some(convs) = self.memberships.get(user) {
            for id in convs {
                if let Some(c) = self.convs.get(id).filter(|c| c.small()) {
                    out.extend(c.members.iter().filter(|m| ***m != *user).cloned());
                }
            }
        }
        out
    }

    /// Whether `a` and `b` share a conversation.
    fn share(&self, a: &str, b: &str) -> bool {
        let (Some(x), Some(y)) = (self.memberships.get(a), self.memberships.get(b)) else {
            return false;
        };
        let (small, large) = if x.len() <= y.len() { (x, y) } else { (y, x) };
        small.iter().any(|id| large.contains(id))
    }

    /// A user's status across the nodes: online if a connection anywhere
    /// says so, away if one says that, else offline.
    fn status(&self, user: &str) -> PresenceStatus {
        let mut best = self
            .online
            .get(user)
            .map_or(PresenceStatus::Offline, |o| o.status);
        if best == PresenceStatus::Online {
            return best;
        }
        for users in self.remote.values() {
            match users.get(user) {
                Some(PresenceStatus::Online) => return PresenceStatus::Online,
                Some(PresenceStatus::Away) => best = PresenceStatus::Away,
                _ => {}
            }
        }
        best
    }

    fn presence(&self, user: &str) -> Presence {
        let status = self.status(user);
        Presence {
            user: user.to_string(),
            status,
            last_seen: if status == PresenceStatus::Offline {
                self.last_seen.get(user).copied()
            } else {
                Some(now_millis())
            },
        }
    }

    /// Queue `frame` for every connection of `user`, except `skip`.
    fn deliver(&self, user: &str, frame: &Frame, skip: Option<u64>) {
        let n = self.queue_to(user, frame, skip);
        self.count_pushed(n);
    }

    fn deliver_all<S: AsRef<str>>(&self, users: impl IntoIterator<Item = S>, frame: &Frame) {
        let mut n = 0;
        for u in users {
            n += self.queue_to(u.as_ref(), frame, None);
        }
        self.count_pushed(n);
    }

    /// [`State::deliver`] without counting: the frames queued.
    fn queue_to(&self, user: &str, frame: &Frame, skip: Option<u64>) -> u64 {
        let Some(online) = self.online.get(user) else {
            return 0;
        };
        let mut n = 0;
        for conn in &online.conns {
            if Some(conn.id) == skip {
                continue;
            }
            // A full queue kicks its connection; fan-out never waits.
            if conn.queue.push(frame.clone()) {
                n += 1;
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        n
    }

    /// Count pushes once per delivery rather than once per frame. Only
    /// the lock's holder writes, so a plain load and store suffice.
    fn count_pushed(&self, n: u64) {
        if n > 0 {
            let total = self.pushed.load(Ordering::Relaxed);
            self.pushed.store(total + n, Ordering::Relaxed);
        }
    }

    /// The conversation's name changed or it was created: keep the channel
    /// index.
    fn index_channel(&mut self, conv: &str, old: Option<&str>) {
        let Some(c) = self.convs.get(conv).filter(|c| c.kind == ConvKind::Channel) else {
            return;
        };
        let new = c.name.clone();
        if let Some(old) = old
            && self.channels.get(old).is_some_and(|id| id == conv)
        {
            self.channels.remove(old);
        }
        if let Some(new) = new {
            self.channels.insert(new, conv.to_string());
        }
    }

    /// The shared copy of `s`, made on first use.
    fn name(&mut self, s: &str) -> Name {
        if let Some(n) = self.names.get(s) {
            return n.clone();
        }
        let n: Name = Arc::from(s);
        self.names.insert(n.clone());
        n
    }

    /// Drop `s` from the names once no map holds it.
    fn forget(&mut self, s: &str) {
        if self.names.get(s).is_some_and(|n| Arc::strong_count(n) == 1) {
            self.names.remove(s);
        }
    }

    fn add_member(&mut self, conv: &str, user: &str) {
        let user = self.name(user);
        let conv = self.name(conv);
        if let Some(c) = self.convs.get_mut(&conv) {
            c.members.insert(user.clone());
        }
        self.memberships.entry(user).or_default().insert(&conv);
    }

    fn remove_member(&mut self, conv: &str, user: &str) {
        if let Some(c) = self.convs.get_mut(conv) {
            c.members.remove(user);
            c.receipts.remove(user);
        }
        if let Some(set) = self.memberships.get_mut(user) {
            set.remove(conv);
            if set.is_empty() {
                self.memberships.remove(user);
            }
        }
        self.forget(user);
    }
}

fn frame_of(text: String) -> Frame {
    Utf8Bytes::from(text)
}

impl Hub {
    /// Build the hub from the store's start-up snapshot.
    pub fn new(max_conns_per_user: usize) -> Hub {
        Hub {
            state: Mutex::new(State::default()),
            next_conn: AtomicU64::new(1),
            max_conns_per_user,
            shutting_down: AtomicBool::new(false),
            bus: OnceLock::new(),
        }
    }

    /// Load what the store holds (called once, before serving).
    pub fn load(&self, snapshot: Snapshot) {
        let mut st = self.lock();
        st.blocks = Blocks::from_pairs(snapshot.blocks);
        let secret: BTreeSet<String> = snapshot.encrypted.into_iter().collect();
        for rec in snapshot.conversations {
            let id = st.name(&rec.id);
            let mut members = BTreeSet::new();
            let mut receipts = HashMap::new();
            for (user, r) in rec.receipts {
                let user = st.name(&user);
                st.memberships.entry(user.clone()).or_default().insert(&id);
                if r != ReceiptPair::default() {
                    receipts.insert(user.clone(), r);
                }
                members.insert(user);
            }
            st.convs.insert(
                id.clone(),
                ConvState {
                    kind: rec.kind,
                    name: rec.name,
                    members,
                    last_seq: rec.last_seq,
                    receipts,
                    roles: rec.roles,
                    encrypted: secret.contains(&*id),
                },
            );
            st.index_channel(&id, None);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock must not take the server
        // down: the state is still consistent between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a connection of `user`. The first connection makes the user
    /// online for their contacts.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        queue: Arc<PushQueue>,
        token: [u8; 32],
    ) -> Result<Registration, ProtoError> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        if self.shutting_down.load(Ordering::Acquire) {
            queue.request_shutdown();
        }
        let before = st.status(user);
        let first = match st.online.get_mut(user) {
            Some(o) => {
                if o.conns.len() >= self.max_conns_per_user {
                    return Err(ProtoError::new(
                        crate::proto::ErrorCode::RateLimited,
                        "too many connections for this user; close one first",
                    ));
                }
                o.conns.push(Conn { id, queue, token });
                false
            }
            None => {
                st.online.insert(
                    user.to_string(),
                    Online {
                        conns: vec![Conn { id, queue, token }],
                        status: PresenceStatus::Online,
                    },
                );
                true
            }
        };
        if first {
            self.tell_presence(user, PresenceStatus::Online);
        }
        Self::presence_moved(&mut st, user, before);
        Ok(Registration {
            hub: self.clone(),
            user: user.to_string(),
            id,
        })
    }

    fn unregister(&self, user: &str, id: u64) {
        let mut st = self.lock();
        let before = st.status(user);
        let last = match st.online.get_mut(user) {
            Some(o) => {
                o.conns.retain(|c| c.id != id);
                o.conns.is_empty()
            }
            None => false,
        };
        if last {
            st.online.remove(user);
            let name = st.name(user);
            st.last_seen.insert(name, now_millis());
            self.tell_presence(user, PresenceStatus::Offline);
            Self::presence_moved(&mut st, user, before);
        }
    }

    /// Push `user`'s presence to their contacts if their status across the
    /// nodes is no longer `before`.
    fn presence_moved(st: &mut State, user: &str, before: PresenceStatus) {
        let now = st.status(user);
        if now == before {
            return;
        }
        if now == PresenceStatus::Offline {
            let name = st.name(user);
            st.last_seen.entry(name).or_insert_with(now_millis);
        }
        Self::broadcast_presence(st, user);
    }

    fn broadcast_presence(st: &State, user: &str) {
        let frame = frame_of(ServerFrame::Presence(st.presence(user)).encode());
        for c in st.contacts(user) {
            if st.sees(&c, user) {
                st.deliver(&c, &frame, None);
            }
        }
    }

    /// Set a user's status (online or away) for all their devices.
    pub fn set_status(&self, user: &str, status: PresenceStatus) {
        let mut st = self.lock();
        let before = st.status(user);
        let changed = match st.online.get_mut(user) {
            Some(o) if o.status != status => {
                o.status = status;
                true
            }
            _ => false,
        };
        if changed {
            self.tell_presence(user, status);
            Self::presence_moved(&mut st, user, before);
        }
    }

    /// `users` as `viewer` may see them: presence and last seen only for
    /// `viewer` and those who share a conversation with them.
    pub fn users_seen_by(&self, viewer: &str, users: &[String]) -> Vec<UserEntry> {
        let st = self.lock();
        users
            .iter()
            .map(|u| {
                if u == viewer || (st.share(viewer, u) && st.sees(viewer, u)) {
                    let p = st.presence(u);
                    UserEntry {
                        user: p.user,
                        status: Some(p.status),
                        last_seen: p.last_seen,
                        bot: false,
                    }
                } else {
                    UserEntry {
                        user: u.clone(),
                        status: None,
                        last_seen: None,
                        bot: false,
                    }
                }
            })
            .collect()
    }

    /// A page of the conversations `user` belongs to: at most `limit`, by
    /// id, after `after`. With `presence`, each item carries the presence
    /// of the contacts it is the first on the page to introduce (members of
    /// conversations small enough to list them). The copy is bounded
    /// (`limit` conversations of at most [`INLINE_MEMBERS`] members each)
    /// and nothing is encoded under the lock.
    pub fn conversations_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
        presence: bool,
    ) -> ConvPage {
        let st = self.lock();
        let Some(ids) = st.memberships.get(user) else {
            return ConvPage {
                items: Vec::new(),
                more: false,
            };
        };
        let mut range = ids.after(after);
        let mut items = Vec::with_capacity(limit.min(ids.len()));
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for id in range.by_ref().take(limit) {
            let Some(conversation) = st.conversation(id, Some(user)) else {
                continue;
            };
            let mut introduced = Vec::new();
            if presence && let Some(c) = st.convs.get(id).filter(|c| c.small()) {
                for m in &c.members {
                    if **m != *user && seen.insert(m) && st.sees(user, m) {
                        introduced.push(st.presence(m));
                    }
                }
            }
            items.push(PageItem {
                conversation,
                presence: introduced,
            });
        }
        let more = range.next().is_some();
        ConvPage { items, more }
    }

    /// The last seqs of those of `ids` that `user` belongs to.
    pub fn last_seqs<'a>(
        &self,
        user: &str,
        ids: impl IntoIterator<Item = &'a String>,
    ) -> Vec<(String, u64)> {
        let st = self.lock();
        let Some(mine) = st.memberships.get(user) else {
            return Vec::new();
        };
        ids.into_iter()
            .filter(|id| mine.contains(id))
            .filter_map(|id| st.convs.get(id.as_str()).map(|c| (id.clone(), c.last_seq)))
            .collect()
    }

    /// A page of a conversation's members, by name, after `after`, and
    /// whether more follow. Refused unless `viewer` is a member.
    pub fn members_page(
        &self,
        viewer: &str,
        conv: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<MemberEntry>, bool), ProtoError> {
        let st = self.lock();
        let c = match st.convs.get(conv) {
            None => return Err(ProtoError::not_found("no such conversation")),
            Some(c) if !c.members.contains(viewer) => {
                return Err(ProtoError::forbidden(
                    "you are not a member of this conversation",
                ));
            }
            Some(c) => c,
        };
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = c.members.range::<str, _>((lower, Bound::Unbounded));
        let page = range
            .by_ref()
            .take(limit)
            .map(|m| {
                let r = c.receipts.get(m).copied().unwrap_or_default();
                MemberEntry {
                    user: m.to_string(),
                    role: c.roles.get(&**m).copied().unwrap_or_default(),
                    delivered: r.delivered,
                    read: r.read,
                    bot: false,
                }
            })
            .collect();
        Ok((page, range.next().is_some()))
    }

    /// A conversation as `viewer` sees it.
    pub fn conversation(&self, id: &str, viewer: &str) -> Option<Conversation> {
        self.lock().conversation(id, Some(viewer))
    }

    /// The conversations `user` belongs to now, as a search resolves its
    /// `in:` filter and limits its results to them.
    pub fn readable(&self, user: &str) -> Vec<Readable> {
        let st = self.lock();
        let Some(ids) = st.memberships.get(user) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| {
                let c = st.convs.get(id)?;
                Some(Readable {
                    id: id.to_string(),
                    kind: c.kind,
                    name: c.name.clone(),
                    dm_with: (c.kind == ConvKind::Dm)
                        .then(|| c.members.iter().find(|m| ***m != *user))
                        .flatten()
                        .map(|m| m.to_string()),
                })
            })
            .collect()
    }

    /// Refuse unless `user` belongs to conversation `id`.
    pub fn check_member(&self, user: &str, id: &str) -> Result<u64, ProtoError> {
        let st = self.lock();
        match st.convs.get(id) {
            None => Err(ProtoError::not_found("no such conversation")),
            Some(c) if c.members.contains(user) => Ok(c.last_seq),
            Some(_) => Err(ProtoError::forbidden(
                "you are not a member of this conversation",
            )),
        }
    }

    /// A page of the public channels, by name, after `after`; and whether
    /// more follow.
    pub fn channels(&self, after: Option<&str>, limit: usize) -> (Vec<ChannelInfo>, bool) {
        let st = self.lock();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = st.channels.range::<str, _>((lower, Bound::Unbounded));
        let page = range
            .by_ref()
            .take(limit)
            .filter_map(|(name, id)| {
                st.convs.get(id.as_str()).map(|c| ChannelInfo {
                    id: id.clone(),
                    name: name.clone(),
                    members: c.members.len() as u64,
                    last_seq: c.last_seq,
                })
            })
            .collect();
        (page, range.next().is_some())
    }

    /// Relay a typing signal to the other members of a conversation.
    pub fn typing(&self, user: &str, conv: &str, active: bool) -> Result<(), ProtoError> {
        let st = self.lock();
        let c = match st.convs.get(conv) {
            None => return Err(ProtoError::not_found("no such conversation")),
            Some(c) if !c.members.contains(user) => {
                return Err(ProtoError::forbidden(
                    "you are not a member of this conversation",
                ));
            }
            Some(c) => c,
        };
        let frame = frame_of(
            ServerFrame::Typing(TypingPush {
                conversation_id: conv.to_string(),
                user: user.to_string(),
                active,
            })
            .encode(),
        );
        st.deliver_all(c.members.iter().filter(|m| ***m != *user), &frame);
        if let Some(bus) = self.bus.get() {
            bus.typing(conv, user, active);
        }
        Ok(())
    }

    /// Close the connections of `user` that use one of the sessions
    /// `tokens` (SHA-256 digests), or all of them (`None`).
    pub fn end_sessions(&self, user: &str, tokens: Option<&[[u8; 32]]>, why: Ended) {
        if let Some(bus) = self.bus.get() {
            bus.end(user, tokens, why);
        }
        self.end_here(user, tokens, why);
    }

    /// [`Hub::end_sessions`] on this node only.
    fn end_here(&self, user: &str, tokens: Option<&[[u8; 32]]>, why: Ended) {
        let st = self.lock();
        if let Some(online) = st.online.get(user) {
            for conn in &online.conns {
                if tokens.is_none_or(|t| t.contains(&conn.token)) {
                    conn.queue.end(why);
                }
            }
        }
    }

    /// Whether `user` has a connection (on any node).
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().status(user) != PresenceStatus::Offline
    }

    /// Tell every authenticated connection, and every one that registers
    /// from now on, that the server is shutting down.
    pub fn shutdown_all(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let st = self.lock();
        for online in st.online.values() {
            for conn in &online.conns {
                conn.queue.request_shutdown();
            }
        }
    }

    /// Ask the connections whose id is `phase` modulo `phases` to ping
    /// their peers.
    pub fn request_pings(&self, phase: u64, phases: u64) {
        let st = self.lock();
        for online in st.online.values() {
            for conn in &online.conns {
                if conn.id % phases.max(1) == phase {
                    conn.queue.request_ping();
                }
            }
        }
    }

    /// Number of users with at least one connection.
    pub fn online_users(&self) -> usize {
        self.lock().online.len()
    }

    /// What fan-out holds and has done, for the metrics: one pass over the
    /// authenticated connections under the lock, reading each queue's
    /// length without locking it.
    pub fn fanout_stats(&self) -> FanoutStats {
        let st = self.lock();
        let mut out = FanoutStats {
            users: st.online.len(),
            pushed: st.pushed.load(Ordering::Relaxed),
            dropped: st.dropped.load(Ordering::Relaxed),
            ..FanoutStats::default()
        };
        for online in st.online.values() {
            for conn in &online.conns {
                let queued = conn.queue.queued();
                out.connections += 1;
                out.queued += queued;
                out.largest_queue = out.largest_queue.max(queued);
            }
        }
        out
    }

    fn apply_event(st: &mut State, ev: &Event, push: &str) {
        let id = ev.conversation_id.as_str();
        let mut extra: Vec<String> = Vec::new();
        let mut changed = false;
        match &ev.body {
            EventBody::Create { members, .. } | EventBody::Join { members } => {
                for m in members {
                    st.add_member(id, m);
                }
                if let (EventBody::Create { .. }, Some(c)) = (&ev.body, st.convs.get_mut(id))
                    && c.kind != ConvKind::Dm
                {
                    c.roles.insert(ev.sender.clone(), MemberRole::Owner);
                }
                changed = true;
            }
            EventBody::Leave { members } | EventBody::Remove { members } => {
                for m in members {
                    st.remove_member(id, m);
                    if let Some(c) = st.convs.get_mut(id) {
                        c.roles.remove(m);
                    }
                }
                extra.extend(members.iter().cloned());
                changed = true;
            }
            EventBody::Role { user, role } => {
                if let Some(c) = st.convs.get_mut(id) {
                    if *role == MemberRole::Owner {
                        // The previous owner becomes an admin.
                        for r in c.roles.values_mut() {
                            if *r == MemberRole::Owner {
                                *r = MemberRole::Admin;
                            }
                        }
                    }
                    if role.manages() {
                        c.roles.insert(user.clone(), *role);
                    } else {
                        c.roles.remove(user);
                    }
                }
                changed = true;
            }
            EventBody::Rename { name } => {
                if let Some(c) = st.convs.get_mut(id) {
                    let old = c.name.replace(name.clone());
                    st.index_channel(id, old.as_deref());
                }
                changed = true;
            }
            _ => {}
        }
        let Some(c) = st.convs.get_mut(id) else {
            return;
        };
        c.last_seq = c.last_seq.max(ev.seq);
        let st = &*st;
        let Some(c) = st.convs.get(id) else {
            return;
        };
        let frame = frame_of(push.to_string());
        let to = || {
            c.members
                .iter()
                .map(|m| &**m)
                .chain(extra.iter().map(String::as_str))
        };
        st.deliver_all(to(), &frame);
        // Members apply the event itself to what they hold; the description
        // that follows is bounded (no member list above INLINE_MEMBERS).
        if changed && let Some(conv) = st.conversation(id, None) {
            let frame = frame_of(ServerFrame::Conversation { conversation: conv }.encode());
            st.deliver_all(to(), &frame);
        }
    }
}

impl CommitSink for Hub {
    fn committed(&self, changes: &[Committed]) {
        match self.bus.get() {
            None => {
                self.apply(changes, false);
            }
            Some(bus) => {
                let gaps = self.apply(changes, true);
                bus.committed(changes, gaps);
            }
        }
    }
}

impl Hub {
    /// Apply committed changes. `in_order` (with a bus, where changes come
    /// from several nodes): an event is applied only right after its
    /// predecessor; one seen before (a duplicate) is skipped, one ahead of
    /// a missing event is left for the store to fill and reported as a
    /// [`Gap`]; receipts only move forward. Without it (one node, one
    /// writer) everything is applied as it comes, in commit order.
    pub(crate) fn apply(&self, changes: &[Committed], in_order: bool) -> Vec<Gap> {
        let mut gaps = Vec::new();
        let mut st = self.lock();
        for change in changes {
            match change {
                Committed::Created { id, kind, name } => {
                    if st.convs.contains_key(id.as_str()) {
                        continue;
                    }
                    let key = st.name(id);
                    st.convs.insert(
                        key,
                        ConvState {
                            kind: *kind,
                            name: name.clone(),
                            members: BTreeSet::new(),
                            last_seq: 0,
                            receipts: HashMap::new(),
                            roles: BTreeMap::new(),
                            encrypted: false,
                        },
                    );
                    st.index_channel(id, None);
                }
                Committed::Encrypted(id) => {
                    if let Some(c) = st.convs.get_mut(id.as_str()) {
                        c.encrypted = true;
                    }
                }
                Committed::ToDevice { user, token, push } => st.to_device(user, token, push),
                Committed::Devices {
                    user,
                    identity_changed,
                } => st.devices_changed(user, *identity_changed),
                Committed::Event(ev, push) => {
                    if in_order {
                        match st
                            .convs
                            .get(ev.conversation_id.as_str())
                            .map(|c| c.last_seq)
                        {
                            None => {
                                gaps.push(Gap::Unknown);
                                continue;
                            }
                            Some(last) if ev.seq <= last => continue,
                            Some(last) if ev.seq > last + 1 => {
                                gaps.push(Gap::Behind {
                                    conversation: ev.conversation_id.clone(),
                                    upto: ev.seq,
                                });
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    Self::apply_event(&mut st, ev, push)
                }
                Committed::Receipt {
                    conversation_id,
                    user,
                    receipt,
                } => {
                    let Some(c) = st.convs.get(conversation_id.as_str()) else {
                        continue;
                    };
                    let mut receipt = *receipt;
                    if in_order {
                        let old = c.receipts.get(user.as_str()).copied().unwrap_or_default();
                        receipt.delivered = receipt.delivered.max(old.delivered);
                        receipt.read = receipt.read.max(old.read);
                        if receipt == old && c.receipts.contains_key(user.as_str()) {
                            continue;
                        }
                    }
                    let name = st.name(user);
                    if let Some(c) = st.convs.get_mut(conversation_id.as_str()) {
                        c.receipts.insert(name, receipt);
                    }
                    let frame = frame_of(
                        ServerFrame::Receipt(ReceiptPush {
                            conversation_id: conversation_id.clone(),
                            user: user.clone(),
                            delivered: receipt.delivered,
                            read: receipt.read,
                        })
                        .encode(),
                    );
                    if let Some(c) = st.convs.get(conversation_id.as_str()) {
                        st.deliver_all(&c.members, &frame);
                    }
                }
                Committed::User(_) => {}
                Committed::Block {
                    blocker,
                    blocked,
                    on,
                } => {
                    st.blocks.set(blocker, blocked, *on);
                    // The blocked user's view of the blocker's presence
                    // changes now: offline with no last seen, or the truth.
                    if st.contacts(blocker).contains(blocked.as_str()) {
                        let presence = if *on {
                            Presence {
                                user: blocker.clone(),
                                status: PresenceStatus::Offline,
                                last_seen: None,
                            }
                        } else {
                            st.presence(blocker)
                        };
                        let frame = frame_of(ServerFrame::Presence(presence).encode());
                        st.deliver(blocked, &frame, None);
                    }
                }
            }
        }
        gaps
    }
}

/// The receipt pointers of `user` in conversation `id`.
pub fn receipt_of(hub: &Hub, user: &str, id: &str) -> ReceiptPair {
    let st = hub.lock();
    st.convs
        .get(id)
        .and_then(|c| c.receipts.get(user).copied())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ReceiptPair;
    use crate::store::log::ConvRecord;

    fn record(id: &str, members: &[(&str, u64)]) -> ConvRecord {
        ConvRecord {
            id: id.into(),
            kind: ConvKind::Group,
            name: None,
            last_seq: 3,
            receipts: members
                .iter()
                .map(|(m, read)| {
                    let r = ReceiptPair {
                        delivered: *read,
                        read: *read,
                    };
                    (m.to_string(), r)
                })
                .collect(),
            roles: BTreeMap::new(),
        }
    }

    #[test]
    fn a_name_is_kept_once_however_many_places_hold_it() {
        let hub = Hub::new(8);
        hub.load(Snapshot {
            conversations: vec![
                record("c1", &[("alice", 2), ("bob", 0)]),
                record("c2", &[("alice", 0), ("carol", 1)]),
            ],
            ..Snapshot::default()
        });
        let st = hub.lock();
        // alice, bob, carol, c1, c2.
        assert_eq!(st.names.len(), 5);
        let alice = st.names.get("alice").unwrap();
        for c in st.convs.values() {
            let m = c.members.get("alice").unwrap();
            assert!(Arc::ptr_eq(m, alice));
        }
        let (key, _) = st.memberships.get_key_value("alice").unwrap();
        assert!(Arc::ptr_eq(key, alice));
        for id in st.memberships["alice"].iter() {
            let (conv, _) = st.convs.get_key_value(&**id).unwrap();
            assert!(Arc::ptr_eq(id, conv));
        }
        // A receipt at (0, 0) is not kept, and reads as (0, 0).
        assert_eq!(st.convs["c1"].receipts.len(), 1);
        drop(st);
        assert_eq!(receipt_of(&hub, "bob", "c1"), ReceiptPair::default());
        assert_eq!(receipt_of(&hub, "alice", "c1").read, 2);
    }

    #[test]
    fn a_name_no_map_holds_is_forgotten() {
        let hub = Hub::new(8);
        hub.load(Snapshot {
            conversations: vec![record("c1", &[("alice", 1), ("bob", 0)])],
            ..Snapshot::default()
        });
        let mut st = hub.lock();
        st.remove_member("c1", "bob");
        assert!(!st.names.contains("bob"));
        assert!(!st.memberships.contains_key("bob"));
        assert!(st.names.contains("alice"));
        st.remove_member("c1", "alice");
        assert!(!st.names.contains("alice"));
        assert!(st.names.contains("c1"));
    }
}
