//! The client's side of the HTTP fallback (see chatd's `stream` module and
//! PROTOCOL.md, "HTTP fallback"): the same frames as over the WebSocket,
//! carried by a server-sent event stream down and `POST`s up.
//!
//! - The first frame sent (the handshake) opens the stream: `POST /stream`
//!   with the frame as its body. Its answer is the event stream, whose
//!   first event is the handshake's reply.
//! - Every later frame goes up in `POST /rpc`, batched with whatever else
//!   is waiting (one request in flight at a time, so that frames reach the
//!   server in the order they were sent); the replies come back in the
//!   response and join the stream's events in [`HttpLink::recv`].
//! - A stream cut short is resumed (`GET /stream`, `Last-Event-ID`) a few
//!   times within seconds; after that the link reports itself lost and the
//!   caller reconnects and catches up by seq, as after a WebSocket loss.
//!
//! Connections are made exactly as the file transfers make them (the same
//! address, TLS and trust settings).

use super::conn::ClientError;
use super::files::{FileClient, Io};
use super::link::Incoming;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as Body;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames sent in one `POST /rpc` at most (the server's `max_inflight` is
/// larger).
const BATCH: usize = 32;
/// Largest event (or reply) accepted: the protocol's hard frame cap.
const MAX_EVENT: usize = 16 * 1024 * 1024;
/// Attempts to resume a stream cut short before giving up.
const RESUMES: u32 = 3;
/// Events and replies buffered for the reader of the link.
const INCOMING: usize = 1024;
/// Frames waiting to be posted before the link counts as stuck.
const MAX_WAITING: usize = 8192;

type ReqBody = Full<Bytes>;

/// Where and how to reach the server's HTTP side.
#[derive(Clone)]
struct Dial {
    files: FileClient,
    /// The path prefix before `/stream` and `/rpc` (the WebSocket URL's
    /// path without its last `ws`).
    prefix: String,
    timeout: Duration,
}

impl Dial {
    async fn connect(&self) -> Result<SendRequest<ReqBody>, ClientError> {
        let io = self
            .files
            .connect()
            .await
            .map_err(|e| client_error(self.files.authority(), e))?;
        handshake(io).await
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, self.files.authority())
            .header(
                header::USER_AGENT,
                concat!("chat/", env!("CARGO_PKG_VERSION")),
            )
    }
}

/// A connection failure as the WebSocket's would be reported.
fn client_error(url: &str, e: super::files::TransferError) -> ClientError {
    use super::files::TransferError as T;
    match e {
        T::Insecure(host) => ClientError::Insecure(host),
        T::CaFile(why) => ClientError::CaFile(why),
        T::Tls { host, reason } => ClientError::Tls { host, reason },
        other => ClientError::Connect {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

async fn handshake(io: Box<dyn Io>) -> Result<SendRequest<ReqBody>, ClientError> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Lost(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("http link connection: {e}");
        }
    });
    Ok(sender)
}

/// What the stream needs to be resumed and requests to be accepted.
struct Session {
    stream: String,
    token: Mutex<Option<String>>,
}

