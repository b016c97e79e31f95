//! The hub among several nodes: what it tells the bus, and what it takes
//! from it (other nodes' events, presence, typing and revocations) and from
//! the store when the bus lost something.
//!
//! With a bus, events reach a node from its own writer and from other
//! nodes in no fixed order. The hub applies each conversation's events
//! strictly in seq order (membership depends on it): an event ahead of a
//! missing one waits for the store ([`Gap`]), which the bus reads and
//! replays here in order. A node's presence is its own connections plus
//! what each other node says of its users.

use super::{ConvState, Hub, Name, State};
use crate::proto::{
    Event, Millis, PresenceStatus, ReceiptPush, ServerFrame, TypingPush, now_millis,
};
use crate::server::bus::Link;
use crate::server::queue::Ended;
use crate::store::log::{Blocks, Committed, ConvRecord, Snapshot};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Events the hub could not apply yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// Events of `conversation` up to `upto` exist (in the store) but this
    /// node lacks some before them: read them from the store.
    Behind { conversation: String, upto: u64 },
    /// An event of a conversation this node does not know: reconcile
    /// with the store.
    Unknown,
}

impl Hub {
    /// Attach the bus; from now on changes are applied in order and told
    /// to other nodes. Once only: `false` if one was attached already.
    pub(crate) fn attach(&self, link: Link) -> bool {
        self.bus.set(link).is_ok()
    }

    /// Tell other nodes `user`'s status on this node (called under the
    /// lock, so that they hear changes in the order they happened).
    pub(super) fn tell_presence(&self, user: &str, status: PresenceStatus) {
        if let Some(bus) = self.bus.get() {
            bus.presence(user, status);
        }
    }

    /// The last seq applied here in conversation `id`, if it is known.
    pub(crate) fn last_seq(&self, id: &str) -> Option<u64> {
        self.lock().convs.get(id).map(|c| c.last_seq)
    }

    /// Apply events read from the store, in order (their push frames are
    /// encoded here: they did not come with one).
    pub(crate) fn replay(&self, events: &[Event]) -> Vec<Gap> {
        let changes: Vec<Committed> = events
            .iter()
            .map(|ev| {
                let push = ServerFrame::Event(ev.clone()).encode();
                Committed::Event(Arc::new(ev.clone()), push)
            })
            .collect();
        self.apply(&changes, true)
    }

    /// Bring the hub up to the store's `snap`: new conversations, and
    /// events beyond what the hub holds, come back as [`Gap`]s to replay
    /// (at most `replay_max` events each); a conversation further behind
    /// takes the store's members, roles and receipts as they are, and its
    /// members are sent its description (their clients then fetch what
    /// they miss). Where the hub is at the snapshot's seq, membership is
    /// checked against it and receipts moved forward.
    pub(crate) fn reconcile(&self, snap: Snapshot, replay_max: u64) -> Vec<Gap> {
        let mut gaps = Vec::new();
        let mut st = self.lock();
        st.blocks = Blocks::from_pairs(snap.blocks);
        let secret: BTreeSet<String> = snap.encrypted.into_iter().collect();
        for rec in snap.conversations {
            // A conversation is secret from its creation on: one missed
            // on the bus is marked here.
            if secret.contains(&rec.id)
                && let Some(c) = st.convs.get_mut(rec.id.as_str())
            {
                c.encrypted = true;
            }
            if !st.convs.contains_key(rec.id.as_str()) {
                let key = st.name(&rec.id);
                st.convs.insert(
                    key,
                    ConvState {
                        kind: rec.kind,
                        name: rec.name.clone(),
                        members: BTreeSet::new(),
                        last_seq: 0,
                        receipts: HashMap::new(),
                        roles: BTreeMap::new(),
                        encrypted: secret.contains(&rec.id),
                    },
                );
                st.index_channel(&rec.id, None);
            }
            let last = st.convs.get(rec.id.as_str()).map_or(0, |c| c.last_seq);
            if rec.last_seq > last && rec.last_seq - last <= replay_max {
                gaps.push(Gap::Behind {
                    conversation: rec.id,
                    upto: rec.last_seq,
                });
            } else if rec.last_seq >= last {
                let jump = rec.last_seq > last;
                adopt(&mut st, rec, jump);
            }
            // Otherwise the hub is ahead of the snapshot: it knows better.
        }
        gaps
    }

