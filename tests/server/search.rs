//! `search`: current text only (edits replace, deletions remove), only the
//! conversations the user belongs to now, filters, and paging with `next`.

use crate::support::*;
use serde_json::{Value, json};

async fn search(peer: &mut Peer, req: Value) -> (Vec<Value>, Option<String>) {
    let mut req = req;
    req["type"] = json!("search");
    let r = peer.ok(req).await;
    let hits = r["hits"].as_array().expect("hits").clone();
    (hits, r["next"].as_str().map(str::to_string))
}

async fn seqs(peer: &mut Peer, query: &str) -> Vec<u64> {
    let (hits, _) = search(peer, json!({"query": query})).await;
    hits.iter().map(|h| h["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn search_holds_current_text_only() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let edited = alice.send_msg(&dm, "the deploy key is in the vault").await;
    let gone = alice.send_msg(&dm, "the launch codes are 1234").await;
    let kept = bob.send_msg(&dm, "ok, deploy at\u{7}noon").await;
    alice
        .ok(
            json!({"type":"edit","conversation_id":dm,"client_msg_id":"e1",
                   "target_seq":edited,"body":"the rotated token is in the vault"}),
        )
        .await;
    alice
        .ok(json!({"type":"delete","conversation_id":dm,"client_msg_id":"d1","target_seq":gone}))
        .await;

    // The text before the edit is not found; the text after it is, at the
    // message's own seq.
    assert_eq!(seqs(&mut bob, "deploy").await, [kept]);
    assert_eq!(seqs(&mut bob, "key").await, Vec::<u64>::new());
    assert_eq!(seqs(&mut bob, "rotated token").await, [edited]);
    assert_eq!(seqs(&mut bob, "\"rotated token\"").await, [edited]);
    assert_eq!(seqs(&mut bob, "\"token rotated\"").await, Vec::<u64>::new());
    // A deleted message is gone.
    assert_eq!(seqs(&mut bob, "launch").await, Vec::<u64>::new());
    assert_eq!(seqs(&mut alice, "1234").await, Vec::<u64>::new());

    let (hits, next) = search(&mut alice, json!({"query":"vault"})).await;
    assert_eq!(next, None);
    let hit = &hits[0];
    assert_eq!(hit["conversation_id"], dm.as_str());
    assert_eq!(hit["sender"], "alice");
    let snippet = hit["snippet"].as_str().unwrap();
    assert_eq!(snippet, "the rotated token is in the vault");
    let marked: Vec<&str> = hit["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &snippet[r[0].as_u64().unwrap() as usize..r[1].as_u64().unwrap() as usize])
        .collect();
    assert_eq!(marked, ["vault"]);
    // Control characters never reach a snippet.
    let (hits, _) = search(&mut alice, json!({"query":"noon"})).await;
    assert_eq!(hits[0]["snippet"], "ok, deploy at noon");
}

#[tokio::test]
async fn search_never_shows_what_the_user_cannot_read() {
    let server = Server::start();
    let [mut alice, mut bob, mut mallory] = server.users(["alice", "bob", "mallory"]).await;
    let group = alice.create_group("secret", &["bob"]).await;
    let dm = alice.create_dm("bob").await;
    let channel = alice.create_channel("ops").await;
    for id in [&group, &dm, &channel] {
        alice.send_msg(id, "private words here").await;
    }
    let own = mallory.create_channel("mine").await;
    mallory.send_msg(&own, "my private words").await;

    let (hits, _) = search(&mut mallory, json!({"query":"private"})).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["conversation_id"], own.as_str());
    for id in [&group, &dm, &channel] {
        mallory
            .err(
                json!({"type":"search","query":"private","conversation_id":id}),
                "forbidden",
            )
            .await;
    }
    for q in [
        "private in:secret",
        "private in:#ops",
        "private in:@bob",
        "private in:@alice",
    ] {
        mallory
            .err(json!({"type":"search","query":q}), "not_found")
            .await;
    }
    // A channel is readable once joined, and no longer once left.
    mallory
        .ok(json!({"type":"join","conversation_id":channel}))
        .await;
    assert_eq!(
        search(&mut mallory, json!({"query":"private in:#ops"}))
            .await
            .0
            .len(),
        1
    );
    mallory
        .ok(json!({"type":"leave","conversation_id":channel}))
        .await;
    assert_eq!(
        search(&mut mallory, json!({"query":"private"}))
            .await
            .0
            .len(),
        1
    );
    // Bob sees the group and the DM, not the channel he never joined.
    let (hits, _) = search(&mut bob, json!({"query":"private"})).await;
    let mut convs: Vec<&str> = hits
        .iter()
        .map(|h| h["conversation_id"].as_str().unwrap())
        .collect();
    convs.sort();
    let mut want = vec![group.as_str(), dm.as_str()];
    want.sort();
    assert_eq!(convs, want);
    // Once removed from the group, nothing of it.
    alice
        .ok(json!({"type":"remove_members","conversation_id":group,"members":["bob"]}))
        .await;
    let (hits, _) = search(&mut bob, json!({"query":"private"})).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["conversation_id"], dm.as_str());
}

#[tokio::test]
async fn search_filters_and_pages() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let ops = alice.create_channel("ops").await;
    let team = alice.create_group("team", &["bob"]).await;
    bob.ok(json!({"type":"join","conversation_id":ops})).await;
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(alice.send_msg(&ops, &format!("page item {i}")).await);
    }
    bob.send_msg(&ops, "page from bob").await;
    bob.send_msg(&team, "page in team").await;

    // Newest first, three at a time, each message once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let (hits, next) = search(
            &mut bob,
            json!({"query":"item from:alice in:#ops","limit":3,"after":after}),
        )
        .await;
        assert!(hits.len() <= 3);
        seen.extend(hits.iter().map(|h| h["seq"].as_u64().unwrap()));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // By rank, paged the same way, the same set.
    let mut ranked = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let (hits, next) = search(
            &mut bob,
            json!({"query":"page","order":"rank","limit":4,"after":after,"conversation_id":ops}),
        )
        .await;
        ranked.extend(hits.iter().map(|h| h["seq"].as_u64().unwrap()));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    ranked.sort();
    assert_eq!(ranked.len(), 8, "{ranked:?}");

    // Filters alone, names and dates.
    assert_eq!(
        search(&mut bob, json!({"query":"from:bob"})).await.0.len(),
        2
    );
    assert_eq!(
        search(&mut bob, json!({"query":"page in:team"}))
            .await
            .0
            .len(),
        1
    );
    assert_eq!(
        search(&mut bob, json!({"query":"page before:2000-01-01"}))
            .await
            .0
            .len(),
        0
    );
    assert_eq!(
        search(
            &mut bob,
            json!({"query":"page after:2000-01-01","limit":50})
        )
        .await
        .0
        .len(),
        9
    );
    // The cap holds.
    let (hits, next) = search(&mut bob, json!({"query":"page","limit":100000})).await;
    assert_eq!(hits.len(), 9);
    assert!(next.is_none());

    // Bad input is an answer, never a database error.
    for q in ["", "   ", "before:soon", "from:a from:b"] {
        bob.err(json!({"type":"search","query":q}), "invalid_argument")
            .await;
    }
    for q in [
        "NEAR(page item)",
        "page*",
        "\"unclosed",
        "a OR b",
        "^page",
        "{body}:page",
        "page -item",
    ] {
        let r = bob.request(json!({"type":"search","id":0,"query":q})).await;
        assert_eq!(r["type"], "ok", "{q}: {r}");
    }
    bob.err(
        json!({"type":"search","query":"page","after":"zz"}),
        "invalid_argument",
    )
    .await;
}

