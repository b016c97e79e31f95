//! A raw protocol peer: JSON over a real WebSocket, for driving chatd
//! request by request (malformed input included) and for reading its log.
//! A background task reads the socket, so a peer never looks slow to the
//! server while a test is busy elsewhere.

use super::{PASSWORD, WAIT, unique};
use chat::proto::{Conversation, Event, EventBody, Request};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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

/// Which of a peer's buffers to take from.
#[derive(Clone, Copy)]
enum Queue {
    Replies,
    Pushes,
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
    /// The largest text frame received, in bytes.
    largest: Arc<AtomicUsize>,
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
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = largest.clone();
        let reader = tokio::spawn(async move {
            loop {
                let incoming = match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        seen.fetch_max(t.len(), Ordering::Relaxed);
                        match serde_json::from_str::<Value>(&t) {
                            Ok(v) => Incoming::Json(v),
                            Err(_) => Incoming::Text(t.to_string()),
                        }
                    }
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
            largest,
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
        match self.try_next_reply().await {
            Some(r) => r,
            None => panic!(
                "{}: no reply within {WAIT:?} ({:?})",
                self.user, self.closed
            ),
        }
    }

    /// The next reply of any id, or `None` if the connection ends (or the
    /// wait times out) first.
    pub async fn try_next_reply(&mut self) -> Option<Value> {
        self.next_of(Queue::Replies, WAIT).await
    }

    /// The next push, or `None` after `timeout`.
    pub async fn next_push(&mut self, timeout: Duration) -> Option<Value> {
        self.next_of(Queue::Pushes, timeout).await
    }

    /// The first frame of `queue`, or `None` if the connection ends (or
    /// `timeout` passes) first.
    async fn next_of(&mut self, queue: Queue, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let q = match queue {
                Queue::Replies => &mut self.replies,
                Queue::Pushes => &mut self.pushes,
            };
            if let Some(v) = q.pop_front() {
                return Some(v);
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

    // -- typed readers -------------------------------------------------------

    /// Send a typed request that must succeed; returns the `ok` frame.
    pub async fn call(&mut self, req: &Request) -> Value {
        let v: Value = serde_json::from_str(&req.encode(None)).expect("a request encodes to JSON");
        self.ok(v).await
    }

    /// The whole log of `conv`, paged, as typed events.
    pub async fn events(&mut self, conv: &str) -> Vec<Event> {
        self.full_history(conv)
            .await
            .into_iter()
            .map(|e| serde_json::from_value(e.clone()).unwrap_or_else(|err| panic!("{err}: {e}")))
            .collect()
    }

    /// Bodies of the messages in `conv`'s log, in seq order.
    pub async fn bodies(&mut self, conv: &str) -> Vec<String> {
        message_bodies(&self.events(conv).await)
    }

    /// Poll the message bodies of `conv` until `cond` holds or `timeout`
    /// passes; returns the last bodies seen and whether `cond` held.
    pub async fn wait_bodies(
        &mut self,
        conv: &str,
        timeout: Duration,
        cond: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let bodies = self.bodies(conv).await;
            if cond(&bodies) {
                return (bodies, true);
            }
            if Instant::now() >= deadline {
                return (bodies, false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The conversations of this user, as the server lists them.
    /// Every conversation, page after page.
    pub async fn conversations(&mut self) -> Vec<Conversation> {
        let mut out = Vec::new();
        let mut after = Value::Null;
        for _ in 0..1000 {
            let r = self.ok(json!({"type":"conversations","after":after})).await;
            let page: Vec<Conversation> = serde_json::from_value(r["conversations"].clone())
                .unwrap_or_else(|e| panic!("{e}: {r}"));
            out.extend(page);
            if r["next"].is_null() {
                return out;
            }
            after = r["next"].clone();
        }
        panic!("the pages of conversations do not end");
    }

    /// The largest text frame this peer has received, in bytes.
    pub fn largest_frame(&self) -> usize {
        self.largest.load(Ordering::Relaxed)
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

/// Bodies of the message events in `events`, in order.
pub fn message_bodies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}
