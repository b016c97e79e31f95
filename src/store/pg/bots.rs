//! Bots and incoming webhooks on PostgreSQL (see the SQLite store's `bots`
//! for what they are): bot accounts with a token that does not expire,
//! and webhooks, each an account of one group or channel holding the
//! SHA-256 of its secret.

use super::accounts::{account_page, added_user, exists, revoke, session_id};
use super::db::{exec, get, opt, rows};
use super::facts::PgFacts;
use super::{PgReaders, W, rejected};
use crate::proto::{Account, ErrorCode, EventBody, MemberRole, WebhookInfo, now_millis};
use crate::store::log::{AccountReply, BotOp, Revoke, StoreError, Webhook};
use crate::store::rules;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

/// The hash that matches no password.
const NO_PASSWORD: &str = "!";

async fn insert_account(
    c: &impl GenericClient,
    username: &str,
    kind: &str,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO users (username, password_hash, created_at, role, kind)
         VALUES ($1, $2, $3, 'member', $4)",
        &[&username, &NO_PASSWORD, &now_millis(), &kind],
    )
    .await?;
    Ok(())
}

async fn insert_session(
    c: &impl GenericClient,
    username: &str,
    token_hash: &str,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO sessions (token_hash, username, device, created_at, id, last_seen_at)
         VALUES ($1, $2, 'bot', $3, $4, $3)",
        &[&token_hash, &username, &now_millis(), &session_id()],
    )
    .await?;
    Ok(())
}

const WEBHOOK: &str = "SELECT w.id, w.username, w.conversation_id, w.created_by, w.created_at,
     w.last_used_at, w.secret_sha256,
     w.revoked_at IS NOT NULL OR u.deactivated_at IS NOT NULL
     FROM webhooks w JOIN users u ON u.username = w.username";

fn webhook_row(r: &Row) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        info: WebhookInfo {
            id: get(r, 0)?,
            name: get(r, 1)?,
            conversation_id: get(r, 2)?,
            created_by: get(r, 3)?,
            created_at: get(r, 4)?,
            last_used: get(r, 5)?,
        },
        secret_sha256: get(r, 6)?,
        disabled: get(r, 7)?,
    })
}

async fn webhook(c: &impl GenericClient, id: &str) -> Result<Option<Webhook>, StoreError> {
    let row = opt(c, &format!("{WEBHOOK} WHERE w.id = $1"), &[&id]).await?;
    row.as_ref().map(webhook_row).transpose()
}

/// `user`'s role in a conversation, if a member.
pub(super) async fn member_role(
    c: &impl GenericClient,
    conv: &str,
    user: &str,
) -> Result<Option<MemberRole>, StoreError> {
    let row = opt(
        c,
        "SELECT role FROM members WHERE conversation_id = $1 AND username = $2",
        &[&conv, &user],
    )
    .await?;
    Ok(row
        .map(|r| get::<String>(&r, 0))
        .transpose()?
        .map(|r| MemberRole::parse(&r).unwrap_or_default()))
}

