//! Integration tests of the client: chatd in-process on loopback, the real
//! network task and engine of two or more clients, assertions on the model
//! the UI would render, the client's cache, and the server's log.

mod support;

use chat::client::Update;
use chat::client::cache::Cache;
use chat::client::paths::Paths;
use chat::client::view::{ConnState, ConvSummary, MessageRow};
use chat::proto::{ConvKind, EventBody, Request};
use chat::ui::Action;
use std::time::Duration;
use support::*;

fn summary(c: &Client, conv: &str) -> Option<ConvSummary> {
    c.with(|m| m.conversation(conv).cloned())
}

/// The DM of `c` with `other`, once it is in the list.
async fn dm_with(c: &Client, other: &str) -> String {
    c.wait(&format!("a DM with {other}"), |m| {
        m.dm_with(other).is_some()
    })
    .await;
    c.with(|m| m.dm_with(other).unwrap().id.clone())
}

/// Every acknowledged row is in strictly increasing seq order, with no
/// pending or missing rows, and equals the server's log (seqs and bodies).
async fn assert_rows_match_server(c: &Client, conv: &str, raw: &mut Peer) {
    let log = raw.events(conv).await;
    let want_seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    let want_bodies = folded_bodies(&log);
    let ok = wait_until(CLIENT_WAIT, || {
        c.with(|m| {
            let rows = m.rows(conv);
            let seqs = row_seqs(rows);
            // Reactions and edits fold into their message: compare the
            // rows' seqs with the log's message/system events.
            let visible: Vec<u64> = log
                .iter()
                .filter(|e| {
                    !matches!(
                        e.body,
                        EventBody::Edit { .. }
                            | EventBody::Delete { .. }
                            | EventBody::Reaction { .. }
                    )
                })
                .map(|e| e.seq)
                .collect();
            seqs == visible && row_bodies(rows) == want_bodies && !has_missing(rows)
        })
    })
    .await;
    assert!(
        ok,
        "rows of {conv} never matched the server's log {want_seqs:?} {want_bodies:?}; rows: {}",
        c.with(|m| describe_rows(m.rows(conv)))
    );
    let seqs = c.with(|m| row_seqs(m.rows(conv)));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "not sorted: {seqs:?}");
}

