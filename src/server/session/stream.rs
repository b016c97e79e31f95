//! The HTTP fallback transport: the same session as a WebSocket's, carried
//! by plain HTTP for networks whose proxies strip the upgrade.
//!
//! - `POST /stream` with the first frame (`auth`, `login` or `register`) as
//!   its body answers `text/event-stream`: the handshake's reply, then every
//!   push, each as one server-sent event with an id (`STREAM.N`). Comments
//!   (`: ping`) keep idle proxies from cutting it.
//! - `POST /rpc` with `X-Chat-Stream: STREAM`, the session's token as
//!   `Authorization: Bearer`, and one frame (or a JSON array of up to
//!   `max_inflight` frames) as its body answers with the reply (or an array
//!   of replies) in its response; a frame that gets no reply (`typing`)
//!   gets none, and an empty array is the client's heartbeat.
//! - `DELETE /stream` with `X-Chat-Stream` (and the token) ends the session
//!   at once, for a client that is leaving.
//! - `GET /stream` with `Last-Event-ID: STREAM.N` (and the token) resumes a
//!   stream whose connection was lost: the events after N that were sent are
//!   sent again from a short replay buffer, then what waited in the queue.
//!   A stream that cannot be resumed (ended, expired, or too far behind)
//!   answers 410 and the client opens a new one and syncs by seq.
//!
//! The session behind a stream is the WebSocket's [`Session`], unchanged:
//! the same handshake, request budget, authorization, hub registration and
//! bounded push queue. It outlives its connection by `stream_linger_secs`,
//! so that a proxy cutting a long response costs no presence flap and no
//! lost push.

use super::{Outcome, Session};
use crate::proto::{ErrorCode, ProtoError, encode_error};
use crate::server::Shared;
use crate::server::auth::token_digest;
use crate::server::http::{Body, bearer, full, json, retry_after};
use crate::server::hub::Frame;
use crate::server::limiter::TypingThrottle;
use crate::server::metrics::{ConnectionGuard, Transport};
use crate::server::queue::PushQueue;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{StreamBody, combinators::BoxBody};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The header naming the stream a `POST /rpc` belongs to.
pub const STREAM_HEADER: &str = "x-chat-stream";

/// Pushes written into one chunk of the event stream at most.
const PUSH_BATCH: usize = 64;

/// Milliseconds an `EventSource` waits before reconnecting.
const RETRY_MS: u64 = 2000;

/// The live HTTP streams of a server, by id.
#[derive(Default)]
pub struct Streams {
    map: Mutex<HashMap<String, Arc<Stream>>>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<Stream>> {
        self.lock().get(id).cloned()
    }

    fn remove(&self, stream: &Stream) {
        let mut map = self.lock();
        if map
            .get(&stream.id)
            .is_some_and(|s| std::ptr::eq(&**s, stream))
        {
            map.remove(&stream.id);
        }
    }

    /// Streams open, attached or waiting to be resumed.
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Forget every stream (at shutdown: their sessions hold the server's
    /// shared state).
    pub fn clear(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, s)| s).collect();
        for s in &all {
            s.end("server shutting down");
        }
    }
}

/// One session carried over HTTP.
struct Stream {
    id: String,
    /// SHA-256 of the token the session authenticated with: every later
    /// request on the stream must carry the same token.
    token: [u8; 32],
    session: tokio::sync::Mutex<Session>,
    queue: Arc<PushQueue>,
    /// Frames of this stream being answered at once (`max_inflight`).
    inflight: Semaphore,
    /// Counts the stream among open connections while it lives.
    _open: ConnectionGuard,
    state: Mutex<State>,
}

struct State {
    /// The number the next event gets.
    next: u64,
    /// The last events sent, for a resume.
    sent: VecDeque<(u64, Frame)>,
    /// The connection currently carrying the stream: a newer one (a
    /// resume) cancels it.
    attached: Option<(u64, CancellationToken)>,
    generation: u64,
    last_heard: Instant,
    /// The session is over (this is why): the stream ends and cannot be
    /// resumed.
    ended: Option<String>,
}

