//! Retention: message text older than `[retention] days` is cleared from
//! the server's log, seqs kept; `sync` tells clients the cutoff, and the
//! engine clears its cache below it.

use crate::support::*;
use chat::proto::now_millis;
use serde_json::json;

const DAY: i64 = 24 * 3600 * 1000;

#[tokio::test]
async fn old_text_is_cleared_and_clients_are_told() {
    if crate::support::skip_on_postgres("ages events in chatd.db and sweeps that file") {
        return;
    }
    let server = Server::start_with(|c| c.retention.days = 30);
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let old = alice.send_msg(&dm, "an old secret").await;
    alice
        .ok(json!({"type":"edit","conversation_id":dm,"client_msg_id":"e1","target_seq":old,"body":"an old edited secret"}))
        .await;
    // Those two are made 40 days old; what follows is new.
    let db = rusqlite::Connection::open(server.data_dir().join("chatd.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE events SET ts = ts - ?1 WHERE conversation_id = ?2",
        rusqlite::params![40 * DAY, dm],
    )
    .unwrap();
    bob.send_msg(&dm, "fresh news").await;

    let cutoff = now_millis() - 30 * DAY;
    let dir = server.data_dir().to_path_buf();
    let cleared = tokio::task::spawn_blocking(move || {
        chat::store::log::retention::sweep(&dir, cutoff, || false).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(cleared, 2, "the message and its edit");

    let events = bob.full_history(&dm).await;
    assert_dense(&events);
    assert_eq!(events.len(), 4);
    assert_eq!(events[1]["body"], "");
    assert_eq!(events[2]["body"], "");
    assert_eq!(events[3]["body"], "fresh news");
    assert_eq!(server.events_containing("secret"), 0);
    // Cleared text is not searchable either.
    let found = bob.ok(json!({"type":"search","query":"secret"})).await;
    assert_eq!(found["hits"], json!([]));
    let found = bob.ok(json!({"type":"search","query":"fresh"})).await;
    assert_eq!(found["hits"].as_array().unwrap().len(), 1);

    let sync = bob.ok(json!({"type":"sync"})).await;
    let told = sync["retention_cutoff"].as_i64().expect("a cutoff");
    assert!((told - cutoff).abs() < 60_000, "{told} vs {cutoff}");
    // Without retention, no cutoff.
    let plain = Server::start();
    let mut p = plain.user("carol").await;
    assert!(
        p.ok(json!({"type":"sync"}))
            .await
            .get("retention_cutoff")
            .is_none()
    );
}
