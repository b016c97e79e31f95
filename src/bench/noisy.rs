//! `noisy`: one member's heavy reads against everyone else's latency. A
//! user is put into G groups of M members each (what a hostile member can
//! do with `create` and `add_members`); then S connections of that user
//! run complete `sync`s (every page) back to back, while two other users
//! exchange messages in a DM of their own at R msg/s. The receiver's
//! send→receive latency is reported twice: quiet, then under the syncs.
//! The receiver reads like `chat` does: tokio-tungstenite, every frame
//! parsed as JSON.

use super::report::{Report, Samples};
use super::server::Server;
use super::wire::{self, Client};
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct NoisyArgs {
    /// Groups the noisy user is put in.
    #[arg(long, default_value_t = 175)]
    pub groups: usize,
    /// Members of each group (the same accounts in every group).
    #[arg(long, default_value_t = 1002)]
    pub group_size: usize,
    /// Connections of the noisy user, each running syncs back to back.
    #[arg(long, default_value_t = 12)]
    pub syncers: usize,
    /// Messages per second in the measured DM.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of each phase (quiet, then noisy).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
}

/// What the noisy user's syncs did.
#[derive(Default)]
struct SyncCounts {
    runs: AtomicU64,
    pages: AtomicU64,
    bytes: AtomicU64,
    largest: AtomicU64,
    /// Pages refused for the user's request budget (and retried).
    refused: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(srv: &Server, a: &NoisyArgs) -> anyhow::Result<Report> {
    let addr = srv.addr.as_str();
    let tag = super::run_tag();
    let others = a.group_size.saturating_sub(2).max(1);
    let names: Vec<String> = (0..others).map(|i| format!("n{tag}{i}")).collect();
    wire::register_many(&srv.addrs, names.clone(), 64, 4, false).await?;
    let (_, noisy) = wire::register(addr, wire::setup_source(0, 4), &format!("q{tag}")).await?;
    let (mut flooder, _) =
        wire::register(addr, wire::setup_source(1, 4), &format!("f{tag}")).await?;
    let setup = Instant::now();
    for g in 0..a.groups {
        let r = flooder
            .call(
                json!({"type":"create","kind":"group","name":format!("flood {g}"),
                         "members":[noisy.name]}),
            )
            .await
            .with_context(|| format!("create group {g}"))?;
        let conv = r["conversation"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for chunk in names.chunks(2000) {
            flooder
                .call(json!({"type":"add_members","conversation_id":conv,"members":chunk}))
                .await
                .with_context(|| format!("fill group {g}"))?;
        }
    }
    let setup_s = setup.elapsed().as_secs_f64();
    // Let the set-up's writes settle (checkpoints) before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (tx, _) = wire::register(addr, wire::setup_source(2, 4), &format!("s{tag}")).await?;
    let (rx, rx_user) = wire::register(addr, wire::setup_source(3, 4), &format!("r{tag}")).await?;
    let mut tx = tx;
    let dm = tx
        .call(json!({"type":"create","kind":"dm","members":[rx_user.name]}))
        .await?;
    let dm = dm["conversation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let epoch = Instant::now();
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let reader = tokio::spawn(receive(rx, lat_tx, epoch));
    // The sender's acks are read and dropped, as a client would.
    let (mut sink, mut acks) = tx.ws.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = acks.next().await {} });

    let cpu = srv.cpu();
    let mut next_id = 1_000_000u64;
    let quiet = phase(&mut sink, &dm, a, epoch, &mut next_id, &mut lat_rx).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SyncCounts::default());
    let mut syncers = Vec::new();
    for i in 0..a.syncers {
        let c = wire::auth(addr, wire::source(i, 4), &noisy.token).await?;
        syncers.push(tokio::spawn(sync_loop(c, stop.clone(), counts.clone())));
    }
    let started = Instant::now();
    let noisy_lat = phase(&mut sink, &dm, a, epoch, &mut next_id, &mut lat_rx).await?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in syncers {
        let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
    }
    reader.abort();
    drain.abort();

