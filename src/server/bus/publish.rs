//! The publisher: takes what the hub queued, publishes it in pipelined
//! batches, and keeps this node's presence in Redis.
//!
//! Every third of the presence TTL it renews this node's heartbeat key and
//! the TTL of its online set, and looks for nodes whose heartbeat expired:
//! their users go offline here (and the first node to notice removes their
//! keys). On each (re)connection it drops what queued up while Redis was
//! away (the others reconcile instead), rewrites the online set from the
//! hub, and says hello; the hello asks the others to reconcile with the
//! store if anything they needed was dropped.

use super::{Backoff, Ctx, Outbound, connect, status_str, wire};
use crate::proto::PresenceStatus;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages published in one pipeline, at most.
const BATCH: usize = 256;

/// Bytes published in one pipeline, at most (one larger message still
/// goes, alone).
const BATCH_BYTES: usize = 1024 * 1024;

/// Users written to the online set per command when rewriting it.
const REWRITE_CHUNK: usize = 1000;

pub(super) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Outbound>, stop: CancellationToken) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new();
    let beat_every = (ctx.presence_ttl / 3).max(Duration::from_millis(500));
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(c) = conn.as_mut() else {
            match join(&ctx, &mut rx).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff.reset();
                    ctx.status.publishing.store(true, Ordering::Release);
                    tracing::info!(node = %ctx.node, "bus: publishing");
                }
                Err(e) => {
                    tracing::warn!("bus: cannot reach redis to publish: {e}");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next()) => {}
                    }
                }
            }
            continue;
        };
        let result = tokio::select! {
            _ = stop.cancelled() => {
                leave(&ctx, c, &mut rx).await;
                return;
            }
            first = rx.recv() => match first {
                Some(first) => publish(&ctx, c, first, &mut rx).await,
                None => return,
            },
            _ = beat.tick() => heartbeat(&ctx, c).await,
        };
        if let Err(e) = result {
            tracing::warn!("bus: publishing failed: {e}");
            ctx.status.publishing.store(false, Ordering::Release);
            ctx.status.lost.store(true, Ordering::Release);
            conn = None;
        }
    }
}

/// Connect, forget what queued while away, write this node's presence
/// and say hello.
async fn join(
    ctx: &Ctx,
    rx: &mut mpsc::Receiver<Outbound>,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut c = connect(&ctx.client).await?;
    // Newer than anything queued: the hub's state now. What was queued
    // is covered by the others' reconciling.
    let mut dropped = false;
    while let Ok(out) = rx.try_recv() {
        ctx.status
            .queued_bytes
            .fetch_sub(out.text.len(), Ordering::Relaxed);
        dropped |= out.presence.is_none();
    }
    if dropped {
        ctx.status.lost.store(true, Ordering::Release);
    }
    ctx.status.presence_lost.store(false, Ordering::Release);
    rewrite_presence(ctx, &mut c).await?;
    beat(ctx, &mut c).await?;
    let lost = ctx.status.lost.swap(false, Ordering::AcqRel);
    let hello = wire::encode_hello(&ctx.node, lost);
    if let Err(e) = redis::cmd("PUBLISH")
        .arg(ctx.keys.channel())
        .arg(hello)
        .query_async::<()>(&mut c)
        .await
    {
        ctx.status.lost.fetch_or(lost, Ordering::AcqRel);
        return Err(e);
    }
    Ok(c)
}

/// Publish `first` and whatever else is waiting, up to a batch, in one
/// pipeline.
async fn publish(
    ctx: &Ctx,
    c: &mut MultiplexedConnection,
    first: Outbound,
    rx: &mut mpsc::Receiver<Outbound>,
) -> redis::RedisResult<()> {
    let channel = ctx.keys.channel();
    let online = ctx.keys.online(&ctx.node);
    let mut pipe = redis::pipe();
    let mut bytes = 0;
    let mut n = 0;
    let mut next = Some(first);
    while let Some(out) = next.take() {
        let len = out.text.len();
        ctx.status.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        bytes += len;
        n += 1;
        pipe.cmd("PUBLISH").arg(&channel).arg(out.text).ignore();
        match out.presence {
            Some((user, PresenceStatus::Offline)) => {
                pipe.cmd("HDEL").arg(&online).arg(user).ignore();
            }
            Some((user, status)) => {
                pipe.cmd("HSET")
                    .arg(&online)
                    .arg(user)
                    .arg(status_str(status))
                    .ignore();
            }
            None => {}
        }
        if n < BATCH && bytes < BATCH_BYTES {
            next = rx.try_recv().ok();
        }
    }
    pipe.query_async::<()>(c).await?;
    ctx.status.published.fetch_add(n as u64, Ordering::Relaxed);
    Ok(())
}