    /// Another node says `user` is `status` there. When that leaves them
    /// offline everywhere, contacts are not told yet: the answer is the
    /// status they had, for [`Hub::settle_presence`] after a grace period.
    /// A device moving between nodes sends an offline from one node and an
    /// online from another, which may arrive in either order; the grace
    /// keeps contacts from seeing it blink offline.
    pub(crate) fn remote_presence(
        &self,
        node: &str,
        user: &str,
        status: PresenceStatus,
        at: Millis,
    ) -> Option<PresenceStatus> {
        let mut st = self.lock();
        // What contacts last heard: while an offline is held back, the
        // status before it.
        let before = match st.held_offline.remove(user) {
            Some(heard) => heard,
            None => st.status(user),
        };
        if status == PresenceStatus::Offline {
            if let Some(users) = st.remote.get_mut(node) {
                users.remove(user);
                if users.is_empty() {
                    st.remote.remove(node);
                }
            }
            let name = st.name(user);
            let seen = st.last_seen.entry(name).or_insert(at);
            *seen = (*seen).max(at);
        } else {
            let name = st.name(user);
            st.remote
                .entry(node.to_string())
                .or_default()
                .insert(name, status);
        }
        if st.status(user) == PresenceStatus::Offline && before != PresenceStatus::Offline {
            st.held_offline.insert(user.to_string(), before);
            return Some(before);
        }
        Self::presence_moved(&mut st, user, before);
        None
    }

    /// Tell contacts of a change [`Hub::remote_presence`] held back, if it
    /// still stands (`before`: the status they last heard).
    pub(crate) fn settle_presence(&self, user: &str, before: PresenceStatus) {
        let mut st = self.lock();
        // A later word from any node has taken the held one over.
        if st.held_offline.remove(user).is_some() {
            Self::presence_moved(&mut st, user, before);
        }
    }

    /// Everyone connected to `node`, as read from Redis: replaces what the
    /// hub held for it, pushing the differences.
    pub(crate) fn remote_node(&self, node: &str, users: HashMap<String, PresenceStatus>) {
        let mut st = self.lock();
        let users: HashMap<Name, PresenceStatus> =
            users.into_iter().map(|(u, s)| (st.name(&u), s)).collect();
        let old = st.remote.get(node).cloned().unwrap_or_default();
        let touched: BTreeSet<&Name> = old
            .keys()
            .chain(users.keys())
            .filter(|u| old.get(*u) != users.get(*u))
            .collect();
        // The status each had before the change.
        let touched: Vec<(Name, PresenceStatus)> = touched
            .into_iter()
            .map(|u| (u.clone(), st.status(u)))
            .collect();
        if users.is_empty() {
            st.remote.remove(node);
        } else {
            st.remote.insert(node.to_string(), users);
        }
        let now = now_millis();
        for (user, before) in touched {
            if st.status(&user) == PresenceStatus::Offline {
                st.last_seen.insert(user.clone(), now);
            }
            Self::presence_moved(&mut st, &user, before);
        }
    }

    /// `node` stopped renewing its heartbeat: its users are offline there.
    pub(crate) fn remote_node_gone(&self, node: &str) {
        self.remote_node(node, HashMap::new());
    }

    /// The other nodes the hub holds users of.
    pub(crate) fn remote_nodes(&self) -> Vec<String> {
        self.lock().remote.keys().cloned().collect()
    }

    /// The users connected to this node, with their status here.
    pub(crate) fn local_presence(&self) -> Vec<(String, PresenceStatus)> {
        self.lock()
            .online
            .iter()
            .map(|(u, o)| (u.clone(), o.status))
            .collect()
    }

    /// A typing signal from another node: to this node's members of the
    /// conversation.
    pub(crate) fn typing_from(&self, conv: &str, user: &str, active: bool) {
        let st = self.lock();
        let Some(c) = st.convs.get(conv) else {
            return;
        };
        let frame = super::frame_of(
            ServerFrame::Typing(TypingPush {
                conversation_id: conv.to_string(),
                user: user.to_string(),
                active,
            })
            .encode(),
        );
        st.deliver_all(c.members.iter().filter(|m| ***m != *user), &frame);
    }

    /// A revocation from another node: close the connections here.
    pub(crate) fn end_from(&self, user: &str, tokens: Option<&[[u8; 32]]>, why: Ended) {
        self.end_here(user, tokens, why);
    }
}

