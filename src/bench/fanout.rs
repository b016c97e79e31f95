//! `fanout`: one group of N members, S of them sending at an aggregate rate
//! R; every member records send→receive latency from the send instant the
//! body carries. `--find-max` raises R until p99 passes the limit or any
//! delivery is lost.
//!
//! Members read like the client by default (see [`super::member`]);
//! `--members-read raw` keeps the lighter reading below, where members that
//! only receive scan raw socket bytes for bodies.

use super::member::{self, Burst};
use super::proc::CpuMeter;
use super::report::{Report, Samples};
use super::server::Server;
use super::wire::{self, Hot, Ws};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How members read what chatd pushes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MembersRead {
    /// Like the client: tungstenite with the client's settings, one task
    /// per connection, every frame decoded into a `ServerFrame`.
    #[default]
    Client,
    /// The same tasks and connections as `client`, but each frame parsed
    /// only for its `type`, `id` and `body` (borrowed): a light protocol
    /// client, to tell the client's decode apart from the rest.
    Frames,
    /// Light: members that only receive scan raw socket bytes for bodies;
    /// senders read through tungstenite with small buffers.
    Raw,
}

impl MembersRead {
    pub fn as_str(self) -> &'static str {
        match self {
            MembersRead::Client => "client",
            MembersRead::Frames => "frames",
            MembersRead::Raw => "raw",
        }
    }

    /// How a tungstenite member parses its frames.
    fn parse(self) -> member::Parse {
        match self {
            MembersRead::Frames => member::Parse::Hot,
            _ => member::Parse::Full,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Members of the group (each one connection).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// How many of the members send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second, all senders together (the first rate tried with --find-max).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending (per step with --find-max).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Raise the rate until p99 exceeds --p99-limit-ms or a delivery is lost.
    #[arg(long)]
    pub find_max: bool,
    /// The p99 latency a --find-max step must stay under.
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// Bytes of each message body.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Source addresses (127.0.0.1…) to spread connections over.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// How members read: like the client, or raw bytes scanned for bodies.
    #[arg(long, value_enum, default_value_t = MembersRead::Client)]
    pub members_read: MembersRead,
}

/// What one member counted during the current step.
#[derive(Default)]
pub(super) struct Stats {
    pub step: u32,
    pub deliveries: u64,
    pub stale: u64,
    pub acks: u64,
    pub errors: u64,
    /// Text frames that did not decode (client-like members).
    pub unreadable: u64,
    pub closed: bool,
    pub lat: Samples,
    /// Send → `ok` (client-like senders).
    pub ack_lat: Samples,
}

type Sink = SplitSink<Ws, Message>;

/// How a sending member is driven.
enum Sender {
    /// A paced loop on the sink half; the stream half is read apart.
    Raw { sink: Option<Sink>, next_id: u64 },
    /// The member's own task sends the bursts it is handed.
    Client(mpsc::Sender<Burst>),
}

struct World {
    conv: String,
    stats: Vec<Arc<Mutex<Stats>>>,
    readers: Vec<JoinHandle<()>>,
    senders: Vec<Sender>,
    epoch: Instant,
}

pub(super) fn parse_body(b: &str) -> Option<(u32, u64)> {
    let rest = b.strip_prefix('b')?;
    let mut parts = rest.splitn(3, ':');
    let step = parts.next()?.parse().ok()?;
    let t = parts.next()?.parse().ok()?;
    Some((step, t))
}

/// The body of a message event, found without parsing the frame: the hot
/// path of every member, which must stay far cheaper than chatd's work per
/// delivery. chatd writes `type` first and `body` as a plain string; bench
/// bodies need no escapes.
fn event_body(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"type":"event","#)?;
    let at = rest.find(r#""body":"b"#)?;
    let body = &rest[at + 8..];
    body.find('"').map(|end| &body[..end])
}

/// Count one message body received: a delivery of this step (with its
/// latency) or a stale one.
pub(super) fn count_body(body: &str, stats: &Mutex<Stats>, epoch: Instant) {
    let now = wire::micros_since(epoch);
    let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
    match parse_body(body) {
        Some((step, t)) if step == st.step => {
            st.deliveries += 1;
            st.lat.push(now.saturating_sub(t));
        }
        Some(_) => st.stale += 1,
        None => {}
    }
}

/// Count one text frame from the server (raw mode).
fn on_text(text: &str, stats: &Mutex<Stats>, epoch: Instant) {
    if let Some(body) = event_body(text) {
        count_body(body, stats, epoch);
        return;
    }
    let Some(hot) = Hot::parse(text) else {
        return;
    };
    let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
    match hot.ty.as_ref() {
        "ok" => st.acks += 1,
        "error" => st.errors += 1,
        _ => {}
    }
}

/// One complete server frame at the start of `buf`: (opcode, payload
/// range, frame length). Server frames are unmasked.
fn server_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, head): (usize, usize) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(b)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let end = head.checked_add(len)?;
    (buf.len() >= end).then_some((opcode, head..end, end))
}

