//! Bad input gets an answer with a stable code; the connection (where the
//! protocol allows) and everyone else's connections carry on.

use crate::support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// alice and bob share a group; returns (alice, bob, group id).
async fn pair(server: &Server) -> (Peer, Peer, String) {
    let [mut alice, bob] = server.users(["alice", "bob"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    (alice, bob, g)
}

/// Both connections still work and still hear each other.
async fn both_alive(alice: &mut Peer, bob: &mut Peer, g: &str) {
    let body = format!("ping {}", unique());
    let seq = alice.send_msg(g, &body).await;
    let v = bob
        .expect_push(
            |v| is_event(v, g, "message") && v["body"] == body.as_str(),
            WAIT,
        )
        .await;
    assert_eq!(seq_of(&v), seq);
    let body = format!("pong {}", unique());
    bob.send_msg(g, &body).await;
    alice
        .expect_push(
            |v| is_event(v, g, "message") && v["body"] == body.as_str(),
            WAIT,
        )
        .await;
}

fn assert_error(r: &Value, id: Value, code: &str) {
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["id"], id, "{r}");
    assert_eq!(r["code"], code, "{r}");
    assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
}

#[tokio::test]
async fn malformed_frames_get_error_answers() {
    let server = Server::start();
    let (mut alice, mut bob, g) = pair(&server).await;
    let cases: Vec<(String, Value, &str)> = vec![
        ("not json".into(), Value::Null, "bad_frame"),
        ("{\"type\":".into(), Value::Null, "bad_frame"),
        ("".into(), Value::Null, "bad_frame"),
        ("[1,2]".into(), Value::Null, "bad_frame"),
        ("42".into(), Value::Null, "bad_frame"),
        ("\"send\"".into(), Value::Null, "bad_frame"),
        ("null".into(), Value::Null, "bad_frame"),
        (r#"{"id":3}"#.into(), Value::Null, "bad_frame"),
        (r#"{"type":7,"id":3}"#.into(), Value::Null, "bad_frame"),
        (
            r#"{"type":"conversations"}"#.into(),
            Value::Null,
            "bad_frame",
        ),
        (
            r#"{"type":"conversations","id":"7"}"#.into(),
            Value::Null,
            "bad_frame",
        ),
        (
            r#"{"type":"conversations","id":-7}"#.into(),
            Value::Null,
            "bad_frame",
        ),
        (
            r#"{"type":"conversations","id":1.5}"#.into(),
            Value::Null,
            "bad_frame",
        ),
        (
            r#"{"type":"fly","id":70}"#.into(),
            json!(70),
            "unknown_type",
        ),
        (r#"{"type":"fly"}"#.into(), Value::Null, "unknown_type"),
        (
            r#"{"type":"send","id":71}"#.into(),
            json!(71),
            "invalid_argument",
        ),
        (
            r#"{"type":"send","id":72,"conversation_id":1,"client_msg_id":"a","body":"b"}"#.into(),
            json!(72),
            "invalid_argument",
        ),
        (
            json!({"type":"history","id":73,"conversation_id":g,"limit":"lots"}).to_string(),
            json!(73),
            "invalid_argument",
        ),
        (
            json!({"type":"create","id":74,"kind":"party","name":"x"}).to_string(),
            json!(74),
            "invalid_argument",
        ),
        (
            json!({"type":"receipt","id":75,"conversation_id":g,"read":-1}).to_string(),
            json!(75),
            "invalid_argument",
        ),
        (
            json!({"type":"typing","id":76,"conversation_id":g}).to_string(),
            json!(76),
            "invalid_argument",
        ),
        ("[".repeat(10_000), Value::Null, "bad_frame"),
    ];
    for (text, id, code) in cases {
        alice.send_raw(text.clone()).await;
        let r = alice.next_reply().await;
        assert_error(&r, id, code);
        // The same connection answers the next request.
        alice.ok(json!({"type":"conversations"})).await;
    }
    both_alive(&mut alice, &mut bob, &g).await;

    // Unknown fields are ignored.
    alice
        .ok(json!({"type":"conversations","future":{"nested":[1,2]},"x":null}))
        .await;
    // Garbage before authentication is answered too, and does not count as
    // a failed login.
    let mut p = server.connect().await;
    for _ in 0..10 {
        p.send_raw("garbage").await;
        assert_error(&p.next_reply().await, Value::Null, "bad_frame");
    }
    p.register("carol").await;
}

#[tokio::test]
async fn oversize_and_binary_frames() {
    let server = Server::start();
    let (mut alice, mut bob, g) = pair(&server).await;
    let max = chat::proto::Limits::default().max_frame_bytes;

    // Over the frame limit: too_large, echoing the id when it can be read.
    let big = json!({"type":"send","id":90,"conversation_id":g,"client_msg_id":"big",
                     "body":"x".repeat(max)})
    .to_string();
    alice.send_raw(big).await;
    assert_error(&alice.next_reply().await, json!(90), "too_large");
    alice.send_raw("y".repeat(max + 1)).await;
    assert_error(&alice.next_reply().await, Value::Null, "too_large");
    alice.ok(json!({"type":"conversations"})).await;

    alice
        .send_binary(b"{\"type\":\"conversations\",\"id\":5}".to_vec())
        .await;
    assert_error(&alice.next_reply().await, Value::Null, "bad_frame");
    alice.send_binary(vec![0xff; 70_000]).await;
    assert_error(&alice.next_reply().await, Value::Null, "bad_frame");
    alice.ok(json!({"type":"conversations"})).await;
    both_alive(&mut alice, &mut bob, &g).await;
    assert_eq!(alice.last_seq(&g).await, 3, "nothing oversize was written");
}

#[tokio::test]
async fn frames_over_the_hard_cap_close_only_that_connection() {
    let server = Server::start_with(|c| c.limits.hard_frame_bytes = 128 * 1024);
    let (mut alice, mut bob, g) = pair(&server).await;
    let mut a2 = server.device(&alice.token).await;
    a2.send_raw("z".repeat(200 * 1024)).await;
    let closed = a2.expect_closed(WAIT).await;
    assert_eq!(closed.code(), Some(1009), "{closed:?}");
    both_alive(&mut alice, &mut bob, &g).await;
}

#[tokio::test]
async fn invalid_utf8_is_answered_then_closed() {
    let server = Server::start();
    let (mut alice, mut bob, g) = pair(&server).await;
    let mut a2 = server.device(&alice.token).await;
    // A text frame whose payload is not UTF-8, built by hand.
    let payload = b"{\"type\":\"conversations\",\"id\":1,\"x\":\"\xff\xfe\"}".to_vec();
    let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
    a2.send_message(Message::Frame(frame)).await;
    assert_error(&a2.next_reply().await, Value::Null, "bad_frame");
    // RFC 6455 requires failing the connection (1007); the answer comes first.
    let closed = a2.expect_closed(WAIT).await;
    assert_eq!(closed.code(), Some(1007), "{closed:?}");
    // The user reconnects with the same token; others never noticed.
    let mut a3 = server.device(&alice.token).await;
    a3.ok(json!({"type":"conversations"})).await;
    both_alive(&mut alice, &mut bob, &g).await;
}
