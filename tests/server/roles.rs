//! Roles in groups and channels, removal, moderator deletes, and blocking:
//! a member cannot take over a group, pull people back in, or reach
//! someone who blocks them.

use crate::support::*;
use serde_json::{Value, json};

fn roles(conv: &Value) -> Value {
    conv["conversation"]["roles"].clone()
}

#[tokio::test]
async fn the_creator_owns_a_group_and_only_admins_change_it() {
    let server = Server::start();
    let [mut alice, mut bob, _carol, _dave] = server.users(["alice", "bob", "carol", "dave"]).await;
    let id = alice.create_group("launch", &["bob", "carol"]).await;
    let convs = bob.conversations().await;
    assert_eq!(
        convs[0].roles.get("alice").map(|r| r.as_str()),
        Some("owner")
    );

    for req in [
        json!({"type":"add_members","conversation_id":id,"members":["dave"]}),
        json!({"type":"remove_members","conversation_id":id,"members":["carol"]}),
        json!({"type":"rename","conversation_id":id,"name":"mine"}),
        json!({"type":"set_member_role","conversation_id":id,"user":"bob","role":"admin"}),
    ] {
        bob.err(req, "forbidden").await;
    }
    // Made an admin, bob adds and removes members, but not the owner.
    let r = alice
        .ok(json!({"type":"set_member_role","conversation_id":id,"user":"bob","role":"admin"}))
        .await;
    assert_eq!(roles(&r), json!({"alice":"owner","bob":"admin"}));
    bob.ok(json!({"type":"add_members","conversation_id":id,"members":["dave"]}))
        .await;
    bob.err(
        json!({"type":"remove_members","conversation_id":id,"members":["alice"]}),
        "forbidden",
    )
    .await;
    bob.err(
        json!({"type":"set_member_role","conversation_id":id,"user":"carol","role":"owner"}),
        "forbidden",
    )
    .await;
    bob.err(
        json!({"type":"remove_members","conversation_id":id,"members":["bob"]}),
        "invalid_argument",
    )
    .await;
    let kinds: Vec<String> = alice
        .full_history(&id)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["create", "role", "join"]);
}

#[tokio::test]
async fn a_removed_member_is_told_and_cannot_come_back_alone() {
    let server = Server::start();
    let [mut alice, mut mallory, mut bob] = server.users(["alice", "mallory", "bob"]).await;
    let id = alice.create_channel("general").await;
    mallory.ok(json!({"type":"join","name":"#general"})).await;
    bob.ok(json!({"type":"join","name":"#general"})).await;
    let r = alice
        .ok(json!({"type":"remove_members","conversation_id":id,"members":["mallory"]}))
        .await;
    assert_eq!(r["conversation"]["members"], json!(["alice", "bob"]));
    let ev = mallory
        .expect_push(|v| is_event(v, &id, "remove"), WAIT)
        .await;
    assert_eq!(ev["members"], json!(["mallory"]));
    assert_eq!(ev["sender"], "alice");
    mallory
        .expect_push(
            |v| v["type"] == "conversation" && v["conversation"]["id"] == id.as_str(),
            WAIT,
        )
        .await;
    mallory
        .err(json!({"type":"history","conversation_id":id}), "forbidden")
        .await;
    mallory
        .err(json!({"type":"join","name":"#general"}), "forbidden")
        .await;
    mallory
        .err(
            json!({"type":"add_members","conversation_id":id,"members":["mallory"]}),
            "forbidden",
        )
        .await;
    // An admin may bring them back; then they may leave and join freely.
    alice
        .ok(json!({"type":"add_members","conversation_id":id,"members":["mallory"]}))
        .await;
    mallory
        .ok(json!({"type":"leave","conversation_id":id}))
        .await;
    mallory.ok(json!({"type":"join","name":"#general"})).await;
}

