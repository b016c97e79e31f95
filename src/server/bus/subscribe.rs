//! The subscriber: applies other nodes' messages to the hub, fills gaps
//! from the store, and reconciles with the store and Redis whenever its
//! subscription starts, so that what it missed while away reaches this
//! node's clients.
//!
//! Messages are read off the subscription by a small task into a bounded
//! inbox: a node too slow to keep up drops its subscription (as Redis
//! would) and reconciles, rather than buffering without end. Gaps and
//! reconciliations are worked through here, one at a time, in bounded
//! batches; while Redis is away gaps are still filled from the store.

use super::{
    Backoff, COMMAND_TIMEOUT, CONNECT_TIMEOUT, Ctx, REPLAY_BATCH, REPLAY_BYTES, REPLAY_MAX,
    connect, parse_status, wire,
};
use crate::server::hub::Gap;

/// How long an offline from another node waits before contacts hear it
/// (see `Hub::remote_presence`).
const OFFLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
use crate::store::Readers;
use crate::store::log::StoreError;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages received and not yet applied, at most.
const INBOX: usize = 4096;

/// How often the subscription is pinged (a silent dead connection is
/// found within this and [`COMMAND_TIMEOUT`]) and a pending reconcile
/// looked at.
const TICK: Duration = Duration::from_secs(1);
const PING_EVERY: Duration = Duration::from_secs(10);

/// Reconciliations with the store asked for by gaps, at most one per this.
const RECONCILE_GAP: Duration = Duration::from_secs(1);

/// Users read from a node's online set per command.
const SCAN_COUNT: usize = 1000;

struct Subscriber {
    ctx: Arc<Ctx>,
    readers: Readers,
    last_reconcile: Option<Instant>,
}

pub(super) async fn run(
    ctx: Arc<Ctx>,
    readers: Readers,
    mut gaps: mpsc::Receiver<Gap>,
    stop: CancellationToken,
) {
    let mut sub = Subscriber {
        ctx,
        readers,
        last_reconcile: None,
    };
    let mut backoff = Backoff::new();
    loop {
        match subscribe(&sub.ctx).await {
            Ok((sink, stream, conn)) => {
                backoff.reset();
                if sub.listen(sink, stream, conn, &mut gaps, &stop).await {
                    return;
                }
            }
            Err(e) => tracing::warn!("bus: cannot subscribe: {e}"),
        }
        sub.ctx.status.subscribed.store(false, Ordering::Release);
        let pause = tokio::time::sleep(backoff.next());
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut pause => break,
                Some(gap) = gaps.recv() => sub.fill(gap).await,
            }
        }
    }
}

async fn subscribe(
    ctx: &Ctx,
) -> redis::RedisResult<(PubSubSink, PubSubStream, MultiplexedConnection)> {
    let timed_out = || redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, ctx.client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())??;
    let (mut sink, stream) = pubsub.split();
    tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(ctx.keys.channel()))
        .await
        .map_err(|_| timed_out())??;
    let conn = connect(&ctx.client).await?;
    Ok((sink, stream, conn))
}

/// Move messages off the subscription into `inbox`; stop when the
/// subscription ends or the inbox is full.
async fn forward(mut stream: PubSubStream, inbox: mpsc::Sender<String>) {
    while let Some(msg) = stream.next().await {
        let text = match String::from_utf8(msg.get_payload_bytes().to_vec()) {
            Ok(t) => t,
            Err(_) => continue,
        };
        if inbox.try_send(text).is_err() {
            tracing::warn!("bus: falling behind the bus; resubscribing");
            return;
        }
    }
}

