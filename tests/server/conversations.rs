//! Conversations: create, join, leave, add_members, rename, and the
//! `conversation` pushes and membership events they produce.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn is_conv_push(v: &Value, id: &str) -> bool {
    v["type"] == "conversation" && v["conversation"]["id"] == id
}

#[tokio::test]
async fn dms_are_created_once() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol] = server.users(["alice", "bob", "carol"]).await;

    let dm = alice.create("dm", None, &["bob"]).await;
    assert_eq!(dm["kind"], "dm");
    assert_eq!(dm["members"], json!(["alice", "bob"]));
    assert_eq!(dm["name"], Value::Null);
    assert_eq!(dm["last_seq"], 1);
    let id = conv_id(&dm);
    let push = bob.expect_push(|v| is_conv_push(v, &id), WAIT).await;
    assert_eq!(push["conversation"]["members"], json!(["alice", "bob"]));
    bob.expect_push(|v| is_event(v, &id, "create"), WAIT).await;

    // Again, from either side: the same conversation, no new event.
    assert_eq!(alice.create_dm("bob").await, id);
    assert_eq!(bob.create_dm("alice").await, id);
    assert_eq!(alice.last_seq(&id).await, 1);
    carol.expect_no_push(Duration::from_millis(200)).await;

    alice
        .err(
            json!({"type":"create","kind":"dm","members":["alice"]}),
            "invalid_argument",
        )
        .await;
    alice
        .err(
            json!({"type":"create","kind":"dm","members":["bob","carol"]}),
            "invalid_argument",
        )
        .await;
    alice
        .err(
            json!({"type":"create","kind":"dm","members":["ghost"]}),
            "not_found",
        )
        .await;
}

#[tokio::test]
async fn groups_push_to_online_members_only() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol, mut dave] =
        server.users(["alice", "bob", "carol", "dave"]).await;

    let g = alice
        .create("group", Some("launch"), &["bob", "carol"])
        .await;
    assert_eq!(g["kind"], "group");
    assert_eq!(g["name"], "launch");
    assert_eq!(g["members"], json!(["alice", "bob", "carol"]));
    let id = conv_id(&g);
    for p in [&mut bob, &mut carol] {
        let push = p.expect_push(|v| is_conv_push(v, &id), WAIT).await;
        assert_eq!(push["conversation"]["name"], "launch");
    }
    dave.expect_no_push(Duration::from_millis(200)).await;

    let ev = &alice.full_history(&id).await[0];
    assert_eq!(ev["kind"], "create");
    assert_eq!(ev["seq"], 1);
    assert_eq!(ev["sender"], "alice");
    assert_eq!(ev["members"], json!(["alice", "bob", "carol"]));
    assert_eq!(ev["name"], "launch");

    let list = bob.ok(json!({"type":"conversations"})).await;
    let ids: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);
    let list = dave.ok(json!({"type":"conversations"})).await;
    assert_eq!(list["conversations"], json!([]));

    alice
        .err(
            json!({"type":"create","kind":"group","members":["bob"]}),
            "invalid_argument",
        )
        .await;
    alice
        .err(
            json!({"type":"create","kind":"group","name":"x","members":["ghost"]}),
            "not_found",
        )
        .await;
}

#[tokio::test]
async fn channels_join_by_id_and_name() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol] = server.users(["alice", "bob", "carol"]).await;

    let id = alice.create_channel("#general").await;
    let list = bob.ok(json!({"type":"channels"})).await;
    assert_eq!(list["channels"][0]["id"], id.as_str());
    assert_eq!(
        list["channels"][0]["name"], "general",
        "a leading # is dropped"
    );
    assert_eq!(list["channels"][0]["members"], 1);

    let r = bob.ok(json!({"type":"join","conversation_id":id})).await;
    assert_eq!(r["conversation"]["members"], json!(["alice", "bob"]));
    let r = carol.ok(json!({"type":"join","name":"#general"})).await;
    assert_eq!(
        r["conversation"]["members"],
        json!(["alice", "bob", "carol"])
    );
    // Joining twice changes nothing.
    bob.ok(json!({"type":"join","conversation_id":id})).await;
    let events = alice.full_history(&id).await;
    assert_eq!(kinds(&events), ["create", "join", "join"]);
    assert_eq!(events[1]["members"], json!(["bob"]));
    assert_eq!(events[2]["members"], json!(["carol"]));
    assert_eq!(events[2]["sender"], "carol");
    assert_dense(&events);
    // Members already inside hear about the join.
    let push = alice
        .expect_push(|v| is_event(v, &id, "join") && v["seq"] == 3, WAIT)
        .await;
    assert_eq!(push["sender"], "carol");
    alice
        .expect_push(
            |v| is_conv_push(v, &id) && v["conversation"]["last_seq"] == 3,
            WAIT,
        )
        .await;

    alice
        .err(
            json!({"type":"create","kind":"channel","name":"general"}),
            "conflict",
        )
        .await;
    bob.err(json!({"type":"join","name":"nowhere"}), "not_found")
        .await;
    bob.err(json!({"type":"join"}), "invalid_argument").await;
}

