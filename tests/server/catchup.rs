//! Catching up: `history` ranges and paging, `sync`, and receipts.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

fn seqs(r: &Value) -> Vec<u64> {
    r["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {r}"))
        .iter()
        .map(seq_of)
        .collect()
}

/// Send `n` messages pipelined (all in flight at once); returns their seqs.
async fn burst(p: &mut Peer, conv: &str, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            p.send_req(json!({"type":"send","conversation_id":conv,
                               "client_msg_id":format!("b-{}", unique()),"body":format!("m{i}")}))
                .await,
        );
    }
    let mut out = Vec::new();
    for id in ids {
        let r = p.wait_reply(id).await;
        assert_eq!(r["type"], "ok", "{r}");
        out.push(seq_of(&r));
    }
    out
}

#[tokio::test]
async fn history_ranges_and_paging() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let g = alice.create_group("g", &[]).await;
    let sent = burst(&mut alice, &g, 30).await;
    assert_eq!(
        sent,
        (2..=31).collect::<Vec<_>>(),
        "pipelined sends keep order"
    );
    let h = |extra: Value| {
        let mut req = json!({"type":"history","conversation_id":g});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        req
    };

    let r = alice.ok(h(json!({"after":0,"limit":10}))).await;
    assert_eq!(seqs(&r), (1..=10).collect::<Vec<_>>());
    assert_eq!(r["last_seq"], 31);
    let r = alice.ok(h(json!({"after":10,"limit":10}))).await;
    assert_eq!(seqs(&r), (11..=20).collect::<Vec<_>>());
    let r = alice.ok(h(json!({"after":25}))).await;
    assert_eq!(seqs(&r), (26..=31).collect::<Vec<_>>());
    // `before`: the last `limit` events before it, ascending.
    let r = alice.ok(h(json!({"before":32,"limit":10}))).await;
    assert_eq!(seqs(&r), (22..=31).collect::<Vec<_>>());
    let r = alice.ok(h(json!({"before":5,"limit":10}))).await;
    assert_eq!(seqs(&r), (1..=4).collect::<Vec<_>>());
    // Both bounds: a window.
    let r = alice.ok(h(json!({"after":5,"before":9}))).await;
    assert_eq!(seqs(&r), vec![6, 7, 8]);
    // Empty ranges are empty, not errors, and still tell last_seq.
    for extra in [
        json!({"after":31}),
        json!({"after":1000}),
        json!({"after":u64::MAX}),
        json!({"after":u64::MAX,"before":u64::MAX}),
        json!({"before":1}),
        json!({"after":3,"before":4}),
        json!({"after":0,"limit":0}),
    ] {
        let r = alice.ok(h(extra.clone())).await;
        assert_eq!(seqs(&r), Vec::<u64>::new(), "{extra}");
        assert_eq!(r["last_seq"], 31, "{extra}");
    }
    alice.err(h(json!({"after":-1})), "invalid_argument").await;
    alice
        .err(h(json!({"limit":"ten"})), "invalid_argument")
        .await;
}

#[tokio::test]
async fn history_pages_are_capped() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let g = alice.create_group("g", &[]).await;
    burst(&mut alice, &g, 520).await;
    for limit in [json!(1000), json!(null), json!(u32::MAX)] {
        let r = alice
            .ok(json!({"type":"history","conversation_id":g,"after":0,"limit":limit}))
            .await;
        assert_eq!(seqs(&r), (1..=500).collect::<Vec<_>>(), "limit {limit}");
        assert_eq!(r["last_seq"], 521);
    }
    let r = alice
        .ok(json!({"type":"history","conversation_id":g,"before":522,"limit":100000}))
        .await;
    assert_eq!(seqs(&r), (22..=521).collect::<Vec<_>>());
    assert_dense(&alice.full_history(&g).await);

    let small = Server::start_with(|c| c.limits.history_page_cap = 3);
    let mut bob = small.user("bob").await;
    let g = bob.create_group("g", &[]).await;
    burst(&mut bob, &g, 5).await;
    let r = bob
        .ok(json!({"type":"history","conversation_id":g,"after":0,"limit":10}))
        .await;
    assert_eq!(seqs(&r), vec![1, 2, 3], "the configured cap applies");
}

