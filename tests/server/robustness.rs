//! Slow readers, plain HTTP, graceful shutdown and restart, and a flood of
//! garbage from many connections at once.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A member that authenticates, then never reads its socket again.
async fn stalled_member(server: &Server, token: &str) -> Ws {
    let mut ws = connect_ws(&server.ws_url()).await;
    ws.send(Message::Text(
        json!({"type":"auth","id":1,"token":token})
            .to_string()
            .into(),
    ))
    .await
    .expect("send auth");
    let reply = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("auth reply in time")
        .expect("auth reply")
        .expect("auth reply frame");
    assert!(
        reply.to_text().unwrap_or("").contains("\"ok\""),
        "{reply:?}"
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_reader_is_dropped_without_stalling_others() {
    let server = Server::start_with(|c| {
        // Above what one commit can push at once to a healthy member (the
        // 20 pipelined sends below), far below what the stalled one piles up.
        c.limits.outbound_queue = 64;
        c.limits.requests_per_sec = 100_000;
        c.limits.request_burst = 100_000;
    });
    let [mut alice, mut bob, slow_peer] = server.users(["alice", "bob", "slow"]).await;
    let slow_token = slow_peer.token.clone();
    let g = alice.create_group("firehose", &["bob", "slow"]).await;
    let slow_is = |status: &'static str| {
        move |v: &Value| v["type"] == "presence" && v["user"] == "slow" && v["status"] == status
    };
    slow_peer.close().await;
    alice.expect_push(slow_is("offline"), WAIT).await;
    let stalled = stalled_member(&server, &slow_token).await;
    alice.expect_push(slow_is("online"), WAIT).await;

    // Large messages in pipelined batches until the stalled member is gone.
    let body = "x".repeat(12 * 1024);
    let started = Instant::now();
    let mut kicked_after = None;
    let mut sent = 0usize;
    for batch in 0..100 {
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(
                alice
                    .send_req(json!({"type":"send","conversation_id":g,
                                     "client_msg_id":format!("f-{}", unique()),"body":body}))
                    .await,
            );
        }
        let mut last = 0;
        for id in ids {
            let r = alice.wait_reply(id).await;
            assert_eq!(r["type"], "ok", "{r}");
            last = seq_of(&r);
        }
        sent += 20;
        // The healthy reader keeps up: every batch arrives promptly.
        let t = Instant::now();
        bob.expect_push(|v| is_event(v, &g, "message") && seq_of(v) == last, WAIT)
            .await;
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "bob stalled: {:?}",
            t.elapsed()
        );
        let offline = alice
            .drain_pushes(Duration::ZERO)
            .await
            .iter()
            .any(slow_is("offline"));
        if offline {
            kicked_after = Some(batch);
            break;
        }
    }
    let kicked_after = kicked_after.unwrap_or_else(|| {
        panic!("the stalled connection was never dropped ({sent} messages of 12 KiB)")
    });
    assert!(started.elapsed() < Duration::from_secs(60));
    eprintln!(
        "stalled reader dropped after {} messages, {:?}",
        (kicked_after + 1) * 20,
        started.elapsed()
    );

    // The stalled socket holds what the kernel buffered, then ends.
    let mut ws = stalled;
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        let mut n = 0usize;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            n += 1;
        }
        n
    })
    .await
    .expect("the dropped connection ends");
    assert!(drained < sent + 64, "bounded: {drained} frames buffered");

    // A fresh connection of the same user works and finds everything.
    let mut again = server.device(&slow_token).await;
    let events = again.full_history(&g).await;
    assert_dense(&events);
    assert_eq!(events.len(), sent + 1);
}

