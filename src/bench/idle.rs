//! `idle`: hold C authenticated idle connections and report chatd's RSS
//! before and after, and KiB per connection.
//!
//! With `--room-size N` (the default, 100) the users look like a
//! deployment's: each registers over its WebSocket and stays connected;
//! one member of each room of N creates a group and adds the others in
//! chunks; then all are quiet. chatd's RSS is taken before anyone
//! registers and once all are in their rooms, so the figure per user holds
//! the account, its memberships and its connection. `--room-size 0` keeps
//! the bare shape: users registered (and disconnected) first, RSS taken
//! before and after the connections authenticate with tokens.

use super::report::Report;
use super::server::Server;
use super::wire::{self, Client};
use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// Authenticated connections to hold.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Connections per user (users are registered first, then each
    /// connection authenticates with a token; 1 = one user per connection).
    #[arg(long, default_value_t = 1)]
    pub per_user: usize,
    /// Seconds to hold the connections before measuring again.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Source addresses (127.0.0.1…) to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// Users per room (a group built by one of them with `create` and
    /// `add_members`); 0: no rooms, and the RSS before is taken after
    /// registration (connections alone).
    #[arg(long, default_value_t = 100)]
    pub room_size: usize,
}

/// Names one `add_members` carries at most (and bytes of names): well
/// under chatd's 64 KiB request frame.
const ADD_CHUNK: usize = 250;
const ADD_CHUNK_BYTES: usize = 16 * 1024;

/// Rooms built at once.
const ROOMS_AT_ONCE: usize = 16;

pub async fn run(server: &Server, args: &IdleArgs) -> anyhow::Result<Report> {
    if args.room_size > 0 {
        return run_rooms(server, args).await;
    }
    let tag = super::run_tag();
    let c = args.connections.max(1);
    let per = args.per_user.max(1);
    let users = c.div_ceil(per);
    let t_reg = Instant::now();
    let names: Vec<String> = (0..users).map(|i| format!("d{tag}_{i}")).collect();
    let registered = wire::register_many(&server.addrs, names, 64, args.sources, false).await?;
    let register_s = t_reg.elapsed().as_secs_f64();
    let tokens: Vec<String> = (0..c)
        .map(|i| registered[i % users].1.token.clone())
        .collect();
    // Let the closed registration connections be torn down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.rss_kib().map(|r| r.0);
    let self_before = super::proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    let t0 = Instant::now();
    let clients = wire::auth_many(&server.addrs, &tokens, args.concurrency, args.sources).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    // Keep reading so pings are answered; hold.
    let frames = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = clients
        .into_iter()
        .map(|cl| hold(cl, frames.clone()))
        .collect();
    let Held {
        after,
        after_hold,
        alive,
        self_after,
    } = held(server, readers, args.hold).await;
    let mut rep = Report::new("idle");
    rep.set("connections", c as u64)
        .set("users", users as u64)
        .set("register_s", register_s)
        .set("connect_s", connect_s)
        .set("connections_alive", alive as u64);
    if let (Some(b), Some(a), Some((h, hwm))) = (before, after, after_hold) {
        let worst = a.max(h);
        rep.set("chatd_rss_before_kib", b)
            .set("chatd_rss_after_kib", a)
            .set("chatd_rss_after_hold_kib", h)
            .set("chatd_peak_rss_kib", hwm)
            .set(
                "kib_per_connection",
                (worst.saturating_sub(b)) as f64 / c as f64,
            );
    }
    rep.set(
        "generator_kib_per_connection",
        self_after.saturating_sub(self_before) as f64 / c as f64,
    );
    Ok(rep)
}

/// chatd's RSS (and its high-water mark) once the connections are held,
/// and the generator's own.
struct Held {
    /// A second after the last connection is up.
    after: Option<u64>,
    /// After holding them: (RSS, peak).
    after_hold: Option<(u64, u64)>,
    /// Connections still open at the end.
    alive: usize,
    self_after: u64,
}

/// Hold `readers` for `secs` (after a second to settle), measuring, then
/// stop them.
async fn held(server: &Server, readers: Vec<JoinHandle<()>>, secs: f64) -> Held {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib().map(|r| r.0);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after_hold = server.rss_kib();
    let alive = readers.iter().filter(|r| !r.is_finished()).count();
    let self_after = super::proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    for r in &readers {
        r.abort();
    }
    Held {
        after,
        after_hold,
        alive,
        self_after,
    }
}

/// Read (and so answer pings) until the connection ends, counting frames.
fn hold(client: Client, frames: Arc<AtomicU64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ws = client.ws;
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
            frames.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// `members` in chunks of at most [`ADD_CHUNK`] names and
/// [`ADD_CHUNK_BYTES`] bytes.
fn chunks(members: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut from, mut bytes) = (0, 0);
    for (i, m) in members.iter().enumerate() {
        if i > from && (i - from >= ADD_CHUNK || bytes + m.len() + 3 > ADD_CHUNK_BYTES) {
            out.push(&members[from..i]);
            from = i;
            bytes = 0;
        }
        bytes += m.len() + 3;
    }
    if from < members.len() {
        out.push(&members[from..]);
    }
    out
}

