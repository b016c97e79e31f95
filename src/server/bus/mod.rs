//! The bus between chatd nodes that share one database: Redis pub/sub for
//! what one node must tell the others, and Redis keys with a TTL for who
//! is online where.
//!
//! The bus is a hint, never the truth. The store holds every event; a
//! node that misses a message (Redis restarted, a subscriber cut off for
//! being slow, a full publish queue) finds out by a seq gap or by losing
//! its subscription, and reads what it lacks from the store. Clients never
//! depend on the bus for correctness, only for speed.
//!
//! Two tasks: the publisher ([`publish`]) owns a bounded queue the hub
//! fills without waiting, publishes it, renews this node's heartbeat and
//! online set, and notices nodes that died; the subscriber ([`subscribe`])
//! applies other nodes' messages to the hub, fills gaps from the store and
//! reconciles with it whenever the subscription is (re)established. Both
//! reconnect with a bounded backoff. Everything is named under
//! `chat:{namespace}:` (see [`Keys`]), so that clusters sharing one Redis
//! never mix.

mod publish;
mod subscribe;
#[cfg(test)]
mod tests;
pub mod wire;

use super::hub::{Gap, Hub};
use super::queue::Ended;
use crate::proto::PresenceStatus;
use crate::proto::now_millis;
use crate::store::Readers;
use crate::store::log::Committed;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages waiting to be published, at most.
const PUBLISH_QUEUE: usize = 8192;

/// Bytes waiting to be published, at most: past it messages are dropped
/// (and the other nodes told to reconcile once the bus works again).
const PUBLISH_QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// Gaps waiting for the store, at most; past it, one reconcile covers
/// them all.
const GAP_QUEUE: usize = 1024;

/// Events replayed from the store to close one gap, at most; a
/// conversation further behind takes the store's state as it is.
const REPLAY_MAX: u64 = 1024;

/// Events read from the store at once when filling a gap.
const REPLAY_BATCH: u32 = 256;

/// Bytes of events read from the store at once when filling a gap.
const REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// Reconnection delays: doubling from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long connecting to Redis or one command may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bad bus url: {0}")]
    Url(#[from] redis::RedisError),
}

/// The names of a namespace's channel and keys.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        Keys {
            prefix: format!("chat:{namespace}:"),
        }
    }

    /// The one pub/sub channel every node publishes on and listens to.
    pub fn channel(&self) -> String {
        format!("{}bus", self.prefix)
    }

    /// A set of the nodes that announced themselves.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// A node's heartbeat: present while the node lives (renewed well
    /// within its TTL).
    pub fn node(&self, id: &str) -> String {
        format!("{}node:{id}", self.prefix)
    }

    /// A hash of the users connected to a node: user → `online`/`away`,
    /// with the heartbeat's TTL.
    pub fn online(&self, id: &str) -> String {
        format!("{}online:{id}", self.prefix)
    }
}

/// How the bus is doing, shared by its tasks, the hub's [`Link`] and the
/// health check.
#[derive(Debug, Default)]
pub struct BusStatus {
    /// The publisher has a connection.
    publishing: AtomicBool,
    /// The subscriber is subscribed and reconciled.
    subscribed: AtomicBool,
    /// Bytes waiting in the publish queue.
    queued_bytes: AtomicUsize,
    /// A change other nodes needed was not published: once it can, the
    /// publisher tells them to reconcile with the store.
    lost: AtomicBool,
    /// A presence change was not published: the publisher rewrites this
    /// node's online set and tells the others to reread it.
    presence_lost: AtomicBool,
    /// A gap could not be queued, or an event of an unknown conversation
    /// came: the subscriber reconciles with the store.
    reconcile: AtomicBool,
    /// Messages not published (queue full, or Redis away).
    dropped: AtomicU64,
    /// Messages published.
    published: AtomicU64,
    /// Other nodes' messages applied.
    received: AtomicU64,
    /// Reconciliations with the store.
    reconciled: AtomicU64,
}

impl BusStatus {
    /// Whether the bus works both ways: a node that is not ready should
    /// get no new clients.
    pub fn ready(&self) -> bool {
        self.publishing.load(Ordering::Acquire) && self.subscribed.load(Ordering::Acquire)
    }

    /// Messages not published, published, received, and reconciliations.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.published.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.reconciled.load(Ordering::Relaxed),
        )
    }
}

/// One message for the publisher.
#[derive(Debug)]
struct Outbound {
    text: String,
    /// This node's status of a user to record in its online set.
    presence: Option<(String, PresenceStatus)>,
}

/// The hub's end of the bus: never waits. Cheap to clone.
#[derive(Clone)]
pub struct Link {
    node: Arc<str>,
    out: mpsc::Sender<Outbound>,
    gaps: mpsc::Sender<Gap>,
    status: Arc<BusStatus>,
}

impl Link {
    /// Committed changes of this node: published, and its gaps queued for
    /// the store.
    pub fn committed(&self, changes: &[Committed], gaps: Vec<Gap>) {
        for text in wire::encode_commit(&self.node, changes) {
            if !self.send(Outbound {
                text,
                presence: None,
            }) {
                self.status.lost.store(true, Ordering::Release);
            }
        }
        for gap in gaps {
            self.gap(gap);
        }
    }

