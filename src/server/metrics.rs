//! chatd's metrics, in the Prometheus text format on `GET /metrics` of a
//! listener of their own (`[net] metrics_listen`; off by default).
//!
//! One [`Metrics`] per server, held in [`Shared`], with one
//! `prometheus_client` registry: several servers in one process (the
//! tests) keep their own numbers. What the hot paths count is a relaxed
//! atomic add behind a one-line method ([`Metrics::frame_in`],
//! [`Metrics::reply`], [`Metrics::connection_opened`]); what other parts
//! already know (the hub's queues and pushes, the writer's commit
//! histograms, the hashing queue) is read only when scraped, by
//! [`Sampled`]. Every label takes its values from a small fixed set:
//! transports, error codes, event kinds, frame kinds.
//!
//! The listener ([`serve`]) answers `GET /metrics` and nothing else, with
//! the same head timeout as the main port, and stops with the server.

use super::Shared;
use super::auth::Hasher;
use super::hub::Hub;
use crate::proto::{ErrorCode, EventBody};
use crate::store::log::{BucketsSnapshot, CommitSink, Committed, WriteStats};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// A label set of one label with a value from a fixed set.
type Label = [(&'static str, &'static str); 1];

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket (`GET /ws`).
    Ws,
    /// Server-sent events and `POST`s over plain HTTP.
    Http,
}

impl Transport {
    const ALL: [Transport; 2] = [Transport::Ws, Transport::Http];

    fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Http => "http",
        }
    }
}

/// Event kinds, in the order of [`kind_index`].
const EVENT_KINDS: [&str; 11] = [
    "message", "edit", "delete", "reaction", "join", "leave", "remove", "role", "rename", "file",
    "create",
];

fn kind_index(body: &EventBody) -> usize {
    match body {
        EventBody::Message { .. } => 0,
        EventBody::Edit { .. } => 1,
        EventBody::Delete { .. } => 2,
        EventBody::Reaction { .. } => 3,
        EventBody::Join { .. } => 4,
        EventBody::Leave { .. } => 5,
        EventBody::Remove { .. } => 6,
        EventBody::Role { .. } => 7,
        EventBody::Rename { .. } => 8,
        EventBody::File { .. } => 9,
        EventBody::Create { .. } => 10,
    }
}

/// One chatd's metrics.
pub struct Metrics {
    registry: Registry,
    connections: [Gauge; Transport::ALL.len()],
    frames_in: Counter,
    replies: Counter,
    rejected: [Counter; ErrorCode::ALL.len()],
    kicked: Counter,
    events: Arc<EventCounters>,
}

/// Counted as commits are published (see [`Metrics::commit_sink`]).
struct EventCounters {
    messages: Counter,
    by_kind: [Counter; EVENT_KINDS.len()],
}