/// One room: `creator` creates a group and adds `members` in chunks.
async fn build_room(creator: &mut Client, name: &str, members: &[String]) -> anyhow::Result<()> {
    let reply = creator
        .call(json!({"type": "create", "kind": "group", "name": name, "members": []}))
        .await
        .context("create a room")?;
    let id = reply["conversation"]["id"]
        .as_str()
        .context("no conversation id")?
        .to_string();
    for chunk in chunks(members) {
        creator
            .call(json!({"type": "add_members", "conversation_id": id, "members": chunk}))
            .await
            .context("add members to a room")?;
    }
    Ok(())
}

async fn run_rooms(server: &Server, args: &IdleArgs) -> anyhow::Result<Report> {
    let tag = super::run_tag();
    let c = args.connections.max(1);
    let per = args.per_user.max(1);
    let users = c.div_ceil(per);
    let room = args.room_size.max(1);
    // chatd as started, nobody registered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib().map(|r| r.0);
    let self_before = super::proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    let t_reg = Instant::now();
    let names: Vec<String> = (0..users).map(|i| format!("r{tag}_{i}")).collect();
    let registered =
        wire::register_many(&server.addrs, names.clone(), 64, args.sources, true).await?;
    let register_s = t_reg.elapsed().as_secs_f64();
    let tokens: Vec<String> = (users..c)
        .map(|i| registered[i % users].1.token.clone())
        .collect();
    let mut clients: Vec<Option<Client>> = registered.into_iter().map(|(c, _)| c).collect();
    let t_more = Instant::now();
    let more = wire::auth_many(&server.addrs, &tokens, args.concurrency, args.sources).await?;
    let connect_more_s = t_more.elapsed().as_secs_f64();
    let registered_rss = server.rss_kib().map(|r| r.0);
    // Everyone but the rooms' creators reads from now on.
    let frames = Arc::new(AtomicU64::new(0));
    let rooms: Vec<(usize, Client)> = (0..users)
        .step_by(room)
        .filter_map(|first| clients[first].take().map(|cl| (first, cl)))
        .collect();
    let mut readers: Vec<JoinHandle<()>> = clients
        .into_iter()
        .flatten()
        .chain(more)
        .map(|cl| hold(cl, frames.clone()))
        .collect();
    let t_rooms = Instant::now();
    let names = &names;
    let built: Vec<anyhow::Result<Client>> = futures_util::stream::iter(rooms)
        .map(|(first, mut creator)| async move {
            let members = &names[first + 1..(first + room).min(names.len())];
            build_room(&mut creator, &format!("room {first}"), members).await?;
            Ok(creator)
        })
        .buffer_unordered(ROOMS_AT_ONCE)
        .collect()
        .await;
    let rooms_s = t_rooms.elapsed().as_secs_f64();
    let room_count = built.len();
    for creator in built {
        readers.push(hold(creator?, frames.clone()));
    }
    let Held {
        after,
        after_hold,
        alive,
        self_after,
    } = held(server, readers, args.hold).await;
    let mut rep = Report::new("idle");
    rep.set("connections", c as u64)
        .set("users", users as u64)
        .set("room_size", room as u64)
        .set("rooms", room_count as u64)
        .set("register_s", register_s)
        .set("connect_more_s", connect_more_s)
        .set("rooms_s", rooms_s)
        .set("connections_alive", alive as u64)
        .set("frames_received", frames.load(Ordering::Relaxed));
    if let (Some(b), Some(r), Some(a), Some((h, hwm))) = (before, registered_rss, after, after_hold)
    {
        let worst = a.max(h);
        rep.set("chatd_rss_before_kib", b)
            .set("chatd_rss_registered_kib", r)
            .set("chatd_rss_after_kib", a)
            .set("chatd_rss_after_hold_kib", h)
            .set("chatd_peak_rss_kib", hwm)
            .set(
                "kib_per_user",
                (worst.saturating_sub(b)) as f64 / users as f64,
            )
            .set(
                "kib_per_connection",
                (worst.saturating_sub(b)) as f64 / c as f64,
            );
    }
    rep.set(
        "generator_kib_per_connection",
        self_after.saturating_sub(self_before) as f64 / c as f64,
    );
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_added_in_bounded_chunks() {
        let names: Vec<String> = (0..600).map(|i| format!("user{i}")).collect();
        let parts = chunks(&names);
        assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), 600);
        assert!(parts.iter().all(|c| !c.is_empty() && c.len() <= ADD_CHUNK));
        let long: Vec<String> = (0..100).map(|i| format!("{i:0>500}")).collect();
        let parts = chunks(&long);
        assert!(parts.len() > 1);
        assert!(
            parts
                .iter()
                .all(|c| c.iter().map(|m| m.len() + 3).sum::<usize>() <= ADD_CHUNK_BYTES)
        );
        assert!(chunks(&[]).is_empty());
    }
}
