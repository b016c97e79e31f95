//! Replies stay bounded however large a user's world grows: `sync`,
//! `conversations`, `channels` and `members` come in pages capped by count
//! and by bytes, conversations too large to list their members are
//! described without them, and no frame chatd sends passes
//! `hard_frame_bytes` (1 MiB by default).

use crate::support::*;
use chat::proto::{INLINE_MEMBERS, Limits};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The largest frame chatd sends with the default limits.
fn bound() -> usize {
    Limits::default().hard_frame_bytes
}

/// A server on which one user may make thousands of requests quickly.
fn roomy() -> Server {
    Server::start_with(|c| {
        c.limits.max_creates_per_hour = 20_000;
        c.limits.requests_per_sec = 1_000_000;
        c.limits.request_burst = 1_000_000;
        c.limits.handshakes_per_sec = 1_000_000;
        c.limits.handshake_burst = 1_000_000;
    })
}

/// `peer` creates `count` groups with `members`, many requests in flight.
async fn create_groups(peer: &mut Peer, count: usize, members: &[&str]) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for start in (0..count).step_by(50) {
        let mut rids = Vec::new();
        for i in start..(start + 50).min(count) {
            let req =
                json!({"type":"create","kind":"group","name":format!("g{i}"),"members":members});
            rids.push(peer.send_req(req).await);
        }
        for rid in rids {
            let r = peer.wait_reply(rid).await;
            assert_eq!(r["type"], "ok", "{r}");
            ids.push(conv_id(&r["conversation"]));
        }
    }
    ids
}

/// Every page of `sync` (no cursors), checking each as it comes.
async fn sync_pages(peer: &mut Peer) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut after = Value::Null;
    for _ in 0..1000 {
        let r = peer
            .ok(json!({"type":"sync","cursors":{},"after":after}))
            .await;
        let n = r["conversations"].as_array().unwrap().len();
        assert!((1..=500).contains(&n), "a page of {n}");
        after = r["next"].clone();
        pages.push(r);
        if after.is_null() {
            return pages;
        }
    }
    panic!("sync pages do not end");
}

/// 5,000 groups made by one member around another: the victim's `sync`
/// comes in pages of at most 500 within the frame bound, describes every
/// group once, and the real client syncs them all (its cursors sent in
/// chunks on the next start) without a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_put_in_5000_groups_still_syncs_in_bounded_pages() {
    const GROUPS: usize = 5000;
    let server = roomy();
    let mut mallory = server.user("mallory").await;
    server.user("victim").await;
    let made: BTreeSet<String> = create_groups(&mut mallory, GROUPS, &["victim"])
        .await
        .into_iter()
        .collect();
    assert_eq!(made.len(), GROUPS);

    let mut victim = server.login("victim").await;
    let pages = sync_pages(&mut victim).await;
    assert!(pages.len() >= GROUPS / 500, "{} pages", pages.len());
    let mut seen = Vec::new();
    for p in &pages {
        for c in p["conversations"].as_array().unwrap() {
            seen.push(conv_id(c));
        }
    }
    let sorted: Vec<String> = seen
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(seen, sorted, "pages are in id order, without repeats");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), made);
    // Mallory's presence comes with each page that names her, once.
    for p in &pages {
        let presence = p["presence"].as_array().unwrap();
        assert_eq!(presence.len(), 1, "{presence:?}");
        assert_eq!(presence[0]["user"], "mallory");
    }
    // A client that does not page gets the first page and where to go on.
    let r = victim.ok(json!({"type":"sync","cursors":{}})).await;
    assert_eq!(r["conversations"].as_array().unwrap().len(), 500);
    assert!(r["next"].is_string(), "{}", r["next"]);
    let listed = victim.conversations().await;
    assert_eq!(listed.len(), GROUPS);
    assert!(
        victim.largest_frame() <= bound(),
        "a frame of {} bytes",
        victim.largest_frame()
    );

    // The real client: all of them, then again from its cache, when its
    // 5,000 cursors take several requests.
    let dir = tempfile::tempdir().unwrap();
    let client = Client::login(&server.url(), dir.path(), "victim", Fault::None);
    client
        .wait("5,000 conversations", |m| m.conversations.len() == GROUPS)
        .await;
    client.wait("the sync to end", |m| m.sync.is_none()).await;
    client.stop().await;
    let client = Client::resume(&server.url(), dir.path(), "victim");
    client.wait_connected().await;
    client
        .wait("the second sync", |m| {
            m.sync.is_none() && m.conversations.len() == GROUPS
        })
        .await;
    assert!(
        !client.logged(|u| matches!(u, chat::client::Update::SyncFailed { .. })),
        "a sync failed"
    );
    client.stop().await;
}

