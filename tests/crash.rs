//! Crash test: the real `chatd` binary is killed with SIGKILL under load,
//! several times, on the same data directory. Every acknowledged message must
//! be there afterwards, unchanged, at its acknowledged seq, in a dense log;
//! unacknowledged sends retried with their client_msg_id land exactly once.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::chatd::{Chatd, write_config};
use support::server::{stored_blobs, upload_temps};
use support::{Peer, conv_id, seq_of};

const USERS: usize = 4;
const IN_FLIGHT: usize = 4;
const CYCLES: usize = 3;

/// One acknowledged (or attempted) send.
#[derive(Debug, Clone)]
struct Sent {
    user: String,
    cmid: String,
    conv: String,
    body: String,
}

/// Send as fast as acks return, `IN_FLIGHT` at a time, alternating between
/// conversations, until the connection dies. Returns (acked with seq, unacked).
async fn load(mut p: Peer, convs: Vec<String>, tag: String) -> (Vec<(Sent, u64)>, Vec<Sent>) {
    let mut acked = Vec::new();
    let mut pending: HashMap<u64, Sent> = HashMap::new();
    let mut n = 0u64;
    loop {
        while pending.len() < IN_FLIGHT {
            let sent = Sent {
                user: p.user.clone(),
                cmid: format!("{tag}-{}-{n}", p.user),
                conv: convs[n as usize % convs.len()].clone(),
                body: format!("{} says {n} ({tag})", p.user),
            };
            n += 1;
            let req = json!({"type":"send","conversation_id":sent.conv,
                             "client_msg_id":sent.cmid,"body":sent.body});
            // The server may be gone at any moment: no panicking helpers.
            let Some(id) = p.try_send_req(req).await else {
                return (acked, pending.into_values().collect());
            };
            pending.insert(id, sent);
        }
        let Some(r) = p.try_next_reply().await else {
            return (acked, pending.into_values().collect());
        };
        p.clear_pushes();
        let id = r["id"].as_u64().expect("replies carry the request id");
        let sent = pending.remove(&id).expect("a reply to a pending request");
        assert_eq!(r["type"], "ok", "{r}");
        acked.push((sent, seq_of(&r)));
    }
}

