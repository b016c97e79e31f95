//! `storm`: C clients, each in 10 conversations, are connected and synced;
//! all drop at once; messages arrive in every conversation meanwhile; then
//! all reconnect at once and catch up (sync with cursors, then history pages
//! for what they lack, four conversations at a time as the engine does).
//! Reports the time until all are caught up, refusals and errors.
//!
//! Clients here keep only a cursor per conversation (no SQLite cache each):
//! ten thousand caches would measure the generator, not chatd.

use super::proc::CpuMeter;
use super::report::{Report, Samples};
use super::server::Server;
use super::wire::{self, Client};
use anyhow::Context;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct StormArgs {
    /// Clients that drop and reconnect at once.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Conversations per client (groups of ten users).
    #[arg(long, default_value_t = 10)]
    pub conversations: usize,
    /// Messages posted in each conversation while the clients are away.
    #[arg(long, default_value_t = 5)]
    pub messages: usize,
    /// Seconds the reconnect storm may take before the run gives up.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
}

const GROUP: usize = 10;

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

#[derive(Deserialize)]
struct Page {
    events: Vec<SeqOnly>,
    last_seq: u64,
}

#[derive(Default)]
struct Counters {
    refusals: AtomicU64,
    errors: AtomicU64,
    pages: AtomicU64,
}