    fn gap(&self, gap: Gap) {
        let queued = match gap {
            Gap::Unknown => false,
            gap => self.gaps.try_send(gap).is_ok(),
        };
        if !queued {
            self.status.reconcile.store(true, Ordering::Release);
        }
    }

    pub fn typing(&self, conversation: &str, user: &str, active: bool) {
        // Typing is ephemeral: one lost is not worth a word.
        self.send(Outbound {
            text: wire::encode_typing(&self.node, conversation, user, active),
            presence: None,
        });
    }

    /// `user`'s status on this node changed.
    pub fn presence(&self, user: &str, status: PresenceStatus) {
        let note = wire::PresenceNote {
            node: &self.node,
            user: user.to_string(),
            status,
            at: now_millis(),
        };
        if !self.send(Outbound {
            text: wire::encode_presence(&note),
            presence: Some((user.to_string(), status)),
        }) {
            self.status.presence_lost.store(true, Ordering::Release);
        }
    }

    pub fn end(&self, user: &str, tokens: Option<&[[u8; 32]]>, why: Ended) {
        let note = wire::EndNote {
            node: &self.node,
            user: user.to_string(),
            tokens: tokens.map(|t| t.iter().map(hex::encode).collect()),
            why: wire::ended_code(why),
        };
        if !self.send(Outbound {
            text: wire::encode_end(&note),
            presence: None,
        }) {
            self.status.lost.store(true, Ordering::Release);
        }
    }

    /// Queue `out` unless the publisher is away or its queue is full.
    fn send(&self, out: Outbound) -> bool {
        let len = out.text.len();
        let st = &self.status;
        if !st.publishing.load(Ordering::Acquire)
            || st.queued_bytes.load(Ordering::Relaxed) + len > PUBLISH_QUEUE_BYTES
        {
            st.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        st.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if self.out.try_send(out).is_err() {
            st.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            st.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// What the bus's tasks share.
struct Ctx {
    client: redis::Client,
    keys: Keys,
    node: Arc<str>,
    hub: Arc<Hub>,
    status: Arc<BusStatus>,
    presence_ttl: Duration,
}

/// A running bus. Stop it with [`Bus::close`] once connections are
/// closed, so that their going offline is published first.
pub struct Bus {
    status: Arc<BusStatus>,
    node: Arc<str>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bus {
    /// Attach a bus at `url` to `hub` under `namespace`, and start its
    /// tasks. Redis need not be up: the bus connects (and reconnects) on
    /// its own, and reports itself not ready until it is. `readers` are
    /// the store's, to fill gaps and reconcile from.
    pub fn start(
        url: &str,
        namespace: &str,
        presence_ttl: Duration,
        hub: Arc<Hub>,
        readers: Readers,
    ) -> Result<Bus, BusError> {
        let client = redis::Client::open(url)?;
        let node: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let status = Arc::new(BusStatus::default());
        let (out_tx, out_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (gap_tx, gap_rx) = mpsc::channel(GAP_QUEUE);
        let link = Link {
            node: node.clone(),
            out: out_tx,
            gaps: gap_tx,
            status: status.clone(),
        };
        if !hub.attach(link) {
            tracing::warn!("a bus was already attached to this hub");
        }
        let ctx = Arc::new(Ctx {
            client,
            keys: Keys::new(namespace),
            node: node.clone(),
            hub,
            status: status.clone(),
            presence_ttl: presence_ttl.max(Duration::from_secs(2)),
        });
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(publish::run(ctx.clone(), out_rx, stop.clone())),
            tokio::spawn(subscribe::run(ctx, readers, gap_rx, stop.clone())),
        ];
        tracing::info!(node = %node, namespace, "bus started");
        Ok(Bus {
            status,
            node,
            stop,
            tasks,
        })
    }

    pub fn status(&self) -> Arc<BusStatus> {
        self.status.clone()
    }

    /// This node's id on the bus.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Publish what is queued, take this node off Redis (its users go
    /// offline on the other nodes at once), and stop.
    pub async fn close(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(COMMAND_TIMEOUT * 2, task).await;
        }
    }
}

#[cfg(test)]
impl Bus {
    /// Stop at once, as a node that dies would: nothing published, no
    /// keys removed.
    fn crash(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.status.publishing.store(false, Ordering::Release);
    }
}

/// Delays between attempts to reach Redis: doubling, bounded, with some
/// jitter so that nodes cut off together do not return together.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let jitter = rand::random_range(0..=d.as_millis() as u64 / 4);
        d + Duration::from_millis(jitter)
    }
}

/// A connection for commands, with the bus's timeouts.
async fn connect(client: &redis::Client) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

fn status_str(s: PresenceStatus) -> &'static str {
    s.as_str()
}

fn parse_status(s: &str) -> Option<PresenceStatus> {
    match s {
        "online" => Some(PresenceStatus::Online),
        "away" => Some(PresenceStatus::Away),
        _ => None,
    }
}
