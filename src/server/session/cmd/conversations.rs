//! Membership and naming: `create`, `join`, `leave`, `add_members` and
//! `rename`. Each is checked here, applied by the writer (which holds the
//! rules on who may do what), and answered once durable.

use super::super::{Outcome, Session, error};
use crate::proto::{ConvKind, ConversationOk, MemberRole, ProtoError, encode_ok};
use crate::server::validate;
use crate::store::log::{Append, Appended, SecretOp, StoreError};
use futures_util::FutureExt;

impl Session {
    pub(super) async fn create(
        &mut self,
        rid: u64,
        user: String,
        kind: ConvKind,
        name: Option<String>,
        members: Vec<String>,
        encrypted: bool,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        let name = validate::conv_name(name, limits)?;
        validate::members(&members, limits)?;
        if encrypted {
            let op = SecretOp::Create {
                user,
                kind,
                name,
                members,
            };
            let rx = self
                .shared
                .store
                .submit_secret(op)
                .await
                .map_err(|e| e.to_proto())?;
            return Ok(self.conv_reply(rid, rx));
        }
        let op = Append::Create {
            user,
            kind,
            name,
            members,
        };
        self.append_conv(rid, op).await
    }

    /// Join a channel, by id or by name.
    pub(super) async fn join(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: Option<String>,
        name: Option<String>,
    ) -> Result<Outcome, ProtoError> {
        let op = Append::Join {
            user,
            conversation_id,
            name,
        };
        self.append_conv(rid, op).await
    }

    pub(super) async fn leave(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
    ) -> Result<Outcome, ProtoError> {
        let op = Append::Leave {
            user,
            conversation_id,
        };
        self.append_conv(rid, op).await
    }

    /// `add_members` or (`remove`) `remove_members`.
    pub(super) async fn change_members(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        members: Vec<String>,
        remove: bool,
    ) -> Result<Outcome, ProtoError> {
        validate::members(&members, &self.shared.limits)?;
        let op = if remove {
            Append::RemoveMembers {
                user,
                conversation_id,
                members,
            }
        } else {
            Append::AddMembers {
                user,
                conversation_id,
                members,
            }
        };
        self.append_conv(rid, op).await
    }

    pub(super) async fn set_member_role(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        target: String,
        role: MemberRole,
    ) -> Result<Outcome, ProtoError> {
        let op = Append::SetRole {
            user,
            conversation_id,
            target,
            role,
        };
        self.append_conv(rid, op).await
    }

    /// A rename is an event in the log: it is answered with its seq.
    pub(super) async fn rename(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        client_msg_id: Option<String>,
        name: String,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        let name = validate::conv_name(Some(name), limits)?.unwrap_or_default();
        if let Some(c) = &client_msg_id {
            validate::client_msg_id(c, limits)?;
        }
        let op = Append::Rename {
            user,
            conversation_id,
            client_msg_id,
            name,
        };
        self.append_event(rid, op).await
    }

    /// Queue a membership change; reply with the conversation once durable.
    async fn append_conv(&mut self, rid: u64, op: Append) -> Result<Outcome, ProtoError> {
        let rx = self.submit_append(op).await?;
        Ok(self.conv_reply(rid, rx))
    }

    /// Answer with the conversation once its change is durable.
    fn conv_reply(
        &self,
        rid: u64,
        rx: tokio::sync::oneshot::Receiver<Result<Appended, StoreError>>,
    ) -> Outcome {
        let hub = self.shared.hub.clone();
        let user = self.user.clone().unwrap_or_default();
        Outcome::Later(
            async move {
                match rx.await.unwrap_or(Err(StoreError::Closed)) {
                    Ok(done) => match hub.conversation(&done.conversation_id, &user) {
                        Some(conversation) => encode_ok(rid, &ConversationOk { conversation }),
                        None => error(Some(rid), &ProtoError::internal()),
                    },
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        )
    }
}
