//! The handshake: register, login, auth, failures, logout.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn register_login_and_token_reuse() {
    let server = Server::start();
    let mut a1 = server.user("alice").await;
    assert_eq!(a1.token.len(), 64, "an opaque token");

    // Login on a new connection gives a new session token.
    let mut a2 = server.connect().await;
    let r = a2.login("alice", PASSWORD).await;
    assert_eq!(r["type"], "ok", "{r}");
    assert_eq!(r["user"], "alice");
    assert_eq!(r["protocol"], 1);
    assert_ne!(a2.token, a1.token, "one token per login");

    // Both tokens work on further connections.
    for token in [a1.token.clone(), a2.token.clone()] {
        let mut p = server.connect().await;
        let r = p.auth(&token).await;
        assert_eq!(r["type"], "ok", "{r}");
        assert_eq!(r["user"], "alice");
        assert_eq!(r["protocol"], 1);
        p.ok(json!({"type":"conversations"})).await;
    }
    a1.ok(json!({"type":"conversations"})).await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_both_fail_alike() {
    let server = Server::start();
    let _a = server.user("alice").await;
    let mut p = server.connect().await;
    let wrong = p.login("alice", "wrong password").await;
    let unknown = p.login("nobody", PASSWORD).await;
    for r in [&wrong, &unknown] {
        assert_eq!(r["type"], "error", "{r}");
        assert_eq!(r["code"], "auth_failed", "{r}");
    }
    assert_eq!(
        wrong["message"], unknown["message"],
        "the answer does not reveal whether the user exists"
    );
    let bad_token = p.auth(&"0".repeat(64)).await;
    assert_eq!(bad_token["code"], "auth_failed", "{bad_token}");
    // Still usable: the right password works on the same connection.
    let r = p.login("alice", PASSWORD).await;
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn taken_and_invalid_usernames() {
    let server = Server::start();
    let _a = server.user("alice").await;
    let mut p = server.connect().await;
    p.err(
        json!({"type":"register","username":"alice","password":"x1","device":"d"}),
        "username_taken",
    )
    .await;
    let long = "a".repeat(33);
    for name in ["", "a", "Alice", "al ice", "émile", "a/b", long.as_str()] {
        p.err(
            json!({"type":"register","username":name,"password":"pw","device":"d"}),
            "invalid_argument",
        )
        .await;
    }
    p.err(
        json!({"type":"register","username":"bob","password":"","device":"d"}),
        "invalid_argument",
    )
    .await;
    // Boundary names are accepted.
    p.register("b.-_9").await;
    let mut q = server.connect().await;
    q.register(&"z".repeat(32)).await;
}

#[tokio::test]
async fn nothing_before_authentication() {
    let server = Server::start();
    let _bob = server.user("bob").await;
    let mut p = server.connect().await;
    for req in [
        json!({"type":"conversations"}),
        json!({"type":"create","kind":"dm","members":["bob"]}),
        json!({"type":"send","conversation_id":"x","client_msg_id":"c","body":"hi"}),
        json!({"type":"history","conversation_id":"x"}),
        json!({"type":"sync","cursors":{}}),
        json!({"type":"logout"}),
        json!({"type":"presence","status":"away"}),
    ] {
        p.err(req, "unauthenticated").await;
    }
    // Not counted as failed attempts: the handshake still works.
    p.register("alice").await;
    p.ok(json!({"type":"conversations"})).await;
    // Once authenticated, a second handshake is refused.
    p.err(
        json!({"type":"auth","token":p.token.clone()}),
        "invalid_argument",
    )
    .await;
}

#[tokio::test]
async fn too_many_failures_close_the_connection() {
    let server = Server::start();
    let _a = server.user("alice").await;
    let mut p = server.connect().await;
    let max = chat::proto::Limits::default().max_auth_failures;
    for _ in 0..max {
        let r = p.login("alice", "nope").await;
        assert_eq!(r["code"], "auth_failed", "{r}");
    }
    let closed = p.expect_closed(WAIT).await;
    assert_eq!(closed.code(), Some(1008), "{closed:?}");
    // Other connections may still log in.
    let mut q = server.connect().await;
    assert_eq!(q.login("alice", PASSWORD).await["type"], "ok");
}

#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let server = Server::start_with(|c| c.limits.auth_timeout_secs = 1);
    let mut p = server.connect().await;
    let closed = p.expect_closed(Duration::from_secs(4)).await;
    assert_eq!(closed.code(), Some(1008), "{closed:?}");
    // An authenticated connection outlives the deadline.
    let mut a = server.user("alice").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.ok(json!({"type":"conversations"})).await;
}