/// An open connection, counted until dropped.
#[must_use = "the connection is counted until this is dropped"]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// A registry with every metric that is counted as it happens. Those
    /// read from the server's parts at scrape time are added by
    /// [`Metrics::sample`] once the parts exist.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();

        let connections = Family::<Label, Gauge>::default();
        registry.register(
            "chatd_connections",
            "Open client connections, authenticated or not, by transport",
            connections.clone(),
        );
        let connections =
            Transport::ALL.map(|t| connections.get_or_create_owned(&[("transport", t.as_str())]));

        let frames_in = Counter::default();
        registry.register(
            "chatd_frames_in",
            "Text frames read from clients (requests, well-formed or not)",
            frames_in.clone(),
        );

        let rejected = Family::<Label, Counter>::default();
        registry.register(
            "chatd_rejected",
            "Error frames sent to clients, by error code",
            rejected.clone(),
        );
        let rejected =
            ErrorCode::ALL.map(|c| rejected.get_or_create_owned(&[("code", c.as_str())]));

        let kicked = Counter::default();
        registry.register(
            "chatd_slow_consumers_kicked",
            "Connections closed because their push queue overflowed (they resync on reconnect)",
            kicked.clone(),
        );

        let messages = Counter::default();
        registry.register(
            "chatd_messages_appended",
            "Messages committed to the log (events of kind message)",
            messages.clone(),
        );
        let by_kind = Family::<Label, Counter>::default();
        registry.register(
            "chatd_events_appended",
            "Events committed to the log, by kind",
            by_kind.clone(),
        );
        let by_kind = EVENT_KINDS.map(|k| by_kind.get_or_create_owned(&[("kind", k)]));

        registry.register(
            "chatd_build",
            "chatd's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let started = Gauge::<f64, AtomicU64>::default();
        started.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        registry.register_with_unit(
            "chatd_process_start_time",
            "When this chatd started serving, in seconds since the Unix epoch",
            Unit::Seconds,
            started,
        );

        Metrics {
            registry,
            connections,
            frames_in,
            replies: Counter::default(),
            rejected,
            kicked,
            events: Arc::new(EventCounters { messages, by_kind }),
        }
    }

    /// Read the hub, the writer's statistics and the hashing queue at
    /// each scrape.
    pub fn sample(&mut self, hub: Arc<Hub>, store: Arc<WriteStats>, hasher: Hasher) {
        self.registry.register_collector(Box::new(Sampled {
            hub,
            store,
            hasher,
            replies: self.replies.clone(),
        }));
    }

    /// `sink` wrapped so that the events it is told about are counted.
    pub fn commit_sink(&self, sink: Arc<dyn CommitSink>) -> Arc<dyn CommitSink> {
        Arc::new(CountingSink {
            inner: sink,
            events: self.events.clone(),
        })
    }

    /// Count a connection of `transport` as open until the guard drops.
    pub fn connection_opened(&self, transport: Transport) -> ConnectionGuard {
        let gauge = self.connections[transport as usize].clone();
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// A text frame came in.
    pub fn frame_in(&self) {
        self.frames_in.inc();
    }

    /// A reply is being sent: counted, and if it is an error frame, counted
    /// under its code.
    pub fn reply(&self, text: &str) {
        self.replies.inc();
        if let Some(code) = error_code_of(text) {
            self.rejected(code);
        }
    }

    /// A request was refused with `code` (for error frames that do not go
    /// through [`Metrics::reply`]).
    pub fn rejected(&self, code: ErrorCode) {
        self.rejected[code as usize].inc();
    }

    /// A connection was closed because its push queue overflowed.
    pub fn kicked(&self) {
        self.kicked.inc();
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The code of an error frame as [`crate::proto::encode_error`] writes it
/// (`{"type":"error","id":…,"code":"…",…}`), or `None` for any other
/// frame. Only error frames get past the first comparison.
fn error_code_of(text: &str) -> Option<ErrorCode> {
    let rest = text.strip_prefix(r#"{"type":"error","#)?;
    const KEY: &str = r#""code":""#;
    let at = rest.find(KEY)? + KEY.len();
    let code = rest[at..].split('"').next()?;
    ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
}

/// The commit sink that counts events, then hands them on.
struct CountingSink {
    inner: Arc<dyn CommitSink>,
    events: Arc<EventCounters>,
}

impl CommitSink for CountingSink {
    fn committed(&self, changes: &[Committed]) {
        self.inner.committed(changes);
        let mut counts = [0u64; EVENT_KINDS.len()];
        for change in changes {
            if let Committed::Event(ev, _) = change {
                counts[kind_index(&ev.body)] += 1;
            }
        }
        for (counter, n) in self.events.by_kind.iter().zip(counts) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if counts[0] > 0 {
            self.events.messages.inc_by(counts[0]);
        }
    }
}

/// What is read from the server's parts when scraped. (Help texts end
/// with a period here as the registry adds one to those it encodes.)
struct Sampled {
    hub: Arc<Hub>,
    store: Arc<WriteStats>,
    hasher: Hasher,
    replies: Counter,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampled")
    }
}

impl Collector for Sampled {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let fanout = self.hub.fanout_stats();
        gauge(
            &mut enc,
            "chatd_authenticated_users",
            "Users with at least one authenticated connection.",
            fanout.users as u64,
        )?;
        gauge(
            &mut enc,
            "chatd_authenticated_connections",
            "Authenticated connections.",
            fanout.connections as u64,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "chatd_frames_out",
                "Frames sent to clients: replies to requests, and pushes queued to connections.",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in [("reply", self.replies.get()), ("push", fanout.pushed)] {
                ConstCounter::new(n).encode(m.encode_family(&[("kind", kind)])?)?;
            }
        }
        gauge(
            &mut enc,
            "chatd_push_queue_frames",
            "Frames waiting in the push queues of all authenticated connections.",
            fanout.queued as u64,
        )?;
        gauge(
            &mut enc,
            "chatd_push_queue_max_frames",
            "Frames waiting in the fullest push queue.",
            fanout.largest_queue as u64,
        )?;
        counter(
            &mut enc,
            "chatd_pushes_dropped",
            "Pushes refused because the connection's queue was full or it was being closed for that.",
            fanout.dropped,
        )?;
        histogram(
            &mut enc,
            "chatd_commit_batch_requests",
            "Write requests applied by one group commit.",
            None,
            &self.store.batch_ops.snapshot(),
        )?;
        histogram(
            &mut enc,
            "chatd_commit_duration",
            "From a group commit's first request taken by the writer to its answers handed over, durable.",
            Some(&Unit::Seconds),
            &self.store.commit_time.snapshot(),
        )?;
        histogram(
            &mut enc,
            "chatd_wal_sync_duration",
            "Each fdatasync of the WAL (sync = \"full\" only).",
            Some(&Unit::Seconds),
            &self.store.sync_time.snapshot(),
        )?;
        gauge(
            &mut enc,
            "chatd_store_up",
            "1 while the store accepts writes; 0 after a failed sync of the WAL stopped them (restart chatd).",
            u64::from(!self.store.writes_failed()),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "chatd_bus_up",
                "1 while the bus between chatd nodes is reachable; bus=\"none\" in the embedded mode, which has none.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1u64).encode(m.encode_family(&[("bus", "none")])?)?;
        }
        let (waiting, running) = self.hasher.load();
        gauge(
            &mut enc,
            "chatd_password_hashes_waiting",
            "Password hashes and checks waiting for a hashing thread.",
            waiting as u64,
        )?;
        gauge(
            &mut enc,
            "chatd_password_hashes_running",
            "Password hashes and checks being computed.",
            running as u64,
        )
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    h: &BucketsSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

/// Largest request head read on the metrics listener.
const MAX_HEAD: usize = 16 * 1024;

/// Metrics connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// Serve `GET /metrics` on `listener` until the server shuts down; then
/// let scrapes under way finish within the grace period.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let head_timeout = Duration::from_secs(shared.limits.auth_timeout_secs.max(1));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening on /metrics");
    }
    let conns = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if conns.len() >= MAX_CONNECTIONS {
            tracing::debug!(%peer, "metrics: refused, too many connections");
            continue;
        }
        let shared = shared.clone();
        conns.spawn(async move {
            let svc_shared = shared.clone();
            let service = hyper::service::service_fn(move |req| {
                let metrics = svc_shared.clone();
                async move { Ok::<_, Infallible>(answer(&req, &metrics.metrics)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .max_buf_size(MAX_HEAD);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, "metrics connection: {e}");
                    }
                }
                _ = shared.shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(shared.grace, conn).await;
                }
            }
        });
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// `GET /metrics`, or 404.
fn answer(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, kind, body) = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics.encode(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: GET /metrics\n".to_string(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(kind) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ProtoError, encode_error};

    /// Each sample line: (name, labels, value).
    fn samples(text: &str) -> Vec<(String, String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("name and value");
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
                    None => (series, ""),
                };
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("value of {l:?}")),
                };
                (name.to_string(), labels.to_string(), value)
            })
            .collect()
    }

    fn value(text: &str, name: &str, labels: &str) -> f64 {
        samples(text)
            .into_iter()
            .find(|(n, l, _)| n == name && l == labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
            .2
    }

    #[test]
    fn error_frames_are_recognised_by_their_code() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "ALL is in declaration order");
            for id in [None, Some(7)] {
                let frame = encode_error(id, &ProtoError::new(code, "a \"code\":\"x\" inside"));
                assert_eq!(error_code_of(&frame), Some(code), "{frame}");
            }
        }
        assert_eq!(error_code_of(r#"{"type":"ok","id":1}"#), None);
        assert_eq!(error_code_of(r#"{"type":"event","kind":"message"}"#), None);
    }

    #[test]
    fn counters_and_labels_encode_in_the_text_format() {
        let m = Metrics::new();
        m.frame_in();
        m.frame_in();
        m.reply(r#"{"type":"ok","id":1}"#);
        m.reply(&encode_error(Some(2), &ProtoError::forbidden("no")));
        m.kicked();
        let ws = m.connection_opened(Transport::Ws);
        let ws2 = m.connection_opened(Transport::Ws);
        drop(ws2);
        let text = m.encode();
        assert!(text.contains("# HELP chatd_frames_in_total "), "{text}");
        assert!(
            text.contains("# TYPE chatd_frames_in_total counter"),
            "{text}"
        );
        assert_eq!(value(&text, "chatd_frames_in_total", ""), 2.0);
        assert_eq!(
            value(&text, "chatd_rejected_total", r#"code="forbidden""#),
            1.0
        );
        assert_eq!(
            value(&text, "chatd_rejected_total", r#"code="bad_frame""#),
            0.0
        );
        assert_eq!(value(&text, "chatd_slow_consumers_kicked_total", ""), 1.0);
        assert_eq!(value(&text, "chatd_connections", r#"transport="ws""#), 1.0);
        assert_eq!(
            value(&text, "chatd_connections", r#"transport="http""#),
            0.0
        );
        let version = format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"));
        assert_eq!(value(&text, "chatd_build_info", &version), 1.0);
        assert!(value(&text, "chatd_process_start_time_seconds", "") > 1.5e9);
        drop(ws);
        assert_eq!(
            value(&m.encode(), "chatd_connections", r#"transport="ws""#),
            0.0
        );
    }

    #[test]
    fn committed_events_are_counted_by_kind() {
        use crate::proto::Event;
        let m = Metrics::new();
        let sink = m.commit_sink(Arc::new(crate::store::log::NoSink));
        let event = |body: EventBody| {
            Committed::Event(
                Arc::new(Event {
                    conversation_id: "c".into(),
                    seq: 1,
                    sender: "a".into(),
                    ts: 0,
                    client_msg_id: None,
                    eid: None,
                    bot: false,
                    body,
                }),
                String::new(),
            )
        };
        let message = || {
            event(EventBody::Message {
                body: "hi".into(),
                reply_to: None,
                encrypted: None,
            })
        };
        sink.committed(&[
            message(),
            message(),
            event(EventBody::Delete { target_seq: 1 }),
        ]);
        sink.committed(&[Committed::User("a".into()), message()]);
        let text = m.encode();
        assert_eq!(value(&text, "chatd_messages_appended_total", ""), 3.0);
        assert_eq!(
            value(&text, "chatd_events_appended_total", r#"kind="message""#),
            3.0
        );
        assert_eq!(
            value(&text, "chatd_events_appended_total", r#"kind="delete""#),
            1.0
        );
        assert_eq!(
            value(&text, "chatd_events_appended_total", r#"kind="edit""#),
            0.0
        );
    }

    #[test]
    fn fanout_counts_pushes_drops_and_queue_depth() {
        use crate::proto::{ConvKind, Event};
        use crate::server::queue::PushQueue;
        let hub = Arc::new(Hub::new(8));
        let create = Event {
            conversation_id: "g".into(),
            seq: 1,
            ts: 0,
            sender: "alice".into(),
            client_msg_id: None,
            eid: None,
            bot: false,
            body: EventBody::Create {
                name: Some("g".into()),
                members: vec!["alice".into(), "bob".into()],
            },
        };
        hub.committed(&[
            Committed::Created {
                id: "g".into(),
                kind: ConvKind::Group,
                name: Some("g".into()),
            },
            Committed::Event(Arc::new(create), "{}".into()),
        ]);
        let alice_queue = Arc::new(PushQueue::new(100));
        let bob_queue = Arc::new(PushQueue::new(2));
        let _alice = hub.register("alice", alice_queue.clone(), [1; 32]).unwrap();
        // Bob coming online is pushed to alice.
        let _bob = hub.register("bob", bob_queue.clone(), [2; 32]).unwrap();
        // Bob's queue holds two; the third push overflows it.
        for _ in 0..3 {
            hub.typing("alice", "g", true).unwrap();
        }
        let stats = hub.fanout_stats();
        assert_eq!(stats.users, 2);
        assert_eq!(stats.connections, 2);
        assert_eq!(
            stats.pushed, 3,
            "presence to alice, two typing pushes to bob"
        );
        assert_eq!(stats.dropped, 1);
        assert_eq!(stats.queued, 1, "bob's frames went with the kick");
        assert_eq!(stats.largest_queue, 1);
        assert_eq!(alice_queue.queued(), 1);
        assert_eq!(bob_queue.queued(), 0);
    }

    #[test]
    fn histograms_encode_cumulative_buckets() {
        let stats = WriteStats::default();
        stats.batch_ops.observe(1);
        stats.batch_ops.observe(3);
        stats.batch_ops.observe(3);
        let mut registry = Registry::default();
        #[derive(Debug)]
        struct One(BucketsSnapshot);
        impl Collector for One {
            fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                histogram(&mut enc, "chatd_test_ops", "ops", None, &self.0)
            }
        }
        registry.register_collector(Box::new(One(stats.batch_ops.snapshot())));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE chatd_test_ops histogram"), "{text}");
        assert_eq!(value(&text, "chatd_test_ops_bucket", r#"le="1""#), 1.0);
        assert_eq!(value(&text, "chatd_test_ops_bucket", r#"le="2""#), 1.0);
        assert_eq!(value(&text, "chatd_test_ops_bucket", r#"le="4""#), 3.0);
        assert_eq!(value(&text, "chatd_test_ops_bucket", r#"le="+Inf""#), 3.0);
        assert_eq!(value(&text, "chatd_test_ops_count", ""), 3.0);
        assert_eq!(value(&text, "chatd_test_ops_sum", ""), 7.0);
    }
}
