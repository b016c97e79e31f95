//! One connection: the handshake, then requests in, replies and pushes out.
//!
//! A single task per connection selects over the socket, its bounded push
//! queue, replies of requests in flight (durable writes and reads run
//! concurrently, but appends are queued to the writer in arrival order) and
//! one deadline; pings and (once authenticated) shutdown arrive through the
//! push queue. Reading pauses while too many requests are in flight; a
//! connection that cannot keep up with its pushes is kicked.
//!
//! - `conn`: the connection task and its wait ([`run`]).
//! - `push`: the write side: replies, queued pushes, pings, flushes.
//! - `handshake`: `register`, `login` and `auth`, the first request.
//! - `cmd`: every later request, one file per command family.
//! - `stream`: the same session over plain HTTP (server-sent events and
//!   `POST`), for networks that refuse the WebSocket upgrade.
//!
//! This file holds what the connection knows of its peer ([`Session`]) and
//! the path of one text frame: size, decoding, rate limit, then the
//! handshake or a command.

mod cmd;
mod conn;
mod handshake;
mod push;
pub mod stream;
mod throttled;

pub use cmd::new_invite_code;
pub use conn::run;

use crate::proto::{ErrorCode, ProtoError, decode_request, encode_error};
use crate::server::Shared;
use crate::server::budget::UserBudget;
use crate::server::hub::Registration;
use crate::server::limiter::TypingThrottle;
use crate::server::queue::PushQueue;
use crate::server::validate;
use crate::store::log::{AccountOp, AccountReply};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

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
    /// This user's request budget, shared by their connections (set when
    /// the connection authenticates).
    pub(super) budget: Option<Arc<UserBudget>>,
    pub(super) typing: TypingThrottle,
    pub(super) auth_failures: u32,
    /// The client's address (see `[net] trusted_proxies`).
    pub(super) addr: std::net::IpAddr,
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

impl Session {
    /// Apply a change to accounts, sessions or invitations; its refusal
    /// is the client's answer.
    pub(super) async fn account_change(&self, op: AccountOp) -> Result<AccountReply, ProtoError> {
        self.shared
            .store
            .account(op)
            .await
            .map_err(|e| e.to_proto())
    }

    /// Hash a new password (on the hashing threads).
    pub(super) async fn hash_password(&self, password: String) -> Result<String, ProtoError> {
        self.shared
            .hasher
            .hash(password)
            .await
            .map_err(|_| ProtoError::internal())
    }

    /// Refuse a name that is taken, before any hashing: a loop of
    /// requests with taken names costs the server a lookup each.
    pub(super) async fn check_name_free(&self, username: &str) -> Result<(), ProtoError> {
        validate::username(username)?;
        let taken = self
            .shared
            .store
            .readers()
            .account(username)
            .await
            .map_err(|e| e.to_proto())?;
        if taken.is_some() {
            return Err(ProtoError::new(
                ErrorCode::UsernameTaken,
                "that username is taken",
            ));
        }
        Ok(())
    }

    async fn handle_text(&mut self, text: &str) -> Outcome {
        self.shared.metrics.frame_in();
        let limits = &self.shared.limits;
        if text.len() > limits.max_frame_bytes {
            // The id, even of a frame that does not decode as a request,
            // so that the client can match the refusal.
            let id = match decode_request(text) {
                Ok((id, _)) => id,
                Err(e) => e.id,
            };
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
            // Boxed: once per connection, and the largest future of all.
            None => Box::pin(self.handshake(id, req)).await,
            Some(_) if req.is_handshake() => Outcome::Reply(error(
                id,
                &ProtoError::invalid("already authenticated on this connection"),
            )),
            Some(_) => {
                let spent = match &self.budget {
                    Some(b) => b.spend(&req),
                    None => Ok(()),
                };
                if let Err(e) = spent {
                    return match id {
                        Some(_) => Outcome::Reply(error(id, &e)),
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
}

#[cfg(test)]
mod tests {
    use super::conn::Ws;
    use super::*;

    fn future_size<A, B, C, F: std::future::Future>(_f: impl Fn(A, B, C) -> F) -> usize {
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

    /// Every frame's future is moved into a box of its own: it must not
    /// carry the largest request's (handshakes, admin requests and the
    /// PostgreSQL store's writes are boxed where they are awaited). It was
    /// 15 KiB, and copying it cost the runtime a `memmove` per `send`.
    #[test]
    fn a_frames_future_stays_small() {
        fn size<A, B, F: std::future::Future>(_f: impl Fn(A, B) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = size(Session::handle_text);
        assert!(size <= 4096, "a frame's future grew to {size} bytes");
    }
}
