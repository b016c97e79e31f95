//! One connection: the handshake, then requests in, replies and pushes out.
//!
//! A single task per connection selects over the socket, its bounded push
//! queue, replies of requests in flight (durable writes and reads run
//! concurrently, but appends are queued to the writer in arrival order) and
//! one deadline; pings and (once authenticated) shutdown arrive through the
//! push queue. Reading pauses while too many requests are in flight; a
//! connection that cannot keep up with its pushes is kicked.

mod cmd;

use crate::net::sockio::SockIo;
use crate::proto::{
    AuthOk, ErrorCode, PROTOCOL_VERSION, ProtoError, Request, decode_request, encode_error,
    encode_ok,
};
use crate::server::Shared;
use crate::server::auth::{new_token, token_digest};
use crate::server::hub::Registration;
use crate::server::limiter::{TokenBucket, TypingThrottle};
use crate::server::queue::{Drained, PushQueue};
use crate::server::validate;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::{Duration, Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::WaitForCancellationFutureOwned;

type Ws = WebSocketStream<SockIo>;

/// What handling one frame produced.
pub(super) enum Outcome {
    Reply(String),
    None,
    Later(BoxFuture<'static, String>),
    /// Reply, then close the connection.
    Close(String, CloseFrame),
}

pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) user: Option<String>,
    /// SHA-256 of this connection's token (kept raw: 32 bytes, no heap).
    pub(super) token_digest: Option<[u8; 32]>,
    pub(super) registration: Option<Registration>,
    pub(super) queue: Arc<PushQueue>,
    pub(super) bucket: TokenBucket,
    pub(super) typing: TypingThrottle,
    pub(super) auth_failures: u32,
}

pub(super) fn close(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

pub(super) fn error(id: Option<u64>, e: &ProtoError) -> String {
    encode_error(id, e)
}

/// A connection's state between wake-ups.
struct Conn {
    ws: Box<Ws>,
    s: Session,
    /// Requests in flight; created on the first one and dropped when all
    /// are answered, so an idle connection holds none of its allocations.
    inflight: Option<FuturesUnordered<BoxFuture<'static, String>>>,
    /// The authentication deadline, then the shutdown drain: a timer that
    /// lives on the heap only while it matters.
    deadline: Option<(Pin<Box<Sleep>>, Deadline)>,
    draining: bool,
    last_heard: Instant,
    /// Until the connection authenticates, it watches the server's
    /// shutdown itself; after, the hub tells it through its queue.
    shutdown_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

/// After handling a wake-up: go on, or close (with this close frame).
enum Flow {
    Continue,
    Close(Option<CloseFrame>),
}

/// Serve one upgraded connection until it closes.
pub async fn run(ws: Box<Ws>, shared: Arc<Shared>) {
    let limits = &shared.limits;
    let mut c = Conn {
        ws,
        s: Session {
            shared: shared.clone(),
            user: None,
            token_digest: None,
            registration: None,
            queue: Arc::new(PushQueue::new(limits.outbound_queue)),
            bucket: TokenBucket::new(limits.requests_per_sec, limits.request_burst),
            typing: TypingThrottle::default(),
            auth_failures: 0,
        },
        inflight: None,
        deadline: Some((
            Box::pin(tokio::time::sleep(Duration::from_secs(
                limits.auth_timeout_secs.max(1),
            ))),
            Deadline::Auth,
        )),
        draining: false,
        last_heard: Instant::now(),
        shutdown_wait: Some(Box::pin(shared.shutdown.clone().cancelled_owned())),
    };
    let max_inflight = limits.max_inflight.max(1);
    let queue = c.s.queue.clone();
    let mut ready = queue.ready();
    let closing: Option<CloseFrame> = loop {
        // Waiting here is the state an idle connection sits in: the select
        // only produces a small value, and the work it leads to runs in a
        // future that is boxed while it runs, so the task stays small.
        let wake = tokio::select! {
            biased;
            _ = async { if let Some(s) = c.shutdown_wait.as_mut() { s.await } }, if !c.draining && c.shutdown_wait.is_some() => Wake::Shutdown,
            _ = async { if let Some((d, _)) = c.deadline.as_mut() { d.await } }, if c.deadline.is_some() => Wake::Deadline,
            Some(reply) = async { match c.inflight.as_mut() { Some(f) => f.next().await, None => None } }, if c.inflight.is_some() => Wake::Reply(reply),
            _ = &mut ready => Wake::Signal,
            msg = c.ws.next(), if !c.draining && c.inflight.as_ref().map_or(0, |f| f.len()) < max_inflight => Wake::Incoming(Incoming::from(msg)),
        };
        let wake = match wake {
            // The common case, pushes that the socket takes at once, is
            // done here without boxing a step.
            Wake::Signal => match c.signalled() {
                Ok(Flow::Continue) => continue,
                Ok(Flow::Close(frame)) => break frame,
                Err(next) => next,
            },
            other => other,
        };
        if let Flow::Close(frame) = Box::pin(c.step(wake)).await {
            break frame;
        }
    };
    drop(c.s.registration.take());
    if let Some(frame) = closing {
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            (*c.ws).close(Some(frame)),
        ))
        .await;
    }
}