/// Messages are indexed together just before their batch commits: an
/// edit or a deletion pipelined right behind its message (so most likely
/// in the same batch), and a refused request among them, leave the index
/// as if each had been sent alone.
#[tokio::test]
async fn pipelined_messages_edits_and_refusals_index_like_single_ones() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let base = alice.last_seq(&dm).await;
    let mut ids = Vec::new();
    for round in 0..20u64 {
        let first = base + 1 + round * 4;
        for req in [
            json!({"type":"send","conversation_id":dm,"client_msg_id":format!("a{round}"),
                   "body":format!("original{round} words")}),
            json!({"type":"edit","conversation_id":dm,"client_msg_id":format!("e{round}"),
                   "target_seq":first,"body":format!("edited{round} words")}),
            // Refused: no such message to edit.
            json!({"type":"edit","conversation_id":dm,"client_msg_id":format!("x{round}"),
                   "target_seq":first + 1000,"body":format!("ghost{round}")}),
            json!({"type":"send","conversation_id":dm,"client_msg_id":format!("b{round}"),
                   "body":format!("kept{round} words")}),
            json!({"type":"delete","conversation_id":dm,"client_msg_id":format!("d{round}"),
                   "target_seq":first + 2}),
        ] {
            ids.push(alice.send_req(req).await);
        }
    }
    let mut refused = 0;
    for id in ids {
        let r = alice.wait_reply(id).await;
        if r["type"] == "error" {
            refused += 1;
        }
    }
    assert_eq!(refused, 20, "every ghost edit is refused, nothing else");
    for round in [0u64, 7, 19] {
        let first = base + 1 + round * 4;
        assert_eq!(seqs(&mut bob, &format!("edited{round}")).await, [first]);
        assert!(seqs(&mut bob, &format!("original{round}")).await.is_empty());
        assert!(seqs(&mut bob, &format!("ghost{round}")).await.is_empty());
        assert!(
            seqs(&mut bob, &format!("kept{round}")).await.is_empty(),
            "deleted"
        );
    }
    assert_eq!(seqs(&mut bob, "words").await.len(), 20);
}
