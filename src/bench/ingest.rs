//! `ingest`: N senders, each in its own DM (with a partner who stays
//! offline, so the only push is the sender's own echo). Closed loop: each
//! sender sends the next message as soon as the previous one is acked.
//! Open loop (`--rate`): senders are paced to an aggregate rate whatever the
//! acks do. Reports acked msgs/s and ack latency.

use super::proc::CpuMeter;
use super::report::{Report, Samples};
use super::server::Server;
use super::wire::{self, Hot, Ws};
use anyhow::Context;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// Sending connections, each in its own DM.
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Open loop at this aggregate rate (msgs/s) instead of closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
}

struct Sender {
    client: wire::Client,
    conv: String,
}

async fn setup(server: &Server, args: &IngestArgs) -> anyhow::Result<Vec<Sender>> {
    let tag = super::run_tag();
    let n = args.senders.max(1);
    let mut names: Vec<String> = (0..n).map(|i| format!("i{tag}_{i}")).collect();
    names.extend((0..n).map(|i| format!("i{tag}_p{i}")));
    let mut users =
        wire::register_many(&server.addrs, names.clone(), 64, args.sources, true).await?;
    // Partners go offline: only the sender's own echo is pushed.
    for (c, _) in users.iter_mut().skip(n) {
        if let Some(c) = c.take() {
            let mut ws = c.ws;
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
    }
    let mut senders = Vec::new();
    for (i, (c, _)) in users.into_iter().take(n).enumerate() {
        let mut client = c.context("sender connection")?;
        let reply = client
            .call(json!({"type": "create", "kind": "dm", "members": [names[n + i]]}))
            .await?;
        let conv = reply["conversation"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        senders.push(Sender { client, conv });
    }
    Ok(senders)
}

/// A `send` as `chat` makes it: its `client_msg_id` is made the way the
/// client makes one (the shape of the ids decides how the server's
/// idempotency index grows).
fn send_frame(id: u64, conv: &str, pad: &str) -> Message {
    let cmid = crate::client::engine::actions::new_client_msg_id();
    Message::Text(
        format!(
            r#"{{"type":"send","id":{id},"conversation_id":"{conv}","client_msg_id":"{cmid}","body":"{pad}"}}"#
        )
        .into(),
    )
}

/// Closed loop: one message in flight per sender.
async fn closed_loop(s: Sender, end: tokio::time::Instant, pad: String) -> (u64, u64, Samples) {
    let Sender { client, conv } = s;
    let mut id = client.next_id();
    let mut ws = client.ws;
    let (mut acked, mut errors, mut lat) = (0u64, 0u64, Samples::default());
    'outer: while tokio::time::Instant::now() < end {
        let t = Instant::now();
        if ws.send(send_frame(id, &conv, &pad)).await.is_err() {
            break;
        }
        // Wait for this id's answer (skipping the echo), at most 10 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
                _ => break 'outer,
            };
            let Some(hot) = Hot::parse(msg.as_str()) else {
                continue;
            };
            if hot.id != Some(id) {
                continue;
            }
            if hot.ty == "ok" {
                acked += 1;
                lat.push(t.elapsed().as_micros() as u64);
            } else {
                errors += 1;
            }
            break;
        }
        id += 1;
    }
    (acked, errors, lat)
}

async fn open_reader(
    mut stream: SplitStream<Ws>,
    sent_at: Arc<Mutex<HashMap<u64, Instant>>>,
    deadline: tokio::time::Instant,
) -> (u64, u64, Samples) {
    let (mut acked, mut errors, mut lat) = (0u64, 0u64, Samples::default());
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stream.next()).await {
        let Message::Text(text) = msg else { continue };
        let Some(hot) = Hot::parse(text.as_str()) else {
            continue;
        };
        let Some(id) = hot.id else { continue };
        let Some(t) = sent_at.lock().ok().and_then(|mut m| m.remove(&id)) else {
            continue;
        };
        if hot.ty == "ok" {
            acked += 1;
            lat.push(t.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
        let done = sent_at.lock().map(|m| m.is_empty()).unwrap_or(true);
        if done && tokio::time::Instant::now() > deadline - Duration::from_secs(5) {
            break;
        }
    }
    (acked, errors, lat)
}

/// Open loop: paced sends, acks read on their own task.
async fn open_loop(
    s: Sender,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    period: Duration,
    pad: String,
) -> (u64, u64, Samples) {
    let Sender { client, conv } = s;
    let first = client.next_id();
    let (mut sink, stream) = client.ws.split();
    let sent_at = Arc::new(Mutex::new(HashMap::new()));
    let reader = tokio::spawn(open_reader(
        stream,
        sent_at.clone(),
        end + Duration::from_secs(5),
    ));
    for (k, id) in (0u64..10_000_000).zip(first..) {
        let at = start + period.mul_f64(k as f64);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        if let Ok(mut m) = sent_at.lock() {
            m.insert(id, Instant::now());
        }
        if sink.send(send_frame(id, &conv, &pad)).await.is_err() {
            break;
        }
    }
    let out = reader.await.unwrap_or_default();
    drop(sink);
    out
}

pub async fn run(server: &Server, args: &IngestArgs) -> anyhow::Result<Report> {
    let senders = setup(server, args).await?;
    let n = senders.len();
    let pad = "x".repeat(args.body_bytes);
    let chatd_cpu = server.cpu();
    let self_cpu = CpuMeter::start(None);
    let t0 = tokio::time::Instant::now();
    let end = t0 + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for (i, s) in senders.into_iter().enumerate() {
        let pad = pad.clone();
        tasks.push(match args.rate {
            None => tokio::spawn(closed_loop(s, end, pad)),
            Some(rate) => {
                let period = Duration::from_secs_f64(n as f64 / rate.max(0.001));
                let start = t0 + period.mul_f64(i as f64 / n as f64);
                tokio::spawn(open_loop(s, start, end, period, pad))
            }
        });
    }
    let (mut acked, mut errors, mut lat) = (0, 0, Samples::default());
    for t in tasks {
        if let Ok((a, e, l)) = t.await {
            acked += a;
            errors += e;
            lat.extend(l);
        }
    }
    let secs = args.duration;
    let mut r = Report::new("ingest");
    r.set("senders", n as u64)
        .set(
            "mode",
            match args.rate {
                Some(_) => "open-loop",
                None => "closed-loop",
            },
        )
        .set(
            "rate_target",
            args.rate.map(serde_json::Value::from).unwrap_or_default(),
        )
        .set("duration_s", secs)
        .set("acked", acked)
        .set("errors", errors)
        .set("acked_per_s", acked as f64 / secs.max(1e-9))
        .set("ack_latency", lat.summary().to_json())
        .set("chatd", server.figures(chatd_cpu))
        .set("generator_cpu_pct", self_cpu.percent());
    Ok(r)
}