impl Stream {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number a frame, keep it for a resume, and write it as an event.
    fn record(&self, st: &mut State, frame: &Frame, max: usize, out: &mut BytesMut) {
        let n = st.next;
        st.next += 1;
        write_event(out, &self.id, n, frame.as_str());
        st.sent.push_back((n, frame.clone()));
        while st.sent.len() > max {
            st.sent.pop_front();
        }
    }

    /// End the session: the attached connection (if any) closes with
    /// `why`, and the stream cannot be resumed.
    fn end(&self, why: &str) {
        let mut st = self.state();
        if st.ended.is_none() {
            st.ended = Some(why.to_string());
        }
        drop(st);
        // Leave the hub now (offline for contacts, no more pushes), unless
        // a request holds the session: then as it lets go.
        if let Ok(mut session) = self.session.try_lock() {
            session.registration.take();
        }
        self.queue.rearm();
    }

    fn heard(&self) {
        self.state().last_heard = Instant::now();
    }
}

/// Write one server-sent event: `id`, then the frame as `data` lines.
fn write_event(out: &mut BytesMut, stream: &str, n: u64, data: &str) {
    out.put_slice(b"id: ");
    out.put_slice(stream.as_bytes());
    out.put_u8(b'.');
    out.put_slice(n.to_string().as_bytes());
    out.put_u8(b'\n');
    // Frames are compact JSON, one line; a line break would still be
    // carried faithfully as several data lines.
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.trim_end_matches('\r').as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// The event that ends a stream, with why.
fn write_close(out: &mut BytesMut, why: &str) {
    let data = serde_json::json!({ "reason": why }).to_string();
    out.put_slice(b"event: close\ndata: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}

/// `POST /stream`: authenticate with the body's frame, then stream.
pub async fn open(body: Bytes, addr: IpAddr, shared: Arc<Shared>) -> Response<Body> {
    let Some(unauthenticated) = shared.throttle.unauthenticated(addr) else {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            &ProtoError::new(
                ErrorCode::RateLimited,
                "too many unauthenticated connections from your address",
            ),
        );
    };
    if shared.streams.len() >= shared.limits.max_connections {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &ProtoError::new(ErrorCode::RateLimited, "the server is full; try again"),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            &ProtoError::new(ErrorCode::BadFrame, "the frame is not valid UTF-8"),
        );
    };
    let limits = &shared.limits;
    let queue = Arc::new(PushQueue::new(limits.outbound_queue));
    let mut session = Session {
        shared: shared.clone(),
        user: None,
        token_digest: None,
        registration: None,
        queue: queue.clone(),
        budget: None,
        typing: TypingThrottle::default(),
        auth_failures: 0,
        addr,
    };
    let reply = match Box::pin(session.handle_text(text)).await {
        Outcome::Reply(r) | Outcome::Close(r, _) => r,
        Outcome::None | Outcome::Later(_) => encode_error(None, &ProtoError::internal()),
    };
    drop(unauthenticated);
    shared.metrics.reply(&reply);
    let Some(token) = session.token_digest.filter(|_| session.user.is_some()) else {
        return refused_handshake(reply);
    };
    let id = new_stream_id();
    let stream = Arc::new(Stream {
        id: id.clone(),
        token,
        session: tokio::sync::Mutex::new(session),
        queue,
        inflight: Semaphore::new(limits.max_inflight.max(1)),
        _open: shared.metrics.connection_opened(Transport::Http),
        state: Mutex::new(State {
            next: 1,
            sent: VecDeque::new(),
            attached: None,
            generation: 0,
            last_heard: Instant::now(),
            ended: None,
        }),
    });
    shared.streams.lock().insert(id.clone(), stream.clone());
    let mut first = BytesMut::new();
    first.put_slice(format!("retry: {RETRY_MS}\n\n").as_bytes());
    {
        let mut st = stream.state();
        let frame = Frame::from(reply);
        stream.record(&mut st, &frame, limits.stream_replay_frames, &mut first);
    }
    event_stream(stream, shared, first.freeze())
}

/// `GET /stream` with `Last-Event-ID`: resume a stream.
pub fn resume(headers: &HeaderMap, addr: IpAddr, shared: Arc<Shared>) -> Response<Body> {
    let gone = |why: &str| {
        refusal(
            StatusCode::GONE,
            &ProtoError::new(ErrorCode::Unauthenticated, why.to_string()),
        )
    };
    let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().rsplit_once('.'))
        .and_then(|(id, n)| Some((id.to_string(), n.parse::<u64>().ok()?)))
    else {
        return refusal(
            StatusCode::BAD_REQUEST,
            &ProtoError::invalid(
                "resume with Last-Event-ID: STREAM.N, or open a stream with POST /stream",
            ),
        );
    };
    let (id, n) = last;
    let Some(stream) = shared.streams.get(&id) else {
        return gone("the stream has ended; open a new one");
    };
    if let Err(r) = check_token(headers, &stream) {
        shared.throttle.fail(addr, None);
        return r;
    }
    let mut replay = BytesMut::new();
    {
        let mut st = stream.state();
        if st.ended.is_some() {
            return gone("the stream has ended; open a new one");
        }
        let oldest = st.sent.front().map_or(st.next, |(k, _)| *k);
        if n >= st.next || n + 1 < oldest {
            return gone("the stream cannot resume from there; open a new one");
        }
        for (k, frame) in st.sent.iter().filter(|(k, _)| *k > n) {
            write_event(&mut replay, &stream.id, *k, frame.as_str());
        }
        st.last_heard = Instant::now();
    }
    stream.queue.rearm();
    event_stream(stream, shared, replay.freeze())
}

