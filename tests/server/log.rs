//! The log: dense seqs under concurrency, idempotent sends, fan-out to every
//! member connection, edits, deletions, reactions and replies.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seqs_are_dense_under_twenty_concurrent_senders() {
    const SENDERS: usize = 20;
    const EACH: usize = 50;
    let server = Server::start();
    let names: Vec<String> = (0..SENDERS).map(|i| format!("user{i:02}")).collect();
    let mut peers = Vec::new();
    for n in &names {
        peers.push(server.user(n).await);
    }
    let others: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let id = peers[0].create_group("busy", &others).await;
    let t0 = std::time::Instant::now();

    let mut tasks = Vec::new();
    for (i, mut p) in peers.into_iter().enumerate() {
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..EACH {
                let body = format!("from {i} #{k}");
                let seq = p.send_msg(&id, &body).await;
                acked.push((seq, body));
            }
            (p, acked)
        }));
    }
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut peers = Vec::new();
    for t in tasks {
        let (p, mine) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("senders finish in time")
            .expect("sender task");
        let mut last = 0;
        for (seq, body) in mine {
            assert!(seq > last, "one sender's seqs rise in send order");
            last = seq;
            assert!(acked.insert(seq, body).is_none(), "seq {seq} acked twice");
        }
        peers.push(p);
    }
    let total = (SENDERS * EACH) as u64;
    assert_eq!(acked.len() as u64, total);
    eprintln!("{total} sends by {SENDERS} senders in {:?}", t0.elapsed());

    let events = peers[0].full_history(&id).await;
    assert_dense(&events);
    assert_eq!(events.len() as u64, total + 1, "create + every message");
    for e in &events[1..] {
        assert_eq!(e["kind"], "message");
        assert_eq!(
            e["body"].as_str(),
            acked.get(&seq_of(e)).map(String::as_str),
            "acked seq maps to its body"
        );
    }

    // Every member connection got every event, each exactly once.
    for p in &mut peers {
        let mut seen = BTreeSet::new();
        while (seen.len() as u64) < total {
            let Some(v) = p.next_push(WAIT).await else {
                break;
            };
            if is_event(&v, &id, "message") {
                assert!(seen.insert(seq_of(&v)), "{}: duplicate push {v}", p.user);
            }
        }
        let want: BTreeSet<u64> = (2..=total + 1).collect();
        assert_eq!(seen, want, "{} missed pushes", p.user);
        let extra = p.drain_pushes(Duration::ZERO).await;
        assert!(
            !extra.iter().any(|v| is_event(v, &id, "message")),
            "{}: more message pushes than events",
            p.user
        );
    }
}

