//! Requests after the handshake, one file per command family in the way of
//! mini-redis's `cmd/`: each handler checks its request, applies it (a read
//! of the hub, a read of the store, or an append queued to the writer) and
//! encodes the answer, at once or once the write is durable.
//!
//! - [`auth`]: a second handshake refused.
//! - [`account`]: `logout`, `sessions`, `revoke_session`, `change_password`.
//! - [`admin`]: `admin_*` and `invite_*`.
//! - [`bots`]: `admin_create_bot`, `admin_bots`, `admin_bot_token`,
//!   `webhook_*`.
//! - [`sync`]: `sync`, `conversations`, `channels`, `members`.
//! - [`users`]: `users`, `presence`.
//! - [`conversations`]: `create`, `join`, `leave`, `add_members`, `rename`.
//! - [`send`]: the log writes: `send`, `edit`, `delete`, `react`.
//! - [`history`], [`search`], [`receipts`], [`typing`]: one command each.
//! - [`keys`]: the device key directory and the inbox: `keys_upload`,
//!   `keys_sign`, `keys_query`, `keys_claim`, `to_device`, `inbox`,
//!   `inbox_ack`.
//! - [`secret`]: writes of secret conversations (`create` with
//!   `encrypted`, sends carrying ciphertext and shares) and `keys_share`.

mod account;
mod admin;
mod auth;
mod bots;
mod conversations;
mod history;
mod keys;
mod receipts;
mod search;
mod secret;
mod send;
mod sync;
mod typing;
mod users;

pub use admin::new_invite_code;

use super::{Outcome, Session};
use crate::proto::{EventBody, ProtoError, Request, encode_ok_empty};
use crate::store::log::{Append, Appended, StoreError};
use tokio::sync::oneshot;

impl Session {
    /// Answer one request of an authenticated connection.
    ///
    /// The requests every connection makes all the time (the log writes,
    /// receipts, typing, history, sync, search, presence) are answered here;
    /// the rest go through [`Session::request_other`], boxed: a future is as
    /// large as the largest one it may await, and moving a frame's future of
    /// several KiB into its box for every `send` cost the runtime a
    /// `memmove` per frame.
    pub(super) async fn request(
        &mut self,
        id: Option<u64>,
        req: Request,
    ) -> Result<Outcome, ProtoError> {
        let user = self.user.clone().unwrap_or_default();
        let rid = id.unwrap_or(0);
        Ok(match req {
            Request::Sync {
                cursors,
                heads,
                after,
                limit,
            } => self.sync(rid, &user, cursors, heads, after, limit)?,
            Request::Presence { status } => self.presence(id, &user, status)?,
            Request::Send {
                conversation_id,
                client_msg_id,
                body,
                reply_to,
                encrypted,
                shares,
            } => {
                let secret = encrypted.is_some();
                let body = EventBody::Message {
                    body,
                    reply_to,
                    encrypted,
                };
                let event = (conversation_id, client_msg_id, body);
                self.log_any_event(rid, user, event, secret, shares).await?
            }
            Request::SendFile {
                conversation_id,
                client_msg_id,
                file,
                caption,
                reply_to,
                encrypted,
                shares,
            } => {
                let secret = encrypted.is_some();
                let body = EventBody::File {
                    file: Box::new(file),
                    caption: caption.filter(|c| !c.trim().is_empty()),
                    reply_to,
                    encrypted,
                };
                let event = (conversation_id, client_msg_id, body);
                self.log_any_event(rid, user, event, secret, shares).await?
            }
            Request::Edit {
                conversation_id,
                client_msg_id,
                target_seq,
                body,
                encrypted,
                shares,
            } => {
                let secret = encrypted.is_some();
                let body = EventBody::Edit {
                    target_seq,
                    body,
                    encrypted,
                };
                let event = (conversation_id, client_msg_id, body);
                self.log_any_event(rid, user, event, secret, shares).await?
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
                encrypted,
                shares,
            } => {
                let secret = encrypted.is_some();
                let body = EventBody::Reaction {
                    target_seq,
                    emoji,
                    remove,
                    encrypted,
                };
                let event = (conversation_id, client_msg_id, body);
                self.log_any_event(rid, user, event, secret, shares).await?
            }
            Request::History {
                conversation_id,
                after,
                before,
                limit,
            } => self.history(rid, &user, conversation_id, after, before, limit)?,
            Request::Search {
                query,
                conversation_id,
                order,
                after,
                limit,
            } => {
                let req = search::SearchRequest {
                    query,
                    conversation_id,
                    order,
                    after,
                    limit,
                };
                self.search(rid, &user, req)?
            }
            Request::Receipt {
                conversation_id,
                delivered,
                read,
            } => {
                self.receipt(rid, user, conversation_id, delivered, read)
                    .await?
            }
            Request::Typing {
                conversation_id,
                active,
            } => self.typing_signal(id, &user, &conversation_id, active)?,
            other => Box::pin(self.request_other(id, user, other)).await?,
        })
    }

