//! Requests after the handshake: each is checked, then answered at once
//! (reads from the hub), or queued to the store and answered once durable.

use super::{Outcome, Session, close, error};
use crate::proto::{
    AppendOk, ChannelsOk, ConversationOk, ConversationsOk, ErrorCode, EventBody, HistoryOk,
    PresenceStatus, ProtoError, ReceiptOk, Request, UsersOk, encode_ok, encode_ok_empty,
};
use crate::server::hub::receipt_of;
use crate::server::validate;
use crate::store::log::{Append, StoreError};
use futures_util::FutureExt;
use tokio::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl Session {
    pub(super) async fn request(
        &mut self,
        id: Option<u64>,
        req: Request,
    ) -> Result<Outcome, ProtoError> {
        let user = self.user.clone().unwrap_or_default();
        let shared = self.shared.clone();
        let limits = &shared.limits;
        let rid = id.unwrap_or(0);
        let outcome = match req {
            Request::Register { .. } | Request::Login { .. } | Request::Auth { .. } => {
                Outcome::Reply(error(id, &ProtoError::invalid("already authenticated")))
            }
            Request::Logout {} => {
                let hash = self.token_digest.map(hex::encode).unwrap_or_default();
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
