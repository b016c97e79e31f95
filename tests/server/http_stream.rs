//! The session over plain HTTP, driven by hand: `POST /stream` answers a
//! server-sent event stream that starts with the handshake's reply,
//! `POST /rpc` answers frames of that session, `GET /stream` resumes it,
//! `DELETE /stream` ends it. The same limits, authorization and fan-out as
//! the WebSocket.

use crate::support::server::{HttpReply, http_exchange};
use crate::support::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One event of a stream.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    kind: Option<String>,
    data: Option<String>,
    comment: bool,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap_or("null")).expect("event data is JSON")
    }
}

/// A raw event-stream reader: one HTTP request, then events as they come.
struct Sse {
    sock: TcpStream,
    status: u16,
    head: String,
    /// Raw (chunked) bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked bytes not yet split into events.
    text: Vec<u8>,
    ended: bool,
}

impl Sse {
    async fn open(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &str) -> Sse {
        let mut sock = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("{method} /stream HTTP/1.1\r\nHost: {addr}\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        sock.write_all(head.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
                .await
                .expect("a response head in time")
                .expect("read");
            assert!(n > 0, "closed before a response");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let status = head[9..12].parse().expect("status");
        raw.drain(..end);
        Sse {
            sock,
            status,
            head,
            raw,
            text: Vec::new(),
            ended: false,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The next event within `within`, or `None` (none came, or the stream
    /// ended).
    async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // De-chunk what is complete.
            while let Some(le) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(String::from_utf8_lossy(&self.raw[..le]).trim(), 16)
                        .expect("chunk size");
                if size == 0 {
                    self.ended = true;
                    self.raw.clear();
                    break;
                }
                if self.raw.len() < le + 2 + size + 2 {
                    break;
                }
                self.text
                    .extend_from_slice(&self.raw[le + 2..le + 2 + size]);
                self.raw.drain(..le + 2 + size + 2);
            }
            if let Some(end) = self.text.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.text.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block).to_string();
                let mut ev = Event {
                    id: None,
                    kind: None,
                    data: None,
                    comment: false,
                };
                for line in block.lines() {
                    if line.starts_with(':') {
                        ev.comment = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.kind = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data = Some(v.to_string());
                    }
                }
                if ev.id.is_none() && ev.data.is_none() && ev.kind.is_none() && !ev.comment {
                    continue; // `retry:`
                }
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            let mut buf = [0u8; 16384];
            let n = match tokio::time::timeout_at(deadline, self.sock.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.ended = true;
                    return None;
                }
                Ok(Ok(n)) => n,
            };
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The next event carrying a frame that satisfies `pred`.
    async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await.expect("the expected event in time");
            if ev.data.is_some() && ev.kind.is_none() {
                let v = ev.json();
                if pred(&v) {
                    return (ev.id.expect("an event id"), v);
                }
            }
        }
    }
}

fn register_frame(user: &str) -> String {
    json!({"type":"register","id":1,"username":user,"password":PASSWORD}).to_string()
}