impl Session {
    fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One session carried over HTTP.
pub struct HttpLink {
    dial: Dial,
    /// The connection made by [`HttpLink::connect`], used to open the
    /// stream.
    first: Option<SendRequest<ReqBody>>,
    session: Option<Arc<Session>>,
    /// To the sender task: a frame, or `None` for a heartbeat. Never
    /// waited on (the sender task waits on the reader of the link, which
    /// may be the one sending), bounded by [`MAX_WAITING`] instead.
    out: Option<mpsc::UnboundedSender<Option<String>>>,
    /// Frames handed to the sender task and not yet posted.
    waiting: Arc<AtomicUsize>,
    rx: mpsc::Receiver<Incoming>,
    tx: mpsc::Sender<Incoming>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HttpLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl HttpLink {
    /// Reach the server at `url` (a WebSocket URL, as
    /// [`super::conn::ws_url`] makes it).
    pub async fn connect(
        url: &str,
        timeout: Duration,
        insecure: bool,
        ca_file: Option<&std::path::Path>,
    ) -> Result<HttpLink, ClientError> {
        let files = FileClient::new(url, String::new(), insecure, ca_file)
            .map_err(|e| client_error(url, e))?;
        let path = url
            .split_once("://")
            .map_or(url, |(_, r)| r)
            .split_once('/')
            .map_or("", |(_, p)| p);
        let prefix = match path.strip_suffix("ws") {
            Some(p) => format!("/{}", p.trim_end_matches('/')),
            None => format!("/{}", path.trim_end_matches('/')),
        };
        let prefix = prefix.trim_end_matches('/').to_string();
        let dial = Dial {
            files,
            prefix,
            timeout,
        };
        let first = match tokio::time::timeout(timeout, dial.files.connect()).await {
            Err(_) => {
                return Err(ClientError::Connect {
                    url: url.to_string(),
                    reason: "timed out".into(),
                });
            }
            Ok(Err(e)) => return Err(client_error(url, e)),
            Ok(Ok(io)) => handshake(io).await?,
        };
        let (tx, rx) = mpsc::channel(INCOMING);
        Ok(HttpLink {
            dial,
            first: Some(first),
            session: None,
            out: None,
            waiting: Arc::new(AtomicUsize::new(0)),
            rx,
            tx,
            tasks: Vec::new(),
        })
    }

    /// Send one frame: the first opens the stream, the rest are posted.
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        match &self.out {
            Some(out) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(ClientError::Lost(
                        "too many frames waiting for the server to take them".into(),
                    ));
                }
                out.send(Some(text))
                    .map_err(|_| ClientError::Lost("the HTTP link has stopped".into()))
            }
            None => self.open(text).await,
        }
    }

    /// Tell the server this client is still there.
    pub async fn heartbeat(&mut self) -> Result<(), ClientError> {
        match &self.out {
            Some(out) => out
                .send(None)
                .map_err(|_| ClientError::Lost("the HTTP link has stopped".into())),
            None => Ok(()),
        }
    }

    /// The next event, reply or end of the link.
    pub async fn recv(&mut self) -> Incoming {
        self.rx
            .recv()
            .await
            .unwrap_or_else(|| Incoming::Lost("the HTTP link has stopped".into()))
    }

    /// End the session at once rather than let the server wait for a
    /// resume.
    pub async fn close(mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let Some(token) = session.token() else {
            return;
        };
        let dial = self.dial.clone();
        let first = self.first.take();
        let bye = async move {
            let mut sender = match first {
                Some(s) => s,
                None => dial.connect().await.ok()?,
            };
            let req = dial
                .request(Method::DELETE, "/stream")
                .header("x-chat-stream", &session.stream)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .ok()?;
            sender.ready().await.ok()?;
            sender.send_request(req).await.ok()
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }

    /// `POST /stream` with the handshake frame.
    async fn open(&mut self, frame: String) -> Result<(), ClientError> {
        let token = serde_json::from_str::<serde_json::Value>(&frame)
            .ok()
            .filter(|v| v.get("type").and_then(|t| t.as_str()) == Some("auth"))
            .and_then(|v| v.get("token")?.as_str().map(str::to_string));
        let mut sender = match self.first.take() {
            Some(s) => s,
            None => self.dial.connect().await?,
        };
        let req = self
            .dial
            .request(Method::POST, "/stream")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::from(frame)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = tokio::time::timeout(self.dial.timeout, async {
            sender
                .ready()
                .await
                .map_err(|e| ClientError::Lost(e.to_string()))?;
            sender
                .send_request(req)
                .await
                .map_err(|e| ClientError::Lost(e.to_string()))
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        if resp.status() != StatusCode::OK {
            // The refusal's body is the error frame the handshake got.
            let status = resp.status();
            let body = read_all(resp.into_body(), 64 * 1024).await?;
            let text = String::from_utf8_lossy(&body).into_owned();
            let frame = if text.trim_start().starts_with('{') {
                text
            } else {
                error_frame(None, status, &text)
            };
            let _ = self.tx.send(Incoming::Text(frame)).await;
            return Ok(());
        }
        let Some(stream) = resp
            .headers()
            .get("x-chat-stream")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return Err(ClientError::Protocol(
                "the server opened an event stream without naming it".into(),
            ));
        };
        let session = Arc::new(Session {
            stream,
            token: Mutex::new(token),
        });
        self.session = Some(session.clone());
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        self.out = Some(out_tx);
        self.tasks.push(tokio::spawn(read_stream(
            self.dial.clone(),
            session.clone(),
            resp,
            self.tx.clone(),
        )));
        self.tasks.push(tokio::spawn(post_frames(
            self.dial.clone(),
            session,
            out_rx,
            self.waiting.clone(),
            self.tx.clone(),
        )));
        Ok(())
    }
}

/// Read the event stream into the link, resuming it when it is cut short.
async fn read_stream(
    dial: Dial,
    session: Arc<Session>,
    mut resp: Response<Body>,
    tx: mpsc::Sender<Incoming>,
) {
    let mut parser = Parser::default();
    let mut first = true;
    loop {
        let mut body = resp.into_body();
        let why = loop {
            match body.frame().await {
                None => break "the server ended the event stream".to_string(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Err(why) = parser.push(&data) {
                        let _ = tx.send(Incoming::Lost(why)).await;
                        return;
                    }
                    while let Some(ev) = parser.next_event() {
                        let msg = match ev {
                            Event::Data(text) => {
                                if first {
                                    first = false;
                                    learn_token(&session, &text);
                                }
                                Incoming::Text(text)
                            }
                            Event::Close(reason) => {
                                let _ = tx.send(Incoming::Closed(reason)).await;
                                return;
                            }
                            Event::Comment => Incoming::Keepalive,
                        };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        // Cut short: resume from the last event read, a few times.
        let Some(last) = parser.last_id.clone() else {
            let _ = tx.send(Incoming::Lost(why)).await;
            return;
        };
        let mut resumed = None;
        for attempt in 0..RESUMES {
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            match resume(&dial, &session, &last).await {
                Ok(r) => {
                    resumed = Some(r);
                    break;
                }
                Err(Some(gone)) => {
                    let _ = tx.send(Incoming::Lost(gone)).await;
                    return;
                }
                Err(None) => {}
            }
        }
        match resumed {
            Some(r) => {
                tracing::debug!("event stream resumed after: {why}");
                parser.reset_partial();
                resp = r;
            }
            None => {
                let _ = tx.send(Incoming::Lost(why)).await;
                return;
            }
        }
    }
}

/// The token a login or registration's reply carries, for the requests
/// that follow it.
fn learn_token(session: &Session, reply: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(reply) else {
        return;
    };
    if let Some(t) = v.get("token").and_then(|t| t.as_str()) {
        *session.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.to_string());
    }
}

/// `GET /stream` from `last`. `Err(Some(why))`: the server will not resume
/// it; `Err(None)`: it could not be reached.
async fn resume(
    dial: &Dial,
    session: &Session,
    last: &str,
) -> Result<Response<Body>, Option<String>> {
    let token = session.token().unwrap_or_default();
    let attempt = async {
        let mut sender = dial.connect().await.map_err(|_| None)?;
        let req = dial
            .request(Method::GET, "/stream")
            .header("last-event-id", last)
            .header(header::ACCEPT, "text/event-stream")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| Some(e.to_string()))?;
        sender.ready().await.map_err(|_| None)?;
        sender.send_request(req).await.map_err(|_| None)
    };
    let resp = tokio::time::timeout(dial.timeout, attempt)
        .await
        .map_err(|_| None)??;
    if resp.status() == StatusCode::OK {
        return Ok(resp);
    }
    let status = resp.status();
    let body = read_all(resp.into_body(), 4096).await.unwrap_or_default();
    Err(Some(format!(
        "the event stream could not be resumed ({status}): {}",
        message_of(&body)
    )))
}

/// Post frames as they come, batching what waits, one request at a time.
async fn post_frames(
    dial: Dial,
    session: Arc<Session>,
    mut rx: mpsc::UnboundedReceiver<Option<String>>,
    waiting: Arc<AtomicUsize>,
    tx: mpsc::Sender<Incoming>,
) {
    let mut conn: Option<SendRequest<ReqBody>> = None;
    while let Some(first) = rx.recv().await {
        let mut frames: Vec<String> = first.into_iter().collect();
        while frames.len() < BATCH {
            match rx.try_recv() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        waiting.fetch_sub(frames.len(), Ordering::AcqRel);
        let body = if frames.len() == 1 {
            frames[0].clone()
        } else {
            format!("[{}]", frames.join(","))
        };
        let token = session.token().unwrap_or_default();
        let req = match dial
            .request(Method::POST, "/rpc")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-chat-stream", &session.stream)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body)))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Incoming::Lost(e.to_string())).await;
                return;
            }
        };
        let result = tokio::time::timeout(dial.timeout.max(Duration::from_secs(30)), async {
            let mut sender = match conn.take() {
                Some(s) => s,
                None => dial.connect().await?,
            };
            if sender.ready().await.is_err() {
                // The kept connection was closed meanwhile: a new one.
                sender = dial.connect().await?;
            }
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| ClientError::Lost(e.to_string()))?;
            let status = resp.status();
            let body = read_all(resp.into_body(), MAX_EVENT).await?;
            Ok::<_, ClientError>((sender, status, body))
        })
        .await;
        let (sender, status, body) = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = tx.send(Incoming::Lost(e.to_string())).await;
                return;
            }
            Err(_) => {
                let _ = tx
                    .send(Incoming::Lost("no answer from the server".into()))
                    .await;
                return;
            }
        };
        conn = Some(sender);
        let replies = match replies_of(status, &body, &frames) {
            Ok(r) => r,
            Err(why) => {
                let _ = tx.send(Incoming::Lost(why)).await;
                return;
            }
        };
        for r in replies {
            if tx.send(Incoming::Text(r)).await.is_err() {
                return;
            }
        }
    }
}