#[tokio::test]
async fn sync_lists_conversations_receipts_and_presence() {
    let server = Server::start();
    let [mut alice, mut bob, _carol] = server.users(["alice", "bob", "carol"]).await;
    let g = alice.create_group("g", &["bob"]).await;
    let dm = alice.create_dm("carol").await;
    alice.send_msg(&g, "one").await;
    alice.send_msg(&g, "two").await;
    bob.ok(json!({"type":"receipt","conversation_id":g,"delivered":3,"read":2}))
        .await;

    let r = alice
        .ok(json!({"type":"sync","cursors":{g.clone():1, dm.clone():0, "unknown":5}}))
        .await;
    let convs = r["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 2);
    let cg = convs.iter().find(|c| c["id"] == g.as_str()).unwrap();
    assert_eq!(cg["last_seq"], 3);
    assert_eq!(cg["kind"], "group");
    assert_eq!(cg["members"], json!(["alice", "bob"]));
    assert_eq!(cg["receipts"]["bob"], json!({"delivered":3,"read":2}));
    assert!(
        cg["receipts"]["alice"].is_object(),
        "every member has receipts"
    );
    let cd = convs.iter().find(|c| c["id"] == dm.as_str()).unwrap();
    assert_eq!(cd["last_seq"], 1);

    let presence = r["presence"].as_array().unwrap();
    let status = |u: &str| {
        presence
            .iter()
            .find(|p| p["user"] == u)
            .map(|p| p["status"].clone())
    };
    assert_eq!(status("bob"), Some(json!("online")));
    assert_eq!(status("carol"), Some(json!("online")));
    assert_eq!(status("alice"), None, "not one's own contact");

    // A user with nothing yet.
    let mut dave = server.user("dave").await;
    let r = dave.ok(json!({"type":"sync"})).await;
    assert_eq!(r["conversations"], json!([]));
    assert!(
        r.get("presence").is_none_or(|p| p == &json!([])),
        "no contacts, no presence: {r}"
    );
}

#[tokio::test]
async fn sync_cursors_are_bounded() {
    let server = Server::start_with(|c| c.limits.max_sync_cursors = 2);
    let mut alice = server.user("alice").await;
    alice
        .err(
            json!({"type":"sync","cursors":{"a":1,"b":2,"c":3}}),
            "too_large",
        )
        .await;
    alice
        .ok(json!({"type":"sync","cursors":{"a":1,"b":2}}))
        .await;
}

#[tokio::test]
async fn receipts_move_forward_only() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let mut b2 = server.device(&bob.token).await;
    let g = alice.create_group("g", &["bob"]).await;
    for i in 0..3 {
        alice.send_msg(&g, &format!("m{i}")).await; // seqs 2..=4
    }
    let receipt =
        |d: u64, r: u64| json!({"type":"receipt","conversation_id":g,"delivered":d,"read":r});
    let is_receipt = |v: &Value| v["type"] == "receipt" && v["user"] == "bob";

    let r = bob.ok(receipt(4, 3)).await;
    assert_eq!(
        (r["delivered"].clone(), r["read"].clone()),
        (json!(4), json!(3))
    );
    for p in [&mut alice, &mut b2] {
        let push = p.expect_push(is_receipt, WAIT).await;
        assert_eq!(push["conversation_id"], g.as_str());
        assert_eq!(push["delivered"], 4);
        assert_eq!(push["read"], 3);
    }

    // Lower values are ignored: ok, unchanged, no push.
    let r = bob.ok(receipt(2, 1)).await;
    assert_eq!(
        (r["delivered"].clone(), r["read"].clone()),
        (json!(4), json!(3))
    );
    alice
        .expect_no_push_matching(is_receipt, Duration::from_millis(300))
        .await;

    // Above last_seq: clamped. Read implies delivered.
    let r = bob
        .ok(json!({"type":"receipt","conversation_id":g,"read":100}))
        .await;
    assert_eq!(
        (r["delivered"].clone(), r["read"].clone()),
        (json!(4), json!(4))
    );
    let push = alice.expect_push(is_receipt, WAIT).await;
    assert_eq!(
        (push["delivered"].clone(), push["read"].clone()),
        (json!(4), json!(4))
    );

    let c = &alice.ok(json!({"type":"conversations"})).await["conversations"][0];
    assert_eq!(c["receipts"]["bob"], json!({"delivered":4,"read":4}));
    assert_eq!(c["last_seq"], 4, "receipts are not log events");
}