    /// Every other request of an authenticated connection (of `user`).
    async fn request_other(
        &mut self,
        id: Option<u64>,
        user: String,
        req: Request,
    ) -> Result<Outcome, ProtoError> {
        let rid = id.unwrap_or(0);
        Ok(match req {
            Request::Register { .. } | Request::Login { .. } | Request::Auth { .. } => {
                auth::already_authenticated(id)
            }
            Request::Logout {} => self.logout(rid, &user).await?,
            Request::Sessions {} => self.sessions(rid, &user).await?,
            Request::RevokeSession { session_id, others } => {
                self.revoke_session(rid, &user, session_id, others).await?
            }
            Request::ChangePassword {
                old_password,
                new_password,
            } => {
                self.change_password(rid, &user, old_password, new_password)
                    .await?
            }
            Request::AdminUsers { after, limit } => {
                self.admin_users(rid, &user, after, limit).await?
            }
            Request::AdminCreateUser {
                username,
                password,
                role,
            } => {
                self.admin_create_user(rid, &user, username, password, role)
                    .await?
            }
            Request::AdminResetPassword { username, password } => {
                self.admin_reset_password(rid, &user, username, password)
                    .await?
            }
            Request::AdminSetActive { username, active } => {
                self.admin_set_active(rid, &user, username, active).await?
            }
            Request::AdminErase { username } => self.admin_erase(rid, &user, username).await?,
            Request::AdminSetRole { username, role } => {
                self.admin_set_role(rid, &user, username, role).await?
            }
            Request::AdminCreateBot { username } => {
                self.admin_create_bot(rid, &user, username).await?
            }
            Request::AdminBots { after } => self.admin_bots(rid, &user, after).await?,
            Request::AdminBotToken { username } => {
                self.admin_bot_token(rid, &user, username).await?
            }
            Request::WebhookCreate {
                conversation_id,
                name,
            } => {
                self.webhook_create(rid, &user, conversation_id, name)
                    .await?
            }
            Request::WebhookList { conversation_id } => {
                self.webhook_list(rid, &user, conversation_id).await?
            }
            Request::WebhookRevoke { webhook_id } => {
                self.webhook_revoke(rid, &user, webhook_id).await?
            }
            Request::InviteCreate {
                uses,
                expires_in_secs,
            } => {
                self.invite_create(rid, &user, uses, expires_in_secs)
                    .await?
            }
            Request::InviteList { after } => self.invite_list(rid, &user, after).await?,
            Request::InviteRevoke { code } => self.invite_revoke(rid, &user, code).await?,
            Request::Conversations { after, limit } => {
                self.conversations(rid, &user, after, limit)?
            }
            Request::Channels { after, limit } => self.channels(rid, after, limit),
            Request::Members {
                conversation_id,
                after,
                limit,
            } => self.members(rid, &user, conversation_id, after, limit)?,
            Request::Users { prefix, limit } => self.users(rid, &user, prefix, limit),
            Request::Create {
                kind,
                name,
                members,
                encrypted,
            } => {
                self.create(rid, user, kind, name, members, encrypted)
                    .await?
            }
            Request::Join {
                conversation_id,
                name,
            } => self.join(rid, user, conversation_id, name).await?,
            Request::Leave { conversation_id } => self.leave(rid, user, conversation_id).await?,
            Request::AddMembers {
                conversation_id,
                members,
            } => {
                self.change_members(rid, user, conversation_id, members, false)
                    .await?
            }
            Request::RemoveMembers {
                conversation_id,
                members,
            } => {
                self.change_members(rid, user, conversation_id, members, true)
                    .await?
            }
            Request::SetMemberRole {
                conversation_id,
                user: target,
                role,
            } => {
                self.set_member_role(rid, user, conversation_id, target, role)
                    .await?
            }
            Request::Block { user: target } => self.block(rid, &user, target, true).await?,
            Request::Unblock { user: target } => self.block(rid, &user, target, false).await?,
            Request::Blocks {} => self.blocks(rid, &user).await?,
            Request::Rename {
                conversation_id,
                client_msg_id,
                name,
            } => {
                self.rename(rid, user, conversation_id, client_msg_id, name)
                    .await?
            }
            Request::KeysUpload(upload) => self.keys_upload(rid, &user, upload).await?,
            Request::KeysSign {
                device_id,
                certificate,
            } => self.keys_sign(rid, &user, device_id, certificate).await?,
            Request::KeysQuery { users } => self.keys_query(rid, users).await?,
            Request::KeysClaim { devices } => self.keys_claim(rid, devices).await?,
            Request::ToDevice { messages } => self.to_device(rid, &user, messages).await?,
            Request::Inbox { after, limit } => self.inbox(rid, after, limit).await?,
            Request::InboxAck { upto } => self.inbox_ack(rid, upto).await?,
            Request::KeysShare {
                conversation_id,
                session_id,
                shares,
            } => {
                self.keys_share(rid, user, conversation_id, session_id, shares)
                    .await?
            }
            // Answered by `request`, which never passes them on.
            Request::Send { .. }
            | Request::SendFile { .. }
            | Request::Edit { .. }
            | Request::Delete { .. }
            | Request::React { .. }
            | Request::Receipt { .. }
            | Request::Typing { .. }
            | Request::History { .. }
            | Request::Sync { .. }
            | Request::Search { .. }
            | Request::Presence { .. } => return Err(ProtoError::internal()),
        })
    }
}

