//! The HTTP fallback, end to end: chatd in process, the real client engine
//! behind a proxy that refuses (or swallows) WebSocket upgrades. The client
//! must notice, carry on over server-sent events and POST, and lose nothing:
//! a whole chat, gap filling, the outbox, a stream cut and resumed, and the
//! move back to the WebSocket once it gets through.

mod support;

use chat::client::net::{Credentials, Transport};
use chat::client::view::{ConnState, MessageRow};
use chat::ui::Action;
use std::time::Duration;
use support::client::net_config;
use support::proxy::{Counts, Faults, Proxy, Upgrade};
use support::{Client, PASSWORD, World, has_missing, row_bodies, wait_until};

fn login(user: &str) -> Option<Credentials> {
    Some(Credentials::Login {
        username: user.into(),
        password: PASSWORD.into(),
    })
}

/// A client of `user` (registered before) through `proxy`, on `transport`.
async fn through(w: &World, proxy: &Proxy, user: &str, transport: Transport) -> Client {
    let mut net = net_config(&proxy.addr);
    net.transport = transport;
    net.connect_timeout = Duration::from_secs(2);
    let c = Client::start_net(net, &w.dir(user), login(user));
    c.wait_connected().await;
    c
}

async fn send(c: &Client, conv: &str, body: &str) {
    c.act(Action::Send {
        conv: conv.to_string(),
        body: body.to_string(),
        reply_to: None,
    });
}