/// A stream registered as `user`: (stream, token, stream id).
async fn stream_of(server: &Server, user: &str) -> (Sse, String, String) {
    let mut s = Sse::open(server.addr(), "POST", &[], &register_frame(user)).await;
    assert_eq!(s.status, 200, "{}", s.head);
    assert!(
        s.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = s.header("x-chat-stream").expect("the stream's id");
    let (event_id, reply) = s.expect(|v| v["type"] == "ok").await;
    assert_eq!(event_id, format!("{id}.1"));
    let token = reply["token"].as_str().expect("a token").to_string();
    (s, token, id)
}

async fn rpc(server: &Server, stream: &str, token: &str, body: &str) -> HttpReply {
    let auth = format!("Bearer {token}");
    http_exchange(
        server.addr(),
        "POST",
        "/rpc",
        &[
            ("X-Chat-Stream", stream),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
}

/// `DELETE /stream`: the client leaves.
async fn leave(server: &Server, stream: &str, token: &str) -> HttpReply {
    let auth = format!("Bearer {token}");
    http_exchange(
        server.addr(),
        "DELETE",
        "/stream",
        &[("X-Chat-Stream", stream), ("Authorization", &auth)],
        b"",
    )
    .await
}

fn body_json(r: &HttpReply) -> Value {
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

#[tokio::test]
async fn a_stream_carries_the_session_and_rpc_answers_on_it() {
    let server = Server::start();
    let (mut s, token, id) = stream_of(&server, "alice").await;
    let mut bob = server.user("bob").await;
    // A frame: its reply in the response.
    let r = rpc(
        &server,
        &id,
        &token,
        &json!({"type":"create","id":2,"kind":"dm","members":["bob"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reply = body_json(&r);
    assert_eq!(reply["id"], 2);
    let conv = reply["conversation"]["id"].as_str().unwrap().to_string();
    // A batch: replies in order; a frame without an id gets none.
    let batch = json!([
        {"type":"send","id":3,"conversation_id":conv,"body":"one","client_msg_id":"c1"},
        {"type":"typing","conversation_id":conv,"active":true},
        {"type":"send","id":4,"conversation_id":conv,"body":"two","client_msg_id":"c2"},
    ]);
    let r = rpc(&server, &id, &token, &batch.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let replies = body_json(&r);
    let replies = replies.as_array().expect("an array of replies");
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["id"], 3);
    assert_eq!(replies[1]["id"], 4);
    assert_eq!(
        replies[1]["seq"].as_u64().unwrap(),
        replies[0]["seq"].as_u64().unwrap() + 1
    );
    // Fan-out reaches the WebSocket member, and the stream hears bob.
    assert_eq!(bob.bodies(&conv).await, ["one", "two"]);
    bob.send_msg(&conv, "three").await;
    let (_, ev) = s
        .expect(|v| v["type"] == "event" && v["body"] == "three")
        .await;
    assert_eq!(ev["sender"], "bob");
    // Only a heartbeat: nothing to answer.
    let r = rpc(&server, &id, &token, "[]").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "[]");
}

#[tokio::test]
async fn refusals_have_a_status_and_the_error_frame() {
    let server = Server::start();
    let addr = server.addr();
    // A bad token: 401 and the frame a WebSocket would have carried.
    let s = Sse::open(
        addr,
        "POST",
        &[],
        &json!({"type":"auth","id":1,"token":"nope"}).to_string(),
    )
    .await;
    assert_eq!(s.status, 401, "{}", s.head);
    // Not a handshake first.
    let s = Sse::open(
        addr,
        "POST",
        &[],
        &json!({"type":"sync","id":1}).to_string(),
    )
    .await;
    assert_eq!(s.status, 401);
    // Not JSON.
    let s = Sse::open(addr, "POST", &[], "{{{").await;
    assert_eq!(s.status, 400);
    // A browser page of another origin may not drive a session.
    let s = Sse::open(
        addr,
        "POST",
        &[("Origin", "https://evil.example")],
        &register_frame("visitor"),
    )
    .await;
    assert_eq!(s.status, 403);

    let (_s, token, id) = stream_of(&server, "alice").await;
    // No stream named, an unknown one, the wrong token.
    let r = http_exchange(addr, "POST", "/rpc", &[], b"{}").await;
    assert_eq!(r.status, 400);
    let r = rpc(&server, "0123456789abcdef0123456789abcdef", &token, "{}").await;
    assert_eq!(r.status, 410);
    assert_eq!(body_json(&r)["type"], "error");
    let r = rpc(&server, &id, "not-the-token", "{}").await;
    assert_eq!(r.status, 401);
    assert_eq!(body_json(&r)["code"], "auth_failed");
    // A batch larger than the in-flight limit.
    let many: Vec<Value> = (0..65)
        .map(|i| json!({"type":"sync","id":i + 10}))
        .collect();
    let r = rpc(&server, &id, &token, &Value::from(many).to_string()).await;
    assert_eq!(r.status, 400);
    // A body past the hard frame cap is not read.
    let big = format!(
        "{{\"type\":\"send\",\"id\":5,\"body\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let r = rpc(&server, &id, &token, &big).await;
    assert_eq!(r.status, 413);
    // A frame over max_frame_bytes: the same error as on a WebSocket.
    let over = format!(
        "{{\"type\":\"send\",\"id\":6,\"conversation_id\":\"x\",\"body\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let r = rpc(&server, &id, &token, &over).await;
    assert_eq!(r.status, 200);
    let v = body_json(&r);
    assert_eq!(v["code"], "too_large");
    assert_eq!(v["id"], 6);
    // A handshake on an authenticated stream.
    let r = rpc(
        &server,
        &id,
        &token,
        &json!({"type":"auth","id":7,"token":token}).to_string(),
    )
    .await;
    assert_eq!(body_json(&r)["code"], "invalid_argument");
}

#[tokio::test]
async fn wrong_tokens_on_streams_are_throttled_like_failed_logins() {
    let server = Server::start_with(|c| {
        c.auth.address_free_failures = 2;
        c.auth.backoff_base_ms = 60_000;
    });
    let (_s, _token, id) = stream_of(&server, "alice").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(rpc(&server, &id, "guess", "[]").await.status);
    }
    assert!(statuses.contains(&401), "{statuses:?}");
    assert_eq!(
        *statuses.last().unwrap(),
        429,
        "the address is throttled: {statuses:?}"
    );
}

#[tokio::test]
async fn a_stream_resumes_from_its_last_event_id_and_misses_nothing() {
    let server = Server::start();
    let (s, token, id) = stream_of(&server, "bob").await;
    let mut alice = server.user("alice").await;
    let conv = alice.create_dm("bob").await;
    drop(s); // the connection is lost after the handshake's event
    for i in 0..5 {
        alice.send_msg(&conv, &format!("m{i}")).await;
    }
    let last = format!("{id}.1");
    let auth = format!("Bearer {token}");
    let mut r = Sse::open(
        server.addr(),
        "GET",
        &[("Last-Event-ID", &last), ("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let mut bodies = Vec::new();
    let mut ids = Vec::new();
    while bodies.len() < 5 {
        let ev = r.next(WAIT).await.expect("replayed and queued events");
        if let Some(data) = &ev.data {
            let v: Value = serde_json::from_str(data).unwrap();
            ids.push(ev.id.clone().unwrap());
            if v["type"] == "event" && v["kind"] == "message" {
                bodies.push(v["body"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    let numbers: Vec<u64> = ids
        .iter()
        .map(|i| i.rsplit_once('.').unwrap().1.parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(numbers[0], 2);
    // Someone else's token cannot take the stream over.
    let stranger = server.user("mallory").await;
    let other = format!("Bearer {}", stranger.token);
    let r2 = Sse::open(
        server.addr(),
        "GET",
        &[("Last-Event-ID", &last), ("Authorization", &other)],
        "",
    )
    .await;
    assert_eq!(r2.status, 401);
    // An id the stream never reached, or an unknown stream: gone.
    let ahead = format!("{id}.999");
    let r3 = Sse::open(
        server.addr(),
        "GET",
        &[("Last-Event-ID", &ahead), ("Authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r3.status, 410);
    drop(r);
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats_and_a_silent_client_is_closed() {
    let server = Server::start_with(|c| {
        c.limits.ping_interval_secs = 1;
        c.limits.idle_timeout_secs = 3;
    });
    let (mut s, _token, _id) = stream_of(&server, "alice").await;
    let mut heartbeats = 0;
    let close = loop {
        let ev = s
            .next(Duration::from_secs(10))
            .await
            .expect("heartbeats, then a close event");
        if ev.comment {
            heartbeats += 1;
        }
        if ev.kind.as_deref() == Some("close") {
            break ev.json();
        }
    };
    assert!(heartbeats >= 2, "{heartbeats} heartbeats");
    assert_eq!(close["reason"], "idle timeout");
    assert!(s.next(WAIT).await.is_none(), "the stream ends after it");
}

#[tokio::test]
async fn presence_outlives_a_lost_stream_briefly_and_a_delete_ends_it_at_once() {
    let server = Server::start_with(|c| {
        c.limits.stream_linger_secs = 2;
    });
    let mut alice = server.user("alice").await;
    let (s, token, id) = stream_of(&server, "bob").await;
    alice.create_dm("bob").await;
    let presence_of_bob = |v: &Value| v["type"] == "presence" && v["user"] == "bob";
    // Lost: still online while it may be resumed, offline after.
    drop(s);
    alice
        .expect_no_push_matching(presence_of_bob, Duration::from_millis(1000))
        .await;
    let v = alice
        .expect_push(presence_of_bob, Duration::from_secs(5))
        .await;
    assert_eq!(v["status"], "offline");
    let r = rpc(&server, &id, &token, "[]").await;
    assert_eq!(r.status, 410, "the session is over");

    // Leaving on purpose: offline at once.
    let r = Sse::open(
        server.addr(),
        "POST",
        &[],
        &json!({"type":"auth","id":1,"token":token}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    let id = r.header("x-chat-stream").unwrap();
    let v = alice.expect_push(presence_of_bob, WAIT).await;
    assert_eq!(v["status"], "online");
    let d = leave(&server, &id, &token).await;
    assert_eq!(d.status, 204);
    let v = alice
        .expect_push(presence_of_bob, Duration::from_millis(800))
        .await;
    assert_eq!(v["status"], "offline");
}

#[tokio::test]
async fn streams_count_against_a_users_connections() {
    let server = Server::start_with(|c| {
        c.limits.max_connections_per_user = 2;
    });
    let (_s, token, _id) = stream_of(&server, "alice").await;
    let auth = json!({"type":"auth","id":1,"token":token}).to_string();
    let second = Sse::open(server.addr(), "POST", &[], &auth).await;
    assert_eq!(second.status, 200);
    let third = Sse::open(server.addr(), "POST", &[], &auth).await;
    assert_eq!(third.status, 429, "{}", third.head);
}

#[tokio::test]
async fn a_revoked_session_closes_its_stream_with_the_reason() {
    let server = Server::start();
    let (mut s, token, _id) = stream_of(&server, "alice").await;
    let _ = token;
    let mut other = server.login("alice").await;
    other
        .ok(json!({"type":"revoke_session","others":true}))
        .await;
    let close = loop {
        let ev = s.next(WAIT).await.expect("a close event");
        if ev.kind.as_deref() == Some("close") {
            break ev.json();
        }
    };
    assert_eq!(close["reason"], "session revoked");
}

#[tokio::test]
async fn http_streams_are_counted_as_connections_of_their_transport() {
    use crate::support::server::http_request;
    let server = Server::start_with(|c| {
        c.net.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let at = server.metrics_addr().expect("a metrics listener");
    let gauge = |body: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(r#"chatd_connections{transport="http"} "#))
            .expect("the http series")
            .parse()
            .unwrap()
    };
    let (_, body) = http_request(at, "GET", "/metrics").await;
    assert_eq!(gauge(&body), 0.0);
    let (_s, token, id) = stream_of(&server, "alice").await;
    let (_, body) = http_request(at, "GET", "/metrics").await;
    assert_eq!(gauge(&body), 1.0);
    let d = leave(&server, &id, &token).await;
    assert_eq!(d.status, 204);
    let mut last = 1.0;
    for _ in 0..50 {
        let (_, body) = http_request(at, "GET", "/metrics").await;
        last = gauge(&body);
        if last == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, 0.0, "the stream is no longer counted once it ended");
}

#[tokio::test]
async fn a_session_revoked_while_its_stream_waits_for_a_resume_answers_nothing_more() {
    let server = Server::start();
    let (s, token, id) = stream_of(&server, "alice").await;
    drop(s); // lost: the session lingers, waiting for a resume
    let mut other = server.login("alice").await;
    other
        .ok(json!({"type":"revoke_session","others":true}))
        .await;
    let mut status = 0;
    for _ in 0..50 {
        status = rpc(
            &server,
            &id,
            &token,
            &json!({"type":"sync","id":2}).to_string(),
        )
        .await
        .status;
        if status == 410 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 410, "a revoked session answers no request");
}

#[tokio::test]
async fn a_graceful_shutdown_closes_streams_attached_or_waiting() {
    let mut server = Server::start();
    let (mut attached, _t1, _id1) = stream_of(&server, "alice").await;
    let (waiting, _t2, _id2) = stream_of(&server, "bob").await;
    drop(waiting); // lingering, waiting for a resume
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a lingering stream does not hold the shutdown: {:?}",
        started.elapsed()
    );
    let close = loop {
        let ev = attached.next(WAIT).await.expect("a close event");
        if ev.kind.as_deref() == Some("close") {
            break ev.json();
        }
    };
    assert_eq!(close["reason"], "server shutting down");
}
