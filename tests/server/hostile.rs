//! One member against the server: whatever they send is bounded by their
//! own budget. Measured on a `chatd` child process, so that the memory
//! figures are the server's alone.

use crate::support::chatd::{Chatd, write_config};
use crate::support::*;
use serde_json::json;

/// A flood of typing signals naming conversations that do not exist (ids as
/// long as a frame allows) keeps nothing: membership is checked before the
/// throttle stores anything.
#[tokio::test]
async fn typing_for_unknown_conversations_keeps_no_memory() {
    const SIGNALS: usize = 1500;
    let temp = tempfile::tempdir().unwrap();
    let config = write_config(temp.path());
    let data = temp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let chatd = Chatd::start(&data, &config).await;
    let mut p = Peer::connect(&chatd.url()).await;
    p.register("mallory").await;
    p.ok(json!({"type":"conversations"})).await;
    let before = chatd.rss_kib();
    let filler = "x".repeat(60 * 1024);
    for i in 0..SIGNALS {
        let r = p
            .request(
                json!({"type":"typing","conversation_id":format!("{i}{filler}"),"active":true}),
            )
            .await;
        assert_eq!(r["code"], "not_found", "{r}");
    }
    let after = chatd.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("typing flood: {SIGNALS} × 60 KiB ids, RSS {before} → {after} KiB (+{grown})");
    // Kept, they would be 88 MiB.
    assert!(grown < 16 * 1024, "chatd grew by {grown} KiB");
}

/// One budget per user, whatever the number of connections: 64
/// connections of one user together get what one would.
#[tokio::test]
async fn the_request_budget_is_per_user_not_per_connection() {
    let server = Server::start_with(|c| {
        c.limits.requests_per_sec = 50;
        c.limits.request_burst = 100;
    });
    let first = server.user("mallory").await;
    let mut conns = vec![first];
    for _ in 1..64 {
        conns.push(server.device(&conns[0].token.clone()).await);
    }
    let mut bob = server.user("bob").await;
    let started = std::time::Instant::now();
    let mut passed = 0u32;
    for round in 0..10 {
        for p in conns.iter_mut() {
            let r = p
                .request(
                    json!({"type":"presence","status": if round % 2 == 0 {"away"} else {"online"}}),
                )
                .await;
            if r["type"] == "ok" {
                passed += 1;
            } else {
                assert_eq!(r["code"], "rate_limited", "{r}");
                assert!(r["retry_after_ms"].as_u64().is_some(), "{r}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let allowed = 100.0 + 50.0 * secs;
    eprintln!(
        "64 connections, 640 requests in {secs:.2} s: {passed} passed (one user's budget: {allowed:.0})"
    );
    assert!(
        f64::from(passed) <= allowed + 1.0,
        "{passed} passed; one user's budget allows {allowed:.0}"
    );
    assert!(passed >= 100, "the burst passes");
    // Another user is not touched by it.
    bob.ok(json!({"type":"conversations"})).await;
}

/// `r` is a `limit_exceeded` refusal naming `limit`.
fn assert_limit(r: &serde_json::Value, limit: &str) {
    assert_eq!(r["code"], "limit_exceeded", "{r}");
    assert!(r["message"].as_str().unwrap().contains(limit), "{r}");
}

/// Quotas: conversations a user may create in an hour, conversations a
/// user can be put in, and connections server-wide; each refusal names
/// what was exceeded.
#[tokio::test]
async fn quotas_are_refused_with_limit_exceeded() {
    let server = Server::start_with(|c| {
        c.limits.max_creates_per_hour = 3;
        c.limits.max_conversations_per_user = 4;
    });
    let [mut mallory, mut victim, mut carol] = server.users(["mallory", "victim", "carol"]).await;
    for i in 0..3 {
        mallory.create_group(&format!("g{i}"), &["victim"]).await;
    }
    let r = mallory
        .request(json!({"type":"create","kind":"group","name":"g3","members":["victim"]}))
        .await;
    assert_limit(&r, "max_creates_per_hour");
    // Carol fills the victim's last place; then nobody can add them.
    carol.create_group("c0", &["victim"]).await;
    let g = carol.create_group("c1", &[]).await;
    let r = carol
        .request(json!({"type":"add_members","conversation_id":g,"members":["victim"]}))
        .await;
    assert_limit(&r, "max_conversations_per_user");
    // The victim still syncs, and leaving makes room.
    let convs = victim.conversations().await;
    assert_eq!(convs.len(), 4);
    victim
        .ok(json!({"type":"leave","conversation_id":convs[0].id}))
        .await;
    carol
        .ok(json!({"type":"add_members","conversation_id":g,"members":["victim"]}))
        .await;
}

#[tokio::test]
async fn connections_beyond_the_server_cap_are_closed() {
    let server = Server::start_with(|c| c.limits.max_connections = 3);
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(server.user(&format!("u{}", kept.len())).await);
    }
    let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut stream = stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf))
        .await
        .expect("closed, not left hanging");
    assert!(
        n.is_err() || buf.is_empty(),
        "closed without an answer: {buf:?}"
    );
    // The ones in are unaffected.
    kept[0].ok(json!({"type":"conversations"})).await;
}