    let mut r = Report::new("noisy");
    let (mut quiet, mut noisy_lat) = (quiet, noisy_lat);
    let runs = counts.runs.load(Ordering::Relaxed);
    r.set("groups", a.groups as u64)
        .set("group_size", a.group_size as u64)
        .set("syncers", a.syncers as u64)
        .set("rate", a.rate)
        .set("setup_s", super::report::r3(setup_s))
        .set("quiet_delivered", quiet.len() as u64)
        .set("quiet_latency_ms", quiet.summary().to_json())
        .set("noisy_delivered", noisy_lat.len() as u64)
        .set("noisy_latency_ms", noisy_lat.summary().to_json())
        .set("sync_runs", runs)
        .set("sync_runs_per_s", super::report::r3(runs as f64 / elapsed))
        .set("sync_pages", counts.pages.load(Ordering::Relaxed))
        .set(
            "sync_bytes_per_run",
            counts.bytes.load(Ordering::Relaxed) / runs.max(1),
        )
        .set("largest_sync_frame", counts.largest.load(Ordering::Relaxed))
        .set("sync_refused", counts.refused.load(Ordering::Relaxed))
        .set("sync_errors", counts.errors.load(Ordering::Relaxed))
        .set("chatd", srv.figures(cpu));
    Ok(r)
}

/// Send at the rate for the duration; collect the latencies that arrive
/// by a second after the last send.
async fn phase(
    sink: &mut futures_util::stream::SplitSink<wire::Ws, Message>,
    conv: &str,
    a: &NoisyArgs,
    epoch: Instant,
    next_id: &mut u64,
    lat: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
) -> anyhow::Result<Samples> {
    let count = (a.rate * a.duration).round().max(1.0) as u64;
    let gap = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let start = tokio::time::Instant::now();
    let mut out = Samples::default();
    for i in 0..count {
        tokio::time::sleep_until(start + gap.mul_f64(i as f64)).await;
        let id = *next_id;
        *next_id += 1;
        let body = wire::micros_since(epoch);
        let frame = format!(
            r#"{{"type":"send","id":{id},"conversation_id":"{conv}","client_msg_id":"n{id}","body":"{body}"}}"#
        );
        sink.send(Message::Text(frame.into())).await?;
        while let Ok(l) = lat.try_recv() {
            out.push(l);
        }
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(1);
    while (out.len() as u64) < count {
        match tokio::time::timeout_at(end, lat.recv()).await {
            Ok(Some(l)) => out.push(l),
            _ => break,
        }
    }
    Ok(out)
}

/// The receiver: every frame parsed, message bodies carry their send time.
async fn receive(c: Client, out: tokio::sync::mpsc::UnboundedSender<u64>, epoch: Instant) {
    let mut ws = c.ws;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if v["type"] == "event"
            && let Some(sent) = v["body"].as_str().and_then(|b| b.parse::<u64>().ok())
        {
            let _ = out.send(wire::micros_since(epoch).saturating_sub(sent));
        }
    }
}

/// Complete syncs (every page) back to back until `stop`.
async fn sync_loop(mut c: Client, stop: Arc<AtomicBool>, counts: Arc<SyncCounts>) {
    while !stop.load(Ordering::Relaxed) {
        let mut after = Value::Null;
        for _ in 0..10_000 {
            let reply = c
                .call(json!({"type":"sync","cursors":{},"after":after}))
                .await;
            let page = match reply {
                Ok(page) => page,
                // Out of budget: wait as a client would, then go on.
                Err(e)
                    if e.downcast_ref::<wire::Refused>()
                        .is_some_and(|r| r.code == "rate_limited") =>
                {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let size = page.to_string().len() as u64;
            counts.pages.fetch_add(1, Ordering::Relaxed);
            counts.bytes.fetch_add(size, Ordering::Relaxed);
            counts.largest.fetch_max(size, Ordering::Relaxed);
            after = page["next"].clone();
            if after.is_null() {
                break;
            }
        }
        counts.runs.fetch_add(1, Ordering::Relaxed);
    }
}