impl Conn {
    /// Act on one wake-up.
    async fn step(&mut self, wake: Wake) -> Flow {
        let flow = match wake {
            Wake::Shutdown if self.draining => Flow::Continue,
            Wake::Shutdown => {
                self.draining = true;
                self.shutdown_wait = None;
                let grace = self.s.shared.grace;
                self.deadline = Some((Box::pin(tokio::time::sleep(grace)), Deadline::Drain));
                Flow::Continue
            }
            Wake::Deadline => Flow::Close(Some(match self.deadline.as_ref().map(|(_, d)| *d) {
                Some(Deadline::Drain) => close(CloseCode::Away, "server shutting down"),
                _ => close(CloseCode::Policy, "authenticate first"),
            })),
            Wake::Reply(reply) => {
                if self.inflight.as_ref().is_some_and(|f| f.is_empty()) {
                    self.inflight = None;
                }
                self.send_text(&reply).await
            }
            Wake::Signal => match self.signalled() {
                Ok(flow) => flow,
                // Never `Signal` again: one level deep.
                Err(next) => Box::pin(self.step(next)).await,
            },
            Wake::Drained(drained) => self.finish_pushes(drained).await,
            Wake::Incoming(incoming) => self.incoming(incoming).await,
        };
        if let Flow::Close(_) = flow {
            return flow;
        }
        if self.draining && self.inflight.is_none() {
            return Flow::Close(Some(close(CloseCode::Away, "server shutting down")));
        }
        if self.s.user.is_some() && matches!(self.deadline, Some((_, Deadline::Auth))) {
            self.deadline = None;
            // Registered with the hub now, which relays a shutdown.
            self.shutdown_wait = None;
        }
        Flow::Continue
    }

    /// Write a reply; close quietly if the peer is gone.
    async fn send_text(&mut self, text: &str) -> Flow {
        match write_text(&mut self.ws, &self.s.queue, text).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close(None),
        }
    }

    /// The queue signalled: pushes are waiting, the pinger asked for a
    /// ping, the queue overflowed, or the server is shutting down. Drains
    /// the queue into the socket buffer and sends it if the socket takes it
    /// at once. `Err` is what remains to be done in a step: the shutdown,
    /// or a ping or a flush that has to wait ([`Conn::finish_pushes`]).
    fn signalled(&mut self) -> Result<Flow, Wake> {
        let queue = &self.s.queue;
        if queue.take_shutdown() {
            // Pushes may be waiting too: look again after the shutdown.
            queue.rearm();
            return Err(Wake::Shutdown);
        }
        let io = self.ws.get_mut();
        let drained = queue.drain(PUSH_BATCH, |frame| io.queue_text(frame.as_bytes()));
        if drained.kicked {
            return Ok(Flow::Close(Some(close(
                CloseCode::Policy,
                "too slow: outbound queue full; reconnect and resync",
            ))));
        }
        if drained.more {
            queue.rearm();
        }
        if drained.ping {
            return Err(Wake::Drained(drained));
        }
        match io.try_flush() {
            Some(Ok(())) => Ok(Flow::Continue),
            Some(Err(_)) => Ok(Flow::Close(None)),
            None => Err(Wake::Drained(drained)),
        }
    }

    /// The rest of [`Conn::signalled`]: ping if asked, and flush.
    async fn finish_pushes(&mut self, drained: Drained) -> Flow {
        let queue = &self.s.queue;
        if drained.ping {
            let idle = Duration::from_secs(self.s.shared.limits.idle_timeout_secs.max(1));
            if self.last_heard.elapsed() > idle {
                return Flow::Close(Some(close(CloseCode::Away, "idle timeout")));
            }
            // Queued behind the frames already buffered; the flush sends
            // them all.
            if write(&mut self.ws, queue, Message::Ping(Default::default()))
                .await
                .is_err()
            {
                return Flow::Close(None);
            }
        }
        match flush(&mut self.ws, queue).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close(None),
        }
    }

    /// A frame from the peer.
    async fn incoming(&mut self, incoming: Incoming) -> Flow {
        self.last_heard = Instant::now();
        let outcome = match incoming {
            Incoming::Text(text) => Box::pin(self.s.handle_text(text.as_str())).await,
            Incoming::Binary => Outcome::Reply(error(
                None,
                &ProtoError::new(
                    ErrorCode::BadFrame,
                    "binary frames are not supported; send JSON in text frames",
                ),
            )),
            Incoming::Other => Outcome::None,
            Incoming::Closed => return Flow::Close(None),
            // The socket reader is fused after this error (and RFC 6455
            // requires failing the connection): answer, then close 1007.
            Incoming::BadUtf8 => Outcome::Close(
                error(
                    None,
                    &ProtoError::new(ErrorCode::BadFrame, "text frame is not valid UTF-8"),
                ),
                close(CloseCode::Invalid, "text frame is not valid UTF-8"),
            ),
            Incoming::TooLarge => {
                return Flow::Close(Some(close(CloseCode::Size, "frame too large")));
            }
        };
        match outcome {
            Outcome::Reply(text) => self.send_text(&text).await,
            Outcome::None => Flow::Continue,
            Outcome::Later(fut) => {
                self.inflight
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(fut);
                Flow::Continue
            }
            Outcome::Close(text, frame) => {
                let _ = self.send_text(&text).await;
                Flow::Close(Some(frame))
            }
        }
    }
}