/// Renew this node's keys; rewrite its online set if a change was not
/// recorded; take dead nodes' users offline.
async fn heartbeat(ctx: &Ctx, c: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    if ctx.status.presence_lost.swap(false, Ordering::AcqRel) {
        rewrite_presence(ctx, c).await?;
        redis::cmd("PUBLISH")
            .arg(ctx.keys.channel())
            .arg(wire::encode_hello(&ctx.node, false))
            .query_async::<()>(c)
            .await?;
    }
    if ctx.status.lost.swap(false, Ordering::AcqRel) {
        redis::cmd("PUBLISH")
            .arg(ctx.keys.channel())
            .arg(wire::encode_hello(&ctx.node, true))
            .query_async::<()>(c)
            .await?;
    }
    beat(ctx, c).await?;
    bury_dead(ctx, c).await
}

/// This node's heartbeat and membership of the node set.
async fn beat(ctx: &Ctx, c: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let ttl = ctx.presence_ttl.as_secs().max(1);
    redis::pipe()
        .cmd("SET")
        .arg(ctx.keys.node(&ctx.node))
        .arg(crate::proto::now_millis())
        .arg("EX")
        .arg(ttl)
        .ignore()
        .cmd("SADD")
        .arg(ctx.keys.nodes())
        .arg(&*ctx.node)
        .ignore()
        .cmd("EXPIRE")
        .arg(ctx.keys.online(&ctx.node))
        .arg(ttl)
        .ignore()
        .query_async::<()>(c)
        .await
}

/// Replace this node's online set with the hub's connected users.
async fn rewrite_presence(ctx: &Ctx, c: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let key = ctx.keys.online(&ctx.node);
    let users = ctx.hub.local_presence();
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(&key).ignore();
    for chunk in users.chunks(REWRITE_CHUNK) {
        let cmd = pipe.cmd("HSET").arg(&key);
        for (user, status) in chunk {
            cmd.arg(user).arg(status_str(*status));
        }
        cmd.ignore();
    }
    pipe.cmd("EXPIRE")
        .arg(&key)
        .arg(ctx.presence_ttl.as_secs().max(1))
        .ignore();
    pipe.query_async::<()>(c).await
}

/// Nodes in the node set whose heartbeat expired, and nodes the hub holds
/// users of that are no longer in it: their users go offline here.
async fn bury_dead(ctx: &Ctx, c: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(ctx.keys.nodes())
        .query_async(c)
        .await?;
    let others: Vec<&String> = nodes.iter().filter(|n| **n != *ctx.node).collect();
    let alive: Vec<bool> = if others.is_empty() {
        Vec::new()
    } else {
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.cmd("EXISTS").arg(ctx.keys.node(n));
        }
        pipe.query_async(c).await?
    };
    let mut dead = Vec::new();
    for (n, alive) in others.iter().zip(alive) {
        if !alive {
            dead.push((*n).clone());
        }
    }
    for n in ctx.hub.remote_nodes() {
        if !nodes.contains(&n) && !dead.contains(&n) {
            dead.push(n);
        }
    }
    if dead.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for n in &dead {
        tracing::info!(node = %n, "bus: a node stopped; its users are offline");
        pipe.cmd("SREM").arg(ctx.keys.nodes()).arg(n).ignore();
        pipe.cmd("DEL").arg(ctx.keys.online(n)).ignore();
    }
    pipe.query_async::<()>(c).await?;
    for n in dead {
        ctx.hub.remote_node_gone(&n);
    }
    Ok(())
}

/// Shutting down: publish what is queued (connections have closed, so
/// their going offline is in it), then remove this node's keys and say
/// so, so that the others need not wait for the TTL.
async fn leave(ctx: &Ctx, c: &mut MultiplexedConnection, rx: &mut mpsc::Receiver<Outbound>) {
    let work = async {
        while let Ok(first) = rx.try_recv() {
            publish(ctx, c, first, rx).await?;
        }
        redis::pipe()
            .cmd("SREM")
            .arg(ctx.keys.nodes())
            .arg(&*ctx.node)
            .ignore()
            .cmd("DEL")
            .arg(ctx.keys.node(&ctx.node))
            .arg(ctx.keys.online(&ctx.node))
            .ignore()
            .query_async::<()>(c)
            .await
    };
    match tokio::time::timeout(super::COMMAND_TIMEOUT, work).await {
        Ok(Ok(())) => tracing::info!(node = %ctx.node, "bus: left"),
        Ok(Err(e)) => tracing::warn!("bus: leaving: {e}"),
        Err(_) => tracing::warn!("bus: leaving timed out"),
    }
}
