//! The scale-out mode: three chatd nodes in this process on one PostgreSQL
//! database and one Redis, clients spread over them. Seqs stay dense with
//! senders on every node; every member on every node gets every event once
//! and in order; receipts, typing, presence and revocations cross nodes; a
//! node killed under load loses no acknowledged message and its clients
//! finish on the others; a Redis restart under load costs no event.
//!
//! These run only when `CHATD_TEST_PG` and `CHATD_TEST_REDIS` are set (see
//! `tests/support/backend.rs`); otherwise each says so and returns.

mod support;

use chat::client::view::MessageRow;
use chat::ui::Action;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::balancer::Balancer;
use support::cluster::Cluster;
use support::redis::Redis;
use support::{CLIENT_WAIT, Client, Fault, Peer, assert_dense, is_event, seq_of, unique};

/// How long an event may take to reach a member on another node.
const CROSS_WAIT: Duration = Duration::from_secs(10);

/// The seqs of the `event` pushes of `conv` that `p` receives, in arrival
/// order, until it has seen `last` or `timeout` passes.
async fn event_seqs(p: &mut Peer, conv: &str, last: u64, timeout: Duration) -> Vec<u64> {
    let deadline = Instant::now() + timeout;
    let mut seqs = Vec::new();
    while !seqs.contains(&last) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = p.next_push(left).await else {
            break;
        };
        if v["type"] == "event" && v["conversation_id"] == conv {
            seqs.push(seq_of(&v));
        }
    }
    seqs
}

