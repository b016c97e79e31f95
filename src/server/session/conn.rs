//! The connection task: one loop that waits on the socket, the push queue,
//! replies of requests in flight, one deadline and (until it authenticates)
//! the server's shutdown, then acts on whichever woke it.
//!
//! The wait only yields a small "why I woke" value ([`Wake`]); the work it
//! leads to runs in a future boxed while it runs, so an idle connection's
//! task stays small.

use super::{Outcome, Session, close, error};
use crate::net::sockio::SockIo;
use crate::net::tls::ServerStream;
use crate::proto::{ErrorCode, ProtoError};
use crate::server::Shared;
use crate::server::limiter::TypingThrottle;
use crate::server::metrics::Transport;
use crate::server::queue::{Drained, PushQueue};
use crate::server::throttle::Unauthenticated;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::{Duration, Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// The socket state: boxed in [`ServerConn`], so that TLS or plain, it
/// costs the task's future one pointer.
pub(super) type Ws = WebSocketStream<SockIo<ServerStream>>;

/// A connection's state between wake-ups.
pub(super) struct ServerConn {
    pub(super) ws: Box<Ws>,
    pub(super) s: Session,
    /// Requests in flight; created on the first one and dropped when all
    /// are answered, so an idle connection holds none of its allocations.
    pub(super) inflight: Option<FuturesUnordered<BoxFuture<'static, String>>>,
    /// The authentication deadline, then the shutdown drain: a timer that
    /// lives on the heap only while it matters.
    deadline: Option<(Pin<Box<Sleep>>, Deadline)>,
    draining: bool,
    pub(super) last_heard: Instant,
    /// Until the connection authenticates, it watches the server's
    /// shutdown itself; after, the hub tells it through its queue.
    shutdown_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Counts this connection against its address's share of
    /// unauthenticated connections, until it authenticates.
    unauthenticated: Option<Unauthenticated>,
}

/// After handling a wake-up: go on, or close (with this close frame).
pub(super) enum Flow {
    Continue,
    Close(Option<CloseFrame>),
}

/// Serve one upgraded connection from `addr` until it closes.
pub async fn run(mut ws: Box<Ws>, shared: Arc<Shared>, addr: IpAddr) {
    let _open = shared.metrics.connection_opened(Transport::Ws);
    let Some(unauthenticated) = shared.throttle.unauthenticated(addr) else {
        tracing::debug!(%addr, "refused: too many unauthenticated connections from this address");
        let frame = close(
            CloseCode::Again,
            "too many unauthenticated connections from your address",
        );
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            ws.close(Some(frame)),
        ))
        .await;
        return;
    };
    let limits = &shared.limits;
    let mut c = ServerConn {
        ws,
        s: Session {
            shared: shared.clone(),
            user: None,
            token_digest: None,
            registration: None,
            queue: Arc::new(PushQueue::new(limits.outbound_queue)),
            budget: None,
            typing: TypingThrottle::default(),
            auth_failures: 0,
            addr,
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
        unauthenticated: Some(unauthenticated),
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
            // Pushes before answers: draining them takes the answers that
            // are ready too (a commit's push and its sender's `ok` arrive
            // together), so that both go out in one send.
            _ = &mut ready => Wake::Signal,
            Some(reply) = async { match c.inflight.as_mut() { Some(f) => f.next().await, None => None } }, if c.inflight.is_some() => Wake::Reply(reply),
            msg = c.ws.next(), if !c.draining && c.inflight.as_ref().map_or(0, |f| f.len()) < max_inflight => Wake::PeerFrame(PeerFrame::from(msg)),
        };
        let wake = match wake {
            // The common case, pushes that the socket takes at once, is
            // done here without boxing a step.
            Wake::Signal => match c.signalled() {
                // The pushes may have taken the last answer of a draining
                // connection with them.
                Ok(Flow::Continue) if c.drained_out() => {
                    break Some(shutting_down());
                }
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
    Box::pin(c.s.touch_on_leave()).await;
    if let Some(frame) = closing {
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            (*c.ws).close(Some(frame)),
        ))
        .await;
    }
}

