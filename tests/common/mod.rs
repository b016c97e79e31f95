//! Test harness: chatd in process on `127.0.0.1:0`, and a raw protocol peer
//! that speaks JSON over a real WebSocket.
//!
//! Every wait is bounded (see [`WAIT`]) so that no test can hang.

#![allow(dead_code)]

use chat::server::{Config, serve};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A password every test user shares.
pub const PASSWORD: &str = "correct horse";

// ---------------------------------------------------------------------------
// The server

/// chatd running in this process on a loopback port, on a temp data dir.
pub struct TestServer {
    addr: SocketAddr,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), chat::server::ServeError>>>,
}

impl TestServer {
    /// Start with the test defaults.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Start with the test defaults changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut config = Config::for_tests(dir.clone());
        tweak(&mut config);
        let mut server = Self::launch(dir, config).await;
        server._temp = Some(temp);
        server
    }

    async fn launch(dir: PathBuf, config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            dir,
            _temp: None,
            config,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Shut down gracefully and wait for `serve` to return.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("serve did not return within 15 s of shutdown")
                .expect("serve task panicked");
            result.expect("serve returned an error");
        }
    }

    /// Shut down, then start again on the same data dir (a new port).
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let temp = self._temp.take();
        let mut next = Self::launch(self.dir.clone(), self.config.clone()).await;
        next._temp = temp;
        next
    }

    /// Whether the serve task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Connect a peer and register a new user on it.
    pub async fn user(&self, name: &str) -> Peer {
        let mut p = Peer::connect(&self.url()).await;
        p.register(name).await;
        p
    }

    /// Another connection (device) of a registered user.
    pub async fn device(&self, token: &str) -> Peer {
        let mut p = Peer::connect(&self.url()).await;
        let r = p.auth(token).await;
        assert_eq!(r["type"], "ok", "auth: {r}");
        p
    }

    /// One plain HTTP/1.1 request; returns (status, body).
    pub async fn http(&self, method: &str, path: &str) -> (u16, String) {
        http_request(self.addr, method, path).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A raw HTTP/1.1 request over TCP; returns (status, body).
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read response");
        let text = String::from_utf8_lossy(&buf).to_string();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("HTTP request timed out")
}

// ---------------------------------------------------------------------------
// The peer

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the peer's reader task saw.
#[derive(Debug)]
enum Incoming {
    Json(Value),
    /// A text frame that is not JSON (the server never sends one).
    Text(String),
    /// A close frame: its code and reason.
    Close(Option<(u16, String)>),
    /// The stream ended or failed.
    End(String),
}

/// How a connection ended, as seen by the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code and reason.
    Code(u16, String),
    /// A close frame without a code.
    NoCode,
    /// The TCP stream ended or failed without a close frame.
    Dropped(String),
}