/// Every member of a fresh group, on node `i % nodes` each; the group's id.
/// Returns once every member has the group's `create` event.
async fn group_over(cluster: &Cluster, names: &[String]) -> (Vec<Peer>, String) {
    let n = cluster.nodes.len();
    let mut peers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        peers.push(cluster.node(i % n).user(name).await);
    }
    let others: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let conv = peers[0].create_group("across", &others).await;
    for p in &mut peers {
        p.expect_push(|v| is_event(v, &conv, "create"), CROSS_WAIT)
            .await;
        p.clear_pushes();
    }
    (peers, conv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_senders_on_three_nodes_share_one_dense_log_and_every_member_sees_it_in_order() {
    const SENDERS: usize = 20;
    const EACH: usize = 10;
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let names: Vec<String> = (0..SENDERS).map(|i| format!("sender{i}")).collect();
    let (peers, conv) = group_over(&cluster, &names).await;

    // Every sender at once, each waiting for its acks in turn.
    let mut tasks = Vec::new();
    for mut p in peers {
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for k in 0..EACH {
                let body = format!("{} #{k}", p.user);
                let r = p
                    .ok(json!({"type":"send","conversation_id":conv,
                                "client_msg_id":format!("c-{}", unique()),"body":body}))
                    .await;
                acked.push((seq_of(&r), body));
            }
            (p, acked)
        }));
    }
    let mut peers = Vec::new();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for t in tasks {
        let (p, mine) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the senders finish")
            .expect("sender task");
        for (seq, body) in mine {
            assert!(
                acked.insert(seq, body).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
        peers.push(p);
    }
    let last = 1 + (SENDERS * EACH) as u64;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (2..=last).collect::<Vec<_>>(),
        "the acknowledged seqs are exactly 2..={last}"
    );

    // The log, read from every node: dense, and what was acknowledged.
    for i in 0..3 {
        let mut reader = cluster.node(i).login("sender0").await;
        let events = reader.full_history(&conv).await;
        assert_dense(&events);
        assert_eq!(events.len() as u64, last, "node {i}");
        for e in &events[1..] {
            assert_eq!(e["body"], acked[&seq_of(e)].as_str(), "node {i}: {e}");
        }
    }

    // Every member, wherever connected, got every event once, in order.
    let want: Vec<u64> = (2..=last).collect();
    for (i, p) in peers.iter_mut().enumerate() {
        let got = event_seqs(p, &conv, last, CROSS_WAIT).await;
        assert_eq!(
            got,
            want,
            "{} on node {} got the events {got:?}",
            p.user,
            i % 3
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_typing_presence_and_revocations_cross_nodes() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let names: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
    let (peers, conv) = group_over(&cluster, &names).await;
    let [mut alice, bob, mut carol]: [Peer; 3] =
        peers.try_into().unwrap_or_else(|_| unreachable!());
    let mut bob = bob;

    // A receipt on node 1 reaches node 0 and node 2.
    let seq = alice.send_msg(&conv, "read me").await;
    bob.ok(json!({"type":"receipt","conversation_id":conv,"read":seq}))
        .await;
    for p in [&mut alice, &mut carol] {
        let r = p
            .expect_push(
                |v| v["type"] == "receipt" && v["user"] == "bob" && v["read"] == seq,
                CROSS_WAIT,
            )
            .await;
        assert_eq!(r["conversation_id"], conv.as_str());
    }

    // Typing on node 2 reaches the others, and its end too.
    carol
        .send_req(json!({"type":"typing","conversation_id":conv,"active":true}))
        .await;
    for p in [&mut alice, &mut bob] {
        p.expect_push(
            |v| v["type"] == "typing" && v["user"] == "carol" && v["active"] == true,
            CROSS_WAIT,
        )
        .await;
    }
    carol
        .ok(json!({"type":"typing","conversation_id":conv,"active":false}))
        .await;
    for p in [&mut alice, &mut bob] {
        p.expect_push(
            |v| v["type"] == "typing" && v["user"] == "carol" && v["active"] == false,
            CROSS_WAIT,
        )
        .await;
    }

    // Presence: bob (node 1) goes away and comes back; with a second
    // device on node 2 he stays online when node 1's connection closes,
    // and goes offline with the last one.
    alice.clear_pushes();
    let presence = |status: &'static str| {
        move |v: &Value| v["type"] == "presence" && v["user"] == "bob" && v["status"] == status
    };
    bob.ok(json!({"type":"presence","status":"away"})).await;
    alice.expect_push(presence("away"), CROSS_WAIT).await;
    bob.ok(json!({"type":"presence","status":"online"})).await;
    alice.expect_push(presence("online"), CROSS_WAIT).await;
    let bob_elsewhere = cluster.node(2).device(&bob.token).await;
    bob.close().await;
    alice
        .expect_no_push_matching(presence("offline"), Duration::from_secs(2))
        .await;
    bob_elsewhere.close().await;
    alice.expect_push(presence("offline"), CROSS_WAIT).await;

    // Revocation: carol ends her node-0 session from node 2; it closes.
    let mut carol_elsewhere = cluster.node(0).login("carol").await;
    let sessions = carol.ok(json!({"type":"sessions"})).await;
    let other = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == false)
        .expect("the node-0 session")["id"]
        .clone();
    let r = carol
        .ok(json!({"type":"revoke_session","session_id":other}))
        .await;
    assert_eq!(r["revoked"], 1, "{r}");
    match carol_elsewhere.expect_closed(CROSS_WAIT).await {
        support::Closed::Code(1008, reason) => assert_eq!(reason, "session revoked"),
        other => panic!("expected 1008 \"session revoked\", got {other:?}"),
    }
}

/// What one raw sender saw before its node died: (client_msg_id, body,
/// seq) acknowledged, and (client_msg_id, body) sent without an answer.
type Outcome = (Vec<(String, String, u64)>, Vec<(String, String)>);

/// Send as fast as acks come, four at a time, until the connection dies
/// (or 4,000 sends).
async fn load_until_cut(mut p: Peer, conv: String) -> Outcome {
    let mut acked = Vec::new();
    let mut unanswered = Vec::new();
    let mut pending: HashMap<u64, (String, String)> = HashMap::new();
    for n in 0..4000 {
        if pending.len() < 4 {
            let cmid = format!("cut-{n}");
            let body = format!("{} before the cut, {n}", p.user);
            let req =
                json!({"type":"send","conversation_id":conv,"client_msg_id":cmid,"body":body});
            let Some(id) = p.try_send_req(req).await else {
                unanswered.push((cmid, body));
                break;
            };
            pending.insert(id, (cmid, body));
            continue;
        }
        let Some(r) = p.try_next_reply().await else {
            break;
        };
        p.clear_pushes();
        let Some((cmid, body)) = r["id"].as_u64().and_then(|id| pending.remove(&id)) else {
            panic!("a reply to no pending request: {r}");
        };
        if r["type"] == "ok" {
            acked.push((cmid, body, seq_of(&r)));
        } else {
            // Refused as the node went down: not acknowledged.
            unanswered.push((cmid, body));
        }
    }
    unanswered.extend(pending.into_values());
    (acked, unanswered)
}