/// The close frame of a connection the server ends because it is stopping.
fn shutting_down() -> CloseFrame {
    close(CloseCode::Away, "server shutting down")
}

impl ServerConn {
    /// Shutting down with nothing left to answer: time to close.
    fn drained_out(&self) -> bool {
        self.draining && self.inflight.is_none()
    }

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
                Some(Deadline::Drain) => shutting_down(),
                _ => {
                    tracing::debug!(addr = %self.s.addr, "closed: not authenticated in time");
                    close(CloseCode::Policy, "authenticate first")
                }
            })),
            Wake::Reply(reply) => self.send_replies(reply).await,
            Wake::Signal => match self.signalled() {
                Ok(flow) => flow,
                // Never `Signal` again: one level deep.
                Err(next) => Box::pin(self.step(next)).await,
            },
            Wake::Drained(drained) => self.finish_pushes(drained).await,
            Wake::PeerFrame(incoming) => self.incoming(incoming).await,
        };
        if let Flow::Close(_) = flow {
            return flow;
        }
        if self.drained_out() {
            return Flow::Close(Some(shutting_down()));
        }
        if self.s.user.is_some() && matches!(self.deadline, Some((_, Deadline::Auth))) {
            self.deadline = None;
            // Registered with the hub now, which relays a shutdown.
            self.shutdown_wait = None;
        }
        Flow::Continue
    }

    /// A frame from the peer.
    async fn incoming(&mut self, incoming: PeerFrame) -> Flow {
        self.last_heard = Instant::now();
        let outcome = match incoming {
            PeerFrame::Text(text) => {
                let outcome = Box::pin(self.s.handle_text(text.as_str())).await;
                if self.s.user.is_some() {
                    // Counted as waiting to authenticate no longer, before
                    // the peer hears that it has.
                    self.unauthenticated = None;
                }
                outcome
            }
            PeerFrame::Binary => Outcome::Reply(error(
                None,
                &ProtoError::new(
                    ErrorCode::BadFrame,
                    "binary frames are not supported; send JSON in text frames",
                ),
            )),
            PeerFrame::Other => Outcome::None,
            PeerFrame::Closed => return Flow::Close(None),
            // The socket reader is fused after this error (and RFC 6455
            // requires failing the connection): answer, then close 1007.
            PeerFrame::BadUtf8 => Outcome::Close(
                error(
                    None,
                    &ProtoError::new(ErrorCode::BadFrame, "text frame is not valid UTF-8"),
                ),
                close(CloseCode::Invalid, "text frame is not valid UTF-8"),
            ),
            PeerFrame::TooLarge => {
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
pub(super) enum Wake {
    Shutdown,
    Deadline,
    Reply(String),
    /// Pushes, a ping due or a kick.
    Signal,
    /// Pushes drained into the socket buffer; a ping or a flush remains.
    Drained(Drained),
    PeerFrame(PeerFrame),
}

/// What the connection's one deadline is for.
#[derive(Clone, Copy)]
enum Deadline {
    Auth,
    Drain,
}

/// A frame from the peer, reduced to what the session acts on.
pub(super) enum PeerFrame {
    Text(Utf8Bytes),
    Binary,
    /// Ping, pong: tungstenite answers pings itself.
    Other,
    /// The peer closed, or the connection failed.
    Closed,
    BadUtf8,
    TooLarge,
}

impl From<Option<Result<Message, WsError>>> for PeerFrame {
    fn from(msg: Option<Result<Message, WsError>>) -> PeerFrame {
        match msg {
            None | Some(Ok(Message::Close(_))) => PeerFrame::Closed,
            Some(Ok(Message::Text(text))) => PeerFrame::Text(text),
            Some(Ok(Message::Binary(_))) => PeerFrame::Binary,
            Some(Ok(_)) => PeerFrame::Other,
            Some(Err(WsError::Utf8(_))) => PeerFrame::BadUtf8,
            Some(Err(WsError::Capacity(_))) => PeerFrame::TooLarge,
            Some(Err(e)) => {
                tracing::debug!("connection error: {e}");
                PeerFrame::Closed
            }
        }
    }
}
