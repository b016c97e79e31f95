//! `catchup`: a user goes offline while M messages arrive over K
//! conversations, then reconnects with the client's own code — the real
//! [`Conn`](crate::client::net::Conn) and SQLite [`Cache`] on disk, with the
//! engine's algorithm (sync with cursors, then exact history ranges, pages
//! of 500, four conversations at once) — and is timed until fully caught up.

use super::proc::CpuMeter;
use super::report::Report;
use super::server::Server;
use super::wire;
use anyhow::{Context, bail};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::client::cache::Cache;
use crate::client::net::{ClientError, Conn, Credentials};
use crate::proto::{ConversationsOk, HistoryOk, Request, ServerFrame};

/// The engine's constants (see `client::engine`).
const FETCH_CONCURRENCY: usize = 4;
const PAGE: u64 = 500;
const INITIAL_DEPTH: u64 = 200;

#[derive(clap::Args, Debug, Clone)]
pub struct CatchupArgs {
    /// Messages that arrive while the user is offline.
    #[arg(long, default_value_t = 10_000)]
    pub missed: usize,
    /// Conversations they are spread over.
    #[arg(long, default_value_t = 20)]
    pub conversations: usize,
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
}

/// What one catch-up took.
#[derive(Debug, Default, Clone)]
pub struct CatchupStats {
    pub connect_ms: f64,
    pub sync_ms: f64,
    pub total_ms: f64,
    pub pages: u64,
    pub events: u64,
    pub errors: u64,
}

/// Connect as `token`, sync `cache` and fetch every missing range, as the
/// engine does on (re)connect. Bounded by a 120 s deadline.
pub async fn catch_up(addr: &str, token: &str, cache: &mut Cache) -> anyhow::Result<CatchupStats> {
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut conn = Conn::connect(addr, Duration::from_secs(15)).await?;
    conn.handshake(&Credentials::Token(token.to_string()), "bench")
        .await?;
    let mut st = CatchupStats {
        connect_ms: t0.elapsed().as_secs_f64() * 1e3,
        ..CatchupStats::default()
    };
    let cursors = cache.cursors()?;
    let reply: ConversationsOk = conn
        .request(&Request::Sync { cursors })
        .await?
        .parse()
        .context("sync reply")?;
    st.sync_ms = t0.elapsed().as_secs_f64() * 1e3;
    for conv in &reply.conversations {
        let fresh = cache.cursor(&conv.id)? == 0;
        cache.upsert_conversation(conv)?;
        if fresh && conv.last_seq > INITIAL_DEPTH {
            cache.set_floor(&conv.id, conv.last_seq - INITIAL_DEPTH + 1)?;
        }
    }
    let mut behind: VecDeque<String> = VecDeque::new();
    for id in cache.conversation_ids_by_activity()? {
        if !cache.missing_ranges(&id)?.is_empty() {
            behind.push_back(id);
        }
    }
    let mut inflight: HashMap<u64, String> = HashMap::new();
    for _ in 0..1_000_000 {
        while inflight.len() < FETCH_CONCURRENCY {
            let Some(conv) = behind.pop_front() else {
                break;
            };
            if let Some(id) = fill(&mut conn, cache, &conv).await? {
                inflight.insert(id, conv);
            }
        }
        if inflight.is_empty() {
            break;
        }
        let frame = tokio::time::timeout_at(deadline, conn.next_frame())
            .await
            .map_err(|_| ClientError::Timeout)??;
        match frame {
            ServerFrame::Ok(ok) => {
                let Some(conv) = inflight.remove(&ok.id) else {
                    continue;
                };
                let h: HistoryOk = ok.parse().context("history reply")?;
                st.pages += 1;
                st.events += h.events.len() as u64;
                cache.set_last_seq(&conv, h.last_seq)?;
                cache.apply_events(&h.events)?;
                if !h.events.is_empty()
                    && let Some(id) = fill(&mut conn, cache, &conv).await?
                {
                    inflight.insert(id, conv);
                }
            }
            ServerFrame::Error(e) => {
                st.errors += 1;
                if let Some(id) = e.id {
                    inflight.remove(&id);
                }
            }
            ServerFrame::Event(ev) => {
                cache.apply_events(std::slice::from_ref(&ev))?;
            }
            _ => {}
        }
    }
    st.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    conn.close().await;
    Ok(st)
}