/// A member that only receives reads its raw socket: a WebSocket library
/// on the generator's busiest path would cost more than the frames are
/// worth (this loop must stay far cheaper than chatd's work per delivery).
/// Pings are answered with an empty (masked) pong.
async fn raw_read_loop(mut sock: TcpStream, stats: Arc<Mutex<Stats>>, epoch: Instant) {
    const PONG: [u8; 6] = [0x8a, 0x80, 0, 0, 0, 0];
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    'read: loop {
        let mut at = 0;
        while let Some((opcode, payload, len)) = server_frame(&buf[at..]) {
            let payload = &buf[at + payload.start..at + payload.end];
            match opcode {
                0x1 => {
                    if let Ok(text) = std::str::from_utf8(payload) {
                        on_text(text, &stats, epoch);
                    }
                }
                0x8 => break 'read,
                0x9 if sock.write_all(&PONG).await.is_err() => break 'read,
                _ => {}
            }
            at += len;
        }
        buf.drain(..at);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    stats.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
}

async fn read_loop<S>(mut stream: S, stats: Arc<Mutex<Stats>>, epoch: Instant)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(t)) => on_text(t.as_str(), &stats, epoch),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    stats.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
}

async fn setup(server: &Server, args: &FanoutArgs) -> anyhow::Result<World> {
    let tag = super::run_tag();
    let names: Vec<String> = (0..args.members.max(2))
        .map(|i| format!("f{tag}_{i}"))
        .collect();
    let config = match args.members_read {
        MembersRead::Client | MembersRead::Frames => crate::client::net::conn::client_ws_config(),
        MembersRead::Raw => wire::ws_config(),
    };
    let users =
        wire::register_many_with(&server.addrs, names.clone(), 64, args.sources, true, config)
            .await?;
    let mut clients: Vec<wire::Client> = users.into_iter().filter_map(|(c, _)| c).collect();
    let reply = clients[0]
        .call(json!({"type": "create", "kind": "group", "name": "fanout", "members": &names[1..]}))
        .await?;
    let conv = reply["conversation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let epoch = Instant::now();
    let mut world = World {
        conv,
        stats: Vec::new(),
        readers: Vec::new(),
        senders: Vec::new(),
        epoch,
    };
    let senders = args.senders.max(1);
    if args.members_read == MembersRead::Raw {
        // Members that only receive go raw. A request answered first puts
        // each at a frame boundary with nothing left in tungstenite's
        // buffer (after the group's creation nothing else is pushed to
        // them). Over several nodes the group's creation reaches the
        // members on the other nodes through the bus, maybe after their
        // first answer: a pause and a second request leave it behind too,
        // instead of half a frame in a buffer the raw reader never sees.
        let rounds = if server.addrs.len() > 1 { 2 } else { 1 };
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let quiet = clients
                .iter_mut()
                .skip(senders)
                .map(|c| c.call(json!({"type": "conversations"})));
            for r in futures_util::future::join_all(quiet).await {
                r?;
            }
        }
    }
    for (i, c) in clients.into_iter().enumerate() {
        let next_id = c.next_id();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let st = stats.clone();
        match (args.members_read, i < senders) {
            (MembersRead::Raw, true) => {
                let (sink, stream) = c.ws.split();
                world
                    .readers
                    .push(tokio::spawn(read_loop(stream, st, epoch)));
                world.senders.push(Sender::Raw {
                    sink: Some(sink),
                    next_id,
                });
            }
            (MembersRead::Raw, false) => {
                let sock = c.ws.into_inner();
                world
                    .readers
                    .push(tokio::spawn(raw_read_loop(sock, st, epoch)));
            }
            (read, true) => {
                let (tx, rx) = mpsc::channel(1);
                world.readers.push(tokio::spawn(member::send_and_receive(
                    c.ws,
                    read.parse(),
                    next_id,
                    st,
                    epoch,
                    rx,
                )));
                world.senders.push(Sender::Client(tx));
            }
            (read, false) => {
                world
                    .readers
                    .push(tokio::spawn(member::receive(c.ws, read.parse(), st, epoch)));
            }
        }
        world.stats.push(stats);
    }
    Ok(world)
}