/// Take the store's view of a conversation: its name, members, roles,
/// receipts (forward only) and, with `jump`, its last seq. Members hear of
/// what changed.
fn adopt(st: &mut State, rec: ConvRecord, jump: bool) {
    if !st.convs.contains_key(rec.id.as_str()) {
        return;
    }
    let id = st.name(&rec.id);
    let members: BTreeSet<Name> = rec.receipts.keys().map(|u| st.name(u)).collect();
    let Some(c) = st.convs.get_mut(&id) else {
        return;
    };
    let old_members = std::mem::replace(&mut c.members, members.clone());
    let old_name = std::mem::replace(&mut c.name, rec.name);
    let described = jump || old_members != members || c.roles != rec.roles || old_name != c.name;
    c.roles = rec.roles;
    if jump {
        c.last_seq = rec.last_seq;
    }
    c.receipts.retain(|u, _| members.contains(u));
    let mut moved = Vec::new();
    for (user, r) in rec.receipts {
        let Some(name) = members.get(user.as_str()) else {
            continue;
        };
        // A member without a receipt is at (0, 0).
        let old = c.receipts.get(name).copied().unwrap_or_default();
        let mut new = old;
        new.delivered = new.delivered.max(r.delivered);
        new.read = new.read.max(r.read);
        if old != new {
            c.receipts.insert(name.clone(), new);
            moved.push((user, new));
        }
    }
    for gone in old_members.difference(&members) {
        if let Some(set) = st.memberships.get_mut(gone) {
            set.remove(&id);
            if set.is_empty() {
                st.memberships.remove(gone);
            }
        }
    }
    for new in members.difference(&old_members) {
        st.memberships.entry(new.clone()).or_default().insert(&id);
    }
    st.index_channel(&id, old_name.as_deref());
    let gone: Vec<String> = old_members
        .difference(&members)
        .map(|n| n.to_string())
        .collect();
    let everyone: BTreeSet<&Name> = old_members.iter().chain(members.iter()).collect();
    if described {
        if let Some(conversation) = st.conversation(&id, None) {
            let frame = super::frame_of(ServerFrame::Conversation { conversation }.encode());
            st.deliver_all(everyone, &frame);
        }
    } else {
        for (user, r) in moved {
            let frame = super::frame_of(
                ServerFrame::Receipt(ReceiptPush {
                    conversation_id: id.to_string(),
                    user,
                    delivered: r.delivered,
                    read: r.read,
                })
                .encode(),
            );
            st.deliver_all(&members, &frame);
        }
    }
    drop(old_members);
    for user in gone {
        st.forget(&user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ConvKind, EventBody, ReceiptPair};
    use crate::server::queue::PushQueue;

    fn created(conv: &str) -> Committed {
        Committed::Created {
            id: conv.into(),
            kind: ConvKind::Group,
            name: None,
        }
    }

    fn event(conv: &str, seq: u64, body: EventBody) -> Committed {
        let ev = Event {
            conversation_id: conv.into(),
            seq,
            ts: 0,
            sender: "alice".into(),
            client_msg_id: None,
            eid: None,
            bot: false,
            body,
        };
        let push = ServerFrame::Event(ev.clone()).encode();
        Committed::Event(Arc::new(ev), push)
    }

    fn message(conv: &str, seq: u64) -> Committed {
        event(
            conv,
            seq,
            EventBody::Message {
                body: format!("m{seq}"),
                reply_to: None,
                encrypted: None,
            },
        )
    }

    fn group(hub: &Hub, conv: &str) {
        let create = event(
            conv,
            1,
            EventBody::Create {
                name: None,
                members: vec!["alice".into(), "bob".into()],
            },
        );
        assert!(hub.apply(&[created(conv), create], true).is_empty());
    }

    fn frames(q: &PushQueue) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        q.drain(usize::MAX, |f| {
            out.push(serde_json::from_str(f.as_str()).unwrap())
        });
        out
    }

    fn seqs(q: &PushQueue) -> Vec<u64> {
        frames(q)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Event(ev) => Some(ev.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn events_apply_in_seq_order_and_gaps_are_reported() {
        let hub = Arc::new(Hub::new(8));
        let bob = Arc::new(PushQueue::new(64));
        let _reg = hub.register("bob", bob.clone(), [2; 32]).unwrap();
        group(&hub, "c");
        assert!(hub.apply(&[message("c", 2)], true).is_empty());
        // A duplicate is skipped.
        assert!(hub.apply(&[message("c", 2)], true).is_empty());
        // One ahead of a missing event waits for the store.
        assert_eq!(
            hub.apply(&[message("c", 4)], true),
            vec![Gap::Behind {
                conversation: "c".into(),
                upto: 4
            }]
        );
        assert_eq!(hub.last_seq("c"), Some(2));
        assert_eq!(hub.apply(&[message("x", 3)], true), vec![Gap::Unknown]);
        let from_store: Vec<Event> = [message("c", 3), message("c", 4)]
            .into_iter()
            .map(|c| match c {
                Committed::Event(ev, _) => (*ev).clone(),
                _ => unreachable!(),
            })
            .collect();
        assert!(hub.replay(&from_store).is_empty());
        assert_eq!(hub.last_seq("c"), Some(4));
        assert_eq!(seqs(&bob), vec![1, 2, 3, 4]);
    }

    #[test]
    fn without_a_bus_events_apply_as_they_come() {
        let hub = Hub::new(8);
        group(&hub, "c");
        assert!(hub.apply(&[message("c", 5)], false).is_empty());
        assert_eq!(hub.last_seq("c"), Some(5));
    }

    #[test]
    fn receipts_from_other_nodes_only_move_forward() {
        let hub = Hub::new(8);
        group(&hub, "c");
        let receipt = |d, r| Committed::Receipt {
            conversation_id: "c".into(),
            user: "bob".into(),
            receipt: ReceiptPair {
                delivered: d,
                read: r,
            },
        };
        hub.apply(&[receipt(5, 3)], true);
        hub.apply(&[receipt(4, 4)], true);
        assert_eq!(
            super::super::receipt_of(&hub, "bob", "c"),
            ReceiptPair {
                delivered: 5,
                read: 4
            }
        );
    }

    #[test]
    fn reconcile_replays_a_short_gap_and_jumps_a_long_one() {
        let hub = Arc::new(Hub::new(8));
        let carol = Arc::new(PushQueue::new(64));
        let _reg = hub.register("carol", carol.clone(), [3; 32]).unwrap();
        group(&hub, "c");
        let record = |id: &str, last_seq, members: &[&str]| ConvRecord {
            id: id.into(),
            kind: ConvKind::Group,
            name: Some(format!("{id} name")),
            last_seq,
            receipts: members
                .iter()
                .map(|m| (m.to_string(), ReceiptPair::default()))
                .collect(),
            roles: BTreeMap::new(),
        };
        let snap = Snapshot {
            conversations: vec![
                record("c", 5, &["alice", "bob"]),
                record("far", 5000, &["alice", "carol"]),
            ],
            ..Snapshot::default()
        };
        let gaps = hub.reconcile(snap, 1024);
        assert_eq!(
            gaps,
            vec![Gap::Behind {
                conversation: "c".into(),
                upto: 5
            }]
        );
        // The far one took the store's state, and carol heard of it.
        assert_eq!(hub.last_seq("far"), Some(5000));
        assert!(hub.check_member("carol", "far").is_ok());
        assert!(frames(&carol).iter().any(|f| matches!(
            f,
            ServerFrame::Conversation { conversation } if conversation.id == "far"
        )));
        // Where the hub is at the store's seq, membership follows the store.
        let snap = Snapshot {
            conversations: vec![record("far", 5000, &["alice"])],
            ..Snapshot::default()
        };
        assert!(hub.reconcile(snap, 1024).is_empty());
        assert!(hub.check_member("carol", "far").is_err());
    }

    #[test]
    fn presence_is_the_best_of_every_node() {
        let hub = Arc::new(Hub::new(8));
        let alice = Arc::new(PushQueue::new(64));
        let _reg = hub.register("alice", alice.clone(), [1; 32]).unwrap();
        group(&hub, "c");
        frames(&alice);
        let statuses = |q: &PushQueue| -> Vec<(PresenceStatus, Option<Millis>)> {
            frames(q)
                .into_iter()
                .filter_map(|f| match f {
                    ServerFrame::Presence(p) if p.user == "bob" => Some((p.status, p.last_seen)),
                    _ => None,
                })
                .collect()
        };
        hub.remote_presence("n2", "bob", PresenceStatus::Online, 10);
        hub.remote_presence("n3", "bob", PresenceStatus::Away, 11);
        assert_eq!(statuses(&alice).len(), 1);
        assert!(hub.is_online("bob"));
        hub.remote_node_gone("n2");
        assert_eq!(statuses(&alice)[0].0, PresenceStatus::Away);
        // The last node's offline is held back until it settles...
        let held = hub.remote_presence("n3", "bob", PresenceStatus::Offline, 42);
        assert_eq!(held, Some(PresenceStatus::Away));
        assert!(statuses(&alice).is_empty());
        assert!(!hub.is_online("bob"));
        assert!(hub.remote_nodes().is_empty());
        hub.settle_presence("bob", PresenceStatus::Away);
        assert_eq!(statuses(&alice), vec![(PresenceStatus::Offline, Some(42))]);
    }

    #[test]
    fn a_device_moving_between_nodes_does_not_blink_offline() {
        let hub = Arc::new(Hub::new(8));
        let alice = Arc::new(PushQueue::new(64));
        let _reg = hub.register("alice", alice.clone(), [1; 32]).unwrap();
        group(&hub, "c");
        hub.remote_presence("n1", "bob", PresenceStatus::Online, 10);
        frames(&alice);
        // n1's offline arrives before n2's online.
        let held = hub.remote_presence("n1", "bob", PresenceStatus::Offline, 20);
        hub.remote_presence("n2", "bob", PresenceStatus::Online, 21);
        hub.settle_presence("bob", held.expect("held back"));
        let bob: Vec<ServerFrame> = frames(&alice)
            .into_iter()
            .filter(|f| matches!(f, ServerFrame::Presence(p) if p.user == "bob"))
            .collect();
        assert!(bob.is_empty(), "contacts saw {bob:?}");
        assert!(hub.is_online("bob"));
    }
}
