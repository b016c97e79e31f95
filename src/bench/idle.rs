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
use super::server::{Server, ServerOpts};
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
    /// Generator processes to spread the users over (with rooms): one
    /// process holds at most its open-file limit of connections. Each
    /// builds whole rooms of its own users; chatd's RSS is taken before
    /// the first starts and once all say their users are in their rooms.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// With rooms: once the figures are taken, restart chatd on the same
    /// data and connect the same users again with their tokens (no
    /// registration, no hashing, no room building), and report chatd's
    /// RSS there too: what the burst of registrations left behind is the
    /// difference (`burst_kept_pct`).
    #[arg(long)]
    pub restart: bool,
    /// (internal) Run as one of `--procs`: build this share, print
    /// `ready` on stdout, and hold the connections until stdin closes.
    #[arg(long, hide = true)]
    pub part: bool,
}

/// Names one `add_members` carries at most (and bytes of names): well
/// under chatd's 64 KiB request frame.
const ADD_CHUNK: usize = 250;
const ADD_CHUNK_BYTES: usize = 16 * 1024;

/// Rooms built at once.
const ROOMS_AT_ONCE: usize = 16;

pub async fn run(
    server: &mut Server,
    opts: &ServerOpts,
    args: &IdleArgs,
) -> anyhow::Result<Report> {
    if args.room_size > 0 && args.procs > 1 && !args.part {
        return run_parts(server, args).await;
    }
    if args.room_size > 0 {
        let (mut rep, tokens) = run_rooms(server, args).await?;
        if args.restart && !args.part {
            restarted(server, opts, args, &tokens, &mut rep).await?;
        }
        return Ok(rep);
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
    let readers = hold_all(clients);
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
    rss_figures(&mut rep, before, after, after_hold, "kib_per_connection", c);
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

/// [`hold`] every client, the frames they receive uncounted.
fn hold_all(clients: Vec<Client>) -> Vec<JoinHandle<()>> {
    let frames = Arc::new(AtomicU64::new(0));
    clients
        .into_iter()
        .map(|cl| hold(cl, frames.clone()))
        .collect()
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

/// A room built: its members' readers, and their tokens.
type Room = (Vec<JoinHandle<()>>, Vec<String>);

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

/// The room-building run; its report, and every connection's token.
async fn run_rooms(server: &Server, args: &IdleArgs) -> anyhow::Result<(Report, Vec<String>)> {
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
    // Room by room: its members register, one of them builds it, and all
    // of them read from then on (answering chatd's pings), so no
    // connection waits unread while the rest register.
    let frames = Arc::new(AtomicU64::new(0));
    let names = &names;
    let addrs = &server.addrs;
    let frames_ref = &frames;
    let built: Vec<anyhow::Result<Room>> = futures_util::stream::iter((0..users).step_by(room))
        .map(|first| async move {
            let members = names[first..(first + room).min(names.len())].to_vec();
            let registered =
                wire::register_many(addrs, members.clone(), 16, args.sources, true).await?;
            let mut creator = None;
            let mut readers = Vec::with_capacity(room);
            let mut tokens = Vec::with_capacity(room);
            for (i, (client, user)) in registered.into_iter().enumerate() {
                tokens.push(user.token);
                match client {
                    Some(c) if i == 0 => creator = Some(c),
                    Some(c) => readers.push(hold(c, frames_ref.clone())),
                    None => {}
                }
            }
            let mut creator = creator.context("a room without its creator's connection")?;
            build_room(&mut creator, &format!("room {first}"), &members[1..]).await?;
            readers.push(hold(creator, frames_ref.clone()));
            Ok((readers, tokens))
        })
        .buffer_unordered(ROOMS_AT_ONCE)
        .collect()
        .await;
    let rooms_s = t_reg.elapsed().as_secs_f64();
    let register_s = rooms_s;
    let room_count = built.len();
    let mut readers = Vec::with_capacity(c);
    let mut user_tokens = Vec::with_capacity(users);
    for room in built {
        let (r, t) = room?;
        readers.extend(r);
        user_tokens.extend(t);
    }
    let registered_rss = server.rss_kib().map(|r| r.0);
    // Further connections of the same users authenticate with tokens.
    let tokens: Vec<String> = (users..c)
        .filter_map(|i| user_tokens.get(i % users.max(1)).cloned())
        .collect();
    let t_more = Instant::now();
    let more = wire::auth_many(&server.addrs, &tokens, args.concurrency, args.sources).await?;
    let connect_more_s = t_more.elapsed().as_secs_f64();
    readers.extend(more.into_iter().map(|cl| hold(cl, frames.clone())));
    if args.part {
        return Ok((hold_part(readers, users).await?, Vec::new()));
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
    let mut all = user_tokens;
    all.extend(tokens);
    Ok((rep, all))
}

/// `--restart`: chatd started again on the same data, the same
/// connections made again with tokens, held as long; chatd's RSS then is
/// where it settles without the registration burst.
async fn restarted(
    server: &mut Server,
    opts: &ServerOpts,
    args: &IdleArgs,
    tokens: &[String],
    rep: &mut Report,
) -> anyhow::Result<()> {
    if server.pid().is_none() {
        anyhow::bail!("--restart needs a chatd started by the bench (not --url)");
    }
    server.pause();
    server.resume(opts).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib().map(|r| r.0);
    let clients = wire::auth_many(&server.addrs, tokens, args.concurrency, args.sources).await?;
    let readers = hold_all(clients);
    let Held {
        after_hold, alive, ..
    } = held(server, readers, args.hold).await;
    let burst = rep.get("chatd_rss_after_hold_kib").and_then(|v| v.as_u64());
    if let (Some(b), Some((h, _)), Some(burst)) = (before, after_hold, burst) {
        rep.set("restarted_rss_before_kib", b)
            .set("restarted_rss_after_hold_kib", h)
            .set("restarted_connections_alive", alive as u64)
            .set(
                "burst_kept_pct",
                (burst as f64 - h as f64) / h as f64 * 100.0,
            );
    }
    Ok(())
}

/// One of `--procs`: say the users are ready, hold them until stdin
/// closes.
async fn hold_part(readers: Vec<JoinHandle<()>>, users: usize) -> anyhow::Result<Report> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = tokio::io::stdout();
    out.write_all(format!("ready {users}\n").as_bytes()).await?;
    out.flush().await?;
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    let alive = readers.iter().filter(|r| !r.is_finished()).count();
    for r in &readers {
        r.abort();
    }
    let mut rep = Report::new("idle-part");
    rep.set("users", users as u64)
        .set("connections_alive", alive as u64);
    Ok(rep)
}

/// The users spread over `--procs` generator processes, each building
/// whole rooms of its own users (see [`IdleArgs::procs`]).
async fn run_parts(server: &Server, args: &IdleArgs) -> anyhow::Result<Report> {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};
    anyhow::ensure!(args.per_user <= 1, "--procs needs one connection per user");
    let room = args.room_size.max(1);
    let rooms = args.connections.max(1).div_ceil(room);
    let procs = args.procs.min(rooms).max(1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib().map(|r| r.0);
    let exe = super::server::sibling("chatd-bench")?;
    let url = server.addrs.join(",");
    let t0 = Instant::now();
    let mut children = Vec::with_capacity(procs);
    let mut users = 0;
    for i in 0..procs {
        let share = (rooms / procs + usize::from(i < rooms % procs)) * room;
        users += share;
        let child = tokio::process::Command::new(&exe)
            .args(["--url", &url, "idle", "--part"])
            .args(["--connections", &share.to_string()])
            .args(["--room-size", &room.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--sources", &args.sources.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a generator process")?;
        children.push(child);
    }
    let mut outputs = Vec::with_capacity(children.len());
    for child in &mut children {
        let out = child.stdout.take().context("a generator's stdout")?;
        let mut lines = BufReader::new(out).lines();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(3600), lines.next_line())
                .await
                .context("a generator process took over an hour")??;
            match line {
                Some(l) if l.starts_with("ready") => break,
                Some(_) => {}
                None => anyhow::bail!("a generator process ended before its users were ready"),
            }
        }
        outputs.push(lines);
    }
    let ready_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib().map(|r| r.0);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after_hold = server.rss_kib();
    let mut exited_early = 0;
    for child in &mut children {
        if matches!(child.try_wait(), Ok(Some(_))) {
            exited_early += 1;
        }
    }
    let (pg, redis) = server.backend_connections().await;
    for child in &mut children {
        drop(child.stdin.take());
    }
    // Read what they print as they finish (their reports), so that none
    // writes to a closed pipe.
    for mut lines in outputs {
        let drain = async { while let Ok(Some(_)) = lines.next_line().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(60), drain).await;
    }
    for child in &mut children {
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    }
    let mut rep = Report::new("idle");
    rep.set("connections", users as u64)
        .set("users", users as u64)
        .set("room_size", room as u64)
        .set("rooms", rooms as u64)
        .set("generator_processes", procs as u64)
        .set("generators_exited_early", exited_early as u64)
        .set("ready_s", ready_s);
    if let Some(n) = pg {
        rep.set("postgres_connections", n);
    }
    if let Some(n) = redis {
        rep.set("redis_clients", n);
    }
    rss_figures(&mut rep, before, after, after_hold, "kib_per_user", users);
    Ok(rep)
}

/// chatd's memory before, after connecting and after the hold (with its
/// peak), and the growth per `count` as `per` (the worse of the two after
/// figures), when all were read.
fn rss_figures(
    rep: &mut Report,
    before: Option<u64>,
    after: Option<u64>,
    after_hold: Option<(u64, u64)>,
    per: &str,
    count: usize,
) {
    if let (Some(b), Some(a), Some((h, hwm))) = (before, after, after_hold) {
        let worst = a.max(h);
        rep.set("chatd_rss_before_kib", b)
            .set("chatd_rss_after_kib", a)
            .set("chatd_rss_after_hold_kib", h)
            .set("chatd_peak_rss_kib", hwm)
            .set(per, (worst.saturating_sub(b)) as f64 / count as f64);
    }
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