#[tokio::test]
async fn a_retried_send_gets_the_original_seq() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    let other = alice.create_group("h", &["bob"]).await;

    let send = |conv: &str, cmid: &str, body: &str| json!({"type":"send","conversation_id":conv,"client_msg_id":cmid,"body":body});
    let first = alice.ok(send(&g, "cmid-1", "hello")).await;
    let again = alice.ok(send(&g, "cmid-1", "hello")).await;
    assert_eq!(first["seq"], again["seq"]);
    assert_eq!(first["ts"], again["ts"]);
    // A retry from another device of the same user also dedupes.
    let mut alice2 = server.device(&alice.token).await;
    let third = alice2.ok(send(&g, "cmid-1", "hello")).await;
    assert_eq!(first["seq"], third["seq"]);

    // Two copies in flight at once (one group commit) still make one event.
    let a = alice.send_req(send(&g, "cmid-2", "twice")).await;
    let b = alice.send_req(send(&g, "cmid-2", "twice")).await;
    let (ra, rb) = (alice.wait_reply(a).await, alice.wait_reply(b).await);
    assert_eq!(ra["type"], "ok", "{ra}");
    assert_eq!(ra["seq"], rb["seq"]);

    // The same id in another conversation, or for another kind: conflict.
    alice.err(send(&other, "cmid-1", "hello"), "conflict").await;
    alice
        .err(
            json!({"type":"edit","conversation_id":g,"client_msg_id":"cmid-1",
                   "target_seq":seq_of(&first),"body":"x"}),
            "conflict",
        )
        .await;
    // Another sender may use the same client_msg_id.
    let bobs = bob.ok(send(&g, "cmid-1", "mine")).await;
    assert_ne!(bobs["seq"], first["seq"]);

    let events = alice.full_history(&g).await;
    assert_dense(&events);
    let cmids: Vec<(&str, &str)> = events[1..]
        .iter()
        .map(|e| {
            (
                e["sender"].as_str().unwrap(),
                e["client_msg_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cmids,
        [("alice", "cmid-1"), ("alice", "cmid-2"), ("bob", "cmid-1")]
    );
    let pushes: Vec<Value> = bob
        .drain_pushes(Duration::from_millis(200))
        .await
        .into_iter()
        .filter(|v| is_event(v, &g, "message"))
        .collect();
    assert_eq!(pushes.len(), 3, "one push per event: {pushes:?}");
    assert_eq!(alice.last_seq(&other).await, 1);
}

#[tokio::test]
async fn events_reach_every_member_connection() {
    let server = Server::start();
    let mut a1 = server.user("alice").await;
    let mut a2 = server.device(&a1.token).await;
    let mut bob = server.user("bob").await;
    let mut b2 = server.device(&bob.token).await;
    let mut carol = server.user("carol").await;
    let g = a1.create_group("g", &["bob"]).await;

    let seq = a1.send_msg(&g, "to everyone").await;
    for p in [&mut a1, &mut a2, &mut bob, &mut b2] {
        let v = p.expect_push(|v| is_event(v, &g, "message"), WAIT).await;
        assert_eq!(seq_of(&v), seq);
        assert_eq!(v["sender"], "alice");
        assert_eq!(v["body"], "to everyone");
        assert!(v["ts"].as_i64().is_some_and(|t| t > 0));
        assert!(v["client_msg_id"].is_string());
        assert!(v.get("id").is_none(), "pushes carry no id");
    }
    carol
        .expect_no_push_matching(|v| v["type"] == "event", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn only_the_author_edits_or_deletes() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    let m = alice.send_msg(&g, "original").await;
    let edit = |cmid: &str, body: &str| json!({"type":"edit","conversation_id":g,"client_msg_id":cmid,"target_seq":m,"body":body});
    let delete = |cmid: &str, target: u64| json!({"type":"delete","conversation_id":g,"client_msg_id":cmid,"target_seq":target});

    bob.err(edit("b-e", "hijacked"), "forbidden").await;
    bob.err(delete("b-d", m), "forbidden").await;
    let e = alice.ok(edit("a-e", "edited")).await;
    let push = bob.expect_push(|v| is_event(v, &g, "edit"), WAIT).await;
    assert_eq!(push["target_seq"], m);
    assert_eq!(push["body"], "edited");
    assert_eq!(push["seq"], e["seq"]);

    // Edits and deletions target messages only.
    alice
        .err(
            json!({"type":"edit","conversation_id":g,"client_msg_id":"x1","target_seq":1,"body":"x"}),
            "invalid_argument",
        )
        .await;
    alice
        .err(
            json!({"type":"edit","conversation_id":g,"client_msg_id":"x2","target_seq":999,"body":"x"}),
            "not_found",
        )
        .await;

    alice.ok(delete("a-d", m)).await;
    let push = bob.expect_push(|v| is_event(v, &g, "delete"), WAIT).await;
    assert_eq!(push["target_seq"], m);
    alice.err(edit("a-e2", "too late"), "not_found").await;
    alice.err(delete("a-d2", m), "not_found").await;

    let events = alice.full_history(&g).await;
    assert_dense(&events);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["create", "message", "edit", "delete"]);
    assert_eq!(events[1]["body"], "original", "the log keeps the original");
}

#[tokio::test]
async fn reactions_and_replies() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    let m = alice.send_msg(&g, "ship it?").await;
    let react = |cmid: &str, emoji: &str, remove: bool| {
        json!({"type":"react","conversation_id":g,"client_msg_id":cmid,
               "target_seq":m,"emoji":emoji,"remove":remove})
    };

    bob.ok(react("r1", "👍", false)).await;
    let push = alice
        .expect_push(|v| is_event(v, &g, "reaction"), WAIT)
        .await;
    assert_eq!(push["sender"], "bob");
    assert_eq!(push["target_seq"], m);
    assert_eq!(push["emoji"], "👍");
    assert_eq!(push["remove"], false);
    bob.ok(react("r2", "👍", true)).await;
    let push = alice
        .expect_push(|v| is_event(v, &g, "reaction"), WAIT)
        .await;
    assert_eq!(push["remove"], true);
    bob.err(react("r3", "", false), "invalid_argument").await;
    bob.err(react("r4", &"👍".repeat(20), false), "too_large")
        .await;

    let r = bob
        .ok(
            json!({"type":"send","conversation_id":g,"client_msg_id":"rep",
                    "body":"yes","reply_to":m}),
        )
        .await;
    let push = alice
        .expect_push(|v| is_event(v, &g, "message") && v["body"] == "yes", WAIT)
        .await;
    assert_eq!(push["reply_to"], m);
    assert_eq!(push["seq"], r["seq"]);
    bob.err(
        json!({"type":"send","conversation_id":g,"client_msg_id":"rep2",
               "body":"to nothing","reply_to":999}),
        "not_found",
    )
    .await;
    let events = alice.full_history(&g).await;
    assert_dense(&events);
    assert_eq!(events.len(), 5);
    assert_eq!(events[2]["kind"], "reaction");
    assert_eq!(events[4]["reply_to"], m);
    assert_eq!(events[1]["reply_to"], Value::Null);
}

#[tokio::test]
async fn message_limits() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let g = alice.create_group("g", &[]).await;
    let max = chat::proto::Limits::default().max_body_bytes;
    let send = |cmid: &str, body: &str| json!({"type":"send","conversation_id":g,"client_msg_id":cmid,"body":body});
    alice.ok(send("ok-size", &"x".repeat(max))).await;
    alice
        .err(send("big", &"x".repeat(max + 1)), "too_large")
        .await;
    alice.err(send("blank", " \n "), "invalid_argument").await;
    alice.err(send("", "hi"), "invalid_argument").await;
    alice.err(send(&"c".repeat(65), "hi"), "too_large").await;
    assert_eq!(alice.last_seq(&g).await, 2);
}
