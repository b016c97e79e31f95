//! The authorization suite: a non-member tries every conversation request.
//! Each is refused, and the log is exactly as it was.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Every request that names a conversation, aimed at `id`.
fn every_request(id: &str, target: u64) -> Vec<Value> {
    let n = unique();
    let cmid = |k: &str| format!("mallory-{k}-{n}");
    vec![
        json!({"type":"send","conversation_id":id,"client_msg_id":cmid("s"),"body":"let me in"}),
        json!({"type":"send","conversation_id":id,"client_msg_id":cmid("r"),"body":"re","reply_to":target}),
        json!({"type":"edit","conversation_id":id,"client_msg_id":cmid("e"),"target_seq":target,"body":"x"}),
        json!({"type":"delete","conversation_id":id,"client_msg_id":cmid("d"),"target_seq":target}),
        json!({"type":"react","conversation_id":id,"client_msg_id":cmid("x"),"target_seq":target,"emoji":"💀"}),
        json!({"type":"history","conversation_id":id}),
        json!({"type":"history","conversation_id":id,"before":100,"limit":5}),
        json!({"type":"search","conversation_id":id,"query":"private"}),
        json!({"type":"receipt","conversation_id":id,"delivered":1,"read":1}),
        json!({"type":"typing","conversation_id":id,"active":true}),
        json!({"type":"typing","conversation_id":id,"active":false}),
        json!({"type":"leave","conversation_id":id}),
        json!({"type":"add_members","conversation_id":id,"members":["mallory"]}),
        json!({"type":"rename","conversation_id":id,"name":"pwned"}),
        json!({"type":"rename","conversation_id":id,"name":"pwned","client_msg_id":cmid("n")}),
    ]
}

#[tokio::test]
async fn non_members_are_refused_everything() {
    let server = Server::start();
    let [mut alice, mut bob, mut mallory] = server.users(["alice", "bob", "mallory"]).await;
    let group = alice.create_group("secret", &["bob"]).await;
    let dm = alice.create_dm("bob").await;
    let channel = alice.create_channel("town").await;
    bob.ok(json!({"type":"join","conversation_id":channel}))
        .await;
    let mut target = 0;
    for id in [&group, &dm, &channel] {
        target = alice.send_msg(id, "private words").await;
        bob.ok(json!({"type":"receipt","conversation_id":id,"delivered":target,"read":target}))
            .await;
    }
    let mut before = Vec::new();
    for id in [&group, &dm, &channel] {
        before.push((alice.full_history(id).await, alice.last_seq(id).await));
    }
    let convs_before = alice.ok(json!({"type":"conversations"})).await;
    mallory.drain_pushes(Duration::from_millis(100)).await;

    for id in [&group, &dm, &channel] {
        for req in every_request(id, target) {
            let r = mallory.request(req.clone()).await;
            assert_eq!(r["type"], "error", "{req} -> {r}");
            assert_eq!(r["code"], "forbidden", "{req} -> {r}");
        }
    }
    for id in [&group, &dm] {
        mallory
            .err(json!({"type":"join","conversation_id":id}), "forbidden")
            .await;
    }
    // Unknown conversations: not_found, for every request.
    for req in every_request("no-such-conversation", 2) {
        let r = mallory.request(req.clone()).await;
        assert_eq!(r["code"], "not_found", "{req} -> {r}");
    }
    mallory
        .err(
            json!({"type":"join","conversation_id":"no-such-conversation"}),
            "not_found",
        )
        .await;

    // The log, memberships and receipts are unchanged; mallory heard nothing.
    for (id, (events, last)) in [&group, &dm, &channel].into_iter().zip(&before) {
        assert_eq!(&alice.full_history(id).await, events, "log of {id}");
        assert_eq!(alice.last_seq(id).await, *last);
    }
    assert_eq!(
        alice.ok(json!({"type":"conversations"})).await["conversations"],
        convs_before["conversations"]
    );
    let list = mallory.ok(json!({"type":"conversations"})).await;
    assert_eq!(list["conversations"], json!([]));
    alice.send_msg(&group, "still private").await;
    alice
        .ok(json!({"type":"typing","conversation_id":group,"active":true}))
        .await;
    mallory
        .expect_no_push_matching(|v| v["type"] != "presence", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn channel_history_once_joined_and_not_after_leaving() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let ch = alice.create_channel("town").await;
    alice.send_msg(&ch, "before bob").await;
    bob.err(json!({"type":"history","conversation_id":ch}), "forbidden")
        .await;
    bob.ok(json!({"type":"join","conversation_id":ch})).await;
    let events = bob.full_history(&ch).await;
    assert_eq!(events.len(), 3, "a joined channel's whole history");
    bob.send_msg(&ch, "hi").await;
    bob.ok(json!({"type":"leave","conversation_id":ch})).await;
    bob.err(
        json!({"type":"send","conversation_id":ch,"client_msg_id":"late","body":"x"}),
        "forbidden",
    )
    .await;
    bob.err(json!({"type":"history","conversation_id":ch}), "forbidden")
        .await;
    alice.send_msg(&ch, "after bob").await;
    bob.expect_no_push_matching(
        |v| v["type"] == "event" && v["body"] == "after bob",
        Duration::from_millis(300),
    )
    .await;
}