/// Check the log against every acknowledgement; returns the logs.
async fn verify(
    p: &mut Peer,
    convs: &[String],
    acked: &BTreeMap<String, (Sent, u64)>,
) -> HashMap<String, Vec<Value>> {
    let mut logs = HashMap::new();
    for conv in convs {
        let events = p.full_history(conv).await;
        support::assert_dense(&events);
        let last = p.last_seq(conv).await;
        assert_eq!(events.len() as u64, last, "history ends at last_seq");
        let mut seen = HashMap::new();
        for e in &events {
            if let Some(c) = e["client_msg_id"].as_str() {
                let key = (
                    e["sender"].as_str().unwrap_or("").to_string(),
                    c.to_string(),
                );
                assert!(seen.insert(key, seq_of(e)).is_none(), "duplicate {e}");
            }
        }
        logs.insert(conv.clone(), events);
    }
    for (sent, seq) in acked.values() {
        let e = &logs[&sent.conv][*seq as usize - 1];
        assert_eq!(e["seq"], *seq);
        assert_eq!(e["client_msg_id"], sent.cmid.as_str(), "acked {seq}: {e}");
        assert_eq!(e["body"], sent.body.as_str());
        assert_eq!(e["sender"], sent.user.as_str());
        assert_eq!(e["kind"], "message");
    }
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = write_config(temp.path());

    // Setup: users and two conversations.
    let chatd = Chatd::start(&data, &config).await;
    let mut tokens = Vec::new();
    let mut tokens_of: HashMap<String, String> = HashMap::new();
    let mut first: Option<Peer> = None;
    for i in 0..USERS {
        let mut p = Peer::connect(&chatd.url()).await;
        p.register(&format!("crash{i}")).await;
        tokens.push(p.token.clone());
        tokens_of.insert(p.user.clone(), p.token.clone());
        if first.is_none() {
            first = Some(p);
        }
    }
    let mut owner = first.expect("a user");
    let others: Vec<String> = (1..USERS).map(|i| format!("crash{i}")).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let convs = vec![
        conv_id(&owner.create("group", Some("one"), &others).await),
        conv_id(&owner.create("group", Some("two"), &others).await),
    ];
    drop(owner);

    let mut acked: BTreeMap<String, (Sent, u64)> = BTreeMap::new();
    let mut unacked: Vec<Sent> = Vec::new();
    let mut chatd = Some(chatd);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);

    for cycle in 0..CYCLES {
        let server = match chatd.take() {
            Some(s) => s,
            None => Chatd::start(&data, &config).await,
        };
        let url = server.url();
        let mut tasks = Vec::new();
        for token in &tokens {
            let mut p = Peer::connect(&url).await;
            assert_eq!(p.auth(token).await["type"], "ok");
            tasks.push(tokio::spawn(load(p, convs.clone(), format!("c{cycle}"))));
        }
        // Let the load run a random-ish while, then pull the plug.
        let wait = 300 + (seed.wrapping_mul(cycle as u64 + 1) * 7919) % 700;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill9().await;
        let mut this_cycle = 0;
        for t in tasks {
            let (ok, lost) = tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("load ends after the kill")
                .expect("load task");
            this_cycle += ok.len();
            for (sent, seq) in ok {
                assert!(acked.insert(sent.cmid.clone(), (sent, seq)).is_none());
            }
            unacked.extend(lost);
        }
        assert!(this_cycle > 0, "cycle {cycle}: nothing was acknowledged");
        eprintln!(
            "cycle {cycle}: killed after {wait} ms; {this_cycle} acked, {} unacked so far",
            unacked.len()
        );

        // Restart on the same data: everything acknowledged is there.
        let server = Chatd::start(&data, &config).await;
        let mut checker = Peer::connect(&server.url()).await;
        assert_eq!(checker.auth(&tokens[0]).await["type"], "ok");
        verify(&mut checker, &convs, &acked).await;

        // Retry the unacknowledged sends with their own client_msg_id, from
        // their own users: each lands exactly once.
        let mut by_user: HashMap<String, Peer> = HashMap::new();
        for sent in std::mem::take(&mut unacked) {
            if !by_user.contains_key(&sent.user) {
                let token = &tokens_of[&sent.user];
                by_user.insert(sent.user.clone(), server_peer(&server, token).await);
            }
            let p = by_user.get_mut(&sent.user).expect("peer");
            let r = p
                .ok(json!({"type":"send","conversation_id":sent.conv,
                            "client_msg_id":sent.cmid,"body":sent.body}))
                .await;
            let seq = seq_of(&r);
            // A second retry agrees.
            let again = p
                .ok(json!({"type":"send","conversation_id":sent.conv,
                            "client_msg_id":sent.cmid,"body":sent.body}))
                .await;
            assert_eq!(seq_of(&again), seq);
            acked.insert(sent.cmid.clone(), (sent, seq));
        }
        verify(&mut checker, &convs, &acked).await;
        chatd = Some(server);
    }
    if let Some(server) = chatd.take() {
        server.kill9().await;
    }
    let server = Chatd::start(&data, &config).await;
    let mut checker = Peer::connect(&server.url()).await;
    assert_eq!(checker.auth(&tokens[1]).await["type"], "ok");
    let logs = verify(&mut checker, &convs, &acked).await;
    let total: usize = logs.values().map(|l| l.len() - 1).sum();
    assert_eq!(
        total,
        acked.len(),
        "every message in the log was acknowledged"
    );
    server.kill9().await;
    eprintln!(
        "{} messages acknowledged over {CYCLES} kills, verified in {:?}",
        acked.len(),
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

async fn server_peer(server: &Chatd, token: &str) -> Peer {
    let mut p = Peer::connect(&server.url()).await;
    assert_eq!(p.auth(token).await["type"], "ok");
    p
}

/// A SIGKILL in the middle of an upload leaves no partial file where files
/// are kept; the next start sweeps the temporary one, and the same upload
/// then goes through whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_upload_leaves_no_partial_file() {
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncWriteExt;
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = write_config(temp.path());
    let chatd = Chatd::start(&data, &config).await;
    let mut p = Peer::connect(&chatd.url()).await;
    p.register("uploader").await;
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = hex::encode(Sha256::digest(&body));
    let mut s = tokio::net::TcpStream::connect(chatd.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Content-Sha256: {digest}\r\nContent-Length: {}\r\n\r\n",
        p.token,
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body[..2 * 1024 * 1024])
        .await
        .expect("first part");
    // Wait until some of it is on disk, then kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !upload_temps(&data).iter().any(|n| *n > 0) {
        assert!(
            Instant::now() < deadline,
            "the upload never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    chatd.kill9().await;
    drop(s);
    assert!(
        stored_blobs(&data).is_empty(),
        "no partial file among the stored ones"
    );

    let chatd = Chatd::start(&data, &config).await;
    assert!(
        upload_temps(&data).is_empty(),
        "the temporary file is swept at start"
    );
    assert!(stored_blobs(&data).is_empty());
    let mut s = tokio::net::TcpStream::connect(chatd.addr)
        .await
        .expect("connect");
    let head = head.replace("Content-Length", "Connection: close\r\nContent-Length");
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body).await.expect("body");
    let mut answer = Vec::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(stored_blobs(&data), vec![digest]);
    chatd.kill9().await;
}
