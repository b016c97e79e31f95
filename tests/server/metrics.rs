//! `GET /metrics`: off by default; when `[net] metrics_listen` is set, a
//! listener of its own answers in the Prometheus text format, with numbers
//! that follow what clients did.

use crate::support::server::http_request;
use crate::support::*;
use chat::server::Config;
use chat::store::log::SyncMode;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Samples of one scrape, by `name{labels}` as written.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in the scrape"))
    }
}

/// One `GET /metrics`, checked line by line: every line is a comment or
/// `name{labels} value`.
async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http_request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let mut samples = HashMap::new();
    for line in body.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `series value`: {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with("chatd_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    Scrape(samples)
}

fn with_metrics(c: &mut Config) {
    c.net.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    assert_eq!(Config::default().net.metrics_listen, None);
    let server = Server::start();
    assert_eq!(server.metrics_addr(), None, "nothing listens for metrics");
    let (status, _) = server.http("GET", "/metrics").await;
    assert_eq!(status, 404, "the main port has no /metrics");
}

#[tokio::test]
async fn metrics_follow_what_clients_do() {
    let server = Server::start_with(with_metrics);
    let at = server.metrics_addr().expect("a metrics listener");
    let before = scrape(at).await;
    assert_eq!(before.get("chatd_messages_appended_total"), 0.0);
    assert_eq!(before.get("chatd_store_up"), 1.0);
    assert_eq!(before.get(r#"chatd_bus_up{bus="none"}"#), 1.0);
    let version = format!(
        r#"chatd_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(before.get(&version), 1.0);
    assert!(before.get("chatd_process_start_time_seconds") > 1.5e9);

    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    const SENT: usize = 7;
    for i in 0..SENT {
        alice.send_msg(&g, &format!("hello {i}")).await;
    }
    let last = format!("hello {}", SENT - 1);
    bob.expect_push(
        |v| is_event(v, &g, "message") && v["body"] == last.as_str(),
        WAIT,
    )
    .await;
    alice.send_raw("not json").await;
    let r = alice.next_reply().await;
    assert_eq!(r["code"], "bad_frame", "{r}");

    let after = scrape(at).await;
    let grew = |series: &str| after.get(series) - before.get(series);
    assert_eq!(grew("chatd_messages_appended_total"), SENT as f64);
    assert_eq!(
        grew(r#"chatd_events_appended_total{kind="message"}"#),
        SENT as f64
    );
    assert_eq!(grew(r#"chatd_events_appended_total{kind="create"}"#), 1.0);
    assert_eq!(grew(r#"chatd_rejected_total{code="bad_frame"}"#), 1.0);
    assert_eq!(grew(r#"chatd_rejected_total{code="forbidden"}"#), 0.0);
    assert_eq!(after.get(r#"chatd_connections{transport="ws"}"#), 2.0);
    assert_eq!(after.get(r#"chatd_connections{transport="http"}"#), 0.0);
    assert_eq!(after.get("chatd_authenticated_connections"), 2.0);
    assert_eq!(after.get("chatd_authenticated_users"), 2.0);
    assert!(grew("chatd_frames_in_total") >= (SENT + 4) as f64);
    assert!(grew(r#"chatd_frames_out_total{kind="reply"}"#) >= (SENT + 4) as f64);
    assert!(
        grew(r#"chatd_frames_out_total{kind="push"}"#) >= SENT as f64,
        "bob heard every message"
    );
    assert!(after.get("chatd_commit_duration_seconds_count") > 0.0);
    assert!(after.get("chatd_commit_batch_requests_count") > 0.0);
    assert_eq!(
        after.get("chatd_commit_duration_seconds_count"),
        after.get(r#"chatd_commit_duration_seconds_bucket{le="+Inf"}"#)
    );
    assert_eq!(after.get("chatd_pushes_dropped_total"), 0.0);
    assert_eq!(after.get("chatd_slow_consumers_kicked_total"), 0.0);
    assert_eq!(after.get("chatd_password_hashes_running"), 0.0);

    bob.close().await;
    let mut gone = false;
    for _ in 0..100 {
        let s = scrape(at).await;
        if s.get(r#"chatd_connections{transport="ws"}"#) == 1.0
            && s.get("chatd_authenticated_users") == 1.0
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "a closed connection is no longer counted");
}

#[tokio::test]
async fn the_wal_sync_is_timed_with_sync_full() {
    if crate::support::skip_on_postgres("times the SQLite WAL sync") {
        return;
    }
    let server = Server::start_with(|c| {
        with_metrics(c);
        c.store.sync = SyncMode::Full;
    });
    let mut alice = server.user("alice").await;
    let g = alice.create_group("g", &[]).await;
    alice.send_msg(&g, "durable").await;
    let s = scrape(server.metrics_addr().expect("a metrics listener")).await;
    assert!(s.get("chatd_wal_sync_duration_seconds_count") > 0.0);
    assert!(s.get("chatd_commit_duration_seconds_count") > 0.0);
    assert_eq!(s.get("chatd_messages_appended_total"), 1.0);
}

#[tokio::test]
async fn the_metrics_listener_answers_get_metrics_only_and_stops_with_chatd() {
    let mut server = Server::start_with(with_metrics);
    let at = server.metrics_addr().expect("a metrics listener");
    for (method, path) in [("GET", "/"), ("GET", "/ws"), ("POST", "/metrics")] {
        let (status, _) = http_request(at, method, path).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(at).await.is_err(),
        "the metrics listener closed with the server"
    );
}