/// `POST /rpc`: answer a frame (or a batch) of a stream's session.
pub async fn rpc(
    headers: &HeaderMap,
    body: Bytes,
    addr: IpAddr,
    shared: Arc<Shared>,
) -> Response<Body> {
    let Some(id) = headers.get(STREAM_HEADER).and_then(|v| v.to_str().ok()) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            &ProtoError::invalid("X-Chat-Stream is needed: open a stream with POST /stream"),
        );
    };
    let Some(stream) = shared.streams.get(id.trim()) else {
        return refusal(
            StatusCode::GONE,
            &ProtoError::new(
                ErrorCode::Unauthenticated,
                "the stream has ended; open a new one",
            ),
        );
    };
    if let Err(r) = check_token(headers, &stream) {
        shared.throttle.fail(addr, None);
        return r;
    }
    // Ended, or its session ended while no connection carried it (revoked,
    // logged out elsewhere): nothing more is answered on it.
    if stream.state().ended.is_some() || stream.queue.ended().is_some() {
        return refusal(
            StatusCode::GONE,
            &ProtoError::new(
                ErrorCode::Unauthenticated,
                "the stream has ended; open a new one",
            ),
        );
    }
    stream.heard();
    let Ok(text) = std::str::from_utf8(&body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            &ProtoError::new(ErrorCode::BadFrame, "the body is not valid UTF-8"),
        );
    };
    let max = shared.limits.max_inflight.max(1);
    let (frames, batch): (Vec<&str>, bool) = if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) {
            Ok(v) if v.len() <= max => (v.into_iter().map(|r| r.get()).collect(), true),
            Ok(_) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &ProtoError::invalid(format!("a batch holds at most {max} frames")),
                );
            }
            Err(e) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    &ProtoError::new(ErrorCode::BadFrame, format!("not a JSON array: {e}")),
                );
            }
        }
    } else {
        (vec![text], false)
    };
    if frames.is_empty() {
        return json(StatusCode::OK, "[]".to_string());
    }
    let Ok(_permits) = stream.inflight.acquire_many(frames.len() as u32).await else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, &ProtoError::internal());
    };
    // The session answers each frame in order, as a connection's task
    // would; what it answers later runs concurrently after.
    let mut answers: Vec<BoxFuture<'static, String>> = Vec::with_capacity(frames.len());
    let mut close = None;
    {
        let mut session = stream.session.lock().await;
        for frame in frames {
            match Box::pin(session.handle_text(frame)).await {
                Outcome::Reply(r) => answers.push(Box::pin(std::future::ready(r))),
                Outcome::Later(f) => answers.push(f),
                Outcome::None => {}
                Outcome::Close(r, frame) => {
                    answers.push(Box::pin(std::future::ready(r)));
                    close = Some(frame.reason.to_string());
                    break;
                }
            }
        }
    }
    let replies = futures_util::future::join_all(answers).await;
    for r in &replies {
        shared.metrics.reply(r);
    }
    if let Some(why) = close {
        stream.end(&why);
        shared.streams.remove(&stream);
    }
    if !batch {
        return match replies.into_iter().next() {
            Some(r) => json(StatusCode::OK, r),
            None => {
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
        };
    }
    json(StatusCode::OK, format!("[{}]", replies.join(",")))
}