/// When one sender sends during a step.
#[derive(Clone, Copy)]
pub(super) struct Pace {
    pub step: u32,
    pub period: Duration,
    pub start: tokio::time::Instant,
    pub end: tokio::time::Instant,
    pub epoch: Instant,
}

/// One sender's paced loop; returns the sink, its next id and how many it sent.
async fn send_loop(
    mut sink: Sink,
    conv: String,
    mut next_id: u64,
    pace: Pace,
    pad: String,
) -> (Sink, u64, u64) {
    let Pace {
        step,
        period,
        start,
        end,
        epoch,
    } = pace;
    let mut sent = 0u64;
    let conv = serde_json::to_string(&conv).unwrap_or_default();
    for k in 0u64..10_000_000 {
        let at = start + period.mul_f64(k as f64);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let t = wire::micros_since(epoch);
        let frame = format!(
            r#"{{"type":"send","id":{next_id},"conversation_id":{conv},"client_msg_id":"m{step}-{next_id}","body":"b{step}:{t}:{pad}"}}"#
        );
        next_id += 1;
        if sink.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
        sent += 1;
    }
    (sink, next_id, sent)
}

/// One sender's step: its sink and next request id back (raw mode), and
/// how many it sent.
type Sent = (Option<(Sink, u64)>, u64);