/// Ask for the first missing range of `conv` (at most a page).
async fn fill(conn: &mut Conn, cache: &Cache, conv: &str) -> anyhow::Result<Option<u64>> {
    let Some(&(from, to)) = cache.missing_ranges(conv)?.first() else {
        return Ok(None);
    };
    let limit = (to - from + 1).min(PAGE) as u32;
    let id = conn
        .send(&Request::History {
            conversation_id: conv.to_string(),
            after: Some(from - 1),
            before: None,
            limit: Some(limit),
        })
        .await?;
    Ok(Some(id))
}

/// Send `count` messages round-robin over `convs`, up to `window` unacked.
pub async fn post(
    client: &mut wire::Client,
    convs: &[String],
    count: usize,
    body_bytes: usize,
) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let window = 256u64;
    let pad = "x".repeat(body_bytes);
    let first = client.next_id();
    let mut sent = 0usize;
    let mut acked = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while acked < count {
        while sent < count && (sent - acked) < window as usize {
            let conv = &convs[sent % convs.len()];
            client
                .send(json!({"type": "send", "conversation_id": conv, "client_msg_id": format!("p{first}-{sent}"), "body": pad}))
                .await?;
            sent += 1;
        }
        client.ws.flush().await?;
        let msg = tokio::time::timeout_at(deadline, client.ws.next())
            .await
            .context("posting timed out")?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => bail!("poster connection lost"),
        };
        if let Some(hot) = wire::Hot::parse(text.as_str())
            && hot.id.is_some_and(|id| id >= first)
        {
            if hot.ty != "ok" {
                bail!("post refused: {}", text.as_str());
            }
            acked += 1;
        }
    }
    Ok(())
}

pub async fn run(server: &Server, args: &CatchupArgs) -> anyhow::Result<Report> {
    let tag = super::run_tag();
    let reader = format!("r{tag}");
    let names = vec![reader.clone(), format!("p{tag}")];
    let mut users = wire::register_many(&server.addr, names, 2, 1, true).await?;
    let (poster_conn, _) = users.pop().context("poster")?;
    let (reader_conn, reader_user) = users.pop().context("reader")?;
    drop(reader_conn);
    let mut poster = poster_conn.context("poster connection")?;
    let mut convs = Vec::new();
    for i in 0..args.conversations.max(1) {
        let r = poster
            .call(json!({"type": "create", "kind": "group", "name": format!("c{i}"), "members": [reader]}))
            .await?;
        convs.push(
            r["conversation"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let dir = std::env::temp_dir().join(format!("chatd-bench-cache-{}", uuid::Uuid::new_v4()));
    let result = async {
        let mut cache = Cache::open(dir.join("cache.db"))?;
        cache.set_me(&reader)?;
        // Up to date once, then offline while the messages arrive.
        catch_up(&server.addr, &reader_user.token, &mut cache).await?;
        let t_post = Instant::now();
        post(&mut poster, &convs, args.missed, args.body_bytes).await?;
        let post_s = t_post.elapsed().as_secs_f64();
        let chatd_cpu = server.cpu();
        let self_cpu = CpuMeter::start(None);
        let st = catch_up(&server.addr, &reader_user.token, &mut cache).await?;
        let behind = cache
            .conversation_ids_by_activity()?
            .iter()
            .filter(|c| {
                cache
                    .missing_ranges(c)
                    .map(|m| !m.is_empty())
                    .unwrap_or(true)
            })
            .count();
        let mut r = Report::new("catchup");
        r.set("missed", args.missed as u64)
            .set("conversations", convs.len() as u64)
            .set("post_s", post_s)
            .set("caught_up_ms", st.total_ms)
            .set("connect_auth_ms", st.connect_ms)
            .set("sync_reply_ms", st.sync_ms)
            .set("pages", st.pages)
            .set("events_fetched", st.events)
            .set("errors", st.errors)
            .set("conversations_still_behind", behind as u64)
            .set("chatd", server.figures(chatd_cpu))
            .set("generator_cpu_pct", self_cpu.percent());
        anyhow::Ok(r)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