impl Session {
    /// Queue an append to the writer, in arrival order; the receiver gets
    /// what was committed, or why not.
    async fn submit_append(
        &self,
        op: Append,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, ProtoError> {
        self.shared
            .store
            .submit_append(op)
            .await
            .map_err(|e| e.to_proto())
    }
}

/// A page size: what was asked for, capped.
fn page_size(limit: Option<u32>, cap: u32) -> usize {
    limit.unwrap_or(cap).min(cap) as usize
}

/// `v` encoded once, to be counted and then sent as it is.
fn raw<T: serde::Serialize>(v: &T) -> Result<Box<serde_json::value::RawValue>, ProtoError> {
    serde_json::value::to_raw_value(v).map_err(|_| ProtoError::internal())
}

/// A page of `items` as sent: at most `size` of them (the store was asked
/// for one more, to tell whether more follow), as many as fit in a reply's
/// bytes ([`crate::proto::Limits::reply_bytes`]), each encoded once; and
/// the `after` of the next page (`key` of the last one sent) if any.
fn page_of<T: serde::Serialize>(
    mut items: Vec<T>,
    size: usize,
    limits: &crate::proto::Limits,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<Box<serde_json::value::RawValue>>, Option<String>), ProtoError> {
    let mut more = items.len() > size;
    items.truncate(size);
    let mut budget = crate::proto::ByteBudget::new(limits.reply_bytes());
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let raw = raw(item)?;
        if !budget.admit(raw.get().len() + 1) {
            more = true;
            break;
        }
        out.push(raw);
    }
    let next = more
        .then(|| items.get(out.len().wrapping_sub(1)).map(key))
        .flatten();
    Ok((out, next))
}

/// The empty `ok` of a request that may come without an id (typing,
/// presence): none is sent then.
fn reply_if(id: Option<u64>) -> Outcome {
    match id {
        Some(id) => Outcome::Reply(encode_ok_empty(id)),
        None => Outcome::None,
    }
}