#[tokio::test]
async fn logout_revokes_only_its_token() {
    let server = Server::start();
    let mut a1 = server.user("alice").await;
    let mut a2 = server.connect().await;
    assert_eq!(a2.login("alice", PASSWORD).await["type"], "ok");
    let revoked = a1.token.clone();
    a1.ok(json!({"type":"logout"})).await;
    let closed = a1.expect_closed(WAIT).await;
    assert_eq!(closed.code(), Some(1000), "{closed:?}");

    let mut p = server.connect().await;
    assert_eq!(p.auth(&revoked).await["code"], "auth_failed");
    let mut q = server.connect().await;
    assert_eq!(
        q.auth(&a2.token).await["type"],
        "ok",
        "the other login stays"
    );
    a2.ok(json!({"type":"conversations"})).await;
}

#[tokio::test]
async fn connections_per_user_are_bounded_and_a_refused_login_leaves_no_session() {
    if crate::support::skip_on_postgres("counts the stored sessions in chatd.db") {
        return;
    }
    let server = Server::start_with(|c| c.limits.max_connections_per_user = 2);
    let a1 = server.user("alice").await;
    let mut a2 = server.connect().await;
    assert_eq!(a2.auth(&a1.token).await["type"], "ok");
    // A third connection is refused, by token and by password alike.
    let mut a3 = server.connect().await;
    let r = a3.auth(&a1.token).await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    let mut a4 = server.connect().await;
    let r = a4.login("alice", PASSWORD).await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    // Only the registration's session exists: the refused login stored none.
    let db = rusqlite::Connection::open(server.data_dir().join("chatd.db")).unwrap();
    let sessions: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE username = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sessions, 1);
    // Closing one connection makes room again.
    drop(a2);
    let mut ok = false;
    for _ in 0..50 {
        let mut p = server.connect().await;
        if p.auth(&a1.token).await["type"] == "ok" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a freed slot can be used");
}

#[tokio::test]
async fn a_new_password_has_a_minimum_length() {
    let server = Server::start();
    let mut p = server.connect().await;
    let short = p
        .err(
            json!({"type":"register","username":"carol","password":"seven77","device":"d"}),
            "invalid_argument",
        )
        .await;
    assert!(
        short["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at least 8"),
        "{short}"
    );
    // Characters, not bytes: eight of them are enough.
    let r = p
        .request(json!({"type":"register","username":"carol","password":"éééééééé","device":"d"}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
}

/// A taken name is refused without hashing: with the one hashing slot held
/// by a slow login, the refusal still comes first (before, it queued for
/// the slot and then hashed a password it was about to refuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_name_is_refused_before_any_hashing() {
    let server = Server::start_with(|c| {
        c.auth.argon2_memory_kib = 32 * 1024;
        c.auth.argon2_iterations = 24;
        c.auth.max_concurrent_hashes = 1;
    });
    let _alice = server.user("alice").await;
    let mut slow = server.connect().await;
    let login = slow
        .send_req(json!({"type":"login","username":"alice","password":PASSWORD,"device":"d"}))
        .await;
    // Let the login take the hashing slot first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = server.connect().await;
    p.err(
        json!({"type":"register","username":"alice","password":"another password","device":"d"}),
        "username_taken",
    )
    .await;
    let pending = tokio::time::timeout(Duration::ZERO, slow.wait_reply(login)).await;
    assert!(
        pending.is_err(),
        "the refusal waited for the login's hash: {pending:?}"
    );
    let r = slow.wait_reply(login).await;
    assert_eq!(r["type"], "ok", "{r}");
}

/// The status line chatd answers a WebSocket upgrade with, sent with
/// `origin` as its `Origin` header (none when `None`).
async fn upgrade_status(server: &Server, origin: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn browser_origins_are_refused_unless_allowed() {
    let server = Server::start_with(|c| {
        c.net.allowed_origins = vec!["https://chat.example.org".into()];
    });
    assert!(upgrade_status(&server, None).await.contains("101"));
    let evil = upgrade_status(&server, Some("https://evil.example")).await;
    assert!(evil.contains("403"), "{evil}");
    let null = upgrade_status(&server, Some("null")).await;
    assert!(null.contains("403"), "{null}");
    let listed = upgrade_status(&server, Some("https://chat.example.org")).await;
    assert!(listed.contains("101"), "{listed}");
    // With nothing listed, every browser origin is refused.
    let closed = Server::start();
    let evil = upgrade_status(&closed, Some("https://chat.example.org")).await;
    assert!(evil.contains("403"), "{evil}");
}
