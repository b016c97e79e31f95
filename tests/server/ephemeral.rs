//! Typing and presence: relayed to the right people, rate-limited, and never
//! written to the log.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

fn typing_of(user: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["type"] == "typing" && v["user"] == user
}

fn presence_of(user: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["type"] == "presence" && v["user"] == user
}

#[tokio::test]
async fn typing_is_relayed_to_other_members_and_throttled() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let mut a2 = server.device(&alice.token).await;
    let [mut bob, mut carol, mut dave] = server.users(["bob", "carol", "dave"]).await;
    let g = alice.create_group("g", &["bob", "carol"]).await;
    let h = alice.create_group("h", &["bob"]).await;
    let before = alice.last_seq(&g).await;

    // Without an id: no reply, a push to the others.
    alice
        .send_raw(json!({"type":"typing","conversation_id":g,"active":true}).to_string())
        .await;
    for p in [&mut bob, &mut carol] {
        let v = p.expect_push(typing_of("alice"), WAIT).await;
        assert_eq!(v["conversation_id"], g.as_str());
        assert_eq!(v["active"], true);
        assert!(v.get("id").is_none());
    }
    dave.expect_no_push_matching(typing_of("alice"), QUIET)
        .await;
    a2.expect_no_push_matching(typing_of("alice"), QUIET).await;

    // A second start within a second: refused (and not relayed).
    alice
        .err(
            json!({"type":"typing","conversation_id":g,"active":true}),
            "rate_limited",
        )
        .await;
    alice
        .send_raw(json!({"type":"typing","conversation_id":g,"active":true}).to_string())
        .await;
    bob.expect_no_push_matching(typing_of("alice"), QUIET).await;
    // Another conversation has its own budget; a stop always passes.
    alice
        .ok(json!({"type":"typing","conversation_id":h,"active":true}))
        .await;
    alice
        .ok(json!({"type":"typing","conversation_id":g,"active":false}))
        .await;
    let v = bob
        .expect_push(
            |v| typing_of("alice")(v) && v["conversation_id"] == g.as_str(),
            WAIT,
        )
        .await;
    assert_eq!(v["active"], false);
    // A second later a start passes again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    alice
        .ok(json!({"type":"typing","conversation_id":g,"active":true}))
        .await;
    bob.expect_push(typing_of("alice"), WAIT).await;

    // Never in the log; no reply to the signals sent without an id.
    assert_eq!(alice.last_seq(&g).await, before);
    assert_eq!(alice.full_history(&g).await.len() as u64, before);
    assert_eq!(alice.unclaimed_replies(), 0);
}

#[tokio::test]
async fn presence_goes_to_contacts_only() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol] = server.users(["alice", "bob", "carol"]).await;
    let dm = alice.create_dm("bob").await;
    let before = alice.last_seq(&dm).await;
    let bob_token = bob.token.clone();

    // A second device does not change presence.
    let b2 = server.device(&bob_token).await;
    alice
        .expect_no_push_matching(presence_of("bob"), QUIET)
        .await;

    bob.ok(json!({"type":"presence","status":"away"})).await;
    let v = alice.expect_push(presence_of("bob"), WAIT).await;
    assert_eq!(v["status"], "away");
    let r = alice.ok(json!({"type":"sync"})).await;
    assert_eq!(r["presence"][0]["status"], "away");
    // Without an id there is no reply.
    bob.send_raw(r#"{"type":"presence","status":"online"}"#)
        .await;
    let v = alice.expect_push(presence_of("bob"), WAIT).await;
    assert_eq!(v["status"], "online");
    bob.err(
        json!({"type":"presence","status":"offline"}),
        "invalid_argument",
    )
    .await;
    bob.err(
        json!({"type":"presence","status":"busy"}),
        "invalid_argument",
    )
    .await;
    assert_eq!(bob.unclaimed_replies(), 0, "no reply without an id");

    // Closing one device: still online. Closing the last: offline, last_seen.
    b2.close().await;
    alice
        .expect_no_push_matching(presence_of("bob"), QUIET)
        .await;
    let t0 = chat::proto::now_millis();
    bob.close().await;
    let v = alice.expect_push(presence_of("bob"), WAIT).await;
    assert_eq!(v["status"], "offline");
    let seen = v["last_seen"].as_i64().expect("last_seen when offline");
    assert!(seen >= t0 - 1000 && seen <= chat::proto::now_millis() + 1000);
    let r = alice.ok(json!({"type":"sync"})).await;
    assert_eq!(r["presence"][0]["status"], "offline");
    assert_eq!(r["presence"][0]["last_seen"], seen);

    // Reconnecting: online again.
    let _bob = server.device(&bob_token).await;
    let v = alice.expect_push(presence_of("bob"), WAIT).await;
    assert_eq!(v["status"], "online");

    // carol shares nothing with bob: she heard none of it.
    carol
        .expect_no_push_matching(presence_of("bob"), QUIET)
        .await;
    // Presence never touches the log.
    assert_eq!(alice.last_seq(&dm).await, before);
}

#[tokio::test]
async fn users_lists_names_with_presence_of_contacts_only() {
    let server = Server::start();
    let [mut alice, _bob, _bert] = server.users(["alice", "bob", "bert"]).await;
    alice.create_dm("bert").await;
    let r = alice.ok(json!({"type":"users","prefix":"b"})).await;
    let names: Vec<&str> = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bert", "bob"]);
    // bert shares a DM with alice: a contact. bob is a stranger: his
    // presence and last-seen time are not alice's to see.
    assert_eq!(r["users"][0]["status"], "online");
    assert!(r["users"][1].get("status").is_none(), "{r}");
    assert!(r["users"][1].get("last_seen").is_none(), "{r}");
    let me = alice.ok(json!({"type":"users","prefix":"alice"})).await;
    assert_eq!(me["users"][0]["status"], "online");
    let r = alice
        .ok(json!({"type":"users","prefix":"","limit":1}))
        .await;
    assert_eq!(r["users"].as_array().unwrap().len(), 1);
}