/// The frames a `POST /rpc` answered with: its reply or replies, or for a
/// refusal of the whole request, an error for each frame that wanted an
/// answer. `Err`: the stream is over.
fn replies_of(status: StatusCode, body: &[u8], sent: &[String]) -> Result<Vec<String>, String> {
    match status {
        StatusCode::NO_CONTENT => return Ok(Vec::new()),
        StatusCode::OK => {
            let text = String::from_utf8_lossy(body);
            if text.trim_start().starts_with('[') {
                let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text)
                    .map_err(|e| format!("unreadable replies from the server: {e}"))?;
                return Ok(items.into_iter().map(|r| r.get().to_string()).collect());
            }
            return Ok(vec![text.into_owned()]);
        }
        StatusCode::GONE | StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => {
            return Err(format!(
                "the server ended the stream ({status}): {}",
                message_of(body)
            ));
        }
        _ => {}
    }
    let text = String::from_utf8_lossy(body);
    Ok(sent
        .iter()
        .filter_map(|f| {
            let v: serde_json::Value = serde_json::from_str(f).ok()?;
            v.get("id")?.as_u64()
        })
        .map(|id| error_frame(Some(id), status, &text))
        .collect())
}

/// An error frame for a refusal that carried none (or one without the
/// request's id).
fn error_frame(id: Option<u64>, status: StatusCode, body: &str) -> String {
    let (code, message) = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => (
            v.get("code")
                .and_then(|c| c.as_str())
                .unwrap_or("internal")
                .to_string(),
            v.get("message")
                .and_then(|c| c.as_str())
                .unwrap_or("")
                .to_string(),
        ),
        Err(_) => (
            match status {
                StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                StatusCode::TOO_MANY_REQUESTS => "rate_limited",
                StatusCode::BAD_REQUEST => "bad_frame",
                _ => "internal",
            }
            .to_string(),
            message_of(body.as_bytes()),
        ),
    };
    let message = if message.is_empty() {
        format!("the server refused the request ({status})")
    } else {
        message
    };
    serde_json::json!({"type": "error", "id": id, "code": code, "message": message}).to_string()
}