/// `DELETE /stream` with `X-Chat-Stream`: the client is leaving; end the
/// session now rather than wait for a resume.
pub async fn close(headers: &HeaderMap, addr: IpAddr, shared: Arc<Shared>) -> Response<Body> {
    let Some(stream) = headers
        .get(STREAM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|id| shared.streams.get(id.trim()))
    else {
        return refusal(
            StatusCode::GONE,
            &ProtoError::new(ErrorCode::Unauthenticated, "no such stream"),
        );
    };
    if let Err(r) = check_token(headers, &stream) {
        shared.throttle.fail(addr, None);
        return r;
    }
    stream.end("closed by the client");
    shared.streams.remove(&stream);
    let session = stream.session.lock().await;
    Box::pin(session.touch_on_leave()).await;
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// The request's bearer token must be the one the stream's session
/// authenticated with.
#[allow(clippy::result_large_err)]
fn check_token(headers: &HeaderMap, stream: &Stream) -> Result<(), Response<Body>> {
    let matches = bearer(headers).is_some_and(|t| {
        let d = token_digest(t);
        // Constant time: no early exit on the first differing byte.
        d.iter()
            .zip(stream.token.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if matches {
        Ok(())
    } else {
        Err(refusal(
            StatusCode::UNAUTHORIZED,
            &ProtoError::new(
                ErrorCode::AuthFailed,
                "the stream's token is needed as Authorization: Bearer",
            ),
        ))
    }
}

/// A stream's response: `first`, then pushes until the session ends, the
/// connection is lost or a resume takes over.
fn event_stream(stream: Arc<Stream>, shared: Arc<Shared>, first: Bytes) -> Response<Body> {
    let id = stream.id.clone();
    let cancel = CancellationToken::new();
    let generation = {
        let mut st = stream.state();
        st.generation += 1;
        let generation = st.generation;
        if let Some((_, old)) = st.attached.replace((generation, cancel.clone())) {
            old.cancel();
        }
        st.generation
    };
    let attachment = Attachment {
        stream,
        shared,
        generation,
        cancel,
        first: Some(first),
        done: false,
    };
    let body = futures_util::stream::unfold(attachment, |mut a| async move {
        let chunk = a.next_chunk().await?;
        Some((Ok(hyper::body::Frame::data(chunk)), a))
    });
    let mut r = Response::new(BoxBody::new(StreamBody::new(body)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer responses (nginx) pass this one through as it
    // comes.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(STREAM_HEADER, v);
    }
    r
}

/// One connection carrying a stream.
struct Attachment {
    stream: Arc<Stream>,
    shared: Arc<Shared>,
    generation: u64,
    cancel: CancellationToken,
    first: Option<Bytes>,
    done: bool,
}

impl Attachment {
    /// The next chunk of events, or `None` when this connection's part of
    /// the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take()
            && !first.is_empty()
        {
            return Some(first);
        }
        if self.done {
            return None;
        }
        let stream = self.stream.clone();
        let queue = &stream.queue;
        let max = self.shared.limits.stream_replay_frames;
        let idle = Duration::from_secs(self.shared.limits.idle_timeout_secs.max(1));
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                _ = queue.ready() => {}
            }
            let mut out = BytesMut::new();
            let ended = stream.state().ended.clone();
            let why: Option<String> = if let Some(why) = ended {
                Some(why)
            } else if let Some(e) = queue.ended() {
                Some(e.reason().to_string())
            } else if queue.take_shutdown() {
                Some("server shutting down".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                // Whatever was queued goes first.
                let mut st = stream.state();
                queue.drain(usize::MAX, |f| stream.record(&mut st, f, max, &mut out));
                drop(st);
                return Some(self.finish(out, &why));
            }
            let drained = {
                let mut st = stream.state();
                queue.drain(PUSH_BATCH, |f| stream.record(&mut st, f, max, &mut out))
            };
            if drained.kicked {
                self.shared.metrics.kicked();
                return Some(
                    self.finish(out, "too slow: outbound queue full; reconnect and resync"),
                );
            }
            if drained.more {
                queue.rearm();
            }
            if drained.ping {
                if stream.state().last_heard.elapsed() > idle {
                    return Some(self.finish(out, "idle timeout"));
                }
                out.put_slice(b": ping\n\n");
            }
            if !out.is_empty() {
                return Some(out.freeze());
            }
        }
    }

    /// The last chunk: what remains, then the close event. The session is
    /// over.
    fn finish(&mut self, mut out: BytesMut, why: &str) -> Bytes {
        write_close(&mut out, why);
        self.done = true;
        self.stream.end(why);
        self.shared.streams.remove(&self.stream);
        out.freeze()
    }
}

impl Drop for Attachment {
    /// The connection is gone: unless a resume took over or the session
    /// ended, the stream waits `stream_linger_secs` to be resumed, then
    /// ends.
    fn drop(&mut self) {
        let still_current = {
            let mut st = self.stream.state();
            let current = st
                .attached
                .as_ref()
                .is_some_and(|(g, _)| *g == self.generation);
            if current {
                st.attached = None;
            }
            current && st.ended.is_none()
        };
        if !still_current {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let stream = self.stream.clone();
        let shared = self.shared.clone();
        let generation = self.generation;
        let linger = Duration::from_secs(shared.limits.stream_linger_secs);
        rt.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = shared.shutdown.cancelled() => {}
            }
            let expired = {
                let st = stream.state();
                st.attached.is_none() && st.generation == generation
            };
            if expired {
                tracing::debug!(stream = %stream.id, "event stream not resumed; ending its session");
                stream.end("not resumed in time");
                shared.streams.remove(&stream);
                let session = stream.session.lock().await;
                Box::pin(session.touch_on_leave()).await;
            }
        });
    }
}

/// A new stream id: 128 random bits, in hex.
fn new_stream_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A refused request: its status and the error frame a WebSocket would
/// have carried.
fn refusal(status: StatusCode, e: &ProtoError) -> Response<Body> {
    let mut r = json(status, encode_error(None, e));
    if let Some(ms) = e.retry_after_ms {
        retry_after(&mut r, Duration::from_millis(ms));
    }
    r
}

/// A handshake the session refused: the status says how, the body is the
/// error frame.
fn refused_handshake(reply: String) -> Response<Body> {
    let code = serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .and_then(|v| v.get("code")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let status = match code.as_str() {
        "auth_failed" | "unauthenticated" => StatusCode::UNAUTHORIZED,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "account_disabled" | "registration_closed" | "invite_required" | "invite_invalid" => {
            StatusCode::FORBIDDEN
        }
        "username_taken" => StatusCode::CONFLICT,
        "internal" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    json(status, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_split_into_data_lines() {
        let mut out = BytesMut::new();
        write_event(&mut out, "ab", 7, r#"{"type":"x"}"#);
        assert_eq!(&out[..], b"id: ab.7\ndata: {\"type\":\"x\"}\n\n");
        let mut out = BytesMut::new();
        write_event(&mut out, "ab", 8, "one\ntwo");
        assert_eq!(&out[..], b"id: ab.8\ndata: one\ndata: two\n\n");
        let mut out = BytesMut::new();
        write_close(&mut out, "logged out");
        assert_eq!(
            &out[..],
            b"event: close\ndata: {\"reason\":\"logged out\"}\n\n"
        );
    }

    #[test]
    fn stream_ids_are_unguessable_and_distinct() {
        let a = new_stream_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_stream_id());
    }
}