pub(super) async fn apply(w: &mut W<'_>, op: BotOp) -> Result<AccountReply, StoreError> {
    let c = w.tx;
    match op {
        BotOp::Create {
            username,
            token_hash,
        } => {
            if exists(c, &username).await? {
                return Err(rejected(ErrorCode::UsernameTaken, "that username is taken"));
            }
            insert_account(c, &username, "bot").await?;
            insert_session(c, &username, &token_hash).await?;
            added_user(w, username);
            Ok(AccountReply::Done)
        }
        BotOp::NewToken {
            username,
            token_hash,
        } => {
            let kind = opt(
                c,
                "SELECT kind FROM users WHERE username = $1",
                &[&username],
            )
            .await?
            .map(|r| get::<String>(&r, 0))
            .transpose()?;
            if kind.as_deref() != Some("bot") {
                return Err(rejected(
                    ErrorCode::NotFound,
                    format!("no bot named {username}"),
                ));
            }
            let ended = revoke(c, &username, &Revoke::All).await?;
            insert_session(c, &username, &token_hash).await?;
            Ok(AccountReply::Revoked(ended))
        }
        BotOp::CreateWebhook {
            id,
            conversation_id,
            by,
            username,
            secret_sha256,
        } => create_webhook(w, id, conversation_id, by, username, secret_sha256).await,
        BotOp::RevokeWebhook { id, by, admin } => {
            let hook = webhook(c, &id)
                .await?
                .ok_or_else(|| rejected(ErrorCode::NotFound, "no such webhook"))?;
            let manages = member_role(c, &hook.info.conversation_id, &by)
                .await?
                .is_some_and(|r| r.manages());
            if !(admin || manages || hook.info.created_by == by) {
                return Err(rejected(
                    ErrorCode::Forbidden,
                    "only an admin of its conversation or its creator may revoke a webhook",
                ));
            }
            exec(
                c,
                "UPDATE webhooks SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                &[&id, &now_millis()],
            )
            .await?;
            Ok(AccountReply::Done)
        }
        BotOp::Used { id, at } => {
            exec(
                c,
                "UPDATE webhooks SET last_used_at = $2
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                &[&id, &at],
            )
            .await?;
            Ok(AccountReply::Done)
        }
    }
}

async fn create_webhook(
    w: &mut W<'_>,
    id: String,
    conversation_id: String,
    by: String,
    username: String,
    secret_sha256: String,
) -> Result<AccountReply, StoreError> {
    let c = w.tx;
    rules::webhook(
        &mut PgFacts::locking(c),
        w.limits,
        &by,
        &conversation_id,
        &username,
    )
    .await?;
    insert_account(c, &username, "webhook").await?;
    let now = now_millis();
    exec(
        c,
        "INSERT INTO webhooks (id, conversation_id, username, secret_sha256, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&id, &conversation_id, &username, &secret_sha256, &by, &now],
    )
    .await?;
    added_user(w, username.clone());
    let members = vec![username.clone()];
    super::events::add_members(w, &conversation_id, &members).await?;
    super::events::write_event(
        w,
        &by,
        &conversation_id,
        None,
        EventBody::Join {
            members: members.clone(),
        },
    )
    .await?;
    Ok(AccountReply::Webhook(Webhook {
        info: WebhookInfo {
            id,
            name: username,
            conversation_id,
            created_by: by,
            created_at: now,
            last_used: None,
        },
        secret_sha256,
        disabled: false,
    }))
}

impl PgReaders {
    /// A webhook by id (revoked ones too, marked `disabled`).
    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                webhook(&c, id).await
            })
            .await
    }

    /// The webhooks of a conversation that are not revoked, oldest first.
    pub async fn webhooks(&self, conversation_id: &str) -> Result<Vec<Webhook>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let found = rows(
                    &c,
                    &format!(
                        "{WEBHOOK} WHERE w.conversation_id = $1 AND w.revoked_at IS NULL
                         ORDER BY w.created_at, w.id LIMIT 1000"
                    ),
                    &[&conversation_id],
                )
                .await?;
                found.iter().map(webhook_row).collect()
            })
            .await
    }

    /// Bot accounts (not webhooks') by name, after `after`, at most `limit`.
    pub async fn bots(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Account>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                account_page(&c, Some("bot"), after, limit).await
            })
            .await
    }

    /// `user`'s role in a conversation, if a member.
    pub async fn member_role(
        &self,
        conversation_id: &str,
        user: &str,
    ) -> Result<Option<MemberRole>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                member_role(&c, conversation_id, user).await
            })
            .await
    }

    /// Which of `names` are bots (of either kind), in the order given.
    pub async fn bots_among(&self, names: Vec<String>) -> Result<Vec<String>, StoreError> {
        if names.is_empty() {
            return Ok(names);
        }
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let found = rows(
                    &c,
                    "SELECT username FROM users WHERE username = ANY($1) AND kind <> 'person'",
                    &[&names],
                )
                .await?;
                let bots: std::collections::HashSet<String> =
                    found.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
                Ok(names.into_iter().filter(|n| bots.contains(n)).collect())
            })
            .await
    }
}
