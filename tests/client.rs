//! Integration tests of the client: chatd in-process on loopback, the real
//! network task and engine of two or more clients, assertions on the model
//! the UI would render, the client's cache, and the server's log.

mod client_support;

use chat::client::Update;
use chat::client::cache::Cache;
use chat::client::paths::Paths;
use chat::client::view::{ConnState, ConvSummary, MessageRow};
use chat::proto::{ConvKind, EventBody, Request};
use chat::ui::Action;
use client_support::*;
use std::time::Duration;
use tempfile::TempDir;

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
async fn assert_rows_match_server(c: &Client, conv: &str, raw: &mut Raw) {
    let log = raw.history(conv).await;
    let want_seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    let want_bodies = folded_bodies(&log);
    let ok = wait_until(WAIT, || {
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
            EventBody::Edit { target_seq, body } => {
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
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let alice = Client::register(&url, &tmp.path().join("alice"), "alice");
    let bob = Client::register(&url, &tmp.path().join("bob"), "bob");
    alice.wait_connected().await;
    bob.wait_connected().await;

    alice.act(Action::OpenDm { user: "bob".into() });
    let conv = dm_with(&alice, "bob").await;
    assert!(
        wait_until(WAIT, || alice
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

    let mut raw = Raw::login(&url, "bob").await;
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
    let log = raw.history(&conv).await;
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_catches_up_1000_messages_exactly() {
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let mut alice = Raw::register(&url, "alice").await;
    let bob_dir = tmp.path().join("bob");
    let bob = Client::register(&url, &bob_dir, "bob");
    bob.wait_connected().await;
    let conv = alice.create(ConvKind::Dm, None, &["bob"]).await;
    let first = alice.send(&conv, "before").await;
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
    let mut probe = Raw::login(&url, "bob").await;
    let deadline = std::time::Instant::now() + WAIT;
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
        alice.send(&conv, &body).await;
        sent.push(body);
    }
    eprintln!("1000 sends took {:?}", started.elapsed());
    let last = first + 1000;

    let bob = Client::resume(&url, &bob_dir, "bob");
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
    let cache = Cache::open(Paths::new(bob_dir.clone()).cache_path(&url, "bob")).unwrap();
    assert_eq!(cache.cursor(&conv).unwrap(), last);
    assert!(cache.missing_ranges(&conv).unwrap().is_empty());
    let events = cache.events(&conv, 1, last).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let bodies = message_bodies(&events);
    assert_eq!(bodies[0], "before");
    assert_eq!(bodies[1..], sent[..]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pushes_show_a_gap_that_is_then_filled() {
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let mut alice = Raw::register(&url, "alice").await;
    Raw::register(&url, "bob").await;
    let conv = alice.create(ConvKind::Dm, None, &["bob"]).await;
    let base = alice.send(&conv, "base").await;
    // Pushes of base+3..=base+5 never reach bob's engine.
    let drop: &'static [u64] = Box::leak(vec![base + 3, base + 4, base + 5].into_boxed_slice());
    let bob = Client::login(&url, &tmp.path().join("bob"), "bob", Fault::DropSeqs(drop));
    bob.wait_connected().await;
    bob.wait("the DM caught up", |m| {
        m.conversation(&conv).is_some_and(|c| c.cursor == base)
    })
    .await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    let mut bodies = vec!["base".to_string()];
    for i in 1..=8 {
        let b = format!("live {i}");
        alice.send(&conv, &b).await;
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
    let mut raw = Raw::login(&url, "bob").await;
    assert_rows_match_server(&bob, &conv, &mut raw).await;
    bob.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_pushes_change_nothing() {
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let mut alice = Raw::register(&url, "alice").await;
    Raw::register(&url, "bob").await;
    let conv = alice.create(ConvKind::Dm, None, &["bob"]).await;
    let dup = Client::login(&url, &tmp.path().join("dup"), "bob", Fault::Duplicate);
    let rev = Client::login(&url, &tmp.path().join("rev"), "bob", Fault::Reverse(4));
    for c in [&dup, &rev] {
        c.wait_connected().await;
        c.wait("the DM", |m| m.conversation(&conv).is_some()).await;
        c.act(Action::OpenConversation { conv: conv.clone() });
    }
    let mut seqs = Vec::new();
    for i in 0..30 {
        seqs.push(alice.send(&conv, &format!("msg {i}")).await);
    }
    // Edits, a deletion and reactions, whose targets may arrive after them.
    for (target, body) in [(seqs[3], "edited 3"), (seqs[29], "edited 29")] {
        alice
            .request(Request::Edit {
                conversation_id: conv.clone(),
                client_msg_id: format!("edit-{target}"),
                target_seq: target,
                body: body.into(),
            })
            .await;
    }
    alice
        .request(Request::Delete {
            conversation_id: conv.clone(),
            client_msg_id: "del".into(),
            target_seq: seqs[7],
        })
        .await;
    alice
        .request(Request::React {
            conversation_id: conv.clone(),
            client_msg_id: "react".into(),
            target_seq: seqs[10],
            emoji: "👍".into(),
            remove: false,
        })
        .await;
    let last = alice.history(&conv).await.last().unwrap().seq;
    let mut raw = Raw::login(&url, "bob").await;
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_client_restart_and_sends_once() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("server");
    let server = Server::start(&data);
    let url = server.url();
    let addr = server.addr;
    Raw::register(&url, "alice").await;
    let mut bob = Raw::register(&url, "bob").await;
    let conv = bob.create(ConvKind::Dm, None, &["alice"]).await;
    drop(bob);
    let alice_dir = tmp.path().join("alice");
    let alice = Client::login(&url, &alice_dir, "alice", Fault::None);
    alice.wait_connected().await;
    alice
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;
    alice.act(Action::OpenConversation { conv: conv.clone() });

    server.stop().await;
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
    let alice = Client::resume(&url, &alice_dir, "alice");
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
    let server = Server::start_on(&data, addr);
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
    let mut bob = Raw::login(&url, "bob").await;
    assert_eq!(
        bob.bodies(&conv).await,
        ["typed while offline", "typed before connecting"]
    );
    let rows = alice.with(|m| row_bodies(m.rows(&conv)));
    assert_eq!(rows, ["typed while offline", "typed before connecting"]);
    alice.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_send_loses_nothing_typed() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("server");
    let server = Server::start(&data);
    let url = server.url();
    let addr = server.addr;
    Raw::register(&url, "alice").await;
    let mut bob = Raw::register(&url, "bob").await;
    let conv = bob.create(ConvKind::Dm, None, &["alice"]).await;
    drop(bob);
    let alice = Client::login(&url, &tmp.path().join("alice"), "alice", Fault::None);
    alice.wait_connected().await;
    alice
        .wait("the DM", |m| m.conversation(&conv).is_some())
        .await;
    alice.act(Action::OpenConversation { conv: conv.clone() });
    // bob watches with a client of his own across the kill.
    let watcher = Client::login(&url, &tmp.path().join("bob"), "bob", Fault::None);
    watcher.wait_connected().await;
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
    server.kill();
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
    let server = Server::start_on(&data, addr);
    assert_eq!(server.addr, addr);

    let mut bob = Raw::login(&url, "bob").await;
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
    let last = bob.history(&conv).await.last().unwrap().seq;
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_user_share_read_state() {
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let mut alice = Raw::register(&url, "alice").await;
    Raw::register(&url, "bob").await;
    let conv = alice.create(ConvKind::Dm, None, &["bob"]).await;
    let a = Client::login(&url, &tmp.path().join("bob-a"), "bob", Fault::None);
    let b = Client::login(&url, &tmp.path().join("bob-b"), "bob", Fault::None);
    a.wait_connected().await;
    b.wait_connected().await;
    let mut last = 0;
    for i in 0..3 {
        last = alice.send(&conv, &format!("unread {i}")).await;
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
    let next = alice.send(&conv, "one more").await;
    for c in [&a, &b] {
        c.wait("one unread", |m| {
            m.conversation(&conv)
                .is_some_and(|s| s.last_seq == next && s.unread == 1)
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_groups_and_joined_channels_show_in_both_lists() {
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let alice = Client::register(&url, &tmp.path().join("alice"), "alice");
    let bob = Client::register(&url, &tmp.path().join("bob"), "bob");
    alice.wait_connected().await;
    bob.wait_connected().await;
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_during_catch_up_leave_no_hole() {
    let tmp = TempDir::new().unwrap();
    let server = Server::start(&tmp.path().join("server"));
    let url = server.url();
    let mut alice = Raw::register(&url, "alice").await;
    let bob_dir = tmp.path().join("bob");
    let bob = Client::register(&url, &bob_dir, "bob");
    bob.wait_connected().await;
    let conv = alice.create(ConvKind::Dm, None, &["bob"]).await;
    let first = alice.send(&conv, "m0000").await;
    bob.wait("the DM, caught up", |m| {
        m.conversation(&conv).is_some_and(|c| c.cursor == first)
    })
    .await;
    bob.stop().await;
    let mut sent = vec!["m0000".to_string()];
    for i in 1..=700 {
        let body = format!("m{i:04}");
        alice.send(&conv, &body).await;
        sent.push(body);
    }
    // bob comes back while alice keeps talking: live pushes land above a
    // cursor that is still catching up.
    let bob = Client::resume(&url, &bob_dir, "bob");
    bob.act(Action::OpenConversation { conv: conv.clone() });
    for i in 701..=900 {
        let body = format!("m{i:04}");
        alice.send(&conv, &body).await;
        sent.push(body);
    }
    let last = alice.history(&conv).await.last().unwrap().seq;
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
    let cache = Cache::open(Paths::new(bob_dir.clone()).cache_path(&url, "bob")).unwrap();
    assert!(cache.missing_ranges(&conv).unwrap().is_empty());
    let events = cache.events(&conv, 1, last).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    assert_eq!(message_bodies(&events), sent);
    server.stop().await;
}