#[tokio::test]
async fn admins_delete_any_message_and_only_authors_edit() {
    let server = Server::start();
    let [mut root, mut alice, mut bob, mut carol] =
        server.users(["root", "alice", "bob", "carol"]).await;
    // root registered first: the server's admin.
    let id = alice.create_group("team", &["bob", "carol", "root"]).await;
    let by_carol = carol.send_msg(&id, "spam").await;
    let by_bob = bob.send_msg(&id, "more spam").await;
    let del = |seq: u64| json!({"type":"delete","conversation_id":id,"client_msg_id":format!("d{seq}"),"target_seq":seq});
    bob.err(del(by_carol), "forbidden").await;
    alice.ok(del(by_carol)).await; // the owner
    root.ok(del(by_bob)).await; // the server's admin
    alice
        .err(
            json!({"type":"edit","conversation_id":id,"client_msg_id":"e1","target_seq":by_bob,"body":"x"}),
            "forbidden",
        )
        .await;
    let events = carol.full_history(&id).await;
    let deletes: Vec<(&str, u64)> = events
        .iter()
        .filter(|e| e["kind"] == "delete")
        .map(|e| {
            (
                e["sender"].as_str().unwrap(),
                e["target_seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(deletes, [("alice", by_carol), ("root", by_bob)]);
}

#[tokio::test]
async fn ownership_is_handed_over_and_passes_on_when_the_owner_leaves() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol] = server.users(["alice", "bob", "carol"]).await;
    let id = alice.create_group("g", &["bob", "carol"]).await;
    let r = alice
        .ok(json!({"type":"set_member_role","conversation_id":id,"user":"bob","role":"owner"}))
        .await;
    assert_eq!(roles(&r), json!({"alice":"admin","bob":"owner"}));
    // The old owner, now an admin, cannot demote the new one.
    alice
        .err(
            json!({"type":"set_member_role","conversation_id":id,"user":"bob","role":"member"}),
            "forbidden",
        )
        .await;
    // The owner leaves: the admin inherits.
    bob.ok(json!({"type":"leave","conversation_id":id})).await;
    let push = carol
        .expect_push(
            |v| {
                v["type"] == "conversation"
                    && v["conversation"]["members"] == json!(["alice", "carol"])
            },
            WAIT,
        )
        .await;
    assert_eq!(roles(&push), json!({"alice":"owner"}));
    let kinds: Vec<String> = carol
        .full_history(&id)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["create", "role", "role", "leave"]);
}

#[tokio::test]
async fn a_blocked_user_cannot_reach_the_blocker() {
    let server = Server::start();
    let [mut alice, mut mallory, mut bob] = server.users(["alice", "mallory", "bob"]).await;
    // An existing DM, from before the block.
    let dm = mallory.create_dm("alice").await;
    mallory.send_msg(&dm, "hi").await;
    alice.ok(json!({"type":"block","user":"mallory"})).await;
    let list = alice.ok(json!({"type":"blocks"})).await;
    assert_eq!(list["users"], json!(["mallory"]));
    assert_eq!(
        mallory.ok(json!({"type":"blocks"})).await["users"],
        json!([])
    );

    // Mallory sees alice go offline, and no more of her presence.
    let p = mallory
        .expect_push(|v| v["type"] == "presence" && v["user"] == "alice", WAIT)
        .await;
    assert_eq!(p["status"], "offline");
    assert!(p["last_seen"].is_null());
    let users = mallory.ok(json!({"type":"users","prefix":"alice"})).await;
    assert!(users["users"][0].get("status").is_none(), "{users}");

    // No writing in the DM, no new DM, no group with alice in it.
    mallory
        .err(
            json!({"type":"send","conversation_id":dm,"client_msg_id":"m1","body":"hello?"}),
            "forbidden",
        )
        .await;
    mallory
        .err(
            json!({"type":"create","kind":"group","name":"trap","members":["alice","bob"]}),
            "forbidden",
        )
        .await;
    let g = mallory.create_group("other", &["bob"]).await;
    mallory
        .err(
            json!({"type":"add_members","conversation_id":g,"members":["alice"]}),
            "forbidden",
        )
        .await;
    // Others are not affected, and alice may still write to mallory.
    bob.create_dm("alice").await;
    alice.send_msg(&dm, "bye").await;
    // Unblocked: all is as before.
    alice.ok(json!({"type":"unblock","user":"mallory"})).await;
    let p = mallory
        .expect_push(|v| v["type"] == "presence" && v["user"] == "alice", WAIT)
        .await;
    assert_eq!(p["status"], "online");
    mallory.send_msg(&dm, "sorry").await;
    alice
        .err(json!({"type":"block","user":"alice"}), "invalid_argument")
        .await;
    alice
        .err(json!({"type":"block","user":"nobody"}), "not_found")
        .await;
}