/// Sync with `cursors`, then fetch every missing range; returns the cursors
/// after. Requests are pipelined (four history fetches at once).
async fn sync_and_fetch(
    c: &mut Client,
    cursors: &mut HashMap<String, u64>,
    counters: &Counters,
) -> anyhow::Result<()> {
    let reply = c
        .call(json!({"type": "sync", "cursors": &*cursors}))
        .await?;
    let mut todo: Vec<(String, u64)> = Vec::new();
    for conv in reply["conversations"].as_array().into_iter().flatten() {
        let id = conv["id"].as_str().unwrap_or_default().to_string();
        let last = conv["last_seq"].as_u64().unwrap_or(0);
        let cur = *cursors.entry(id.clone()).or_insert(0);
        if last > cur {
            todo.push((id, last));
        }
    }
    let mut inflight: HashMap<u64, (String, u64)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + wire::REQUEST_TIMEOUT;
    for _ in 0..100_000 {
        while inflight.len() < 4 {
            let Some((conv, last)) = todo.pop() else {
                break;
            };
            let after = cursors.get(&conv).copied().unwrap_or(0);
            let id = c
                .send(json!({"type": "history", "conversation_id": conv, "after": after, "limit": 500}))
                .await?;
            inflight.insert(id, (conv, last));
        }
        if inflight.is_empty() {
            return Ok(());
        }
        let text = match tokio::time::timeout_at(deadline, c.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            _ => anyhow::bail!("connection lost while catching up"),
        };
        let Some(hot) = wire::Hot::parse(text.as_str()) else {
            continue;
        };
        let Some((conv, last)) = hot.id.and_then(|id| inflight.remove(&id)) else {
            continue;
        };
        if hot.ty != "ok" {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.pages.fetch_add(1, Ordering::Relaxed);
        let page: Page = serde_json::from_str(text.as_str())?;
        let top = page.events.iter().map(|e| e.seq).max().unwrap_or(0);
        let cur = cursors.entry(conv.clone()).or_insert(0);
        *cur = (*cur).max(top);
        let last = last.max(page.last_seq);
        if *cur < last && !page.events.is_empty() {
            todo.push((conv, last));
        }
    }
    Ok(())
}

/// One client's reconnect: retry until connected (counting refusals), then
/// catch up. Returns the seconds from `t0` until caught up.
async fn reconnect(
    addr: String,
    src: std::net::IpAddr,
    token: String,
    mut cursors: HashMap<String, u64>,
    counters: Arc<Counters>,
    t0: Instant,
    deadline: Instant,
) -> Option<f64> {
    for attempt in 0u32..50 {
        if Instant::now() > deadline {
            return None;
        }
        match wire::auth(&addr, src, &token).await {
            Ok(mut c) => match sync_and_fetch(&mut c, &mut cursors, &counters).await {
                Ok(()) => return Some(t0.elapsed().as_secs_f64()),
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(_) => {
                counters.refusals.fetch_add(1, Ordering::Relaxed);
            }
        }
        let backoff = 100u64 << attempt.min(5);
        let jitter = rand::random::<u64>() % backoff.max(1);
        tokio::time::sleep(Duration::from_millis(backoff / 2 + jitter / 2)).await;
    }
    None
}

pub async fn run(server: &Server, args: &StormArgs) -> anyhow::Result<Report> {
    let tag = super::run_tag();
    let n = args.clients.max(2);
    let g = GROUP.min(n);
    let t_setup = Instant::now();
    let mut names: Vec<String> = (0..n).map(|i| format!("s{tag}_{i}")).collect();
    names.push(format!("s{tag}_poster"));
    let mut users =
        wire::register_many(&server.addrs, names.clone(), 64, args.sources, false).await?;
    let poster_user = users.pop().context("poster")?.1;
    let tokens: Vec<String> = users.into_iter().map(|(_, u)| u.token).collect();
    let mut poster = wire::auth(&server.addr, wire::source(0, 1), &poster_user.token).await?;
    // Layer k holds groups of g consecutive users shifted by k: every user is
    // in exactly one group per layer.
    let mut convs = Vec::new();
    for k in 0..args.conversations.max(1) {
        for j in 0..n.div_ceil(g) {
            let mut members: Vec<&str> = (0..g)
                .map(|m| names[(j * g + k + m) % n].as_str())
                .collect();
            members.sort_unstable();
            members.dedup();
            let r = poster
                .call(json!({"type": "create", "kind": "group", "name": format!("s{k}-{j}"), "members": members}))
                .await?;
            convs.push(
                r["conversation"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    // The poster is everyone's contact: it stays away while the clients come
    // and go (their presence pushes would overflow its queue unread).
    drop(poster);
    // Everyone connects and syncs once: their cursors are the state they hold.
    let counters = Arc::new(Counters::default());
    let mut clients = wire::auth_many(&server.addrs, &tokens, 256, args.sources).await?;
    let mut cursors: Vec<HashMap<String, u64>> = Vec::new();
    for c in clients.iter_mut() {
        let mut cur = HashMap::new();
        sync_and_fetch(c, &mut cur, &counters).await?;
        cursors.push(cur);
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    // All drop at once; messages arrive meanwhile.
    drop(clients);
    let mut poster = wire::auth(&server.addr, wire::source(0, 1), &poster_user.token).await?;
    super::catchup::post(&mut poster, &convs, convs.len() * args.messages, 32).await?;
    drop(poster);
    let chatd_cpu = server.cpu();
    let self_cpu = CpuMeter::start(None);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(args.timeout);
    let tasks: Vec<_> = tokens
        .into_iter()
        .zip(cursors)
        .enumerate()
        .map(|(i, (token, cur))| {
            tokio::spawn(reconnect(
                server.addr.clone(),
                wire::source(i, args.sources),
                token,
                cur,
                counters.clone(),
                t0,
                deadline,
            ))
        })
        .collect();
    let mut times = Samples::default();
    let mut failed = 0u64;
    let mut all = 0.0f64;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(s) => {
                all = all.max(s);
                times.push((s * 1e6) as u64);
            }
            None => failed += 1,
        }
    }
    let mut r = Report::new("storm");
    r.set("clients", n as u64)
        .set("conversations_per_client", args.conversations as u64)
        .set("conversations", convs.len() as u64)
        .set(
            "messages_missed_per_client",
            (args.conversations * args.messages) as u64,
        )
        .set("setup_s", setup_s)
        .set("caught_up", times.len() as u64)
        .set("failed", failed)
        .set(
            "all_caught_up_s",
            if failed == 0 {
                Value::from(all)
            } else {
                Value::Null
            },
        )
        .set("per_client_caught_up", times.summary().to_json())
        .set("refusals", counters.refusals.load(Ordering::Relaxed))
        .set("errors", counters.errors.load(Ordering::Relaxed))
        .set("history_pages", counters.pages.load(Ordering::Relaxed))
        .set("chatd", server.figures(chatd_cpu))
        .set("generator_cpu_pct", self_cpu.percent());
    Ok(r)
}