/// A group of 10,000 members (the most `max_members` allows): described without its member list wherever
/// it appears (replies, pushes, sync), its members paged through
/// `members`, and every frame an online member receives meanwhile small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_10000_members_is_described_without_listing_them() {
    // And the owner.
    const MEMBERS: usize = 9_999;
    let server = roomy();
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i:05}")).collect();
    let names = Arc::new(names);
    let url = server.ws_url();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (names, url) = (names.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for name in names.iter().skip(worker).step_by(8) {
                let mut p = Peer::connect(&url).await;
                p.register(name).await;
                p.close().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut owner = server.user("owner").await;
    let mut watcher = server.login("m00000").await;
    let first: Vec<&str> = names[..INLINE_MEMBERS - 1]
        .iter()
        .map(String::as_str)
        .collect();
    let group = owner.create_group("big", &first).await;
    // At the limit the members are still listed.
    let c = owner.ok(json!({"type":"conversations"})).await["conversations"][0].clone();
    assert_eq!(c["members"].as_array().unwrap().len(), INLINE_MEMBERS);
    assert_eq!(c["member_count"], INLINE_MEMBERS);

    for chunk in names[INLINE_MEMBERS - 1..].chunks(2500) {
        let r = owner
            .ok(json!({"type":"add_members","conversation_id":group,"members":chunk}))
            .await;
        let c = &r["conversation"];
        assert!(c["members"].as_array().is_none_or(Vec::is_empty), "{c}");
        assert_eq!(c["receipts"].as_object().unwrap().len(), 1, "only mine");
        assert_eq!(c["roles"]["owner"], "owner");
    }
    let total = MEMBERS + 1;
    // The last change's description, as pushed to every member.
    let push = watcher
        .expect_push(
            |p| p["type"] == "conversation" && p["conversation"]["member_count"] == total,
            WAIT,
        )
        .await;
    assert!(
        push["conversation"]["receipts"]
            .as_object()
            .is_none_or(|r| r.is_empty())
    );
    watcher
        .drain_pushes(std::time::Duration::from_millis(200))
        .await;
    // The largest push is the event of the largest change (its added
    // names), no more than the request that made it.
    assert!(
        watcher.largest_frame() < Limits::default().max_frame_bytes,
        "a push of {} bytes",
        watcher.largest_frame()
    );

    // A rename reaches 10,001 members as one small frame each.
    owner
        .ok(json!({"type":"rename","conversation_id":group,"name":"bigger"}))
        .await;
    watcher
        .expect_push(
            |p| p["type"] == "conversation" && p["conversation"]["name"] == "bigger",
            WAIT,
        )
        .await;

    let r = watcher.ok(json!({"type":"sync","cursors":{}})).await;
    let c = &r["conversations"][0];
    assert_eq!(c["member_count"], total);
    assert!(c["members"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(c["receipts"].as_object().unwrap().len(), 1);
    assert!(c["receipts"]["m00000"].is_object(), "{c}");

    // Every member, a page at a time.
    let mut listed = Vec::new();
    let mut after = Value::Null;
    for _ in 0..100 {
        let r = watcher
            .ok(json!({"type":"members","conversation_id":group,"after":after}))
            .await;
        let page = r["members"].as_array().unwrap();
        assert!(page.len() <= 1000);
        listed.extend(page.iter().map(|m| m["user"].as_str().unwrap().to_string()));
        after = r["next"].clone();
        if after.is_null() {
            break;
        }
    }
    assert_eq!(listed.len(), total);
    assert!(listed.windows(2).all(|w| w[0] < w[1]));
    assert!(listed.iter().any(|m| m == "owner"));
    // Members only.
    let mut stranger = server.user("stranger").await;
    stranger
        .err(
            json!({"type":"members","conversation_id":group}),
            "forbidden",
        )
        .await;
    assert!(watcher.largest_frame() <= bound());
    assert!(owner.largest_frame() <= bound());
}

/// A user taken out of a group too large to list its members loses it
/// from the real client's list (the removal event says so, since the
/// description that follows cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_from_a_large_group_loses_it() {
    let server = roomy();
    let names: Vec<String> = (0..INLINE_MEMBERS + 5)
        .map(|i| format!("u{i:03}"))
        .collect();
    for n in &names {
        server.user(n).await;
    }
    let mut owner = server.user("owner").await;
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("large", &members).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::login(&server.url(), dir.path(), "u001", Fault::None);
    client
        .wait("the group", |m| {
            m.conversations
                .iter()
                .any(|c| c.id == group && c.member_count == names.len() as u64 + 1)
        })
        .await;
    owner
        .ok(json!({"type":"remove_members","conversation_id":group,"members":["u001"]}))
        .await;
    client
        .wait("the group gone", |m| {
            m.conversations.iter().all(|c| c.id != group)
        })
        .await;
    // Another change to the group does not bring it back.
    owner
        .ok(json!({"type":"rename","conversation_id":group,"name":"renamed"}))
        .await;
    let mut other = server.login("u002").await;
    other.conversations().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(client.with(|m| m.conversations.iter().all(|c| c.id != group)));
    client.stop().await;
}

/// `channels` pages by name.
#[tokio::test]
async fn channels_come_in_pages_by_name() {
    let server = roomy();
    let mut p = server.user("founder").await;
    for i in 0..30 {
        p.create_channel(&format!("ch{i:02}")).await;
    }
    let mut names = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let r = p
            .ok(json!({"type":"channels","after":after,"limit":7}))
            .await;
        let page = r["channels"].as_array().unwrap();
        assert!(page.len() <= 7);
        names.extend(page.iter().map(|c| c["name"].as_str().unwrap().to_string()));
        after = r["next"].clone();
        if after.is_null() {
            break;
        }
    }
    let expected: Vec<String> = (0..30).map(|i| format!("ch{i:02}")).collect();
    assert_eq!(names, expected);
    // A rename moves a channel in the order.
    let id = p.create_channel("zz").await;
    p.ok(json!({"type":"rename","conversation_id":id,"name":"aa"}))
        .await;
    let r = p.ok(json!({"type":"channels","limit":1})).await;
    assert_eq!(r["channels"][0]["name"], "aa");
    assert_eq!(r["next"], "aa");
}

/// The admin's lists are paged too: accounts by name, invitations newest
/// first, each without repeats or gaps.
#[tokio::test]
async fn accounts_and_invitations_come_in_pages() {
    let server = Server::start_with(|c| c.limits.max_invites_per_user = 300);
    // The first account is the admin.
    let mut admin = server.user("admin").await;
    for name in ["bea", "cal", "dov", "eli"] {
        server.user(name).await;
    }
    let mut names = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let r = admin
            .ok(json!({"type":"admin_users","after":after,"limit":2}))
            .await;
        let page = r["users"].as_array().unwrap();
        assert!(page.len() <= 2);
        names.extend(
            page.iter()
                .map(|u| u["username"].as_str().unwrap().to_string()),
        );
        after = r["next"].clone();
        if after.is_null() {
            break;
        }
    }
    assert_eq!(names, ["admin", "bea", "cal", "dov", "eli"]);

    let mut made = Vec::new();
    for _ in 0..230 {
        let r = admin.ok(json!({"type":"invite_create"})).await;
        made.push(r["invite"]["code"].as_str().unwrap().to_string());
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut after = Value::Null;
    for _ in 0..10 {
        let r = admin.ok(json!({"type":"invite_list","after":after})).await;
        pages += 1;
        listed.extend(
            r["invites"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["code"].as_str().unwrap().to_string()),
        );
        after = r["next"].clone();
        if after.is_null() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let mut expected = made.clone();
    expected.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, expected, "every invitation once");
}