fn acknowledged(rows: &[MessageRow], body: &str) -> bool {
    rows.iter()
        .any(|r| matches!(r, MessageRow::Message(m) if m.body == body && m.seq.is_some()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_falls_back_to_http_and_a_whole_chat_works() {
    let mut w = World::new();
    let (mut alice_raw, _, conv) = w.dm("alice", "bob").await;
    alice_raw.send_msg(&conv, "before").await;
    let proxy = Proxy::start(&w.url(), Upgrade::Refuse, Faults::default()).await;
    let alice = through(&w, &proxy, "alice", Transport::Auto).await;
    assert!(alice.with(|m| m.via_http), "the header says HTTP");
    assert!(Counts::get(&proxy.counts.upgrades) >= 1);
    assert_eq!(Counts::get(&proxy.counts.streams), 1);
    let bob = w.client_login("bob", support::Fault::None).await;
    assert!(!bob.with(|m| m.via_http));

    alice.act(Action::OpenConversation { conv: conv.clone() });
    bob.act(Action::OpenConversation { conv: conv.clone() });
    alice
        .wait_rows(&conv, "history from before", |rows| {
            row_bodies(rows) == ["before"]
        })
        .await;
    send(&alice, &conv, "hello over http").await;
    bob.wait_rows(&conv, "alice's message", |rows| {
        acknowledged(rows, "hello over http")
    })
    .await;
    send(&bob, &conv, "hello over ws").await;
    alice
        .wait_rows(&conv, "bob's reply, pushed over the event stream", |rows| {
            row_bodies(rows) == ["before", "hello over http", "hello over ws"]
                && acknowledged(rows, "hello over ws")
        })
        .await;
    // Bob's read pointer, pushed as a receipt, reaches alice too.
    bob.act(Action::MarkRead {
        conv: conv.clone(),
        seq: 3,
    });
    alice
        .wait("bob has read alice's message", |m| {
            m.receipts
                .get(&conv)
                .and_then(|r| r.get("bob"))
                .is_some_and(|p| p.read >= 3)
        })
        .await;
    let mut raw = w.login("bob").await;
    assert_eq!(
        raw.bodies(&conv).await,
        ["before", "hello over http", "hello over ws"]
    );
    alice.stop().await;
    bob.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_lost_on_the_event_stream_are_filled_from_history() {
    let mut w = World::new();
    let (mut alice, _, conv) = w.dm("alice", "bob").await;
    let proxy = Proxy::start(
        &w.url(),
        Upgrade::Refuse,
        Faults {
            seed: Some(11),
            resets_at: Vec::new(),
        },
    )
    .await;
    let bob = through(&w, &proxy, "bob", Transport::Http).await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    let mut want = Vec::new();
    for i in 0..60 {
        let b = format!("m{i}");
        alice.send_msg(&conv, &b).await;
        want.push(b);
    }
    bob.wait_rows(&conv, "every message, no missing row", |rows| {
        !has_missing(rows) && row_bodies(rows) == want
    })
    .await;
    assert!(
        Counts::get(&proxy.counts.dropped) > 0,
        "the proxy dropped some pushes"
    );
    bob.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_event_stream_is_resumed_without_a_new_session() {
    let mut w = World::new();
    let (mut alice, _, conv) = w.dm("alice", "bob").await;
    let proxy = Proxy::start(
        &w.url(),
        Upgrade::Refuse,
        Faults {
            seed: None,
            resets_at: vec![3, 9],
        },
    )
    .await;
    let bob = through(&w, &proxy, "bob", Transport::Http).await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    let mut want = Vec::new();
    for i in 0..15 {
        let b = format!("m{i}");
        alice.send_msg(&conv, &b).await;
        want.push(b);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob.wait_rows(&conv, "every message", |rows| {
        !has_missing(rows) && row_bodies(rows) == want
    })
    .await;
    assert_eq!(Counts::get(&proxy.counts.resets), 2);
    assert!(Counts::get(&proxy.counts.resumes) >= 2);
    assert_eq!(
        Counts::get(&proxy.counts.streams),
        1,
        "resumed, not a new handshake"
    );
    assert!(bob.connected());
    bob.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_over_http_sends_once_when_the_network_returns() {
    let mut w = World::new();
    let (_, _, conv) = w.dm("alice", "bob").await;
    let proxy = Proxy::start(&w.url(), Upgrade::Refuse, Faults::default()).await;
    let alice = through(&w, &proxy, "alice", Transport::Auto).await;
    alice.act(Action::OpenConversation { conv: conv.clone() });
    alice
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;

    proxy.set_down(true);
    alice
        .wait("disconnected", |m| m.conn != ConnState::Connected)
        .await;
    send(&alice, &conv, "typed while cut off").await;
    send(&alice, &conv, "and another").await;
    alice
        .wait_rows(&conv, "both pending", |rows| {
            rows.iter()
                .filter(|r| matches!(r, MessageRow::Message(m) if m.seq.is_none()))
                .count()
                == 2
        })
        .await;
    proxy.set_down(false);
    alice
        .wait_rows(&conv, "both acknowledged", |rows| {
            acknowledged(rows, "typed while cut off") && acknowledged(rows, "and another")
        })
        .await;
    assert!(alice.with(|m| m.via_http));
    // Past the engine's outbox retry tick: still exactly once each.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut bob = w.login("bob").await;
    assert_eq!(
        bob.bodies(&conv).await,
        ["typed while cut off", "and another"]
    );
    alice.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_moves_back_to_the_websocket_once_it_gets_through() {
    let mut w = World::new();
    let (mut bob, _, conv) = w.dm("bob", "alice").await;
    let proxy = Proxy::start(&w.url(), Upgrade::Refuse, Faults::default()).await;
    let mut net = net_config(&proxy.addr);
    net.ws_retry = Duration::from_secs(1);
    let alice = Client::start_net(net, &w.dir("alice"), login("alice"));
    alice.wait_connected().await;
    assert!(alice.with(|m| m.via_http));
    proxy.set_upgrade(Upgrade::Pass);
    alice
        .wait("back on the WebSocket", |m| {
            !m.via_http && m.conn == ConnState::Connected
        })
        .await;
    alice.act(Action::OpenConversation { conv: conv.clone() });
    bob.send_msg(&conv, "over the websocket again").await;
    alice
        .wait_rows(&conv, "the message", |rows| {
            row_bodies(rows) == ["over the websocket again"]
        })
        .await;
    alice.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_elsewhere_ends_the_http_session_like_a_websocket_one() {
    let mut w = World::new();
    let (_, _, _conv) = w.dm("alice", "bob").await;
    let proxy = Proxy::start(&w.url(), Upgrade::Refuse, Faults::default()).await;
    let alice = through(&w, &proxy, "alice", Transport::Http).await;
    // Another device of alice's ends every other session.
    let mut other = w.login("alice").await;
    let id = other
        .send_req(serde_json::json!({"type": "revoke_session", "others": true}))
        .await;
    let reply = other.wait_reply(id).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    alice.wait("back at the login", |m| m.needs_login).await;
    assert!(
        wait_until(Duration::from_secs(5), || !alice.connected()).await,
        "the HTTP session ended"
    );
    alice.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_upgrade_falls_back_and_reconnects_go_straight_to_http() {
    let mut w = World::new();
    let (_, _, _conv) = w.dm("alice", "bob").await;
    let proxy = Proxy::start(&w.url(), Upgrade::Swallow, Faults::default()).await;
    // Falls back after a short wait on the swallowed upgrade.
    let alice = through(&w, &proxy, "alice", Transport::Auto).await;
    assert!(alice.with(|m| m.via_http));
    assert_eq!(Counts::get(&proxy.counts.streams), 1);
    assert_eq!(Counts::get(&proxy.counts.upgrades), 1);
    proxy.set_down(true);
    alice
        .wait("disconnected", |m| m.conn != ConnState::Connected)
        .await;
    proxy.set_down(false);
    alice.wait_connected().await;
    assert!(alice.with(|m| m.via_http));
    assert_eq!(
        Counts::get(&proxy.counts.upgrades),
        1,
        "no second wait on a swallowed upgrade"
    );
    assert!(Counts::get(&proxy.counts.streams) >= 2);
    alice.stop().await;
    w.stop().await;
}