impl Closed {
    pub fn code(&self) -> Option<u16> {
        match self {
            Closed::Code(c, _) => Some(*c),
            _ => None,
        }
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A process-unique suffix for client_msg_ids and names.
pub fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// A raw protocol client. A background task reads the socket continuously,
/// so a peer never looks slow to the server while a test is busy elsewhere;
/// replies are matched by id and pushes are buffered in arrival order.
pub struct Peer {
    sink: SplitSink<Ws, Message>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    reader: JoinHandle<()>,
    next_id: u64,
    /// `ok` and `error` frames not yet claimed, in arrival order.
    replies: VecDeque<Value>,
    /// Every other frame, in arrival order.
    pushes: VecDeque<Value>,
    closed: Option<Closed>,
    pub user: String,
    pub token: String,
}

/// Open a WebSocket to `url` (with a timeout).
pub async fn connect_ws(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    ws
}

impl Peer {
    pub async fn connect(url: &str) -> Peer {
        Self::from_ws(connect_ws(url).await)
    }

    pub fn from_ws(ws: Ws) -> Peer {
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let incoming = match stream.next().await {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(&t) {
                        Ok(v) => Incoming::Json(v),
                        Err(_) => Incoming::Text(t.to_string()),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        let _ = tx.send(Incoming::Close(
                            frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                        ));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        let _ = tx.send(Incoming::End(e.to_string()));
                        break;
                    }
                    None => {
                        let _ = tx.send(Incoming::End("stream ended".into()));
                        break;
                    }
                };
                if tx.send(incoming).is_err() {
                    break;
                }
            }
        });
        Peer {
            sink,
            rx,
            reader,
            next_id: 1,
            replies: VecDeque::new(),
            pushes: VecDeque::new(),
            closed: None,
            user: String::new(),
            token: String::new(),
        }
    }

    /// Take one frame from the reader into the right queue. `false` on timeout.
    async fn pump(&mut self, deadline: tokio::time::Instant) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Err(_) => false,
            Ok(None) => {
                self.closed = Some(Closed::Dropped("reader gone".into()));
                false
            }
            Ok(Some(Incoming::Json(v))) => {
                match v["type"].as_str() {
                    Some("ok") | Some("error") => self.replies.push_back(v),
                    _ => self.pushes.push_back(v),
                }
                true
            }
            Ok(Some(Incoming::Text(t))) => panic!("server sent a non-JSON text frame: {t:?}"),
            Ok(Some(Incoming::Close(c))) => {
                self.closed = Some(match c {
                    Some((code, reason)) => Closed::Code(code, reason),
                    None => Closed::NoCode,
                });
                false
            }
            Ok(Some(Incoming::End(why))) => {
                self.closed = Some(Closed::Dropped(why));
                false
            }
        }
    }

    /// Send a raw text frame.
    pub async fn send_raw(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        tokio::time::timeout(WAIT, self.sink.send(Message::Text(text.into())))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Send a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        tokio::time::timeout(WAIT, self.sink.send(Message::Binary(data.into())))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Send any WebSocket message (raw frames included).
    pub async fn send_message(&mut self, msg: Message) {
        tokio::time::timeout(WAIT, self.sink.send(msg))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Send a request (an `id` is added) without waiting; returns the id.
    pub async fn send_req(&mut self, mut req: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        self.send_raw(req.to_string()).await;
        id
    }

    /// Send a request without waiting; `None` if the connection is gone.
    pub async fn try_send_req(&mut self, mut req: Value) -> Option<u64> {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        self.try_send_raw(req.to_string()).await.then_some(id)
    }

    /// Wait for the reply with `id`; pushes that arrive meanwhile are kept.
    pub async fn wait_reply(&mut self, id: u64) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.replies.iter().position(|r| r["id"] == json!(id)) {
                return self.replies.remove(i).expect("index is valid");
            }
            if !self.pump(deadline).await {
                panic!(
                    "{}: no reply to request {id} within {WAIT:?} (closed: {:?})",
                    self.user, self.closed
                );
            }
        }
    }

    /// The reply with `id`, or `None` if the connection closes (or the wait
    /// times out) first.
    pub async fn try_reply(&mut self, id: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self.replies.iter().position(|r| r["id"] == json!(id)) {
                return self.replies.remove(i);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// Send a raw text frame; `false` if the connection is gone.
    pub async fn try_send_raw(&mut self, text: impl Into<String>) -> bool {
        let text: String = text.into();
        matches!(
            tokio::time::timeout(WAIT, self.sink.send(Message::Text(text.into()))).await,
            Ok(Ok(()))
        )
    }

    /// Send a request and wait for its reply.
    pub async fn request(&mut self, req: Value) -> Value {
        let id = self.send_req(req).await;
        self.wait_reply(id).await
    }

    /// A request that must succeed; returns the `ok` frame.
    pub async fn ok(&mut self, req: Value) -> Value {
        let r = self.request(req.clone()).await;
        assert_eq!(r["type"], "ok", "{}: {req} -> {r}", self.user);
        r
    }

    /// A request that must fail with `code`; returns the error frame.
    pub async fn err(&mut self, req: Value, code: &str) -> Value {
        let r = self.request(req.clone()).await;
        assert_eq!(r["type"], "error", "{}: {req} -> {r}", self.user);
        assert_eq!(r["code"], code, "{}: {req} -> {r}", self.user);
        assert!(
            r["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error has a human message: {r}"
        );
        r
    }

    /// The next reply of any id (e.g. an error with `id: null`).
    pub async fn next_reply(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.replies.pop_front() {
                return r;
            }
            if !self.pump(deadline).await {
                panic!(
                    "{}: no reply within {WAIT:?} ({:?})",
                    self.user, self.closed
                );
            }
        }
    }

    /// The next reply of any id, or `None` if the connection ends (or the
    /// wait times out) first.
    pub async fn try_next_reply(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.replies.pop_front() {
                return Some(r);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// The next push, or `None` after `timeout`.
    pub async fn next_push(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return Some(p);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// Wait for a push matching `pred` and take it out of the buffer (other
    /// pushes stay); panics after `timeout`.
    pub async fn expect_push(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut checked = 0;
        loop {
            if let Some(i) = self.pushes.iter().skip(checked).position(&pred) {
                return self.pushes.remove(checked + i).expect("index is valid");
            }
            checked = self.pushes.len();
            if !self.pump(deadline).await {
                panic!(
                    "{}: expected push not seen within {timeout:?} (closed: {:?})",
                    self.user, self.closed
                );
            }
        }
    }

    /// Assert that no push matching `pred` arrives within `dur` (pushes
    /// already buffered count too).
    pub async fn expect_no_push_matching(&mut self, pred: impl Fn(&Value) -> bool, dur: Duration) {
        let deadline = tokio::time::Instant::now() + dur;
        loop {
            if let Some(p) = self.pushes.iter().find(|p| pred(p)) {
                panic!("{}: unexpected push {p}", self.user);
            }
            if !self.pump(deadline).await {
                if let Some(p) = self.pushes.iter().find(|p| pred(p)) {
                    panic!("{}: unexpected push {p}", self.user);
                }
                return;
            }
        }
    }

    /// Assert that no push at all arrives within `dur`.
    pub async fn expect_no_push(&mut self, dur: Duration) {
        self.expect_no_push_matching(|_| true, dur).await
    }

    /// Replies received but not claimed by any request (e.g. an answer to a
    /// frame that should have had none).
    pub fn unclaimed_replies(&self) -> usize {
        self.replies.len()
    }

    /// Forget every buffered push.
    pub fn clear_pushes(&mut self) {
        self.pushes.clear();
    }

    /// Every push received so far (then cleared), after waiting `dur` for more.
    pub async fn drain_pushes(&mut self, dur: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + dur;
        while self.pump(deadline).await {}
        self.pushes.drain(..).collect()
    }

    /// Wait until the server closes the connection; how it ended.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Closed {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.closed.is_none() {
            if !self.pump(deadline).await && self.closed.is_none() {
                panic!("{}: connection still open after {timeout:?}", self.user);
            }
        }
        self.closed.clone().expect("closed is set")
    }

    /// Whether the server has closed the connection (as seen so far).
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// Close our side.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
        self.reader.abort();
    }

    // -- handshake helpers -------------------------------------------------

    /// Register `name`; panics unless it succeeds. Remembers user and token.
    pub async fn register(&mut self, name: &str) -> Value {
        let r = self
            .ok(json!({"type":"register","username":name,"password":PASSWORD,"device":"test"}))
            .await;
        assert_eq!(r["user"], name);
        assert_eq!(r["protocol"], 1);
        self.user = name.to_string();
        self.token = r["token"]
            .as_str()
            .expect("register returns a token")
            .into();
        r
    }

    /// Log in; returns the reply (ok or error).
    pub async fn login(&mut self, name: &str, password: &str) -> Value {
        let r = self
            .request(json!({"type":"login","username":name,"password":password,"device":"test"}))
            .await;
        if r["type"] == "ok" {
            self.user = name.to_string();
            self.token = r["token"].as_str().unwrap_or_default().into();
        }
        r
    }

    /// Authenticate with a token; returns the reply (ok or error).
    pub async fn auth(&mut self, token: &str) -> Value {
        let r = self.request(json!({"type":"auth","token":token})).await;
        if r["type"] == "ok" {
            self.user = r["user"].as_str().unwrap_or_default().into();
            self.token = token.to_string();
        }
        r
    }

    // -- conversation helpers ----------------------------------------------

    /// Create a conversation; returns the conversation object.
    pub async fn create(&mut self, kind: &str, name: Option<&str>, members: &[&str]) -> Value {
        let mut req = json!({"type":"create","kind":kind,"members":members});
        if let Some(n) = name {
            req["name"] = json!(n);
        }
        let r = self.ok(req).await;
        r["conversation"].clone()
    }

    pub async fn create_group(&mut self, name: &str, members: &[&str]) -> String {
        conv_id(&self.create("group", Some(name), members).await)
    }

    pub async fn create_dm(&mut self, other: &str) -> String {
        conv_id(&self.create("dm", None, &[other]).await)
    }

    pub async fn create_channel(&mut self, name: &str) -> String {
        conv_id(&self.create("channel", Some(name), &[]).await)
    }

    /// Send a message; returns its seq.
    pub async fn send_msg(&mut self, conv: &str, body: &str) -> u64 {
        let r = self
            .ok(json!({"type":"send","conversation_id":conv,
                        "client_msg_id":format!("m-{}", unique()),"body":body}))
            .await;
        seq_of(&r)
    }

    /// The whole log of a conversation (paged), ascending.
    pub async fn full_history(&mut self, conv: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut after = 0u64;
        for _ in 0..10_000 {
            let r = self
                .ok(json!({"type":"history","conversation_id":conv,"after":after,"limit":500}))
                .await;
            let events = r["events"].as_array().expect("events").clone();
            if events.is_empty() {
                return out;
            }
            after = seq_of(events.last().expect("not empty"));
            out.extend(events);
        }
        panic!("history did not end");
    }

    /// `last_seq` of a conversation as `history` reports it.
    pub async fn last_seq(&mut self, conv: &str) -> u64 {
        let r = self
            .ok(json!({"type":"history","conversation_id":conv,"before":u64::MAX >> 1,"limit":1}))
            .await;
        r["last_seq"].as_u64().expect("last_seq")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub fn conv_id(conv: &Value) -> String {
    conv["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no conversation id in {conv}"))
        .to_string()
}

pub fn seq_of(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// Whether `v` is an `event` push of `kind` in `conv`.
pub fn is_event(v: &Value, conv: &str, kind: &str) -> bool {
    v["type"] == "event" && v["conversation_id"] == conv && v["kind"] == kind
}

/// Assert that `events` have seqs exactly `1..=n`.
pub fn assert_dense(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            seq_of(e),
            i as u64 + 1,
            "the log has a hole or a duplicate at position {i}: {e}"
        );
    }
}