#[tokio::test]
async fn pages_of_large_events_stay_under_the_frame_cap() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let g = alice.create_group("g", &[]).await;
    let body = "é".repeat(chat::proto::Limits::default().max_body_bytes / 2);
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(
            alice
                .send_req(json!({"type":"send","conversation_id":g,
                                 "client_msg_id":format!("big-{i}"),"body":body}))
                .await,
        );
    }
    for id in ids {
        let r = alice.wait_reply(id).await;
        assert_eq!(r["type"], "ok", "{r}");
    }
    // ~16 KiB of JSON per event, ~2 MiB in all.
    let cap = chat::proto::Limits::default().hard_frame_bytes;
    let r = alice
        .ok(json!({"type":"history","conversation_id":g,"after":0,"limit":500}))
        .await;
    let first = seqs(&r);
    assert!(
        first.len() > 1 && first.len() < 121,
        "{} events",
        first.len()
    );
    assert_eq!(first[0], 1, "the oldest first");
    assert!(r.to_string().len() <= cap, "reply under the hard frame cap");
    let r = alice
        .ok(json!({"type":"history","conversation_id":g,"before":122,"limit":500}))
        .await;
    let last = seqs(&r);
    assert_eq!(last.last(), Some(&121), "a before-page keeps the newest");
    assert!(r.to_string().len() <= cap);
    // Paging from the edge reaches everything.
    let all = alice.full_history(&g).await;
    assert_dense(&all);
    assert_eq!(all.len(), 121);
    assert_eq!(all[120]["body"], body.as_str());
}

/// Every new event carries an id; `sync` with the id held at a cursor says
/// whether the client's copy is the server's.
#[tokio::test]
async fn sync_tells_a_client_whose_copy_diverged() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    alice.send_msg(&dm, "one").await;
    let history = bob.full_history(&dm).await;
    let last = history.last().unwrap();
    let (seq, id) = (last["seq"].as_u64().unwrap(), last["eid"].as_str().unwrap());
    assert_eq!(id.len(), 16, "{last}");
    let push = alice.send_msg(&dm, "two").await;
    assert!(push > seq);

    let sync = |cursor: u64, head: &str| json!({"type":"sync","cursors":{dm.clone(): cursor},"heads":{dm.clone(): head}});
    let r = bob.ok(sync(seq, id)).await;
    assert!(r.get("diverged").is_none(), "the same event: {r}");
    let r = bob.ok(sync(seq, "0000000000000000")).await;
    assert_eq!(r["diverged"], json!([dm]), "another event at that seq");
    let r = bob
        .ok(json!({"type":"sync","cursors":{dm.clone(): 99}}))
        .await;
    assert_eq!(r["diverged"], json!([dm]), "a cursor past the end");
    let r = bob
        .ok(json!({"type":"sync","cursors":{dm.clone(): seq}}))
        .await;
    assert!(
        r.get("diverged").is_none(),
        "no head, nothing to prove: {r}"
    );
}
