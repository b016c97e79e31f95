//! Secret conversations under faults: a device whose one-time keys ran
//! out, a `keys_upload` whose answer never came back, a room key pushed
//! while a device starts up again, to-device pushes lost on the way, and
//! the `chat` command killed while it sends. chatd in process on loopback (SQLite, or
//! PostgreSQL and Redis when the environment says so), real engines and
//! the real `chat` binary.

mod support;

use chat::client::credentials::TokenStore;
use chat::client::net::{Credentials, Transport};
use chat::client::view::MessageRow;
use chat::ui::Action;
use serde_json::{Value, json};
use std::time::Duration;
use support::client::net_config;
use support::relay::{Relay, Way};
use support::secret::*;
use support::*;

/// The devices `peer` is told `user` has.
async fn device_ids(peer: &mut Peer, user: &str) -> Vec<String> {
    let r = peer.ok(json!({"type":"keys_query","users":[user]})).await;
    r["users"][user]["devices"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d["device_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until `user` has a device with keys on the server; its id.
async fn only_device(peer: &mut Peer, user: &str) -> String {
    for _ in 0..200 {
        let ids = device_ids(peer, user).await;
        if let [id] = &ids[..] {
            return id.clone();
        }
        assert!(ids.len() < 2, "{user} has one device: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user}'s device never uploaded its keys");
}

/// One `keys_claim` of `user`'s device `id`: the key handed out.
async fn claim(peer: &mut Peer, user: &str, id: &str) -> Value {
    let r = peer
        .ok(json!({"type":"keys_claim","devices":[{"user":user,"device_id":id}]}))
        .await;
    r["keys"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_one_time_keys_ran_out_is_reached_through_its_fallback_key() {
    let w = World::new();
    let bob = w.client("bob").await;
    let mut mallory = w.user("mallory").await;
    let id = only_device(&mut mallory, "bob").await;
    // Someone else takes every one-time key of Bob's device.
    let mut taken = 0;
    let mut drained = false;
    let mut waited = 0;
    for _ in 0..600 {
        let k = claim(&mut mallory, "bob", &id).await;
        assert!(k.is_object(), "a key is always handed out: {k}");
        if k["fallback"] == true {
            // The device's keys may be listed before its one-time keys are
            // up (a fallback key is handed out without being used up).
            if taken == 0 && waited < 100 {
                waited += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            drained = true;
            break;
        }
        taken += 1;
    }
    assert!(
        drained && taken > 0,
        "the one-time keys ran out after {taken}"
    );
    let alice = w.client("alice").await;
    let dm = secret_with(&alice, None, &["bob"]).await;
    let texts: Vec<String> = (0..3)
        .map(|n| format!("over the fallback key {n} {}", unique()))
        .collect();
    for t in &texts {
        send(&alice, &dm, t);
    }
    wait_body(&bob, &dm, "bob reads every message", |b| {
        texts.iter().all(|t| b.contains(t))
    })
    .await;
    send(&bob, &dm, "and bob answers");
    wait_body(&alice, &dm, "alice reads bob", |b| {
        b.iter().any(|t| t == "and bob answers")
    })
    .await;
    // Bob's device puts new one-time keys up without being restarted.
    let mut fresh = false;
    for _ in 0..100 {
        if claim(&mut mallory, "bob", &id).await["fallback"] == false {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fresh, "bob's device uploaded new one-time keys");
    alice.stop().await;
    bob.stop().await;
}

/// Alice's client on a new device, logging in over a WebSocket through
/// `relay`.
fn alice_through(w: &World, relay: &Relay) -> Client {
    let mut net = net_config(&relay.addr);
    net.transport = Transport::Ws;
    let creds = Credentials::Login {
        username: "alice".into(),
        password: PASSWORD.into(),
    };
    Client::start_net(net, &w.dir("alice"), Some(creds))
}

/// Bob's client, and alice's on a new device through a relay, connected
/// and with her keys on the server.
async fn bob_and_alice_through() -> (World, Client, Relay, Client) {
    let w = World::new();
    w.user("alice").await.close().await;
    let bob = w.client("bob").await;
    let relay = Relay::start(&w.url()).await;
    let alice = alice_through(&w, &relay);
    alice.wait_connected().await;
    let mut peer = w.login("bob").await;
    only_device(&mut peer, "alice").await;
    (w, bob, relay, alice)
}

/// A new device sends its keys, one-time keys included, in one upload (an
/// empty upload to learn how many are left was a round trip more on its
/// first start). And its inbox is asked for beside the keys query, not
/// after the upload: the sync follows one round trip after connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_asks_for_its_inbox_at_once_and_uploads_its_keys_once() {
    let w = World::new();
    w.user("alice").await.close().await;
    w.user("bob").await.close().await;
    let relay = Relay::start(&w.url()).await;
    let alice = alice_through(&w, &relay);
    alice.wait_connected().await;
    let up = || -> Vec<String> {
        relay
            .frames()
            .into_iter()
            .filter(|(way, _)| matches!(way, Way::Up))
            .map(|(_, f)| f)
            .collect()
    };
    let first = |frames: &[String], kind: &str| {
        let tag = format!("\"type\":\"{kind}\"");
        frames.iter().position(|f| f.contains(&tag))
    };
    assert!(
        wait_until(CLIENT_WAIT, || first(&up(), "sync").is_some()).await,
        "alice syncs"
    );
    // Her keys are there to claim: the upload is done.
    let mut peer = w.login("bob").await;
    let id = only_device(&mut peer, "alice").await;
    assert_eq!(claim(&mut peer, "alice", &id).await["fallback"], false);

    let frames = up();
    let at = |kind| first(&frames, kind).unwrap_or_else(|| panic!("no {kind} in {frames:?}"));
    let (query, inbox, upload, sync) =
        (at("keys_query"), at("inbox"), at("keys_upload"), at("sync"));
    assert_eq!(
        inbox,
        query + 1,
        "the inbox is asked for with the keys query"
    );
    assert!(inbox < upload, "the inbox does not wait for the upload");
    assert!(inbox < sync, "the inbox is drained before the sync");
    let uploads: Vec<&String> = frames
        .iter()
        .filter(|f| f.contains("\"type\":\"keys_upload\""))
        .collect();
    assert_eq!(uploads.len(), 1, "keys uploads: {uploads:?}");
    assert!(
        uploads[0].contains("\"one_time_keys\":[{"),
        "the upload carries one-time keys"
    );
    alice.stop().await;
}

/// To-device messages pushed while a device starts up again wait for its
/// inbox's drain. Taken at once, one pushed before the drain began was
/// acknowledged, and the server then dropped the older messages still
/// unread, with the room keys they carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_device_push_while_starting_passes_over_no_unread_inbox_message() {
    let (w, bob, relay, alice) = bob_and_alice_through().await;
    alice.stop().await;

    // While she is away, bob's first message: its room key waits in her
    // inbox.
    let first = secret_with(&bob, None, &["alice"]).await;
    let early = format!("while you were away {}", unique());
    send(&bob, &first, &early);
    bob.act(Action::OpenConversation {
        conv: first.clone(),
    });
    bob.wait("the first message acknowledged", |m| {
        m.rows(&first)
            .iter()
            .any(|r| matches!(r, MessageRow::Message(v) if v.body == early && v.seq.is_some()))
    })
    .await;

    // She comes back on the same device; her requests stall on the way up
    // from the keys query on, while a second conversation's room key is
    // pushed to her.
    relay.hold_from("\"type\":\"keys_query\"");
    let tokens = TokenStore::file_only(w.dir("alice").join("credentials.toml"));
    let (token, _) = tokens.load("alice", &relay.addr).expect("a stored token");
    let mut net = net_config(&relay.addr);
    net.transport = Transport::Ws;
    let alice = Client::start_net(net, &w.dir("alice"), Some(Credentials::Token(token)));
    assert!(
        wait_until(CLIENT_WAIT, || relay.held() >= 1).await,
        "the keys query is held"
    );
    let second = secret_with(&bob, Some("second"), &["alice"]).await;
    let later = format!("while you were connecting {}", unique());
    send(&bob, &second, &later);
    let pushed = || relay.saw(Way::Down, "\"to_device\"");
    assert!(
        wait_until(CLIENT_WAIT, pushed).await,
        "the room key is pushed"
    );
    // Time for an acknowledgement of the push to join the held frames (the
    // client sends none until its inbox is drained).
    let acked = || relay.saw(Way::Up, "\"inbox_ack\"");
    let _ = wait_until(Duration::from_millis(500), acked).await;
    relay.release();

    wait_text(
        &alice,
        &first,
        "alice reads the message sent while away",
        &early,
    )
    .await;
    wait_text(
        &alice,
        &second,
        "alice reads the message sent while connecting",
        &later,
    )
    .await;
    alice.stop().await;
    bob.stop().await;
}

/// A to-device push lost on the way (as a bus between nodes may lose
/// one) shows as a hole in the inbox's numbers when the next one comes:
/// the device reads its inbox again rather than acknowledging past the
/// hole, which would have the server drop the lost message and its room
/// key unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_to_device_push_is_read_from_the_inbox_not_acknowledged_away() {
    let (_server, bob, relay, alice) = bob_and_alice_through().await;

    relay.lose_next("\"to_device\"");
    let first = secret_with(&bob, None, &["alice"]).await;
    let lost = format!("its key lost on the way {}", unique());
    send(&bob, &first, &lost);
    assert!(
        wait_until(CLIENT_WAIT, || relay.lost() == 1).await,
        "the first room key's push is lost"
    );
    let second = secret_with(&bob, Some("second"), &["alice"]).await;
    let next = format!("its key pushed {}", unique());
    send(&bob, &second, &next);

    wait_text(&alice, &second, "alice reads the second message", &next).await;
    wait_text(
        &alice,
        &first,
        "alice reads the message whose key's push was lost",
        &lost,
    )
    .await;
    alice.stop().await;
    bob.stop().await;
}

/// A room key's push lost on the way, with no later push to show the
/// hole: the event it unlocks, pushed and not decrypted, has the device
/// read its inbox, where the key waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_key_whose_push_was_lost_is_found_in_the_inbox() {
    let (_server, bob, relay, alice) = bob_and_alice_through().await;

    relay.lose_next("\"to_device\"");
    let dm = secret_with(&bob, None, &["alice"]).await;
    let body = format!("its key lost on the way, and nothing after {}", unique());
    send(&bob, &dm, &body);
    assert!(
        wait_until(CLIENT_WAIT, || relay.lost() == 1).await,
        "the room key's push is lost"
    );
    wait_text(&alice, &dm, "alice reads the message", &body).await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_upload_whose_answer_was_lost_still_leaves_the_device_working_keys() {
    let w = World::new();
    w.user("alice").await.close().await;
    let bob = w.client("bob").await;
    let relay = Relay::start(&w.url()).await;
    relay.cut_after("\"type\":\"keys_upload\"");
    let alice = alice_through(&w, &relay);
    assert!(
        wait_until(CLIENT_WAIT, || relay.cuts() == 1).await,
        "the first upload went up and its answer was lost"
    );
    assert!(
        wait_until(CLIENT_WAIT, || relay.connections() >= 2).await,
        "alice reconnects"
    );
    alice.wait_connected().await;
    let mut peer = w.login("bob").await;
    only_device(&mut peer, "alice").await;
    let dm = secret_with(&bob, None, &["alice"]).await;
    let there = format!("across the lost answer {}", unique());
    send(&bob, &dm, &there);
    wait_body(&alice, &dm, "alice reads bob", |b| b.contains(&there)).await;
    let back = format!("and back again {}", unique());
    send(&alice, &dm, &back);
    wait_body(&bob, &dm, "bob reads alice", |b| b.contains(&back)).await;
    // Alice's device still has one-time keys to hand out.
    let id = only_device(&mut peer, "alice").await;
    assert_eq!(claim(&mut peer, "alice", &id).await["fallback"], false);
    alice.stop().await;
    bob.stop().await;
}

/// When `chat send` is killed, after it starts (ms).
const KILL_AFTER_MS: [u64; 16] = [
    0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200, 300,
];

/// How many times `needle` is in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_killed_at_any_moment_forks_nothing_and_loses_nothing_acknowledged() {
    let w = World::new();
    let (alice, bob, id) = support::secret::cli_secret_dm(&w);
    let tag = unique();
    let mut texts = vec![format!("<warm up {tag}>")];
    alice.ok(&["send", &id, &texts[0]], None);
    for (n, delay) in KILL_AFTER_MS.iter().enumerate() {
        let text = format!("<killed {n} {tag}>");
        let mut child = alice
            .command(&["send", &id, &text])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn chat");
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        let _ = child.kill();
        let _ = child.wait();
        texts.push(text);
        // The next run goes on from whatever was saved.
        let text = format!("<after {n} {tag}>");
        alice.ok(&["send", &id, &text], None);
        texts.push(text);
    }
    let last = format!("<last {tag}>");
    alice.ok(&["send", &id, &last], None);
    texts.push(last.clone());
    // What the server acknowledged: every message event of the DM.
    let mut peer = w.login("bob").await;
    let stored = peer
        .full_history(&id)
        .await
        .iter()
        .filter(|e| e["kind"] == "message" || e["body"]["encrypted"].is_object())
        .count();
    assert!(
        stored > KILL_AFTER_MS.len() + 1,
        "the sends after each kill were stored: {stored}"
    );
    let answer = format!("<answer {tag}>");
    bob.ok(&["send", &id, &answer], None);
    for (who, home) in [("bob", &bob), ("alice", &alice)] {
        let r = home.ok(&["tail", &id, "-n", "200"], None);
        assert_eq!(count(&r.stdout, "not decrypted"), 0, "{who}: {}", r.stdout);
        let shown: usize = texts.iter().map(|t| count(&r.stdout, t)).sum();
        assert_eq!(
            shown, stored,
            "{who} reads every stored message once: {}",
            r.stdout
        );
        assert!(
            r.stdout.contains(&last) && r.stdout.contains(&answer),
            "{who}: {}",
            r.stdout
        );
    }
}