/// Figures of one step at one rate.
async fn step(
    server: &Server,
    world: &mut World,
    args: &FanoutArgs,
    rate: f64,
    step_no: u32,
) -> Report {
    for s in &world.stats {
        let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
        let closed = st.closed;
        *st = Stats {
            step: step_no,
            closed,
            ..Stats::default()
        };
    }
    let senders = world.senders.len().max(1);
    let period = Duration::from_secs_f64(senders as f64 / rate.max(0.001));
    let pad = "x".repeat(args.body_bytes.saturating_sub(24));
    let chatd_cpu = server.cpu();
    let self_cpu = CpuMeter::start(None);
    let t0 = tokio::time::Instant::now();
    let end = t0 + Duration::from_secs_f64(args.duration);
    let mut tasks: Vec<(usize, JoinHandle<Sent>)> = Vec::new();
    for (i, sender) in world.senders.iter_mut().enumerate() {
        let pace = Pace {
            step: step_no,
            period,
            start: t0 + period.mul_f64(i as f64 / senders as f64),
            end,
            epoch: world.epoch,
        };
        match sender {
            Sender::Raw { sink, next_id } => {
                let Some(sink) = sink.take() else {
                    continue;
                };
                let run = send_loop(sink, world.conv.clone(), *next_id, pace, pad.clone());
                tasks.push((
                    i,
                    tokio::spawn(async move {
                        let (sink, next, n) = run.await;
                        (Some((sink, next)), n)
                    }),
                ));
            }
            Sender::Client(tx) => {
                let (done, sent) = oneshot::channel();
                let burst = Burst {
                    pace,
                    conv: world.conv.clone(),
                    pad: pad.clone(),
                    done,
                };
                if tx.send(burst).await.is_err() {
                    continue;
                }
                tasks.push((
                    i,
                    tokio::spawn(async move { (None, sent.await.unwrap_or(0)) }),
                ));
            }
        }
    }
    let mut sent = 0;
    for (i, t) in tasks {
        if let Ok((back, n)) = t.await {
            if let (Some((s, next)), Sender::Raw { sink, next_id }) = (back, &mut world.senders[i])
            {
                *sink = Some(s);
                *next_id = next;
            }
            sent += n;
        }
    }
    let send_secs = t0.elapsed().as_secs_f64();
    let members = world.stats.len() as u64;
    let expected = sent * members;
    // Every delivery received and every send answered.
    let total = |w: &World| -> (u64, u64) {
        w.stats.iter().fold((0, 0), |(d, a), s| {
            let st = s.lock().unwrap_or_else(|p| p.into_inner());
            (d + st.deliveries, a + st.acks)
        })
    };
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_deadline {
        let (delivered, answered) = total(world);
        if delivered >= expected && answered >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (mut lat, mut ack_lat) = (Samples::default(), Samples::default());
    let (mut received, mut stale, mut acks, mut errors, mut unreadable, mut closed) =
        (0, 0, 0, 0, 0, 0);
    for s in &world.stats {
        let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
        lat.extend(std::mem::take(&mut st.lat));
        ack_lat.extend(std::mem::take(&mut st.ack_lat));
        received += st.deliveries;
        stale += st.stale;
        acks += st.acks;
        errors += st.errors;
        unreadable += st.unreadable;
        closed += u64::from(st.closed);
    }
    let p = lat.summary();
    let mut r = Report::new("fanout");
    r.set("members_read", args.members_read.as_str())
        .set("members", members)
        .set("senders", senders as u64)
        .set("rate_target", rate)
        .set("duration_s", args.duration)
        .set("sent", sent)
        .set("rate_achieved", sent as f64 / send_secs.max(1e-9))
        .set("acked", acks)
        .set("send_errors", errors)
        .set("expected", expected)
        .set("received", received)
        .set("lost", expected.saturating_sub(received))
        .set("late_or_stale", stale)
        .set("disconnected", closed)
        .set("deliveries_per_s", received as f64 / elapsed.max(1e-9))
        .set("latency", p.to_json());
    if !ack_lat.is_empty() {
        r.set("ack_latency", ack_lat.summary().to_json());
    }
    if args.members_read != MembersRead::Raw {
        r.set("unreadable_frames", unreadable);
    }
    r.set("chatd", server.figures(chatd_cpu))
        .set("generator_cpu_pct", self_cpu.percent());
    r
}

fn passes(r: &Report, limit_ms: f64) -> bool {
    let p99 = r
        .get("latency")
        .and_then(|l| l["p99_ms"].as_f64())
        .unwrap_or(f64::MAX);
    r.num("lost") == 0.0
        && r.num("disconnected") == 0.0
        && r.num("send_errors") == 0.0
        && r.num("unreadable_frames") == 0.0
        && r.num("sent") > 0.0
        && p99 <= limit_ms
}

/// Run the scenario.
pub async fn run(server: &Server, args: &FanoutArgs) -> anyhow::Result<Report> {
    let mut world = setup(server, args).await?;
    let report = if !args.find_max {
        step(server, &mut world, args, args.rate, 1).await
    } else {
        find_max(server, &mut world, args).await
    };
    world.close();
    Ok(report)
}

impl World {
    /// Stop reading and close every member's connection.
    fn close(&mut self) {
        // A client-like sender's task ends when its control channel closes.
        self.senders.clear();
        for r in self.readers.drain(..) {
            r.abort();
        }
    }
}

async fn find_max(server: &Server, world: &mut World, args: &FanoutArgs) -> Report {
    let mut steps: Vec<Value> = Vec::new();
    let mut best: Option<Report> = None;
    let mut pass_rate = 0.0;
    let mut fail_rate: Option<f64> = None;
    let mut rate = args.rate.max(1.0);
    let mut no = 0u32;
    let mut stopped_early = false;
    let mut rebuilt = 0u32;
    // Doubling until a failure, then four bisections: at most 20 steps.
    for _ in 0..20 {
        no += 1;
        let r = step(server, world, args, rate, no).await;
        let ok = passes(&r, args.p99_limit_ms);
        steps.push(json!({
            "rate": rate,
            "rate_achieved": r.num("rate_achieved"),
            "lost": r.num("lost"),
            "p99_ms": r.get("latency").map(|l| l["p99_ms"].clone()),
            "chatd_cpu_pct": r.get("chatd").map(|c| c["cpu_pct"].clone()),
            "generator_cpu_pct": r.num("generator_cpu_pct"),
            "pass": ok,
        }));
        let disconnected = r.num("disconnected") > 0.0;
        if ok {
            pass_rate = rate;
            best = Some(r);
        } else {
            fail_rate = Some(rate);
        }
        // Members chatd dropped (their queues overflowed) are gone: the
        // search goes on with a new group of new members.
        if disconnected {
            world.close();
            match setup(server, args).await {
                Ok(w) => {
                    *world = w;
                    rebuilt += 1;
                }
                Err(_) => {
                    stopped_early = true;
                    break;
                }
            }
        }
        match fail_rate {
            None => rate *= 2.0,
            Some(f) => {
                if f - pass_rate <= pass_rate * 0.05 || steps.len() >= 14 {
                    break;
                }
                rate = ((pass_rate + f) / 2.0).round();
            }
        }
    }
    let mut r = best.unwrap_or_else(|| Report::new("fanout"));
    r.scenario = "fanout-find-max".into();
    r.set("p99_limit_ms", args.p99_limit_ms)
        .set("max_passing_rate", pass_rate)
        .set(
            "first_failing_rate",
            fail_rate.map(Value::from).unwrap_or(Value::Null),
        )
        .set("stopped_by_disconnects", stopped_early)
        .set("groups_rebuilt_after_disconnects", rebuilt)
        .set("steps", Value::Array(steps));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Event, EventBody, encode_event};

    #[test]
    fn the_fast_path_reads_what_chatd_writes() {
        let ev = Event {
            conversation_id: "c1".into(),
            seq: 7,
            ts: 1,
            sender: "f1_0".into(),
            client_msg_id: Some("m3-9".into()),
            eid: None,
            bot: false,
            body: EventBody::Message {
                body: "b3:12345:xxxx".into(),
                reply_to: None,
                encrypted: None,
            },
        };
        let text = encode_event(&ev);
        let body = event_body(&text).expect("a message event's body");
        assert_eq!(body, "b3:12345:xxxx");
        assert_eq!(parse_body(body), Some((3, 12345)));
        assert_eq!(event_body(r#"{"type":"ok","id":1,"seq":7}"#), None);
    }

    #[test]
    fn raw_frames_of_every_length_class_are_split_exactly() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let mut wire = vec![0x81];
            if len < 126 {
                wire.push(len as u8);
            } else if len <= 65_535 {
                wire.push(126);
                wire.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                wire.push(127);
                wire.extend_from_slice(&(len as u64).to_be_bytes());
            }
            let head = wire.len();
            wire.extend(std::iter::repeat_n(b'a', len));
            wire.extend_from_slice(&[0x89, 0x00]); // a ping behind it
            let (op, payload, end) = server_frame(&wire).expect("complete");
            assert_eq!((op, payload, end), (1, head..head + len, head + len));
            assert_eq!(server_frame(&wire[end..]), Some((9, 2..2, 2)));
            assert_eq!(server_frame(&wire[..end - 1]), None, "incomplete");
        }
    }
}
