//! `chatd migrate --from DATA_DIR --to postgres://…`: an embedded server's
//! data copied into PostgreSQL serves on as if nothing had moved: the same
//! accounts and sessions, the same log (seqs, ids, text, edits, deletions),
//! receipts, search, and new sends numbered on from the last seq. Runs when
//! `CHATD_TEST_PG` names a PostgreSQL server.

mod support;

use chat::store::pg::copy::from_sqlite;
use serde_json::{Value, json};
use support::backend::Database;
use support::server::Server;

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
    let before_g = shape(&alice.full_history(&g).await);
    let before_dm = shape(&bob.full_history(&dm).await);
    let bob_token = bob.token.clone();
    drop((alice, bob));
    lite.stop().await;

    let copied = from_sqlite(lite.data_dir(), &db.url)
        .await
        .expect("the copy succeeds");
    assert_eq!(copied.rows["users"], 2);
    assert_eq!(copied.rows["conversations"], 2);
    assert_eq!(copied.conversations, 2);
    assert_eq!(
        copied.rows["events"] as usize,
        before_g.len() + before_dm.len()
    );
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
    // alice logs in with her password; new sends number on.
    let mut alice = pg.login("alice").await;
    let next = alice.send_msg(&g, "back in business").await;
    assert_eq!(next, last + 1);
}