/// Whether `rows` (a client's window on a conversation) end at the last
/// event of `log` and hold the events before it with no gap, every message
/// acknowledged, each with the body the log has at its seq.
fn shows_the_log(rows: &[MessageRow], log: &[Value]) -> bool {
    let seqs = support::row_seqs(rows);
    !support::has_missing(rows)
        && seqs.last() == Some(&(log.len() as u64))
        && seqs.windows(2).all(|w| w[1] == w[0] + 1)
        && rows.iter().all(|r| match r {
            MessageRow::Message(m) => m
                .seq
                .is_some_and(|seq| log[seq as usize - 1]["body"] == m.body.as_str()),
            _ => true,
        })
}

/// The log of `conv` once it holds `messages` messages (polled, at most
/// [`CLIENT_WAIT`]): the senders' outboxes have delivered everything.
async fn log_with(p: &mut Peer, conv: &str, messages: usize) -> Vec<Value> {
    let deadline = Instant::now() + CLIENT_WAIT;
    loop {
        let log = p.full_history(conv).await;
        let have = log.iter().filter(|e| e["kind"] == "message").count();
        if have >= messages || Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bodies of the messages of `log`, sorted.
fn sorted_bodies(log: &[Value]) -> Vec<String> {
    let mut bodies: Vec<String> = log
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["body"].as_str().unwrap_or_default().to_string())
        .collect();
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_message_and_its_clients_finish_elsewhere() {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 4;
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let mut names: Vec<String> = (0..CLIENTS).map(|i| format!("member{i}")).collect();
    names.push("raw".into());
    let (mut peers, conv) = group_over(&cluster, &names).await;
    // The raw sender is on node 1, the node that dies.
    let raw = {
        let token = peers.pop().expect("the raw member").token.clone();
        cluster.node(1).device(&token).await
    };
    drop(peers);

    // Real clients behind a balancer: some of them land on node 1.
    let balancer = Balancer::start(cluster.addrs()).await;
    let mut clients = Vec::new();
    for name in &names[..CLIENTS] {
        let c = Client::login(&balancer.addr, &temp.path().join(name), name, Fault::None);
        c.wait_connected().await;
        c.act(Action::OpenConversation { conv: conv.clone() });
        clients.push(c);
    }
    assert!(balancer.passed_to(1) > 0, "a client is on node 1");

    let load = tokio::spawn(load_until_cut(raw, conv.clone()));
    let mut want = Vec::new();
    for round in 0..ROUNDS {
        for (i, c) in clients.iter().enumerate() {
            for k in 0..PER_ROUND {
                let body = format!("{} round {round} #{k}", names[i]);
                c.act(Action::Send {
                    conv: conv.clone(),
                    body: body.clone(),
                    reply_to: None,
                });
                want.push(body);
            }
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cluster.node_mut(1).kill();
        }
    }
    let (acked, unanswered) = tokio::time::timeout(CLIENT_WAIT, load)
        .await
        .expect("the raw load ends with its node")
        .expect("load task");
    assert!(!acked.is_empty(), "the raw sender had acknowledgements");
    eprintln!(
        "node 1 killed: {} raw sends acknowledged, {} unanswered",
        acked.len(),
        unanswered.len()
    );

    // Every acknowledged raw send is in the log at its seq, once.
    let mut checker = cluster.node(0).login("raw").await;
    let events = checker.full_history(&conv).await;
    assert_dense(&events);
    for (cmid, body, seq) in &acked {
        let e = &events[*seq as usize - 1];
        assert_eq!(e["client_msg_id"], cmid.as_str(), "acked {seq}: {e}");
        assert_eq!(e["body"], body.as_str());
    }
    // The unanswered ones, retried on node 2 with their ids, land once each.
    let mut retry = cluster.node(2).login("raw").await;
    for (cmid, body) in &unanswered {
        let req = json!({"type":"send","conversation_id":conv,"client_msg_id":cmid,"body":body});
        let first = seq_of(&retry.ok(req.clone()).await);
        assert_eq!(seq_of(&retry.ok(req).await), first, "a retry keeps its seq");
    }

    // The real clients reconnect (through the balancer, to nodes 0 and 2)
    // and finish: the log holds every message once, and every client shows
    // it with no gap, everything acknowledged.
    want.extend(acked.iter().map(|(_, b, _)| b.clone()));
    want.extend(unanswered.iter().map(|(_, b)| b.clone()));
    want.sort();
    let log = log_with(&mut checker, &conv, want.len()).await;
    assert_dense(&log);
    assert_eq!(
        sorted_bodies(&log),
        want,
        "the log holds every message once"
    );
    for c in &clients {
        c.wait_rows(&conv, "the whole log, acknowledged", |rows| {
            shows_the_log(rows, &log)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_costs_no_event() {
    if support::backend::pg_base().is_none() || support::backend::redis_url().is_none() {
        eprintln!("skipped: several nodes need PostgreSQL and Redis");
        return;
    }
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let Some(cluster) = Cluster::start_with(3, Some(redis.url()), |_| {}) else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = ["s0", "s1", "r1", "r2"].map(String::from).to_vec();
    let (mut peers, conv) = group_over(&cluster, &names).await;
    // Readers with the real engine on nodes 1 and 2 (it fills gaps), and
    // raw peers on nodes 2 and 0, whose pushes must stay in order.
    let readers: Vec<Client> = [(1usize, "r1"), (2, "r2")]
        .iter()
        .map(|(i, name)| {
            let c = Client::login(
                &cluster.node(*i).url(),
                &temp.path().join(name),
                name,
                Fault::None,
            );
            c.act(Action::OpenConversation { conv: conv.clone() });
            c
        })
        .collect();
    for c in &readers {
        c.wait_connected().await;
    }
    let mut raw_readers: Vec<Peer> = peers.split_off(2);
    let senders = peers;

    let stop_at = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for mut p in senders {
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut refused = 0;
            let mut n = 0;
            while Instant::now() < stop_at && n < 2000 {
                let body = format!("{} #{n}", p.user);
                let req = json!({"type":"send","conversation_id":conv,
                                 "client_msg_id":format!("{}-{n}", p.user),"body":body});
                // A send refused while the bus is away is retried with its
                // id until it is acknowledged (bounded).
                let deadline = Instant::now() + Duration::from_secs(15);
                loop {
                    let r = p.request(req.clone()).await;
                    if r["type"] == "ok" {
                        break;
                    }
                    assert_eq!(r["code"], "unavailable", "{r}");
                    assert!(Instant::now() < deadline, "never acknowledged: {r}");
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                sent.push(body);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (p, sent, refused)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.restart());

    let mut want = Vec::new();
    let mut senders = Vec::new();
    for t in tasks {
        let (p, sent, refused) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the senders finish")
            .expect("sender task");
        eprintln!(
            "{}: {} sent, {refused} refusals retried",
            p.user,
            sent.len()
        );
        want.extend(sent);
        senders.push(p);
    }
    // One more from each after the restart, so that any event lost with
    // the bus shows up as a gap behind it.
    for p in &mut senders {
        let body = format!("{} after the restart", p.user);
        p.send_msg(&conv, &body).await;
        want.push(body);
    }
    want.sort();

    let mut writer = cluster.node(0).login("s0").await;
    let log = writer.full_history(&conv).await;
    assert_dense(&log);
    assert_eq!(
        sorted_bodies(&log),
        want,
        "the log holds every message once"
    );
    let last = log.len() as u64;
    for c in &readers {
        c.wait_rows(&conv, "the whole log", |rows| shows_the_log(rows, &log))
            .await;
    }
    // The raw readers' pushes: in seq order, none twice (any gap the engine
    // would fill is reported, not failed).
    for p in &mut raw_readers {
        let seqs = event_seqs(p, &conv, last, CROSS_WAIT).await;
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{}: pushes out of order or twice: {seqs:?}",
            p.user
        );
        let missing = (2..=last).filter(|s| !seqs.contains(s)).count();
        eprintln!(
            "{}: {} of {} events pushed, {missing} left to gap filling",
            p.user,
            seqs.len(),
            last - 1
        );
    }
}

#[test]
fn test_database_urls_keep_everything_but_the_name() {
    use support::backend::database_url;
    assert_eq!(
        database_url("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
        "postgres://u:p@127.0.0.1:5432/t1"
    );
    assert_eq!(
        database_url("postgres://u@db.example.org?sslmode=disable", "t2"),
        "postgres://u@db.example.org/t2?sslmode=disable"
    );
    assert_eq!(
        database_url("postgresql://h:6543/x?a=b", "t3"),
        "postgresql://h:6543/t3?a=b"
    );
}

/// Secret conversations across nodes: a to-device message sent on one node
/// reaches the device's connection on another (and its inbox, whatever the
/// bus does); a secret message sent on one node reaches a member on
/// another; a logout on one node tells a contact on another that the
/// user's devices changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_device_messages_and_device_changes_cross_nodes() {
    use support::keys::{message, upload};
    use vodozemac::Ed25519Keypair;
    let Some(cluster) = Cluster::start(2) else {
        return;
    };
    let mut alice = cluster.node(0).user("alice").await;
    let mut bob = cluster.node(1).user("bob").await;
    let dm = alice.create_dm("bob").await;
    bob.expect_push(|v| is_event(v, &dm, "create"), CROSS_WAIT)
        .await;
    let alice_dev = upload(&mut alice, &Ed25519Keypair::new(), 1).await;
    let is_devices =
        |who: &'static str| move |v: &Value| v["type"] == "devices" && v["user"] == who;
    // bob's new device, on node 1, is news to alice on node 0.
    let bob_dev = upload(&mut bob, &Ed25519Keypair::new(), 1).await;
    alice.expect_push(is_devices("bob"), CROSS_WAIT).await;

    // A to-device message from node 0 is pushed to bob's device on node 1.
    alice
        .ok(json!({"type":"to_device","messages":[message("bob", &bob_dev.id, 1)]}))
        .await;
    let push = bob
        .expect_push(|v| v["type"] == "to_device", CROSS_WAIT)
        .await;
    assert_eq!(push["seq"], 1, "{push}");
    assert_eq!(push["sender"], "alice");
    assert_eq!(push["sender_device"], alice_dev.id.as_str());
    // Its inbox holds it too, read on either node.
    let inbox = bob.ok(json!({"type":"inbox","after":0,"limit":10})).await;
    assert_eq!(
        inbox["messages"].as_array().map(Vec::len),
        Some(1),
        "{inbox}"
    );

    // A secret DM: alice's message on node 0, with its share, reaches bob
    // on node 1 with its ciphertext, and the share reaches his device.
    let secret = alice
        .ok(json!({"type":"create","kind":"dm","members":["bob"],"encrypted":true}))
        .await;
    let secret = support::conv_id(&secret["conversation"]);
    bob.expect_push(|v| is_event(v, &secret, "create"), CROSS_WAIT)
        .await;
    bob.clear_pushes();
    let seq = alice
        .ok(
            json!({"type":"send","conversation_id":secret,"client_msg_id":"x1","body":"",
                   "encrypted":{"algorithm":"megolm.v1","device_id":alice_dev.id,
                                "session_id":"c2Vzc2lvbg","ciphertext":"AwgAEhAbc"},
                   "shares":[message("bob", &bob_dev.id, 2)]}),
        )
        .await;
    let seq = seq_of(&seq);
    let ev = bob
        .expect_push(|v| is_event(v, &secret, "message"), CROSS_WAIT)
        .await;
    assert_eq!(seq_of(&ev), seq);
    assert_eq!(ev["encrypted"]["ciphertext"], "AwgAEhAbc", "{ev}");
    let share = bob
        .expect_push(|v| v["type"] == "to_device", CROSS_WAIT)
        .await;
    assert_eq!(share["seq"], 2, "{share}");
    // Plain text in the secret DM is refused, whichever node takes it.
    bob.err(
        json!({"type":"send","conversation_id":secret,"client_msg_id":"p1","body":"hi"}),
        "invalid_argument",
    )
    .await;

    // bob logs out on node 1: alice, on node 0, hears that his devices
    // changed, and his device is gone for her.
    alice.clear_pushes();
    bob.ok(json!({"type":"logout"})).await;
    alice.expect_push(is_devices("bob"), CROSS_WAIT).await;
    let q = alice.ok(json!({"type":"keys_query","users":["bob"]})).await;
    assert_eq!(q["users"]["bob"]["devices"], json!([]), "{q}");
    alice
        .err(
            json!({"type":"to_device","messages":[message("bob", &bob_dev.id, 3)]}),
            "not_found",
        )
        .await;
}