/// Why the connection task woke up.
enum Wake {
    Shutdown,
    Deadline,
    Reply(String),
    /// Pushes, a ping due or a kick.
    Signal,
    /// Pushes drained into the socket buffer; a ping or a flush remains.
    Drained(Drained),
    Incoming(Incoming),
}

/// What the connection's one deadline is for.
#[derive(Clone, Copy)]
enum Deadline {
    Auth,
    Drain,
}

/// A frame from the peer, reduced to what the session acts on.
enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// Ping, pong: tungstenite answers pings itself.
    Other,
    /// The peer closed, or the connection failed.
    Closed,
    BadUtf8,
    TooLarge,
}

impl From<Option<Result<Message, WsError>>> for Incoming {
    fn from(msg: Option<Result<Message, WsError>>) -> Incoming {
        match msg {
            None | Some(Ok(Message::Close(_))) => Incoming::Closed,
            Some(Ok(Message::Text(text))) => Incoming::Text(text),
            Some(Ok(Message::Binary(_))) => Incoming::Binary,
            Some(Ok(_)) => Incoming::Other,
            Some(Err(WsError::Utf8(_))) => Incoming::BadUtf8,
            Some(Err(WsError::Capacity(_))) => Incoming::TooLarge,
            Some(Err(e)) => {
                tracing::debug!("connection error: {e}");
                Incoming::Closed
            }
        }
    }
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most queued pushes written with one flush.
const PUSH_BATCH: usize = 64;

/// Write one control message, giving up if the peer stops reading or is
/// kicked.
async fn write(ws: &mut Ws, queue: &PushQueue, msg: Message) -> Result<(), ()> {
    tokio::select! {
        r = ws.send(msg) => r.map_err(|_| ()),
        _ = queue.kicked() => Err(()),
        _ = tokio::time::sleep(WRITE_TIMEOUT) => Err(()),
    }
}

/// Send what has been queued on the socket, with the same bounds.
async fn flush(ws: &mut Ws, queue: &PushQueue) -> Result<(), ()> {
    // Most flushes complete at once (the socket has room): then there is
    // no timer to set and no kick to watch for. Control frames tungstenite
    // may hold go out with its next read or write.
    if let Some(r) = ws.get_mut().try_flush() {
        return r.map_err(|_| ());
    }
    tokio::select! {
        r = ws.flush() => r.map_err(|_| ()),
        _ = queue.kicked() => Err(()),
        _ = tokio::time::sleep(WRITE_TIMEOUT) => Err(()),
    }
}

/// Write one text frame (a reply).
async fn write_text(ws: &mut Ws, queue: &PushQueue, text: &str) -> Result<(), ()> {
    ws.get_mut().queue_text(text.as_bytes());
    flush(ws, queue).await
}

impl Session {
    async fn handle_text(&mut self, text: &str) -> Outcome {
        let limits = &self.shared.limits;
        if text.len() > limits.max_frame_bytes {
            let id = decode_request(text).ok().and_then(|(id, _)| id);
            return Outcome::Reply(error(
                id,
                &ProtoError::new(
                    ErrorCode::TooLarge,
                    format!("frame is over {} bytes", limits.max_frame_bytes),
                ),
            ));
        }
        let (id, req) = match decode_request(text) {
            Ok(v) => v,
            Err(e) => return Outcome::Reply(error(e.id, &e.error)),
        };
        match &self.user {
            None => self.handshake(id, req).await,
            Some(_) if req.is_handshake() => Outcome::Reply(error(
                id,
                &ProtoError::invalid("already authenticated on this connection"),
            )),
            Some(_) => {
                if !self.bucket.take() {
                    return match id {
                        Some(_) => Outcome::Reply(error(
                            id,
                            &ProtoError::new(
                                ErrorCode::RateLimited,
                                "too many requests; slow down",
                            ),
                        )),
                        None => Outcome::None,
                    };
                }
                match self.request(id, req).await {
                    Ok(outcome) => outcome,
                    Err(e) => match id {
                        Some(_) => Outcome::Reply(error(id, &e)),
                        // Typing and presence without an id get no answer.
                        None => Outcome::None,
                    },
                }
            }
        }
    }