/// Message bodies after applying edits and deletions, in seq order.
fn folded_bodies(log: &[chat::proto::Event]) -> Vec<String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for e in log {
        match &e.body {
            EventBody::Message { body, .. } => out.push((e.seq, body.clone())),
            EventBody::Edit {
                target_seq, body, ..
            } => {
                if let Some(m) = out.iter_mut().find(|(s, _)| s == target_seq) {
                    m.1 = body.clone();
                }
            }
            EventBody::Delete { target_seq } => {
                if let Some(m) = out.iter_mut().find(|(s, _)| s == target_seq) {
                    m.1.clear();
                }
            }
            _ => {}
        }
    }
    out.into_iter().map(|(_, b)| b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_each_way_shows_in_both_models_in_seq_order() {
    let mut w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;

    alice.act(Action::OpenDm { user: "bob".into() });
    let conv = dm_with(&alice, "bob").await;
    assert!(
        wait_until(CLIENT_WAIT, || alice
            .logged(|u| matches!(u, Update::Focus(c) if *c == conv)))
        .await,
        "the engine asks to focus the new DM"
    );
    alice.act(Action::OpenConversation { conv: conv.clone() });
    alice.act(Action::Send {
        conv: conv.clone(),
        body: "hi bob".into(),
        reply_to: None,
    });

    assert_eq!(dm_with(&bob, "alice").await, conv);
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.wait_rows(&conv, "alice's message", |rows| {
        row_bodies(rows) == ["hi bob"]
    })
    .await;
    bob.act(Action::Send {
        conv: conv.clone(),
        body: "hi alice".into(),
        reply_to: None,
    });

    let mut raw = w.login("bob").await;
    for c in [&alice, &bob] {
        c.wait_rows(&conv, "both messages, acknowledged", |rows| {
            row_bodies(rows) == ["hi bob", "hi alice"]
        })
        .await;
        assert_rows_match_server(c, &conv, &mut raw).await;
        // My own messages are marked sent; the other's are not mine.
        let me = c.with(|m| m.me.clone());
        c.with(|m| {
            for r in m.rows(&conv) {
                if let MessageRow::Message(msg) = r {
                    assert_eq!(msg.send_state.is_some(), msg.sender == me, "{msg:?}");
                    if msg.sender == me {
                        assert_eq!(msg.send_state, Some(chat::client::view::SendState::Sent));
                    }
                }
            }
        });
    }
    let log = raw.events(&conv).await;
    let senders: Vec<(String, String)> = log
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message { body, .. } => Some((e.sender.clone(), body.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        senders,
        [
            ("alice".to_string(), "hi bob".to_string()),
            ("bob".to_string(), "hi alice".to_string())
        ]
    );
    alice.stop().await;
    bob.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_catches_up_1000_messages_exactly() {
    let mut w = World::new();
    let mut alice = w.user("alice").await;
    let bob = w.client("bob").await;
    let conv = alice.create_dm("bob").await;
    let first = alice.send_msg(&conv, "before").await;
    bob.wait("the DM, caught up", |m| {
        m.conversation(&conv)
            .is_some_and(|c| c.cursor == first && c.last_seq == first)
    })
    .await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.act(Action::MarkRead {
        conv: conv.clone(),
        seq: first,
    });
    bob.wait("read up to the first message", |m| {
        m.conversation(&conv).is_some_and(|c| c.unread == 0)
    })
    .await;
    // Let the read receipt reach the server before going away.
    let mut probe = w.login("bob").await;
    let deadline = std::time::Instant::now() + CLIENT_WAIT;
    loop {
        let read = probe
            .conversations()
            .await
            .iter()
            .find(|c| c.id == conv)
            .and_then(|c| c.receipts.get("bob").map(|r| r.read));
        if read == Some(first) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob's read pointer never reached the server: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob.stop().await;

    let started = std::time::Instant::now();
    let mut sent = Vec::new();
    for i in 0..1000 {
        let body = format!("m{i:04}");
        alice.send_msg(&conv, &body).await;
        sent.push(body);
    }
    eprintln!("1000 sends took {:?}", started.elapsed());
    let last = first + 1000;

    let bob = w.client_resume("bob");
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.wait("caught up to the last seq, no gap", |m| {
        m.conversation(&conv)
            .is_some_and(|c| c.cursor == last && c.last_seq == last && !c.has_gap)
    })
    .await;
    bob.wait_rows(&conv, "the newest window, dense", |rows| {
        let seqs = row_seqs(rows);
        !has_missing(rows)
            && seqs.last() == Some(&last)
            && seqs.len() >= 100
            && seqs.windows(2).all(|w| w[1] == w[0] + 1)
    })
    .await;
    let s = summary(&bob, &conv).unwrap();
    assert_eq!(s.read_seq, first);
    assert_eq!(s.unread, s.last_seq - s.read_seq);
    assert_eq!(s.unread, 1000);
    bob.stop().await;

    // The cache holds every event, dense, each message once.
    let cache = Cache::open(Paths::new(w.dir("bob")).cache_path(&w.url(), "bob")).unwrap();
    assert_eq!(cache.cursor(&conv).unwrap(), last);
    assert!(cache.missing_ranges(&conv).unwrap().is_empty());
    let events = cache.events(&conv, 1, last).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let bodies = message_bodies(&events);
    assert_eq!(bodies[0], "before");
    assert_eq!(bodies[1..], sent[..]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pushes_show_a_gap_that_is_then_filled() {
    let mut w = World::new();
    let (mut alice, _, conv) = w.dm("alice", "bob").await;
    let base = alice.send_msg(&conv, "base").await;
    // Pushes of base+3..=base+5 never reach bob's engine.
    let drop: &'static [u64] = Box::leak(vec![base + 3, base + 4, base + 5].into_boxed_slice());
    let bob = w.client_login("bob", Fault::DropSeqs(drop)).await;
    bob.wait("the DM caught up", |m| {
        m.conversation(&conv).is_some_and(|c| c.cursor == base)
    })
    .await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    let mut bodies = vec!["base".to_string()];
    for i in 1..=8 {
        let b = format!("live {i}");
        alice.send_msg(&conv, &b).await;
        bodies.push(b);
    }
    let last = base + 8;
    bob.wait("the gap is seen", |_| {
        bob.saw_gap.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    bob.wait("the gap is filled", |m| {
        m.conversation(&conv)
            .is_some_and(|c| c.cursor == last && !c.has_gap)
    })
    .await;
    bob.wait_rows(&conv, "every message, no missing row", |rows| {
        !has_missing(rows) && row_bodies(rows) == bodies
    })
    .await;
    let mut raw = w.login("bob").await;
    assert_rows_match_server(&bob, &conv, &mut raw).await;
    bob.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_pushes_change_nothing() {
    let mut w = World::new();
    let (mut alice, _, conv) = w.dm("alice", "bob").await;
    let dup = w.client_login_in("dup", "bob", Fault::Duplicate).await;
    let rev = w.client_login_in("rev", "bob", Fault::Reverse(4)).await;
    for c in [&dup, &rev] {
        c.wait("the DM", |m| m.conversation(&conv).is_some()).await;
        c.act(Action::OpenConversation { conv: conv.clone() });
    }
    let mut seqs = Vec::new();
    for i in 0..30 {
        seqs.push(alice.send_msg(&conv, &format!("msg {i}")).await);
    }
    // Edits, a deletion and reactions, whose targets may arrive after them.
    for (target, body) in [(seqs[3], "edited 3"), (seqs[29], "edited 29")] {
        alice
            .call(&Request::Edit {
                conversation_id: conv.clone(),
                client_msg_id: format!("edit-{target}"),
                target_seq: target,
                body: body.into(),
                encrypted: None,
                shares: Vec::new(),
            })
            .await;
    }
    alice
        .call(&Request::Delete {
            conversation_id: conv.clone(),
            client_msg_id: "del".into(),
            target_seq: seqs[7],
        })
        .await;
    alice
        .call(&Request::React {
            conversation_id: conv.clone(),
            client_msg_id: "react".into(),
            target_seq: seqs[10],
            emoji: "👍".into(),
            remove: false,
            encrypted: None,
            shares: Vec::new(),
        })
        .await;
    let last = alice.events(&conv).await.last().unwrap().seq;
    let mut raw = w.login("bob").await;
    for c in [&dup, &rev] {
        c.wait("caught up", |m| {
            m.conversation(&conv)
                .is_some_and(|s| s.cursor == last && !s.has_gap)
        })
        .await;
        assert_rows_match_server(c, &conv, &mut raw).await;
        c.with(|m| {
            let reacted = m.rows(&conv).iter().find_map(|r| match r {
                MessageRow::Message(msg) if msg.seq == Some(seqs[10]) => Some(msg.clone()),
                _ => None,
            });
            let reacted = reacted.expect("the reacted message");
            assert_eq!(reacted.reactions.len(), 1, "{reacted:?}");
            assert_eq!(reacted.reactions[0].users, ["alice"]);
            let unread = m.conversation(&conv).unwrap().unread;
            let live = seqs.len() as u64 - 1;
            assert_eq!(unread, live, "unread counts each live message once");
        });
    }
    // The duplicated client's view equals the reordered client's view.
    let a = dup.with(|m| m.rows(&conv).to_vec());
    let b = rev.with(|m| m.rows(&conv).to_vec());
    assert_eq!(a, b);
    dup.stop().await;
    rev.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_client_restart_and_sends_once() {
    let mut w = World::new();
    let [_, mut bob] = w.users(["alice", "bob"]).await;
    let conv = bob.create_dm("alice").await;
    drop(bob);
    let alice = w.client_login("alice", Fault::None).await;
    alice
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;
    alice.act(Action::OpenConversation { conv: conv.clone() });

    w.stop().await;
    alice
        .wait("disconnected", |m| m.conn != ConnState::Connected)
        .await;
    alice.act(Action::Send {
        conv: conv.clone(),
        body: "typed while offline".into(),
        reply_to: None,
    });
    alice
        .wait_rows(&conv, "the pending message", |rows| {
            rows.iter().any(|r| {
                matches!(r, MessageRow::Message(m)
            if m.seq.is_none() && m.body == "typed while offline")
            })
        })
        .await;
    alice.stop().await;

    // A new engine on the same cache, started while the server is still
    // down: the pending message is on screen from the cache, and one more
    // is typed before it ever connects.
    let alice = w.client_resume("alice");
    alice.act(Action::OpenConversation { conv: conv.clone() });
    alice
        .wait_rows(&conv, "the pending message, from the cache", |rows| {
            rows.iter().any(|r| {
                matches!(r, MessageRow::Message(m)
            if m.seq.is_none() && m.body == "typed while offline")
            })
        })
        .await;
    assert!(!alice.connected());
    alice.act(Action::Send {
        conv: conv.clone(),
        body: "typed before connecting".into(),
        reply_to: None,
    });
    w.start_again();
    alice
        .wait_rows(&conv, "both acknowledged, nothing pending", |rows| {
            row_bodies(rows) == ["typed while offline", "typed before connecting"]
                && !rows
                    .iter()
                    .any(|r| matches!(r, MessageRow::Message(m) if m.seq.is_none()))
        })
        .await;
    // Past the engine's 2 s outbox retry tick: still exactly once each.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut bob = w.login("bob").await;
    assert_eq!(
        bob.bodies(&conv).await,
        ["typed while offline", "typed before connecting"]
    );
    let rows = alice.with(|m| row_bodies(m.rows(&conv)));
    assert_eq!(rows, ["typed while offline", "typed before connecting"]);
    alice.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_failed_for_a_moment_keeps_its_place() {
    let w = World::new();
    let [_, mut bob] = w.users(["alice", "bob"]).await;
    let conv = bob.create_dm("alice").await;
    let relay = support::relay::Relay::start(&w.url()).await;
    let creds = chat::client::net::Credentials::Login {
        username: "alice".into(),
        password: PASSWORD.into(),
    };
    let mut net = support::client::net_config(&relay.addr);
    net.transport = chat::client::net::Transport::Ws;
    let alice = Client::start_net(net, &w.dir("alice"), Some(creds));
    alice.wait_connected().await;
    alice
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;
    // The first send is answered "unavailable", as by a server whose
    // database is busy for a moment; the client tries it again later.
    relay.refuse_next("typed 0");
    let typed: Vec<String> = (0..5).map(|i| format!("typed {i}")).collect();
    for body in &typed {
        alice.act(Action::Send {
            conv: conv.clone(),
            body: body.clone(),
            reply_to: None,
        });
    }
    let (log, all_in) = bob
        .wait_bodies(&conv, Duration::from_secs(20), |b| b.len() >= typed.len())
        .await;
    assert!(all_in, "only {log:?} arrived");
    assert_eq!(relay.refused(), 1);
    assert_eq!(log, typed, "in the order typed");
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_send_loses_nothing_typed() {
    let mut w = World::new();
    let addr = w.addr();
    let [_, mut bob] = w.users(["alice", "bob"]).await;
    let conv = bob.create_dm("alice").await;
    drop(bob);
    let alice = w.client_login("alice", Fault::None).await;
    alice
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;
    alice.act(Action::OpenConversation { conv: conv.clone() });
    // bob watches with a client of his own across the kill.
    let watcher = w.client_login("bob", Fault::None).await;
    watcher
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;
    watcher.act(Action::OpenConversation { conv: conv.clone() });

    let typed: Vec<String> = (0..400).map(|i| format!("typed {i:03}")).collect();
    for body in &typed[..250] {
        alice.act(Action::Send {
            conv: conv.clone(),
            body: body.clone(),
            reply_to: None,
        });
    }
    // Some, not all, acknowledged: then the server dies.
    alice
        .wait("a few acknowledged", |m| {
            m.rows(&conv)
                .iter()
                .filter(|r| matches!(r, MessageRow::Message(m) if m.seq.is_some()))
                .count()
                >= 5
        })
        .await;
    w.kill();
    let acked_at_kill = alice.with(|m| {
        m.rows(&conv)
            .iter()
            .filter(|r| matches!(r, MessageRow::Message(m) if m.seq.is_some()))
            .count()
    });
    for body in &typed[250..] {
        alice.act(Action::Send {
            conv: conv.clone(),
            body: body.clone(),
            reply_to: None,
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.start_again();
    assert_eq!(w.addr(), addr);

    let mut bob = w.login("bob").await;
    let (log, all_in) = bob
        .wait_bodies(&conv, Duration::from_secs(60), |b| b.len() >= typed.len())
        .await;
    assert!(
        all_in,
        "only {} of {} typed messages reached the log (acked at kill: {acked_at_kill})",
        log.len(),
        typed.len()
    );
    // Once each, in typing order; past a retry tick nothing more arrives.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = bob.bodies(&conv).await;
    assert_eq!(log, typed, "acked at kill: {acked_at_kill}");
    eprintln!("acknowledged before the kill: {acked_at_kill} of 250");
    alice
        .wait_rows(&conv, "no pending rows left", |rows| {
            !rows
                .iter()
                .any(|r| matches!(r, MessageRow::Message(m) if m.seq.is_none()))
        })
        .await;
    // The watcher ends with the server's log: dense, no hole, every message.
    let last = bob.events(&conv).await.last().unwrap().seq;
    watcher
        .wait("the watcher caught up", |m| {
            m.conversation(&conv)
                .is_some_and(|c| c.cursor == last && !c.has_gap)
        })
        .await;
    watcher
        .wait_rows(&conv, "the newest window, dense, no missing", |rows| {
            let seqs = row_seqs(rows);
            !has_missing(rows)
                && seqs.last() == Some(&last)
                && seqs.windows(2).all(|w| w[1] == w[0] + 1)
                && row_bodies(rows).last().map(String::as_str) == Some("typed 399")
        })
        .await;
    watcher.stop().await;
    alice.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_user_share_read_state() {
    let mut w = World::new();
    let (mut alice, _, conv) = w.dm("alice", "bob").await;
    let a = w.client_login_in("bob-a", "bob", Fault::None).await;
    let b = w.client_login_in("bob-b", "bob", Fault::None).await;
    let mut last = 0;
    for i in 0..3 {
        last = alice.send_msg(&conv, &format!("unread {i}")).await;
    }
    for c in [&a, &b] {
        c.wait("three unread", |m| {
            m.conversation(&conv)
                .is_some_and(|s| s.last_seq == last && s.unread == 3)
        })
        .await;
    }
    a.act(Action::MarkRead {
        conv: conv.clone(),
        seq: last,
    });
    b.wait("device B sees the read pointer of device A", |m| {
        m.conversation(&conv)
            .is_some_and(|s| s.read_seq == last && s.unread == 0)
    })
    .await;
    // A new message is unread on both again, by one.
    let next = alice.send_msg(&conv, "one more").await;
    for c in [&a, &b] {
        c.wait("one unread", |m| {
            m.conversation(&conv)
                .is_some_and(|s| s.last_seq == next && s.unread == 1)
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_groups_and_joined_channels_show_in_both_lists() {
    let mut w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    let titled = |m: &chat::ui::Model, kind: ConvKind, title: &str| {
        m.conversations
            .iter()
            .find(|c| c.kind == kind && c.title == title)
            .cloned()
    };

    alice.act(Action::CreateGroup {
        name: "team".into(),
        users: vec!["bob".into()],
    });
    for c in [&alice, &bob] {
        c.wait("the group, with both members", |m| {
            titled(m, ConvKind::Group, "team").is_some_and(|g| g.members == ["alice", "bob"])
        })
        .await;
    }

    alice.act(Action::CreateChannel {
        name: "#general".into(),
    });
    alice
        .wait("the channel in alice's list", |m| {
            titled(m, ConvKind::Channel, "general").is_some()
        })
        .await;
    bob.act(Action::Join {
        name: "#general".into(),
    });
    for c in [&alice, &bob] {
        c.wait("the channel, with bob as a member", |m| {
            titled(m, ConvKind::Channel, "general")
                .is_some_and(|g| g.members.iter().any(|u| u == "bob"))
        })
        .await;
    }
    let chan = bob.with(|m| titled(m, ConvKind::Channel, "general").unwrap().id);
    // A message in the channel reaches the creator.
    bob.act(Action::Send {
        conv: chan.clone(),
        body: "hello channel".into(),
        reply_to: None,
    });
    alice.act(Action::OpenConversation { conv: chan.clone() });
    alice
        .wait_rows(&chan, "bob's message", |rows| {
            row_bodies(rows) == ["hello channel"]
        })
        .await;
    // Leaving takes it out of bob's list and bob out of alice's members.
    bob.act(Action::Leave { conv: chan.clone() });
    bob.wait("the channel gone from bob's list", |m| {
        m.conversation(&chan).is_none()
    })
    .await;
    alice
        .wait("bob gone from the members", |m| {
            m.conversation(&chan)
                .is_some_and(|g| !g.members.iter().any(|u| u == "bob"))
        })
        .await;
    alice.stop().await;
    bob.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_during_catch_up_leave_no_hole() {
    let mut w = World::new();
    let mut alice = w.user("alice").await;
    let bob = w.client("bob").await;
    let conv = alice.create_dm("bob").await;
    let first = alice.send_msg(&conv, "m0000").await;
    bob.wait("the DM, caught up", |m| {
        m.conversation(&conv).is_some_and(|c| c.cursor == first)
    })
    .await;
    bob.stop().await;
    let mut sent = vec!["m0000".to_string()];
    for i in 1..=700 {
        let body = format!("m{i:04}");
        alice.send_msg(&conv, &body).await;
        sent.push(body);
    }
    // bob comes back while alice keeps talking: live pushes land above a
    // cursor that is still catching up.
    let bob = w.client_resume("bob");
    bob.act(Action::OpenConversation { conv: conv.clone() });
    for i in 701..=900 {
        let body = format!("m{i:04}");
        alice.send_msg(&conv, &body).await;
        sent.push(body);
    }
    let last = alice.events(&conv).await.last().unwrap().seq;
    bob.wait("caught up with no gap", |m| {
        m.conversation(&conv)
            .is_some_and(|c| c.cursor == last && c.last_seq == last && !c.has_gap)
    })
    .await;
    bob.wait_rows(&conv, "the newest window, dense", |rows| {
        let seqs = row_seqs(rows);
        !has_missing(rows)
            && seqs.last() == Some(&last)
            && seqs.windows(2).all(|w| w[1] == w[0] + 1)
    })
    .await;
    bob.stop().await;
    let cache = Cache::open(Paths::new(w.dir("bob")).cache_path(&w.url(), "bob")).unwrap();
    assert!(cache.missing_ranges(&conv).unwrap().is_empty());
    let events = cache.events(&conv, 1, last).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    assert_eq!(message_bodies(&events), sent);
    w.stop().await;
}

/// With typing and read receipts turned off, the other member hears of
/// neither; the read pointer still moves on this device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_settings_keep_typing_and_read_pointer_to_myself() {
    let w = World::new();
    let (mut alice, _, dm) = w.dm("alice", "bob").await;
    let privacy = chat::client::engine::Privacy {
        typing: false,
        read_receipts: false,
    };
    let bob = Client::login_private(&w.url(), &w.dir("bob"), "bob", privacy);
    bob.wait_connected().await;
    bob.act(Action::OpenConversation { conv: dm.clone() });
    let seq = alice.send_msg(&dm, "are you there?").await;
    bob.wait_rows(&dm, "alice's message", |rows| {
        row_bodies(rows).contains(&"are you there?".to_string())
    })
    .await;
    alice.clear_pushes();
    bob.act(Action::Typing {
        conv: dm.clone(),
        active: true,
    });
    bob.act(Action::MarkRead {
        conv: dm.clone(),
        seq,
    });
    bob.wait("bob's own read pointer moved", |m| {
        m.conversation(&dm).is_some_and(|c| c.read_seq == seq)
    })
    .await;
    let leaked = |v: &serde_json::Value| {
        v["user"] == "bob"
            && (v["type"] == "typing" || (v["type"] == "receipt" && v["read"].as_u64() > Some(0)))
    };
    alice
        .expect_no_push_matching(leaked, Duration::from_secs(2))
        .await;
    bob.stop().await;
}

/// A cache file damaged between two runs: the client still starts, says it
/// set the file aside, and catches up from the server again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cache_is_set_aside_and_rebuilt() {
    let w = World::new();
    let [mut alice] = w.users(["alice"]).await;
    let bob = w.client("bob").await;
    let conv = alice.create_dm("bob").await;
    for i in 0..300 {
        alice
            .send_msg(&conv, &format!("message {i} {}", "x".repeat(200)))
            .await;
    }
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.wait_rows(&conv, "the last message", |rows| {
        row_bodies(rows)
            .iter()
            .any(|b| b.starts_with("message 299 "))
    })
    .await;
    bob.stop().await;

    // Overwrite pages in the middle of the file (the header stays intact,
    // so the file still opens: only the check finds the damage).
    let path = Paths::new(w.dir("bob")).cache_path(&w.url(), "bob");
    let mut bytes = std::fs::read(&path).expect("the cache file");
    assert!(bytes.len() > 64 * 1024, "cache of {} bytes", bytes.len());
    let mid = bytes.len() / 2;
    bytes[mid..mid + 16 * 1024].fill(0xA5);
    std::fs::write(&path, &bytes).expect("write the damaged cache");

    let bob = w.client_resume("bob");
    bob.wait("a notice that the cache was set aside", |m| {
        m.notice.as_deref().is_some_and(|n| n.contains("damaged"))
    })
    .await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.wait_rows(&conv, "history again, from the server", |rows| {
        row_bodies(rows)
            .iter()
            .any(|b| b.starts_with("message 299 "))
    })
    .await;
    bob.stop().await;
}

/// A session ended from another device closes the connection with
/// `session revoked`: the client forgets the token, shows the login screen
/// with the reason and does not try the token again; a new login works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_returns_to_login_and_stays_there() {
    use chat::client::credentials::TokenStore;
    let w = World::new();
    let alice = w.client("alice").await;
    let tokens = TokenStore::file_only(alice.data.join("credentials.toml"));
    assert!(tokens.load("alice", &alice.server).is_some());

    // The client lists its sessions; another device ends all but its own.
    alice.act(Action::Sessions);
    alice
        .wait("the session list", |m| {
            m.sessions
                .as_ref()
                .is_some_and(|l| l.len() == 1 && l[0].current)
        })
        .await;
    let mut phone = Peer::connect(&w.ws_url()).await;
    assert_eq!(phone.login("alice", PASSWORD).await["type"], "ok");
    let r = phone
        .ok(serde_json::json!({"type":"revoke_session","others":true}))
        .await;
    assert_eq!(r["revoked"], 1, "{r}");

    alice
        .wait("the login screen with the reason", |m| {
            m.needs_login
                && m.login_error
                    .as_deref()
                    .is_some_and(|e| e.contains("session was ended"))
        })
        .await;
    assert!(tokens.load("alice", &alice.server).is_none());
    // Reconnects would come every 50-300 ms: none comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alice.with(|m| {
        assert!(m.needs_login);
        assert_eq!(
            m.conn,
            ConnState::Offline {
                reason: "not logged in".into()
            }
        );
    });
    let r = phone.ok(serde_json::json!({"type":"sessions"})).await;
    assert_eq!(r["sessions"].as_array().map(Vec::len), Some(1), "{r}");

    alice.act(Action::Login {
        username: "alice".into(),
        password: PASSWORD.into(),
    });
    alice.wait_connected().await;
    assert!(tokens.load("alice", &alice.server).is_some());
    alice.stop().await;
}

/// A login refused for now with `retry_after_ms` says when to try again,
/// and a refusal of the registration says what to do, on the login screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_say_what_to_do() {
    use chat::client::credentials::TokenStore;
    use chat::client::engine::Input;
    use chat::client::net::{NetEvent, task};
    use chat::proto::{ErrorCode, ProtoError};
    let tmp = tempfile::tempdir().unwrap();
    // A network task with nothing to do; its events are played by hand.
    let (idle_tx, _idle_rx) = tokio::sync::mpsc::channel::<Input>(8);
    let net = task::spawn(support::client::net_config("127.0.0.1:1"), None, idle_tx);
    let (events, events_rx) = tokio::sync::mpsc::channel::<Input>(8);
    let opts = chat::client::ClientOptions::interactive(
        support::client::net_config("127.0.0.1:1"),
        None,
        None,
        TokenStore::file_only(tmp.path().join("credentials.toml")),
        Paths::new(tmp.path().to_path_buf()),
    );
    let mut client = chat::client::spawn::spawn_on(opts, net, events_rx);
    let mut said = Vec::new();
    for err in [
        ProtoError::rate_limited("too many failed logins; try again later", 4000),
        ProtoError::new(ErrorCode::InviteRequired, "register with --invite CODE"),
        ProtoError::new(ErrorCode::AccountDisabled, "ask an admin"),
    ] {
        events
            .send(Input::Net(NetEvent::AuthFailed(err)))
            .await
            .unwrap();
        let message = loop {
            let batch = tokio::time::timeout(CLIENT_WAIT, client.updates.recv())
                .await
                .expect("an update")
                .expect("the engine runs");
            if let Some(m) = batch.into_iter().find_map(|u| match u {
                Update::AuthFailed { message } => Some(message),
                _ => None,
            }) {
                break m;
            }
        };
        said.push(message);
    }
    assert_eq!(
        said,
        [
            "too many attempts: try again in 4 s",
            "this server needs an invitation: ask an admin for a code",
            "this account is deactivated: ask an admin to reactivate it",
        ]
    );
    let _ = client.actions.send(Action::Quit);
}

/// A database restored from an older backup under a client that holds newer
/// history: the client is told at sync that its copy diverged, drops what
/// the server no longer has, sends its own lost message again, and says so
/// once. Nothing differs silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_under_a_newer_client_is_noticed_and_mended() {
    if crate::support::skip_on_postgres("backs up and restores chatd.db") {
        return;
    }
    let mut w = World::new();
    let [_, mut bob] = w.users(["alice", "bob"]).await;
    let conv = bob.create_dm("alice").await;
    bob.send_msg(&conv, "b1").await;
    let alice = w.client_login("alice", Fault::None).await;
    alice.act(Action::OpenConversation { conv: conv.clone() });
    let send = |body: &str| Action::Send {
        conv: conv.clone(),
        body: body.into(),
        reply_to: None,
    };
    // The bodies, in any order (two senders race), all acknowledged.
    let acked = |rows: &[MessageRow], want: &[&str]| {
        let mut have = row_bodies(rows);
        have.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        have == want
            && !rows
                .iter()
                .any(|r| matches!(r, MessageRow::Message(m) if m.seq.is_none()))
    };
    alice.act(send("a1"));
    alice
        .wait_rows(&conv, "a1 acknowledged", |rows| acked(rows, &["b1", "a1"]))
        .await;

    // The backup, taken now.
    let db = w.server.data_dir().join("chatd.db");
    let backup = w.dir("backup.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();

    // Written after it: lost by the restore.
    alice.act(send("a2, lost by the restore"));
    bob.send_msg(&conv, "b2, lost by the restore").await;
    alice
        .wait_rows(&conv, "everything acknowledged", |rows| {
            acked(
                rows,
                &[
                    "b1",
                    "a1",
                    "a2, lost by the restore",
                    "b2, lost by the restore",
                ],
            )
        })
        .await;

    // Restore: stop, put the backup in place, start.
    w.stop().await;
    alice
        .wait("disconnected", |m| m.conn != ConnState::Connected)
        .await;
    std::fs::copy(&backup, &db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    w.start_again();
    // Bob writes on the restored server: his message takes a seq alice's
    // copy holds another event at.
    let mut bob = w.login("bob").await;
    bob.send_msg(&conv, "b3, after the restore").await;

    alice
        .wait("one notice that the history was reloaded", |m| {
            m.notice
                .as_deref()
                .is_some_and(|n| n.contains("differs from this copy") && n.contains("sent again"))
        })
        .await;
    assert_rows_match_server(&alice, &conv, &mut bob).await;
    let bodies = bob.bodies(&conv).await;
    assert_eq!(
        bodies.iter().filter(|b| b.starts_with("a2")).count(),
        1,
        "alice's lost message is back, once: {bodies:?}"
    );
    assert!(bodies.contains(&"b3, after the restore".to_string()));
    assert!(!bodies.iter().any(|b| b.starts_with("b2")), "{bodies:?}");
    alice.stop().await;
    w.stop().await;
}

/// A `sync` the server refuses does not leave the client quietly stale: it
/// says so, and tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sync_is_shown_and_retried() {
    let server = Server::start_with(|c| c.limits.max_sync_cursors = 1);
    let [mut alice, _bob, _carol] = server.users(["alice", "bob", "carol"]).await;
    alice.create_dm("bob").await;
    alice.create_dm("carol").await;
    let temp = tempfile::tempdir().unwrap();
    let client = Client::login(&server.url(), temp.path(), "alice", Fault::None);
    client.wait_connected().await;
    // The first sync has no cursors; once both DMs are held, the next one
    // (after a reconnect) sends two and is refused.
    client
        .wait("both DMs", |m| m.conversations.len() == 2)
        .await;
    client.stop().await;
    let client = Client::resume(&server.url(), temp.path(), "alice");
    client
        .wait("a notice that catching up failed", |m| {
            m.notice
                .as_deref()
                .is_some_and(|n| n.contains("could not catch up") && n.contains("trying again"))
        })
        .await;
    let notice = client.with(|m| m.notice.clone().unwrap_or_default());
    assert!(
        notice.contains("too many cursors"),
        "the reason is given: {notice}"
    );
    client.stop().await;
}

/// Search through the engine: the cache's hits at once (none here: the
/// message is older than what the first sync keeps), then the server's;
/// the jump to that message loads it and the messages around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_reaches_past_the_cache_and_jumps_there() {
    let w = World::new();
    w.client("bob").await.stop().await;
    let [mut alice] = w.users(["alice"]).await;
    let dm = alice.create_dm("bob").await;
    let needle = alice.send_msg(&dm, "the needle is here").await;
    for i in 0..260 {
        alice.send_msg(&dm, &format!("hay {i}")).await;
    }
    alice.send_msg(&dm, "a fresh needle").await;
    let bob = w.client_resume("bob");
    bob.wait("the newest part of the DM", |m| {
        m.conversation(&dm)
            .is_some_and(|c| c.cursor >= needle + 261)
    })
    .await;

    bob.act(Action::Search {
        id: 1,
        query: "needle".into(),
        conv: None,
    });
    let ok = wait_until(CLIENT_WAIT, || {
        bob.logged(|u| matches!(u, Update::SearchEnded { id: 1, error: None }))
    })
    .await;
    assert!(ok, "the search never ended");
    assert!(bob.logged(|u| matches!(u,
        Update::SearchHits { id: 1, source: chat::client::HitSource::Cache, hits }
            if hits.len() == 1 && hits[0].snippet == "a fresh needle")));
    assert!(bob.logged(|u| matches!(u,
        Update::SearchHits { id: 1, source: chat::client::HitSource::Server, hits }
            if hits.len() == 2 && hits[1].seq == needle)));

    bob.act(Action::JumpTo {
        conv: dm.clone(),
        seq: needle,
    });
    bob.wait_rows(&dm, "the old message and its neighbours", |rows| {
        let seqs = row_seqs(rows);
        seqs.contains(&needle) && seqs.contains(&(needle + 50))
    })
    .await;
    bob.stop().await;
}
