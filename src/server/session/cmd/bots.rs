//! Bots and incoming webhooks: `admin_create_bot`, `admin_bots` and
//! `admin_bot_token` (server admins), `webhook_create`, `webhook_list` and
//! `webhook_revoke` (a group's or channel's owner and admins). Tokens and
//! webhook secrets are made here, shown once in the reply, and stored only
//! as their SHA-256.

use super::super::{Outcome, Session};
use crate::proto::{BotOk, ProtoError, Role, WebhookOk, WebhooksOk, encode_ok, encode_ok_empty};
use crate::server::auth::{new_token, token_digest};
use crate::server::queue::Ended;
use crate::server::validate;
use crate::store::log::{AccountOp, AccountReply, BotOp};

/// The path of a webhook's URL: `/hooks/{id}/{secret}`.
pub fn webhook_path(id: &str, secret: &str) -> String {
    format!("/hooks/{id}/{secret}")
}

impl Session {
    pub(super) async fn admin_create_bot(
        &self,
        rid: u64,
        user: &str,
        username: String,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        self.check_name_free(&username).await?;
        let token = new_token();
        self.account_change(AccountOp::Bot(BotOp::Create {
            username: username.clone(),
            token_hash: hex::encode(token_digest(&token)),
        }))
        .await?;
        tracing::info!(admin = %user, bot = %username, "bot created");
        self.bot_reply(rid, &username, token).await
    }

    pub(super) async fn admin_bot_token(
        &self,
        rid: u64,
        user: &str,
        username: String,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        let token = new_token();
        let op = AccountOp::Bot(BotOp::NewToken {
            username: username.clone(),
            token_hash: hex::encode(token_digest(&token)),
        });
        let revoked = self.end_sessions(&username, op, Ended::Revoked).await?;
        tracing::info!(admin = %user, bot = %username, revoked, "bot token replaced");
        self.bot_reply(rid, &username, token).await
    }

    async fn bot_reply(
        &self,
        rid: u64,
        username: &str,
        token: String,
    ) -> Result<Outcome, ProtoError> {
        let user = self
            .account_of(username)
            .await?
            .ok_or_else(|| ProtoError::not_found(format!("no bot named {username}")))?;
        Ok(Outcome::Reply(encode_ok(rid, &BotOk { user, token })))
    }

    /// A page of the bot accounts, by name.
    pub(super) async fn admin_bots(
        &self,
        rid: u64,
        user: &str,
        after: Option<String>,
    ) -> Result<Outcome, ProtoError> {
        const PAGE: usize = 100;
        self.require_admin(user).await?;
        let mut bots = self
            .shared
            .store
            .readers()
            .bots(after, PAGE as u32 + 1)
            .await
            .map_err(|e| e.to_proto())?;
        for b in &mut bots {
            b.online = self.shared.hub.is_online(&b.username);
        }
        let (encoded, next) =
            super::page_of(bots, PAGE, &self.shared.limits, |b| b.username.clone())?;
        Ok(Outcome::Reply(encode_ok(
            rid,
            &super::admin::Page {
                users: encoded,
                next,
            },
        )))
    }

    pub(super) async fn webhook_create(
        &self,
        rid: u64,
        user: &str,
        conversation_id: String,
        name: String,
    ) -> Result<Outcome, ProtoError> {
        self.caller(user).await?;
        validate::username(&name)?;
        self.check_name_free(&name).await?;
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = new_token();
        let reply = self
            .account_change(AccountOp::Bot(BotOp::CreateWebhook {
                id: id.clone(),
                conversation_id,
                by: user.to_string(),
                username: name,
                secret_sha256: hex::encode(token_digest(&secret)),
            }))
            .await?;
        let AccountReply::Webhook(hook) = reply else {
            return Err(ProtoError::internal());
        };
        tracing::info!(
            user = %user,
            webhook = %id,
            conversation = %hook.info.conversation_id,
            "webhook created"
        );
        Ok(Outcome::Reply(encode_ok(
            rid,
            &WebhookOk {
                path: webhook_path(&id, &secret),
                webhook: hook.info,
            },
        )))
    }

    pub(super) async fn webhook_list(
        &self,
        rid: u64,
        user: &str,
        conversation_id: String,
    ) -> Result<Outcome, ProtoError> {
        let admin = self.caller(user).await?.role == Role::Admin;
        let readers = self.shared.store.readers();
        let role = readers
            .member_role(&conversation_id, user)
            .await
            .map_err(|e| e.to_proto())?;
        match role {
            Some(r) if r.manages() => {}
            _ if admin => {}
            Some(_) => {
                return Err(ProtoError::forbidden(
                    "only an admin of this conversation may list its webhooks",
                ));
            }
            None => {
                return Err(ProtoError::forbidden(
                    "you are not a member of this conversation",
                ));
            }
        }
        let webhooks = readers
            .webhooks(&conversation_id)
            .await
            .map_err(|e| e.to_proto())?
            .into_iter()
            .map(|w| w.info)
            .collect();
        Ok(Outcome::Reply(encode_ok(rid, &WebhooksOk { webhooks })))
    }

    pub(super) async fn webhook_revoke(
        &self,
        rid: u64,
        user: &str,
        webhook_id: String,
    ) -> Result<Outcome, ProtoError> {
        let admin = self.caller(user).await?.role == Role::Admin;
        self.account_change(AccountOp::Bot(BotOp::RevokeWebhook {
            id: webhook_id.clone(),
            by: user.to_string(),
            admin,
        }))
        .await?;
        tracing::info!(user = %user, webhook = %webhook_id, "webhook revoked");
        Ok(Outcome::Reply(encode_ok_empty(rid)))
    }
}
