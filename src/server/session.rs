//! One connection: the handshake, then requests in, replies and pushes out.
//!
//! A single task per connection selects over the socket, its bounded push
//! queue, replies of requests in flight (durable writes and reads run
//! concurrently, but appends are queued to the writer in arrival order), a
//! ping timer and shutdown. Reading pauses while too many requests are in
//! flight; a connection that cannot keep up with its pushes is kicked.

use super::Shared;
use super::hub::{Frame, Registration, receipt_of};
use super::limiter::{TokenBucket, TypingThrottle};
use super::validate;
use crate::proto::{
    AppendOk, AuthOk, ChannelsOk, ConversationOk, ConversationsOk, ErrorCode, EventBody, HistoryOk,
    PROTOCOL_VERSION, PresenceStatus, ProtoError, ReceiptOk, Request, UsersOk, decode_request,
    encode_error, encode_ok, encode_ok_empty,
};
use crate::server::auth::{new_token, token_hash};
use crate::store::log::{Append, StoreError};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Duration, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = WebSocketStream<TcpStream>;

/// What handling one frame produced.
enum Outcome {
    Reply(String),
    None,
    Later(BoxFuture<'static, String>),
    /// Reply, then close the connection.
    Close(String, CloseFrame),
}

struct Session {
    shared: Arc<Shared>,
    user: Option<String>,
    token_hash: Option<String>,
    registration: Option<Registration>,
    tx: mpsc::Sender<Frame>,
    kick: Arc<Notify>,
    bucket: TokenBucket,
    typing: TypingThrottle,
    auth_failures: u32,
}

fn close(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

fn error(id: Option<u64>, e: &ProtoError) -> String {
    encode_error(id, e)
}

/// Serve one upgraded connection until it closes.
pub async fn run(mut ws: Ws, shared: Arc<Shared>) {
    let limits = shared.limits.clone();
    let (tx, mut rx) = mpsc::channel::<Frame>(limits.outbound_queue.max(1));
    let kick = Arc::new(Notify::new());
    let mut s = Session {
        shared: shared.clone(),
        user: None,
        token_hash: None,
        registration: None,
        tx,
        kick: kick.clone(),
        bucket: TokenBucket::new(limits.requests_per_sec, limits.request_burst),
        typing: TypingThrottle::default(),
        auth_failures: 0,
    };
    let mut inflight: FuturesUnordered<BoxFuture<'static, String>> = FuturesUnordered::new();
    let ping_every = Duration::from_secs(limits.ping_interval_secs.max(1));
    let idle = Duration::from_secs(limits.idle_timeout_secs.max(1));
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let auth_deadline = tokio::time::sleep(Duration::from_secs(limits.auth_timeout_secs.max(1)));
    tokio::pin!(auth_deadline);
    let mut last_heard = Instant::now();
    let mut draining: Option<Instant> = None;
    let shutdown = shared.shutdown.clone();

    let closing: Option<CloseFrame> = loop {
        let drain_deadline = draining.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = kick.notified() => {
                break Some(close(CloseCode::Policy, "too slow: outbound queue full; reconnect and resync"));
            }
            _ = shutdown.cancelled(), if draining.is_none() => {
                draining = Some(Instant::now() + shared.grace);
            }
            _ = tokio::time::sleep_until(drain_deadline), if draining.is_some() => {
                break Some(close(CloseCode::Away, "server shutting down"));
            }
            Some(reply) = inflight.next() => {
                if write(&mut ws, &kick, Message::Text(reply.into())).await.is_err() {
                    break None;
                }
            }
            Some(frame) = rx.recv() => {
                if write_batch(&mut ws, &kick, frame, &mut rx).await.is_err() {
                    break None;
                }
            }
            msg = ws.next(), if draining.is_none() && inflight.len() < limits.max_inflight.max(1) => {
                last_heard = Instant::now();
                let outcome = match msg {
                    None => break None,
                    Some(Ok(Message::Text(text))) => s.handle_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => Outcome::Reply(error(None, &ProtoError::new(
                        ErrorCode::BadFrame,
                        "binary frames are not supported; send JSON in text frames",
                    ))),
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(_)) => Outcome::None,
                    // The socket reader is fused after this error (and RFC 6455
                    // requires failing the connection): answer, then close 1007.
                    Some(Err(WsError::Utf8(_))) => Outcome::Close(
                        error(None, &ProtoError::new(
                            ErrorCode::BadFrame,
                            "text frame is not valid UTF-8",
                        )),
                        close(CloseCode::Invalid, "text frame is not valid UTF-8"),
                    ),
                    Some(Err(WsError::Capacity(_))) => {
                        break Some(close(CloseCode::Size, "frame too large"));
                    }
                    Some(Err(e)) => {
                        tracing::debug!("connection error: {e}");
                        break None;
                    }
                };
                match outcome {
                    Outcome::Reply(text) => {
                        if write(&mut ws, &kick, Message::Text(text.into())).await.is_err() {
                            break None;
                        }
                    }
                    Outcome::None => {}
                    Outcome::Later(fut) => inflight.push(fut),
                    Outcome::Close(text, frame) => {
                        let _ = write(&mut ws, &kick, Message::Text(text.into())).await;
                        break Some(frame);
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > idle {
                    break Some(close(CloseCode::Away, "idle timeout"));
                }
                if write(&mut ws, &kick, Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = &mut auth_deadline, if s.user.is_none() => {
                break Some(close(CloseCode::Policy, "authenticate first"));
            }
        }
        if draining.is_some() && inflight.is_empty() {
            break Some(close(CloseCode::Away, "server shutting down"));
        }
    };
    drop(s.registration.take());
    if let Some(frame) = closing {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
    }
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Write one message, giving up if the peer stops reading or is kicked.
async fn write(ws: &mut Ws, kick: &Notify, msg: Message) -> Result<(), ()> {
    tokio::select! {
        r = ws.send(msg) => r.map_err(|_| ()),
        _ = kick.notified() => Err(()),
        _ = tokio::time::sleep(WRITE_TIMEOUT) => Err(()),
    }
}

/// Write a queued push and whatever else is already queued, with one flush.
async fn write_batch(
    ws: &mut Ws,
    kick: &Notify,
    first: Frame,
    rx: &mut mpsc::Receiver<Frame>,
) -> Result<(), ()> {
    let fut = async {
        ws.feed(Message::Text(first)).await?;
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(f) => ws.feed(Message::Text(f)).await?,
                Err(_) => break,
            }
        }
        ws.flush().await
    };
    tokio::select! {
        r = fut => r.map_err(|_| ()),
        _ = kick.notified() => Err(()),
        _ = tokio::time::sleep(WRITE_TIMEOUT) => Err(()),
    }
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
        let hash = token_hash(&token);
        self.shared
            .store
            .create_session(&user, hash.clone(), device)
            .await
            .map_err(|e| e.to_proto())?;
        self.start(user.clone(), hash)?;
        Ok(AuthOk {
            user,
            token: Some(token),
            protocol: PROTOCOL_VERSION,
        })
    }

    async fn auth(&mut self, token: String) -> Result<AuthOk, ProtoError> {
        let hash = token_hash(&token);
        let user = self
            .shared
            .store
            .readers()
            .session_user(&hash)
            .await
            .map_err(|e| e.to_proto())?
            .ok_or_else(|| ProtoError::new(ErrorCode::AuthFailed, "unknown or revoked token"))?;
        self.start(user.clone(), hash)?;
        Ok(AuthOk {
            user,
            token: None,
            protocol: PROTOCOL_VERSION,
        })
    }

    /// Become `user`: join the hub so pushes start flowing.
    fn start(&mut self, user: String, token_hash: String) -> Result<(), ProtoError> {
        let reg = self
            .shared
            .hub
            .register(&user, self.tx.clone(), self.kick.clone())?;
        tracing::debug!(user = %user, "connection authenticated");
        self.registration = Some(reg);
        self.user = Some(user);
        self.token_hash = Some(token_hash);
        Ok(())
    }

    async fn request(&mut self, id: Option<u64>, req: Request) -> Result<Outcome, ProtoError> {
        let user = self.user.clone().unwrap_or_default();
        let shared = self.shared.clone();
        let limits = &shared.limits;
        let rid = id.unwrap_or(0);
        let outcome = match req {
            Request::Register { .. } | Request::Login { .. } | Request::Auth { .. } => {
                Outcome::Reply(error(id, &ProtoError::invalid("already authenticated")))
            }
            Request::Logout {} => {
                let hash = self.token_hash.clone().unwrap_or_default();
                shared
                    .store
                    .revoke_session(hash)
                    .await
                    .map_err(|e| e.to_proto())?;
                Outcome::Close(encode_ok_empty(rid), close(CloseCode::Normal, "logged out"))
            }
            Request::Conversations {} => Outcome::Reply(encode_ok(
                rid,
                &ConversationsOk {
                    conversations: shared.hub.conversations_of(&user),
                    presence: Vec::new(),
                },
            )),
            Request::Sync { cursors } => {
                if cursors.len() > limits.max_sync_cursors {
                    return Err(ProtoError::new(ErrorCode::TooLarge, "too many cursors"));
                }
                Outcome::Reply(encode_ok(
                    rid,
                    &ConversationsOk {
                        conversations: shared.hub.conversations_of(&user),
                        presence: shared.hub.contacts_presence(&user),
                    },
                ))
            }
            Request::Channels {} => Outcome::Reply(encode_ok(
                rid,
                &ChannelsOk {
                    channels: shared.hub.channels(),
                },
            )),
            Request::Users { prefix, limit } => {
                let prefix = prefix.unwrap_or_default();
                let limit = limit.unwrap_or(50).min(200);
                Outcome::Later(
                    async move {
                        match shared.store.readers().users(&prefix, limit).await {
                            Ok(users) => encode_ok(
                                rid,
                                &UsersOk {
                                    users: shared.hub.presence_of(&users),
                                },
                            ),
                            Err(e) => error(Some(rid), &e.to_proto()),
                        }
                    }
                    .boxed(),
                )
            }
            Request::Create {
                kind,
                name,
                members,
            } => {
                let name = validate::conv_name(name, limits)?;
                validate::members(&members, limits)?;
                self.append_conv(
                    rid,
                    Append::Create {
                        user,
                        kind,
                        name,
                        members,
                    },
                )
                .await?
            }
            Request::Join {
                conversation_id,
                name,
            } => {
                self.append_conv(
                    rid,
                    Append::Join {
                        user,
                        conversation_id,
                        name,
                    },
                )
                .await?
            }
            Request::Leave { conversation_id } => {
                self.append_conv(
                    rid,
                    Append::Leave {
                        user,
                        conversation_id,
                    },
                )
                .await?
            }
            Request::AddMembers {
                conversation_id,
                members,
            } => {
                validate::members(&members, limits)?;
                self.append_conv(
                    rid,
                    Append::AddMembers {
                        user,
                        conversation_id,
                        members,
                    },
                )
                .await?
            }
            Request::Rename {
                conversation_id,
                client_msg_id,
                name,
            } => {
                let name = validate::conv_name(Some(name), limits)?.unwrap_or_default();
                if let Some(c) = &client_msg_id {
                    validate::client_msg_id(c, limits)?;
                }
                self.append_event(
                    rid,
                    Append::Rename {
                        user,
                        conversation_id,
                        client_msg_id,
                        name,
                    },
                )
                .await?
            }
            Request::Send {
                conversation_id,
                client_msg_id,
                body,
                reply_to,
            } => {
                let body = EventBody::Message { body, reply_to };
                self.log_event(rid, user, conversation_id, client_msg_id, body)
                    .await?
            }
            Request::Edit {
                conversation_id,
                client_msg_id,
                target_seq,
                body,
            } => {
                let body = EventBody::Edit { target_seq, body };
                self.log_event(rid, user, conversation_id, client_msg_id, body)
                    .await?
            }
            Request::Delete {
                conversation_id,
                client_msg_id,
                target_seq,
            } => {
                let body = EventBody::Delete { target_seq };
                self.log_event(rid, user, conversation_id, client_msg_id, body)
                    .await?
            }
            Request::React {
                conversation_id,
                client_msg_id,
                target_seq,
                emoji,
                remove,
            } => {
                let body = EventBody::Reaction {
                    target_seq,
                    emoji,
                    remove,
                };
                self.log_event(rid, user, conversation_id, client_msg_id, body)
                    .await?
            }
            Request::History {
                conversation_id,
                after,
                before,
                limit,
            } => {
                let last_seq = shared.hub.check_member(&user, &conversation_id)?;
                let cap = limits.history_page_cap;
                let limit = limit.unwrap_or(cap).min(cap);
                // A reply must fit the socket's write buffer (see
                // transport::ws_config): large events make shorter pages.
                let max_bytes = limits.hard_frame_bytes.max(64 * 1024);
                Outcome::Later(
                    async move {
                        match shared
                            .store
                            .readers()
                            .history(&conversation_id, after, before, limit, max_bytes)
                            .await
                        {
                            Ok(events) => {
                                let last_seq =
                                    events.last().map(|e| e.seq).unwrap_or(0).max(last_seq);
                                encode_ok(rid, &HistoryOk { events, last_seq })
                            }
                            Err(e) => error(Some(rid), &e.to_proto()),
                        }
                    }
                    .boxed(),
                )
            }
            Request::Receipt {
                conversation_id,
                delivered,
                read,
            } => {
                shared.hub.check_member(&user, &conversation_id)?;
                let rx = shared
                    .store
                    .submit_receipt(
                        &user,
                        &conversation_id,
                        delivered.unwrap_or(0),
                        read.unwrap_or(0),
                    )
                    .await
                    .map_err(|e| e.to_proto())?;
                Outcome::Later(
                    async move {
                        match rx.await.unwrap_or(Err(StoreError::Closed)) {
                            Ok(Some(p)) => encode_ok(
                                rid,
                                &ReceiptOk {
                                    delivered: p.delivered,
                                    read: p.read,
                                },
                            ),
                            Ok(None) => {
                                let p = receipt_of(&shared.hub, &user, &conversation_id);
                                encode_ok(
                                    rid,
                                    &ReceiptOk {
                                        delivered: p.delivered,
                                        read: p.read,
                                    },
                                )
                            }
                            Err(e) => error(Some(rid), &e.to_proto()),
                        }
                    }
                    .boxed(),
                )
            }
            Request::Typing {
                conversation_id,
                active,
            } => {
                let interval = Duration::from_millis(limits.typing_interval_ms);
                if !self.typing.allow(&conversation_id, active, interval) {
                    return Err(ProtoError::new(
                        ErrorCode::RateLimited,
                        "typing signals at most once a second",
                    ));
                }
                shared.hub.typing(&user, &conversation_id, active)?;
                reply_if(id)
            }
            Request::Presence { status } => {
                if status == PresenceStatus::Offline {
                    return Err(ProtoError::invalid(
                        "status must be online or away; close the connection to go offline",
                    ));
                }
                shared.hub.set_status(&user, status);
                reply_if(id)
            }
        };
        Ok(outcome)
    }

    /// Queue a membership change; reply with the conversation once durable.
    async fn append_conv(&mut self, rid: u64, op: Append) -> Result<Outcome, ProtoError> {
        let rx = self
            .shared
            .store
            .submit_append(op)
            .await
            .map_err(|e| e.to_proto())?;
        let hub = self.shared.hub.clone();
        Ok(Outcome::Later(
            async move {
                match rx.await.unwrap_or(Err(StoreError::Closed)) {
                    Ok(done) => match hub.conversation(&done.conversation_id) {
                        Some(conversation) => encode_ok(rid, &ConversationOk { conversation }),
                        None => error(Some(rid), &ProtoError::internal()),
                    },
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }

    /// Check a message, edit, deletion or reaction, then append it.
    async fn log_event(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        client_msg_id: String,
        body: EventBody,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        validate::client_msg_id(&client_msg_id, limits)?;
        match &body {
            EventBody::Message { body, .. } | EventBody::Edit { body, .. } => {
                validate::body(body, limits)?
            }
            EventBody::Reaction { emoji, .. } => validate::emoji(emoji, limits)?,
            _ => {}
        }
        self.append_event(
            rid,
            Append::Event {
                user,
                conversation_id,
                client_msg_id,
                body,
            },
        )
        .await
    }

    /// Queue an append; reply with its seq once durable.
    async fn append_event(&mut self, rid: u64, op: Append) -> Result<Outcome, ProtoError> {
        let rx = self
            .shared
            .store
            .submit_append(op)
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Later(
            async move {
                match rx.await.unwrap_or(Err(StoreError::Closed)) {
                    Ok(done) => match done.seq {
                        Some((seq, ts)) => encode_ok(rid, &AppendOk { seq, ts }),
                        None => error(Some(rid), &ProtoError::internal()),
                    },
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }
}

fn reply_if(id: Option<u64>) -> Outcome {
    match id {
        Some(id) => Outcome::Reply(encode_ok_empty(id)),
        None => Outcome::None,
    }
}