impl Subscriber {
    /// Serve one subscription until it ends (`false`) or chatd stops
    /// (`true`).
    async fn listen(
        &mut self,
        mut sink: PubSubSink,
        stream: PubSubStream,
        mut conn: MultiplexedConnection,
        gaps: &mut mpsc::Receiver<Gap>,
        stop: &CancellationToken,
    ) -> bool {
        let (tx, mut inbox) = mpsc::channel(INBOX);
        let forwarder = tokio::spawn(forward(stream, tx));
        let _abort = AbortOnDrop(forwarder);
        // Everything sent before the subscription began is in Redis's keys
        // and the store: read both.
        if let Err(e) = self.resync_presence(&mut conn).await {
            tracing::warn!("bus: reading presence: {e}");
            return false;
        }
        self.reconcile().await;
        self.ctx.status.subscribed.store(true, Ordering::Release);
        tracing::info!(node = %self.ctx.node, "bus: subscribed");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ping = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return true,
                msg = inbox.recv() => match msg {
                    Some(text) => {
                        if let Err(e) = self.handle(&text, &mut conn).await {
                            tracing::warn!("bus: reading presence: {e}");
                            return false;
                        }
                    }
                    None => {
                        tracing::warn!("bus: subscription lost");
                        return false;
                    }
                },
                Some(gap) = gaps.recv() => self.fill(gap).await,
                _ = tick.tick() => {
                    if self.ctx.status.reconcile.load(Ordering::Acquire) {
                        self.reconcile().await;
                    }
                    if last_ping.elapsed() >= PING_EVERY {
                        last_ping = Instant::now();
                        let ping = sink.ping::<redis::Value>();
                        if !matches!(tokio::time::timeout(COMMAND_TIMEOUT, ping).await, Ok(Ok(_))) {
                            tracing::warn!("bus: subscription does not answer");
                            return false;
                        }
                    }
                }
            }
        }
    }

    /// Apply one message from another node.
    async fn handle(
        &mut self,
        text: &str,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let msg = match wire::Incoming::decode(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("bus: ignored: {e}");
                return Ok(());
            }
        };
        if msg.node() == &*self.ctx.node {
            return Ok(());
        }
        self.ctx.status.received.fetch_add(1, Ordering::Relaxed);
        let hub = &self.ctx.hub;
        match msg {
            wire::Incoming::Commit { changes, .. } => {
                let changes = match wire::committed(&changes) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("bus: {e}");
                        self.ctx.status.reconcile.store(true, Ordering::Release);
                        return Ok(());
                    }
                };
                for gap in hub.apply(&changes, true) {
                    self.fill(gap).await;
                }
            }
            wire::Incoming::Typing {
                conversation,
                user,
                active,
                ..
            } => hub.typing_from(&conversation, &user, active),
            wire::Incoming::Presence(p) => {
                if let Some(before) = hub.remote_presence(p.node, &p.user, p.status, p.at) {
                    let (hub, user) = (hub.clone(), p.user.to_string());
                    tokio::spawn(async move {
                        tokio::time::sleep(OFFLINE_GRACE).await;
                        hub.settle_presence(&user, before);
                    });
                }
            }
            wire::Incoming::End(end) => {
                let Some(why) = wire::ended_from(end.why) else {
                    return Ok(());
                };
                let tokens: Option<Vec<[u8; 32]>> = end.tokens.map(|t| {
                    t.iter()
                        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
                        .collect()
                });
                hub.end_from(&end.user, tokens.as_deref(), why);
            }
            wire::Incoming::Hello { node, lost } => {
                let users = read_online(&self.ctx, conn, node).await?;
                hub.remote_node(node, users);
                if lost {
                    self.reconcile().await;
                }
            }
        }
        Ok(())
    }

    /// Close a gap: replay the missing events from the store, in bounded
    /// batches; a gap too wide (or an unknown conversation) is left to a
    /// reconciliation.
    async fn fill(&mut self, gap: Gap) {
        let (conv, upto) = match gap {
            Gap::Behind { conversation, upto } => (conversation, upto),
            Gap::Unknown => {
                self.ask_reconcile();
                return;
            }
        };
        match self.replay(&conv, upto).await {
            Ok(true) => {}
            Ok(false) => self.ask_reconcile(),
            Err(e) => {
                tracing::warn!(conversation = %conv, "bus: filling a gap from the store: {e}");
                self.ask_reconcile();
            }
        }
    }

    /// Replay `conv` from the store up to `upto`: `false` if that needs a
    /// reconciliation instead.
    async fn replay(&self, conv: &str, upto: u64) -> Result<bool, StoreError> {
        let hub = &self.ctx.hub;
        loop {
            let Some(last) = hub.last_seq(conv) else {
                return Ok(false);
            };
            if last >= upto {
                return Ok(true);
            }
            if upto - last > REPLAY_MAX {
                return Ok(false);
            }
            let events = self
                .readers
                .history(conv, Some(last), None, REPLAY_BATCH, REPLAY_BYTES)
                .await?;
            if events.is_empty() {
                // Not in the store (yet): the next event or
                // reconciliation will try again.
                return Ok(true);
            }
            if !hub.replay(&events).is_empty() {
                return Ok(false);
            }
        }
    }

    fn ask_reconcile(&mut self) {
        self.ctx.status.reconcile.store(true, Ordering::Release);
    }

    /// Bring the hub up to the store: new conversations, members, receipts,
    /// blocks, and events it lacks. Asked for too often, it waits for the
    /// next tick.
    async fn reconcile(&mut self) {
        let status = &self.ctx.status;
        if self
            .last_reconcile
            .is_some_and(|t| t.elapsed() < RECONCILE_GAP)
        {
            status.reconcile.store(true, Ordering::Release);
            return;
        }
        status.reconcile.store(false, Ordering::Release);
        self.last_reconcile = Some(Instant::now());
        let snapshot = match self.readers.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("bus: cannot read the store to reconcile: {e}");
                status.reconcile.store(true, Ordering::Release);
                return;
            }
        };
        status.reconciled.fetch_add(1, Ordering::Relaxed);
        for gap in self.ctx.hub.reconcile(snapshot, REPLAY_MAX) {
            if let Gap::Behind { conversation, upto } = gap
                && let Err(e) = self.replay(&conversation, upto).await
            {
                tracing::warn!(%conversation, "bus: reconciling from the store: {e}");
                status.reconcile.store(true, Ordering::Release);
            }
        }
    }

    /// Read every other live node's online set, and forget nodes that are
    /// gone.
    async fn resync_presence(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let ctx = &self.ctx;
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(ctx.keys.nodes())
            .query_async(conn)
            .await?;
        for node in &nodes {
            if **node == *ctx.node {
                continue;
            }
            let users = read_online(ctx, conn, node).await?;
            ctx.hub.remote_node(node, users);
        }
        for node in ctx.hub.remote_nodes() {
            if !nodes.contains(&node) {
                ctx.hub.remote_node_gone(&node);
            }
        }
        Ok(())
    }
}

/// A node's online set (empty if its heartbeat expired), read in bounded
/// steps.
async fn read_online(
    ctx: &Ctx,
    conn: &mut MultiplexedConnection,
    node: &str,
) -> redis::RedisResult<HashMap<String, crate::proto::PresenceStatus>> {
    let mut users = HashMap::new();
    let alive: bool = redis::cmd("EXISTS")
        .arg(ctx.keys.node(node))
        .query_async(conn)
        .await?;
    if !alive {
        return Ok(users);
    }
    let key = ctx.keys.online(node);
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(&key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        for (user, status) in page {
            if let Some(s) = parse_status(&status) {
                users.insert(user, s);
            }
        }
        if next == 0 {
            return Ok(users);
        }
        cursor = next;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
