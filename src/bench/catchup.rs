//! `catchup`: a user goes offline while M messages arrive over K
//! conversations, then reconnects with the client itself — an engine
//! started through [`crate::client::spawn`], its connection task and its
//! SQLite cache on disk — and is timed until the engine reports every
//! conversation complete.

use super::proc::CpuMeter;
use super::report::Report;
use super::server::Server;
use super::wire;
use anyhow::{Context, bail};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::cache::Cache;
use crate::client::credentials::TokenStore;
use crate::client::net::{Credentials, NetConfig};
use crate::client::paths::Paths;
use crate::client::view::ConnState;
use crate::client::{Action, ClientOptions, Update, spawn};

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
    /// Until the connection is up and authenticated.
    pub connect_ms: f64,
    /// Until the sync reply is applied.
    pub sync_ms: f64,
    /// Until every conversation is complete in the cache.
    pub total_ms: f64,
    /// Engine notices (cache or request failures) seen on the way.
    pub errors: u64,
}

/// Start the client as `user` (token `token`) with its data in `data`, and
/// wait until the engine has every conversation complete. Bounded by a
/// 120 s deadline; the engine is stopped before returning.
pub async fn catch_up(
    addr: &str,
    user: &str,
    token: &str,
    data: &Path,
) -> anyhow::Result<CatchupStats> {
    let t0 = Instant::now();
    let opts = ClientOptions::interactive(
        NetConfig::new(addr, "bench"),
        Some(user.to_string()),
        Some(Credentials::Token(token.to_string())),
        TokenStore::file_only(data.join("credentials.toml")),
        Paths::new(data.to_path_buf()),
    );
    let mut client = spawn(opts);
    let mut st = CatchupStats::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let mut synced = false;
    let done = loop {
        let Ok(Some(batch)) = tokio::time::timeout_at(deadline, client.updates.recv()).await else {
            break false;
        };
        let mut complete = false;
        for u in batch {
            match u {
                Update::Conn(ConnState::Connected) if st.connect_ms == 0.0 => {
                    st.connect_ms = ms(t0);
                }
                Update::Synced => {
                    st.sync_ms = ms(t0);
                    synced = true;
                }
                Update::Notice(_) => st.errors += 1,
                Update::Conversations(list) if synced => {
                    complete = list.iter().all(|c| !c.has_gap && c.cursor >= c.last_seq);
                }
                _ => {}
            }
        }
        if complete {
            break true;
        }
    };
    st.total_ms = ms(t0);
    let _ = client.actions.send(Action::Quit);
    let _ = tokio::time::timeout(Duration::from_secs(5), client.task).await;
    if !done {
        bail!("the client did not catch up within 120 s");
    }
    Ok(st)
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
    let mut users = wire::register_many(&server.addrs, names, 2, 1, true).await?;
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
        // Up to date once, then offline while the messages arrive.
        catch_up(&server.addr, &reader, &reader_user.token, &dir).await?;
        let t_post = Instant::now();
        post(&mut poster, &convs, args.missed, args.body_bytes).await?;
        let post_s = t_post.elapsed().as_secs_f64();
        let chatd_cpu = server.cpu();
        let self_cpu = CpuMeter::start(None);
        let cache_path = Paths::new(dir.clone()).cache_path(&server.addr, &reader);
        let held = |cache: &Cache| -> anyhow::Result<u64> { Ok(cache.cursors()?.values().sum()) };
        let before = held(&Cache::open(&cache_path)?)?;
        let st = catch_up(&server.addr, &reader, &reader_user.token, &dir).await?;
        let cache = Cache::open(&cache_path)?;
        let fetched = held(&cache)?.saturating_sub(before);
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
            .set("events_fetched", fetched)
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
