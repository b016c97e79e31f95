//! Tests of the bus against a real Redis: they run when `CHATD_TEST_REDIS`
//! holds its URL (`redis://127.0.0.1:6379`) and pass at once otherwise.
//!
//! Two hubs share one store, as two nodes share one database: node A's
//! hub is the store's commit sink, node B hears of commits only through
//! the bus (and the store, when the bus lost something). Each test takes a
//! namespace of its own.

use super::{Bus, BusStatus};
use crate::proto::{ConvKind, EventBody, PresenceStatus, Role, ServerFrame};
use crate::server::hub::{Hub, Registration};
use crate::server::queue::{Ended, PushQueue};
use crate::store::Store;
use crate::store::log::{
    AccountOp, Append, CommitSink, Committed, LogStore, StoreConfig, SyncMode, WriteLimits,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn redis_url() -> Option<String> {
    std::env::var("CHATD_TEST_REDIS")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Node A's commit sink: with `mute`, commits reach A's hub but not the
/// bus, as if the bus had lost them.
struct Tap {
    hub: Arc<Hub>,
    mute: AtomicBool,
}

impl CommitSink for Tap {
    fn committed(&self, changes: &[Committed]) {
        if self.mute.load(Ordering::Acquire) {
            self.hub.apply(changes, true);
        } else {
            self.hub.committed(changes);
        }
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    url: String,
    namespace: String,
    store: Store,
    tap: Arc<Tap>,
    a: Arc<Hub>,
    b: Arc<Hub>,
    bus_a: Option<Bus>,
    bus_b: Option<Bus>,
    conv: String,
}

impl Cluster {
    /// Two nodes, users alice and bob, and a group of theirs; `None`
    /// without a Redis to test against.
    async fn start(ttl: Duration) -> Option<Cluster> {
        let url = redis_url()?;
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(Hub::new(8));
        let b = Arc::new(Hub::new(8));
        let tap = Arc::new(Tap {
            hub: a.clone(),
            mute: AtomicBool::new(false),
        });
        let config = StoreConfig {
            sync: SyncMode::Normal,
            ..StoreConfig::default()
        };
        let limits = WriteLimits {
            max_members: 100,
            max_conversations_per_user: 100,
        };
        let (log, snap) = LogStore::open(dir.path(), &config, limits, tap.clone()).unwrap();
        let store = Store::sqlite(log);
        a.load(snap);
        b.load(store.readers().snapshot().await.unwrap());
        let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        let start = |hub: &Arc<Hub>| {
            Bus::start(&url, &namespace, ttl, hub.clone(), store.readers().clone()).unwrap()
        };
        let (bus_a, bus_b) = (start(&a), start(&b));
        let mut c = Cluster {
            _dir: dir,
            url: url.clone(),
            namespace: namespace.clone(),
            store,
            tap,
            a,
            b,
            bus_a: Some(bus_a),
            bus_b: Some(bus_b),
            conv: String::new(),
        };
        for s in [c.status_a(), c.status_b()] {
            wait_for("the bus to be ready", || s.ready()).await;
        }
        for user in ["alice", "bob"] {
            c.store
                .account(AccountOp::CreateUser {
                    username: user.into(),
                    password_hash: "x".into(),
                    role: Role::Member,
                })
                .await
                .unwrap();
        }
        let created = c
            .store
            .append(Append::Create {
                user: "alice".into(),
                kind: ConvKind::Group,
                name: Some("ops".into()),
                members: vec!["bob".into()],
            })
            .await
            .unwrap();
        c.conv = created.conversation_id;
        let (b, conv) = (c.b.clone(), c.conv.clone());
        wait_for("the group on node B", || b.last_seq(&conv) == Some(1)).await;
        Some(c)
    }

    fn status_a(&self) -> Arc<BusStatus> {
        self.bus_a.as_ref().unwrap().status()
    }

    fn status_b(&self) -> Arc<BusStatus> {
        self.bus_b.as_ref().unwrap().status()
    }

    async fn say(&self, text: &str) -> u64 {
        let done = self
            .store
            .append(Append::Event {
                user: "alice".into(),
                conversation_id: self.conv.clone(),
                client_msg_id: uuid::Uuid::new_v4().to_string(),
                body: EventBody::Message {
                    body: text.into(),
                    reply_to: None,
                    encrypted: None,
                },
            })
            .await
            .unwrap();
        done.seq.unwrap().0
    }

    async fn stop(mut self) {
        for bus in [self.bus_a.take(), self.bus_b.take()].into_iter().flatten() {
            bus.close().await;
        }
        self.store.close().await;
    }
}

/// A connection of `user` on `hub`, with the frames pushed to it.
struct Client {
    queue: Arc<PushQueue>,
    _reg: Registration,
}

impl Client {
    fn on(hub: &Arc<Hub>, user: &str, token: u8) -> Client {
        let queue = Arc::new(PushQueue::new(1024));
        let reg = hub.register(user, queue.clone(), [token; 32]).unwrap();
        Client { queue, _reg: reg }
    }

    fn frames(&self) -> Vec<ServerFrame> {
        let mut out = Vec::new();
        self.queue.drain(usize::MAX, |f| {
            out.push(serde_json::from_str(f.as_str()).unwrap());
        });
        out
    }

    /// The seqs of the events pushed until `want` of them came.
    async fn seqs(&self, want: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for _ in 0..500 {
            for f in self.frames() {
                if let ServerFrame::Event(ev) = f {
                    seqs.push(ev.seq);
                }
            }
            if seqs.len() >= want {
                return seqs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{want} events expected, got {seqs:?}");
    }

    /// Wait for a frame `f` accepts; the frames before it are dropped.
    async fn wait(&self, what: &str, f: impl Fn(&ServerFrame) -> bool) {
        for _ in 0..500 {
            if self.frames().iter().any(&f) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {what}");
    }
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn events_cross_nodes_in_order_and_stay_in_their_namespace() {
    let Some(c) = Cluster::start(Duration::from_secs(10)).await else {
        return;
    };
    let bob = Client::on(&c.b, "bob", 2);
    // A third node on another namespace, where bob is also connected.
    let stranger_hub = Arc::new(Hub::new(8));
    stranger_hub.load(c.store.readers().snapshot().await.unwrap());
    let stranger = Bus::start(
        &c.url,
        &format!("{}-other", c.namespace),
        Duration::from_secs(10),
        stranger_hub.clone(),
        c.store.readers().clone(),
    )
    .unwrap();
    let s = stranger.status();
    wait_for("the other namespace's bus", || s.ready()).await;
    let elsewhere = Client::on(&stranger_hub, "bob", 3);
    for i in 0..5 {
        c.say(&format!("hello {i}")).await;
    }
    assert_eq!(bob.seqs(5).await, vec![2, 3, 4, 5, 6]);
    assert_eq!(c.b.last_seq(&c.conv), Some(6));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(elsewhere.frames().is_empty(), "another namespace heard it");
    assert_eq!(stranger_hub.last_seq(&c.conv), Some(1));
    stranger.close().await;
    c.stop().await;
}

#[tokio::test]
async fn a_lost_event_is_read_from_the_store() {
    let Some(c) = Cluster::start(Duration::from_secs(10)).await else {
        return;
    };
    let bob = Client::on(&c.b, "bob", 2);
    c.tap.mute.store(true, Ordering::Release);
    c.say("lost 1").await;
    c.say("lost 2").await;
    c.tap.mute.store(false, Ordering::Release);
    assert_eq!(c.b.last_seq(&c.conv), Some(1), "node B heard nothing");
    c.say("heard").await;
    assert_eq!(bob.seqs(3).await, vec![2, 3, 4]);
    c.stop().await;
}

#[tokio::test]
async fn presence_typing_and_revocation_cross_nodes() {
    let Some(c) = Cluster::start(Duration::from_secs(10)).await else {
        return;
    };
    let alice = Client::on(&c.a, "alice", 1);
    let bob = Client::on(&c.b, "bob", 2);
    let b = c.b.clone();
    wait_for("alice online on node B", || b.is_online("alice")).await;
    alice
        .wait("bob's presence", |f| {
            matches!(f, ServerFrame::Presence(p) if p.user == "bob" && p.status == PresenceStatus::Online)
        })
        .await;
    c.a.set_status("alice", PresenceStatus::Away);
    bob.wait("alice away", |f| {
        matches!(f, ServerFrame::Presence(p) if p.user == "alice" && p.status == PresenceStatus::Away)
    })
    .await;
    c.a.typing("alice", &c.conv, true).unwrap();
    bob.wait(
        "alice typing",
        |f| matches!(f, ServerFrame::Typing(t) if t.user == "alice" && t.active),
    )
    .await;
    // Revoking bob's session on node A closes his connection on node B.
    let other = Client::on(&c.b, "bob", 9);
    c.a.end_sessions("bob", Some(&[[2; 32]]), Ended::Revoked);
    let q = bob.queue.clone();
    wait_for("bob's connection closed", || q.ended().is_some()).await;
    assert_eq!(bob.queue.ended(), Some(Ended::Revoked));
    assert_eq!(other.queue.ended(), None, "another session of bob's stays");
    // Alice leaving node A takes her offline on node B.
    drop(alice);
    bob.wait("alice offline", |f| {
        matches!(f, ServerFrame::Presence(p) if p.user == "alice" && p.status == PresenceStatus::Offline)
    })
    .await;
    assert!(!c.b.is_online("alice"));
    c.stop().await;
}

#[tokio::test]
async fn a_dead_node_takes_its_users_offline_within_the_ttl() {
    let Some(mut c) = Cluster::start(Duration::from_secs(2)).await else {
        return;
    };
    let bob = Client::on(&c.b, "bob", 2);
    let alice = Client::on(&c.a, "alice", 1);
    let b = c.b.clone();
    wait_for("alice online on node B", || b.is_online("alice")).await;
    // Node A dies: no goodbye, its keys simply stop being renewed.
    c.bus_a.take().unwrap().crash();
    let started = std::time::Instant::now();
    bob.wait("alice offline", |f| {
        matches!(f, ServerFrame::Presence(p) if p.user == "alice" && p.status == PresenceStatus::Offline)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(!c.b.is_online("alice"));
    drop(alice);
    c.stop().await;
}

#[tokio::test]
async fn a_killed_subscription_comes_back_and_catches_up() {
    let Some(url) = redis_url() else {
        return;
    };
    let client = redis::Client::open(url).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let before = pubsub_clients(&mut admin).await;
    let Some(c) = Cluster::start(Duration::from_secs(10)).await else {
        return;
    };
    let bob = Client::on(&c.b, "bob", 2);
    let ours: Vec<String> = pubsub_clients(&mut admin)
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(!ours.is_empty());
    for id in &ours {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    // Sent while the subscriptions are down or coming back: node B gets
    // it from the bus or, having missed it, from the store.
    c.say("during").await;
    let (sa, sb) = (c.status_a(), c.status_b());
    wait_for("both subscribed again", || sa.ready() && sb.ready()).await;
    c.say("after").await;
    assert_eq!(bob.seqs(2).await, vec![2, 3]);
    c.stop().await;
}

/// The ids of the clients subscribed to something.
async fn pubsub_clients(c: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(c)
        .await
        .unwrap();
    list.lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
        .collect()
}