/// The message of an error body: the error frame's, or its first line.
fn message_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(m) = v.get("message").and_then(|m| m.as_str())
    {
        return crate::client::text::clean(m);
    }
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    crate::client::text::clean(line.unwrap_or(""))
}

/// A whole (bounded) body.
async fn read_all(body: Body, max: usize) -> Result<Vec<u8>, ClientError> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes().to_vec()),
        Err(e) => Err(ClientError::Lost(e.to_string())),
    }
}

/// One parsed server-sent event.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Data(String),
    Close(Option<String>),
    Comment,
}

/// An incremental parser of `text/event-stream`.
#[derive(Default)]
struct Parser {
    buf: BytesMut,
    /// The id of the last complete event.
    last_id: Option<String>,
}

impl Parser {
    fn push(&mut self, data: &Bytes) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > MAX_EVENT + 1024 && self.find_end().is_none() {
            return Err("the server sent an event larger than any frame".into());
        }
        Ok(())
    }

    /// Forget a partial event (the connection it came on is gone).
    fn reset_partial(&mut self) {
        self.buf.clear();
    }

    /// The end of the first complete event: (where it ends, the length of
    /// the blank line ending it).
    fn find_end(&self) -> Option<(usize, usize)> {
        let b = &self.buf[..];
        let mut i = 0;
        while i + 1 < b.len() {
            if b[i] == b'\n' && b[i + 1] == b'\n' {
                return Some((i, 2));
            }
            if b[i] == b'\n' && b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
            i += 1;
        }
        None
    }

    fn next_event(&mut self) -> Option<Event> {
        loop {
            let (end, skip) = self.find_end()?;
            let block = self.buf.split_to(end);
            self.buf.advance(skip);
            let text = String::from_utf8_lossy(&block);
            let mut data: Option<String> = None;
            let mut kind = String::new();
            let mut id = None;
            let mut comment = false;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.starts_with(':') {
                    comment = true;
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_string()),
                    },
                    "event" => kind = value.to_string(),
                    "id" => id = Some(value.to_string()),
                    _ => {}
                }
            }
            if let Some(id) = id {
                self.last_id = Some(id);
            }
            match (kind.as_str(), data) {
                ("close", d) => {
                    let reason = d.and_then(|d| {
                        serde_json::from_str::<serde_json::Value>(&d)
                            .ok()?
                            .get("reason")?
                            .as_str()
                            .map(str::to_string)
                    });
                    return Some(Event::Close(reason));
                }
                ("" | "message", Some(d)) => return Some(Event::Data(d)),
                _ if comment => return Some(Event::Comment),
                // `retry:` alone, or an event kind this client does not
                // know: nothing to hand on.
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_across_chunk_boundaries() {
        let stream = b"retry: 2000\n\nid: s.1\ndata: {\"a\":1}\n\n: ping\n\nid: s.2\ndata: one\ndata: two\n\nevent: close\ndata: {\"reason\":\"logged out\"}\n\n";
        for cut in 1..stream.len() {
            let mut p = Parser::default();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                p.push(&Bytes::copy_from_slice(part)).unwrap();
                while let Some(e) = p.next_event() {
                    got.push(e);
                }
            }
            assert_eq!(
                got,
                vec![
                    Event::Data("{\"a\":1}".into()),
                    Event::Comment,
                    Event::Data("one\ntwo".into()),
                    Event::Close(Some("logged out".into())),
                ],
                "cut at {cut}"
            );
            assert_eq!(p.last_id.as_deref(), Some("s.2"));
        }
    }

    #[test]
    fn crlf_line_ends_are_read_too() {
        let mut p = Parser::default();
        p.push(&Bytes::from_static(b"id: s.9\r\ndata: x\r\n\r\n"))
            .unwrap();
        assert_eq!(p.next_event(), Some(Event::Data("x".into())));
        assert_eq!(p.last_id.as_deref(), Some("s.9"));
    }

    #[test]
    fn a_refused_batch_answers_each_request_that_wanted_an_answer() {
        let sent = vec![
            r#"{"type":"send","id":4,"conversation_id":"c","body":"x"}"#.to_string(),
            r#"{"type":"typing","conversation_id":"c"}"#.to_string(),
            r#"{"type":"history","id":5,"conversation_id":"c"}"#.to_string(),
        ];
        let body = br#"{"type":"error","id":null,"code":"too_large","message":"frame is over 65536 bytes"}"#;
        let r = replies_of(StatusCode::PAYLOAD_TOO_LARGE, body, &sent).unwrap();
        assert_eq!(r.len(), 2);
        let first: serde_json::Value = serde_json::from_str(&r[0]).unwrap();
        assert_eq!(first["id"], 4);
        assert_eq!(first["code"], "too_large");
        let second: serde_json::Value = serde_json::from_str(&r[1]).unwrap();
        assert_eq!(second["id"], 5);
        assert!(replies_of(StatusCode::GONE, b"{}", &sent).is_err());
        assert_eq!(
            replies_of(StatusCode::OK, br#"[{"a":1},{"b":2}]"#, &sent).unwrap(),
            vec![r#"{"a":1}"#.to_string(), r#"{"b":2}"#.to_string()]
        );
        assert!(
            replies_of(StatusCode::NO_CONTENT, b"", &sent)
                .unwrap()
                .is_empty()
        );
    }
}
