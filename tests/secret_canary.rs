//! A canary: a random text sent in a secret DM and in a secret group by
//! the real client is never in chatd's files (database, write-ahead log,
//! shared memory, its debug log) nor in any frame chatd sends, to the
//! members or to anyone else, while the recipients' clients show it.
//! chatd runs as its own process with `RUST_LOG=debug`.

mod support;

use chat::client::net::{Credentials, Transport};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::chatd::{Chatd, write_config};
use support::client::net_config;
use support::relay::{Relay, Way};
use support::secret::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A raw WebSocket session of a registered user that keeps every text
/// frame chatd sends it, for as long as it lives.
struct Recorder {
    frames: Arc<Mutex<Vec<String>>>,
    sink: futures_util::stream::SplitSink<Ws, Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn register(url: &str, user: &str) -> Recorder {
        let (mut sink, mut stream) = connect_ws(url).await.split();
        let frames: Arc<Mutex<Vec<String>>> = Arc::default();
        let f = frames.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    f.lock().unwrap().push(t.to_string());
                }
            }
        });
        let req =
            json!({"id":1,"type":"register","username":user,"password":PASSWORD,"device":"test"});
        sink.send(Message::text(req.to_string())).await.unwrap();
        let mut r = Recorder { frames, sink, task };
        assert!(
            wait_until(WAIT, || r
                .frames
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.contains("\"token\"")))
            .await,
            "{user} registered"
        );
        // Ask about the others now and then, as a curious client would.
        r.ask(
            2,
            json!({"type":"keys_query","users":["alice","bob","carol"]}),
        )
        .await;
        r
    }

    async fn ask(&mut self, id: u64, mut req: serde_json::Value) {
        req["id"] = json!(id);
        self.sink
            .send(Message::text(req.to_string()))
            .await
            .unwrap();
    }

    fn frames(&self) -> Vec<String> {
        self.frames.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where in `dir` (every file, at any depth) `text` is.
fn files_holding(dir: &std::path::Path, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if holds(&std::fs::read(&p).unwrap_or_default(), text) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_text_is_nowhere_on_the_server_nor_on_the_wire() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let config = write_config(&data);
    let chatd = Chatd::start_logging(&data, &config, "debug").await;
    let server = chatd.addr.to_string();
    // Eve is on the server the whole time and in none of the conversations.
    let mut eve = Recorder::register(&chatd.url(), "eve").await;
    // Alice's traffic goes through a relay that keeps every frame.
    let relay = Relay::start(&server).await;
    let mut net = net_config(&relay.addr);
    net.transport = Transport::Ws;
    let alice = Client::start_net(
        net,
        &tmp.path().join("alice"),
        Some(Credentials::Register {
            username: "alice".into(),
            password: PASSWORD.into(),
            invite: None,
        }),
    );
    alice.wait_connected().await;
    let bob = Client::register(&server, &tmp.path().join("bob"), "bob");
    let carol = Client::register(&server, &tmp.path().join("carol"), "carol");
    bob.wait_connected().await;
    carol.wait_connected().await;

    let canary = |what: &str| format!("{what}-{}", uuid::Uuid::new_v4().simple());
    let (in_dm, in_group, answer) = (canary("dm"), canary("group"), canary("answer"));
    let dm = secret_with(&alice, None, &["bob"]).await;
    send(&alice, &dm, &in_dm);
    wait_body(&bob, &dm, "bob reads the DM", |b| b.contains(&in_dm)).await;
    send(&bob, &dm, &answer);
    wait_body(&alice, &dm, "alice reads bob", |b| b.contains(&answer)).await;
    let g = secret_with(&alice, Some("quiet"), &["bob", "carol"]).await;
    send(&alice, &g, &in_group);
    for c in [&bob, &carol] {
        wait_body(c, &g, "the group reads it", |b| b.contains(&in_group)).await;
    }
    eve.ask(3, json!({"type":"search","query":in_group})).await;
    eve.ask(4, json!({"type":"conversations"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.stop().await;
    bob.stop().await;
    carol.stop().await;

    let log = std::fs::read_to_string(data.join("chatd.log")).unwrap_or_default();
    assert!(log.contains("DEBUG"), "chatd logged at debug level: {log}");
    let sqlite = ["-wal", "-shm", ""]
        .iter()
        .filter(|s| {
            std::fs::read_dir(&data).unwrap().flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.ends_with(&format!(".sqlite{s}")) || n.ends_with(&format!(".db{s}"))
            })
        })
        .count();
    if !support::backend::on_postgres() {
        assert!(
            sqlite >= 2,
            "the database and its write-ahead log are there"
        );
    }
    let relayed = relay.frames();
    assert!(
        relayed
            .iter()
            .any(|(w, t)| *w == Way::Up && t.contains("\"encrypted\"")),
        "alice's sends went through the relay"
    );
    assert!(!eve.frames().is_empty());
    for text in [&in_dm, &in_group, &answer] {
        assert_eq!(files_holding(&data, text), Vec::<String>::new(), "{text}");
        assert!(!holds(log.as_bytes(), text), "the log holds {text}");
        for (way, frame) in &relayed {
            assert!(!frame.contains(text.as_str()), "{way:?}: {frame}");
        }
        for frame in eve.frames() {
            assert!(!frame.contains(text.as_str()), "to eve: {frame}");
        }
    }
    chatd.kill9().await;
    support::backend::release(&data);
}