    async fn handshake(&mut self, id: Option<u64>, req: Request) -> Outcome {
        let result = match req {
            Request::Register {
                username,
                password,
                device,
            } => self.register(username, password, device).await,
            Request::Login {
                username,
                password,
                device,
            } => self.login(username, password, device).await,
            Request::Auth { token } => self.auth(token).await,
            _ => Err(ProtoError::new(
                ErrorCode::Unauthenticated,
                "authenticate first: register, login or auth",
            )),
        };
        match result {
            Ok(ok) => Outcome::Reply(encode_ok(id.unwrap_or(0), &ok)),
            Err(e) => {
                if e.code == ErrorCode::AuthFailed {
                    self.auth_failures += 1;
                    if self.auth_failures >= self.shared.limits.max_auth_failures {
                        return Outcome::Close(
                            error(id, &e),
                            close(CloseCode::Policy, "too many failed attempts"),
                        );
                    }
                }
                Outcome::Reply(error(id, &e))
            }
        }
    }

    async fn register(
        &mut self,
        username: String,
        password: String,
        device: Option<String>,
    ) -> Result<AuthOk, ProtoError> {
        validate::username(&username)?;
        validate::password(&password, &self.shared.limits)?;
        let device = validate::device(device, &self.shared.limits)?;
        let hash = self
            .shared
            .hasher
            .hash(password)
            .await
            .map_err(|_| ProtoError::internal())?;
        self.shared
            .store
            .register(&username, hash)
            .await
            .map_err(|e| e.to_proto())?;
        tracing::info!(user = %username, "registered");
        self.new_session(username, device).await
    }

    async fn login(
        &mut self,
        username: String,
        password: String,
        device: Option<String>,
    ) -> Result<AuthOk, ProtoError> {
        let device = validate::device(device, &self.shared.limits)?;
        let failed = || ProtoError::new(ErrorCode::AuthFailed, "wrong username or password");
        if password.len() > self.shared.limits.max_password_bytes {
            return Err(failed());
        }
        let stored = self
            .shared
            .store
            .readers()
            .password_hash(&username)
            .await
            .map_err(|e| e.to_proto())?;
        if !self.shared.hasher.verify(password, stored).await {
            tracing::info!(user = %username, "login failed");
            return Err(failed());
        }
        self.new_session(username, device).await
    }

    async fn new_session(&mut self, user: String, device: String) -> Result<AuthOk, ProtoError> {
        let token = new_token();
        let digest = token_digest(&token);
        // Join the hub first: a login refused for too many connections must
        // not leave a session behind.
        let reg = self.shared.hub.register(&user, self.queue.clone())?;
        self.shared
            .store
            .create_session(&user, hex::encode(digest), device)
            .await
            .map_err(|e| e.to_proto())?;
        self.become_user(reg, user.clone(), digest);
        Ok(AuthOk {
            user,
            token: Some(token),
            protocol: PROTOCOL_VERSION,
        })
    }

    async fn auth(&mut self, token: String) -> Result<AuthOk, ProtoError> {
        let digest = token_digest(&token);
        let user = self
            .shared
            .store
            .readers()
            .session_user(&hex::encode(digest))
            .await
            .map_err(|e| e.to_proto())?
            .ok_or_else(|| ProtoError::new(ErrorCode::AuthFailed, "unknown or revoked token"))?;
        self.start(user.clone(), digest)?;
        Ok(AuthOk {
            user,
            token: None,
            protocol: PROTOCOL_VERSION,
        })
    }

    /// Become `user`: join the hub so pushes start flowing.
    fn start(&mut self, user: String, digest: [u8; 32]) -> Result<(), ProtoError> {
        let reg = self.shared.hub.register(&user, self.queue.clone())?;
        self.become_user(reg, user, digest);
        Ok(())
    }

    fn become_user(&mut self, reg: Registration, user: String, digest: [u8; 32]) {
        tracing::debug!(user = %user, "connection authenticated");
        self.registration = Some(reg);
        self.user = Some(user);
        self.token_digest = Some(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, F: std::future::Future>(_f: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle connection carries its task's future: keep it small (the
    /// socket state is boxed, the accept phase and each piece of work are
    /// boxed only while they run). It was 1.6 KiB before that.
    #[test]
    fn the_connection_future_stays_small() {
        let size = future_size(run);
        eprintln!(
            "session future: {size} bytes; Ws {}",
            std::mem::size_of::<Ws>()
        );
        assert!(size <= 1024, "the session future grew to {size} bytes");
    }
}