#[tokio::test]
async fn healthz_and_other_paths() {
    let server = Server::start();
    // A node on a bus is ready once it has subscribed.
    let deadline = std::time::Instant::now() + WAIT;
    while server.http("GET", "/readyz").await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = server.http("GET", "/healthz").await;
    assert_eq!(status, 200);
    if server.on_postgres() {
        // A node on PostgreSQL (and Redis) says how its store and bus are.
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok", "{body}");
        assert_eq!(v["store"], "ok", "{body}");
    } else {
        assert_eq!(body, "ok");
    }
    assert_eq!(server.http("GET", "/healthz?probe=1").await.0, 200);
    assert_eq!(server.http("GET", "/nope").await.0, 404);
    assert_eq!(server.http("GET", "/").await.0, 404);
    assert_eq!(server.http("POST", "/healthz").await.0, 405);
    assert_eq!(server.http("GET", "/ws").await.0, 400, "no upgrade headers");
    // Garbage instead of HTTP gets a 400 and the server carries on.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 400"));
    }
    let mut p = server.user("alice").await;
    p.ok(json!({"type":"conversations"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_1001_and_keeps_acked_messages() {
    let mut server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let body = format!("before shutdown {i}");
        acked.push((alice.send_msg(&g, &body).await, body));
    }
    bob.ok(json!({"type":"receipt","conversation_id":g,"delivered":6,"read":4}))
        .await;
    // Requests still in flight when the shutdown starts.
    let mut inflight = Vec::new();
    for i in 0..20 {
        let body = format!("racing shutdown {i}");
        let id = alice
            .send_req(json!({"type":"send","conversation_id":g,
                             "client_msg_id":format!("race-{i}"),"body":body}))
            .await;
        inflight.push((id, body));
    }
    server.stop().await;
    for (id, body) in inflight {
        // Each got an answer before the close, or none at all.
        if let Some(r) = alice.try_reply(id).await
            && r["type"] == "ok"
        {
            acked.push((seq_of(&r), body));
        }
    }
    for p in [&mut alice, &mut bob] {
        let closed = p.expect_closed(WAIT).await;
        assert_eq!(closed.code(), Some(1001), "{closed:?}");
    }

    server.restart().await;
    let mut alice = server.device(&alice.token).await;
    let events = alice.full_history(&g).await;
    assert_dense(&events);
    for (seq, body) in &acked {
        let e = &events[*seq as usize - 1];
        assert_eq!(e["body"], body.as_str(), "acked message {seq} survived");
    }
    let c = &alice.ok(json!({"type":"conversations"})).await["conversations"][0];
    assert_eq!(c["receipts"]["bob"], json!({"delivered":6,"read":4}));
    assert_eq!(c["members"], json!(["alice", "bob"]));
    assert_eq!(c["last_seq"], events.len());
    // Writes continue from where the log ended.
    let next = alice.send_msg(&g, "after restart").await;
    assert_eq!(next, events.len() as u64 + 1);
    let mut dave = server.connect().await;
    dave.err(
        json!({"type":"register","username":"alice","password":"x","device":"d"}),
        "username_taken",
    )
    .await;
}

fn garbage(rng: &mut Rng, conv: &str) -> String {
    let values = [
        json!(null),
        json!(-1),
        json!(0),
        json!(1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5e300),
        json!(""),
        json!("x"),
        json!(conv),
        json!("\u{0}\u{202e}"),
        json!([]),
        json!(["alice", 5]),
        json!({}),
        json!({"a":{"b":[]}}),
        json!(true),
    ];
    let fields = [
        "id",
        "type",
        "conversation_id",
        "client_msg_id",
        "body",
        "target_seq",
        "after",
        "before",
        "limit",
        "members",
        "name",
        "kind",
        "emoji",
        "remove",
        "cursors",
        "delivered",
        "read",
        "active",
        "status",
        "token",
        "username",
        "password",
        "prefix",
        "reply_to",
    ];
    // Everything but logout, which would end the flood's own session.
    let types: Vec<&str> = chat::proto::REQUEST_TYPES
        .iter()
        .copied()
        .filter(|t| *t != "logout")
        .collect();
    match rng.next() % 6 {
        0 => {
            let len = (rng.next() % 200) as usize;
            (0..len)
                .map(|_| (rng.next() % 0x7f) as u8 as char)
                .collect()
        }
        1 => "{".repeat((rng.next() % 5000) as usize),
        _ => {
            let mut obj = serde_json::Map::new();
            obj.insert("type".into(), json!(rng.pick(&types)));
            if !rng.next().is_multiple_of(4) {
                obj.insert("id".into(), json!(rng.next() % 1000));
            }
            for _ in 0..rng.next() % 6 {
                obj.insert((*rng.pick(&fields)).into(), rng.pick(&values).clone());
            }
            Value::Object(obj).to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_garbage_flood_leaves_the_server_up() {
    let server = Server::start();
    let [mut alice, mut bob, flood] = server.users(["alice", "bob", "flood"]).await;
    let g = alice.create_group("g", &["bob", "flood"]).await;
    let before = alice.full_history(&g).await;

    let mut tasks = Vec::new();
    for c in 0..12u64 {
        let url = server.ws_url();
        let token = if c.is_multiple_of(2) {
            Some(flood.token.clone())
        } else {
            None
        };
        let conv = g.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = Peer::connect(&url).await;
            if let Some(t) = token {
                assert_eq!(p.auth(&t).await["type"], "ok");
            }
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1));
            for _ in 0..150 {
                let text = garbage(&mut rng, &conv);
                if !p.try_send_raw(text).await {
                    break;
                }
            }
            // Whatever happened, it ends or answers; it never hangs.
            let _ = p.drain_pushes(Duration::from_millis(200)).await;
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("flood task finishes")
            .expect("flood task did not panic");
    }
    assert!(server.is_running(), "serve is still running");
    assert_eq!(server.http("GET", "/healthz").await.0, 200);
    // The log holds exactly what valid garbage may have appended, densely.
    let after = alice.full_history(&g).await;
    assert_dense(&after);
    assert_eq!(&after[..before.len()], &before[..]);
    let seq = alice.send_msg(&g, "still here").await;
    let v = bob
        .expect_push(|v| is_event(v, &g, "message") && seq_of(v) == seq, WAIT)
        .await;
    assert_eq!(v["body"], "still here");
}

#[tokio::test]
async fn silent_connections_are_closed_live_ones_are_kept() {
    let server = Server::start_with(|c| {
        c.limits.ping_interval_secs = 1;
        c.limits.idle_timeout_secs = 2;
    });
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    alice.create_dm("bob").await;
    // bob's reader answers pings (pongs count as traffic); a socket nobody
    // reads does not. Reading answers pings, so this one reads nothing for
    // longer than the idle timeout (pings arrive every second), and only
    // then looks at how the connection ended.
    let mut silent = stalled_member(&server, &bob.token).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Read the raw bytes: tungstenite would try to answer the pings first,
    // into a socket the server has closed by now.
    let MaybeTlsStream::Plain(tcp) = silent.get_mut() else {
        panic!("plain TCP expected");
    };
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    // Server frames are unmasked, and these are all short.
    let mut ended = None;
    let mut at = 0;
    while at + 2 <= raw.len() {
        let (opcode, len) = (raw[at] & 0x0f, usize::from(raw[at + 1] & 0x7f));
        assert!(len < 126, "short control frames only: {raw:?}");
        if opcode == 0x8 {
            ended = Some((len >= 2).then(|| u16::from_be_bytes([raw[at + 2], raw[at + 3]])));
            break;
        }
        at += 2 + len;
    }
    assert_eq!(
        ended,
        Some(Some(1001)),
        "the idle connection is closed 1001"
    );
    // The live connections are still there after more than the timeout.
    bob.ok(json!({"type":"conversations"})).await;
    alice.ok(json!({"type":"conversations"})).await;
    alice
        .expect_no_push_matching(
            |v| v["type"] == "presence" && v["status"] == "offline",
            Duration::from_millis(200),
        )
        .await;
}

#[tokio::test]
async fn shutdown_closes_connections_that_never_authenticated() {
    let mut server = Server::start_with(|c| c.limits.auth_timeout_secs = 30);
    // Authenticated connections hear of a shutdown through the hub; this
    // one has not authenticated, so it must notice by itself.
    let mut anon = connect_ws(&server.ws_url()).await;
    let started = Instant::now();
    server.stop().await;
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = anon.next().await {
            if let Message::Close(frame) = m {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("closed well before the authentication deadline");
    assert_eq!(code, Some(1001));
    assert!(started.elapsed() < Duration::from_secs(10));
}