#[tokio::test]
async fn private_conversations_cannot_be_joined() {
    let server = Server::start();
    let [mut alice, _bob, mut mallory] = server.users(["alice", "bob", "mallory"]).await;
    let g = alice.create_group("secret", &["bob"]).await;
    let dm = alice.create_dm("bob").await;
    for id in [&g, &dm] {
        mallory
            .err(json!({"type":"join","conversation_id":id}), "forbidden")
            .await;
        assert_eq!(alice.full_history(id).await.len(), 1, "nothing written");
    }
    mallory
        .err(json!({"type":"join","conversation_id":"nope"}), "not_found")
        .await;
}

#[tokio::test]
async fn leave_add_members_and_rename_are_events() {
    let server = Server::start();
    let [mut alice, mut bob, mut dave] = server.users(["alice", "bob", "dave"]).await;
    let id = alice.create_group("launch", &["bob"]).await;
    alice.send_msg(&id, "hello").await;

    // add_members: a join event by the adder; the new member is told.
    let r = alice
        .ok(json!({"type":"add_members","conversation_id":id,"members":["dave","bob"]}))
        .await;
    assert_eq!(
        r["conversation"]["members"],
        json!(["alice", "bob", "dave"])
    );
    let push = dave.expect_push(|v| is_conv_push(v, &id), WAIT).await;
    assert_eq!(
        push["conversation"]["members"],
        json!(["alice", "bob", "dave"])
    );
    dave.expect_push(|v| is_event(v, &id, "join"), WAIT).await;
    // Adding existing members writes nothing.
    alice
        .ok(json!({"type":"add_members","conversation_id":id,"members":["dave"]}))
        .await;
    alice
        .err(
            json!({"type":"add_members","conversation_id":id,"members":["ghost"]}),
            "not_found",
        )
        .await;

    // rename: by an admin (the creator owns the group), not by a member
    bob.err(
        json!({"type":"rename","conversation_id":id,"name":"liftoff"}),
        "forbidden",
    )
    .await;
    let r = alice
        .ok(json!({"type":"rename","conversation_id":id,"name":"liftoff"}))
        .await;
    let rename_seq = seq_of(&r);
    let push = alice
        .expect_push(
            |v| is_conv_push(v, &id) && v["conversation"]["name"] == "liftoff",
            WAIT,
        )
        .await;
    assert_eq!(push["conversation"]["last_seq"], rename_seq);

    // leave: the leaver hears it too, then loses access.
    bob.ok(json!({"type":"leave","conversation_id":id})).await;
    let push = bob.expect_push(|v| is_event(v, &id, "leave"), WAIT).await;
    assert_eq!(push["members"], json!(["bob"]));
    bob.err(json!({"type":"history","conversation_id":id}), "forbidden")
        .await;
    let list = bob.ok(json!({"type":"conversations"})).await;
    assert_eq!(list["conversations"], json!([]));

    let events = alice.full_history(&id).await;
    assert_dense(&events);
    assert_eq!(
        kinds(&events),
        ["create", "message", "join", "rename", "leave"]
    );
    assert_eq!(events[2]["sender"], "alice");
    assert_eq!(events[2]["members"], json!(["dave"]));
    assert_eq!(events[3]["name"], "liftoff");
    assert_eq!(events[4]["sender"], "bob");
    let c = &alice.ok(json!({"type":"conversations"})).await["conversations"][0];
    assert_eq!(c["members"], json!(["alice", "dave"]));
    assert_eq!(c["name"], "liftoff");
    assert_eq!(c["last_seq"], 5);
}

#[tokio::test]
async fn dms_cannot_be_left_renamed_or_grown() {
    let server = Server::start();
    let [mut alice, _bob, _carol] = server.users(["alice", "bob", "carol"]).await;
    let dm = alice.create_dm("bob").await;
    alice
        .err(
            json!({"type":"leave","conversation_id":dm}),
            "invalid_argument",
        )
        .await;
    alice
        .err(
            json!({"type":"rename","conversation_id":dm,"name":"x"}),
            "invalid_argument",
        )
        .await;
    alice
        .err(
            json!({"type":"add_members","conversation_id":dm,"members":["carol"]}),
            "invalid_argument",
        )
        .await;
    assert_eq!(alice.last_seq(&dm).await, 1);
}

#[tokio::test]
async fn state_rebuilt_after_restart_keeps_dms_channels_and_members_unique() {
    let mut server = Server::start();
    let [mut alice, _bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let ch = alice.create("channel", Some("general"), &[]).await;
    let ch_id = ch["id"].as_str().unwrap().to_string();
    let alice_token = alice.token.clone();
    drop(alice);
    server.restart().await;

    let mut alice = server.connect().await;
    assert_eq!(alice.auth(&alice_token).await["type"], "ok");
    // The same DM, not a second one; the channel name is still taken.
    assert_eq!(alice.create_dm("bob").await, dm);
    alice
        .err(
            json!({"type":"create","kind":"channel","name":"general"}),
            "conflict",
        )
        .await;
    // Membership survived: bob can join, and seqs continue densely.
    let mut bob = server.connect().await;
    assert_eq!(bob.login("bob", PASSWORD).await["type"], "ok");
    let joined = bob
        .ok(json!({"type":"join","conversation_id": ch_id}))
        .await;
    assert_eq!(joined["conversation"]["last_seq"], 2, "{joined}");
}
