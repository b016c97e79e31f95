//! `chatd migrate --from DATA_DIR --to postgres://…`: an embedded server's
//! data copied into PostgreSQL serves on as if nothing had moved: the same
//! accounts and sessions, the same log (seqs, ids, text, edits, deletions),
//! receipts, search, new sends numbered on from the last seq, and secret
//! conversations (devices, their keys and inboxes, Megolm sessions). Runs
//! when `CHATD_TEST_PG` names a PostgreSQL server.

mod support;

use chat::store::pg::copy::from_sqlite;
use serde_json::{Value, json};
use support::backend::Database;
use support::keys::{message, upload};
use support::server::Server;
use vodozemac::Ed25519Keypair;

/// What a member sees of a conversation: seq, id, kind and body of each event.
fn shape(events: &[Value]) -> Vec<(u64, String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["eid"].as_str().unwrap_or_default().to_string(),
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["body"].to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_moves_to_postgres_whole() {
    let Some(db) = Database::create() else {
        eprintln!("skipped: set CHATD_TEST_PG to a PostgreSQL URL to run this test");
        return;
    };
    // An embedded server with a little of everything.
    let mut lite = Server::start_node(|_| {});
    let mut alice = lite.user("alice").await;
    let mut bob = lite.user("bob").await;
    let g = alice.create_group("team", &["bob"]).await;
    let first = alice.send_msg(&g, "the quarterly numbers").await;
    bob.send_msg(&g, "look fine to me").await;
    let gone = bob.send_msg(&g, "oops, wrong room").await;
    alice
        .ok(
            json!({"type":"edit","conversation_id":g,"client_msg_id":"e1",
                   "target_seq":first,"body":"the yearly numbers"}),
        )
        .await;
    bob.ok(json!({"type":"delete","conversation_id":g,"client_msg_id":"d1","target_seq":gone}))
        .await;
    let dm = bob.create_dm("alice").await;
    bob.send_msg(&dm, "lunch?").await;
    let last = alice.last_seq(&g).await;
    bob.ok(json!({"type":"receipt","conversation_id":g,"delivered":last,"read":last}))
        .await;
    // Devices with keys, a message waiting in alice's inbox, and a
    // secret DM with one message whose session bob holds.
    let alice_dev = upload(&mut alice, &Ed25519Keypair::new(), 2).await;
    let bob_dev = upload(&mut bob, &Ed25519Keypair::new(), 1).await;
    bob.ok(json!({"type":"to_device","messages":[message("alice", &alice_dev.id, 1)]}))
        .await;
    let secret = alice
        .ok(json!({"type":"create","kind":"dm","members":["bob"],"encrypted":true}))
        .await;
    let secret = support::conv_id(&secret["conversation"]);
    alice
        .ok(
            json!({"type":"send","conversation_id":secret,"client_msg_id":"x1","body":"",
                   "encrypted":{"algorithm":"megolm.v1","device_id":alice_dev.id,
                                "session_id":"c2Vzc2lvbg","ciphertext":"AwgAEhAbc"},
                   "shares":[message("bob", &bob_dev.id, 2)]}),
        )
        .await;
    let before_g = shape(&alice.full_history(&g).await);
    let before_dm = shape(&bob.full_history(&dm).await);
    let before_secret = shape(&bob.full_history(&secret).await);
    let bob_token = bob.token.clone();
    let alice_token = alice.token.clone();
    drop((alice, bob));
    lite.stop().await;

    let copied = from_sqlite(lite.data_dir(), &db.url)
        .await
        .expect("the copy succeeds");
    assert_eq!(copied.rows["users"], 2);
    assert_eq!(copied.rows["conversations"], 3);
    assert_eq!(copied.conversations, 3);
    assert_eq!(
        copied.rows["events"] as usize,
        before_g.len() + before_dm.len() + before_secret.len()
    );
    assert_eq!(copied.rows["identity_keys"], 2);
    assert_eq!(copied.rows["devices"], 2);
    assert_eq!(copied.rows["one_time_keys"], 3);
    assert_eq!(copied.rows["fallback_keys"], 2);
    assert_eq!(copied.rows["used_key_ids"], 5);
    assert_eq!(copied.rows["inbox"], 2);
    assert_eq!(copied.rows["megolm_sessions"], 1);
    assert_eq!(copied.rows["megolm_holders"], 1);
    // Copying again into a database that is no longer empty is refused.
    let again = from_sqlite(lite.data_dir(), &db.url).await;
    assert!(again.is_err(), "a second copy must be refused");

    let pg = Server::start_node(|c| c.store.url = Some(db.url.clone()));
    // bob's session moved with him.
    let mut bob = pg.device(&bob_token).await;
    assert_eq!(shape(&bob.full_history(&g).await), before_g);
    assert_eq!(shape(&bob.full_history(&dm).await), before_dm);
    // His receipt is where he left it.
    let conv = bob.ok(json!({"type":"conversations"})).await;
    let listed = conv["conversations"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == json!(g)).cloned())
        .expect("the group is listed");
    assert_eq!(listed["last_seq"].as_u64(), Some(last), "{listed}");
    // Search finds current text only, in the moved log.
    let hits = bob.ok(json!({"type":"search","query":"yearly"})).await;
    assert_eq!(hits["hits"].as_array().map(Vec::len), Some(1), "{hits}");
    let old = bob.ok(json!({"type":"search","query":"quarterly"})).await;
    assert_eq!(old["hits"].as_array().map(Vec::len), Some(0), "{old}");
    // The secret DM is still secret, with its log.
    assert_eq!(shape(&bob.full_history(&secret).await), before_secret);
    bob.err(
        json!({"type":"send","conversation_id":secret,"client_msg_id":"p1","body":"hi"}),
        "invalid_argument",
    )
    .await;
    // alice's device moved with her session: its inbox, numbered on.
    let mut alice_again = pg.device(&alice_token).await;
    let inbox = alice_again
        .ok(json!({"type":"inbox","after":0,"limit":10}))
        .await;
    assert_eq!(
        inbox["messages"].as_array().map(Vec::len),
        Some(1),
        "{inbox}"
    );
    assert_eq!(inbox["messages"][0]["seq"], 1, "{inbox}");
    bob.ok(json!({"type":"to_device","messages":[message("alice", &alice_dev.id, 3)]}))
        .await;
    let inbox = alice_again
        .ok(json!({"type":"inbox","after":1,"limit":10}))
        .await;
    assert_eq!(inbox["messages"][0]["seq"], 2, "{inbox}");
    // Her one-time keys are there to claim, once each.
    let dref = json!([{"user":"alice","device_id":alice_dev.id}]);
    for fallback in [false, false, true] {
        let r = bob.ok(json!({"type":"keys_claim","devices":dref})).await;
        assert_eq!(r["keys"][0]["fallback"], fallback, "{r}");
    }
    // alice logs in with her password; new sends number on.
    let mut alice = pg.login("alice").await;
    let next = alice.send_msg(&g, "back in business").await;
    assert_eq!(next, last + 1);
}
