//! Bots and incoming webhooks in the store.
//!
//! A bot is an account of kind `bot`: no password (its hash is `!`, which
//! no password matches, and logins are checked against the decoy hash as
//! for an unknown user), a session token made by an admin that does not
//! expire, and events marked `bot` when it writes. A webhook is an account
//! of kind `webhook` that belongs to one group or channel, with a row in
//! `webhooks` holding the SHA-256 of its secret: its URL is its only
//! credential, and it posts through the same append path as anyone.

use super::accounts::{exists, revoke};
use super::writer::{Writer, rejected};
use super::{AccountReply, Readers, Revoke, StoreError};
use crate::proto::{Account, ErrorCode, EventBody, MemberRole, Millis, WebhookInfo, now_millis};
use crate::store::rules::{self, decide_now};
use rusqlite::{Connection, OptionalExtension, params};

/// A change to bots or webhooks, applied by the writer.
#[derive(Debug, Clone)]
pub enum BotOp {
    /// A bot account with its first session (`token_hash`).
    Create {
        username: String,
        token_hash: String,
    },
    /// End every session of bot `username` and start one with `token_hash`.
    NewToken {
        username: String,
        token_hash: String,
    },
    /// A webhook of conversation `conversation_id`, made by `by` (an owner
    /// or admin there), posting as the new account `username`, which joins
    /// the conversation.
    CreateWebhook {
        id: String,
        conversation_id: String,
        by: String,
        username: String,
        secret_sha256: String,
    },
    /// Revoke webhook `id`: by an owner or admin of its conversation, its
    /// creator, or a server admin (`admin`).
    RevokeWebhook { id: String, by: String, admin: bool },
    /// Webhook `id` posted at `at`.
    Used { id: String, at: Millis },
}

/// A webhook as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub info: WebhookInfo,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Revoked, or its account deactivated: it no longer posts.
    pub disabled: bool,
}

/// The hash that matches no password.
const NO_PASSWORD: &str = "!";

fn insert_account(c: &Connection, username: &str, kind: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO users (username, password_hash, created_at, role, kind)
         VALUES (?1, ?2, ?3, 'member', ?4)",
        params![username, NO_PASSWORD, now_millis(), kind],
    )?;
    Ok(())
}

fn insert_session(c: &Connection, username: &str, token_hash: &str) -> Result<(), StoreError> {
    let now = now_millis();
    c.execute(
        "INSERT INTO sessions (token_hash, username, device, created_at, id, last_seen_at)
         VALUES (?1, ?2, 'bot', ?3, ?4, ?3)",
        params![
            token_hash,
            username,
            now,
            hex::encode(rand::random::<[u8; 8]>())
        ],
    )?;
    Ok(())
}

fn kind_of(c: &Connection, username: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT kind FROM users WHERE username = ?1")?
            .query_row([username], |r| r.get(0))
            .optional()?,
    )
}

const WEBHOOK: &str = "SELECT w.id, w.username, w.conversation_id, w.created_by, w.created_at,
     w.last_used_at, w.secret_sha256,
     w.revoked_at IS NOT NULL OR u.deactivated_at IS NOT NULL
     FROM webhooks w JOIN users u ON u.username = w.username";

fn webhook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        info: WebhookInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            conversation_id: r.get(2)?,
            created_by: r.get(3)?,
            created_at: r.get(4)?,
            last_used: r.get(5)?,
        },
        secret_sha256: r.get(6)?,
        disabled: r.get(7)?,
    })
}

fn webhook(c: &Connection, id: &str) -> Result<Option<Webhook>, StoreError> {
    Ok(c.prepare_cached(&format!("{WEBHOOK} WHERE w.id = ?1"))?
        .query_row([id], webhook_row)
        .optional()?)
}

impl Writer {
    pub(super) fn bot(&mut self, op: BotOp) -> Result<AccountReply, StoreError> {
        match op {
            BotOp::Create {
                username,
                token_hash,
            } => {
                if exists(&self.conn, &username)? {
                    return Err(rejected(ErrorCode::UsernameTaken, "that username is taken"));
                }
                insert_account(&self.conn, &username, "bot")?;
                insert_session(&self.conn, &username, &token_hash)?;
                self.mirror.bots.insert(username.clone());
                self.added_user(username);
                Ok(AccountReply::Done)
            }
            BotOp::NewToken {
                username,
                token_hash,
            } => {
                if kind_of(&self.conn, &username)?.as_deref() != Some("bot") {
                    return Err(rejected(
                        ErrorCode::NotFound,
                        format!("no bot named {username}"),
                    ));
                }
                let ended = revoke(&self.conn, &username, &Revoke::All)?;
                insert_session(&self.conn, &username, &token_hash)?;
                Ok(AccountReply::Revoked(ended))
            }
            BotOp::CreateWebhook {
                id,
                conversation_id,
                by,
                username,
                secret_sha256,
            } => self.create_webhook(id, conversation_id, by, username, secret_sha256),
            BotOp::RevokeWebhook { id, by, admin } => {
                let hook = webhook(&self.conn, &id)?
                    .ok_or_else(|| rejected(ErrorCode::NotFound, "no such webhook"))?;
                let manages = self
                    .mirror
                    .convs
                    .get(&hook.info.conversation_id)
                    .is_some_and(|c| c.members.contains(&by) && c.role(&by).manages());
                if !(admin || manages || hook.info.created_by == by) {
                    return Err(rejected(
                        ErrorCode::Forbidden,
                        "only an admin of its conversation or its creator may revoke a webhook",
                    ));
                }
                self.conn.execute(
                    "UPDATE webhooks SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![id, now_millis()],
                )?;
                Ok(AccountReply::Done)
            }
            BotOp::Used { id, at } => {
                self.conn
                    .prepare_cached(
                        "UPDATE webhooks SET last_used_at = ?2
                         WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                    )?
                    .execute(params![id, at])?;
                Ok(AccountReply::Done)
            }
        }
    }

    fn create_webhook(
        &mut self,
        id: String,
        conversation_id: String,
        by: String,
        username: String,
        secret_sha256: String,
    ) -> Result<AccountReply, StoreError> {
        let limits = self.limits.clone();
        decide_now(rules::webhook(
            &mut self.facts(),
            &limits,
            &by,
            &conversation_id,
            &username,
        ))?;
        let members = [username.clone()];
        insert_account(&self.conn, &username, "webhook")?;
        let now = now_millis();
        self.conn.execute(
            "INSERT INTO webhooks (id, conversation_id, username, secret_sha256, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, conversation_id, username, secret_sha256, by, now],
        )?;
        self.mirror.bots.insert(username.clone());
        self.added_user(username.clone());
        self.add_members(&conversation_id, &members)?;
        self.write_event(
            &by,
            &conversation_id,
            None,
            EventBody::Join {
                members: members.to_vec(),
            },
        )?;
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
}

impl Readers {
    /// A webhook by id (revoked ones too, marked `disabled`).
    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        let id = id.to_string();
        self.with(move |c| webhook(c, &id)).await
    }

    /// The webhooks of a conversation that are not revoked, oldest first.
    pub async fn webhooks(&self, conversation_id: &str) -> Result<Vec<Webhook>, StoreError> {
        let conv = conversation_id.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(&format!(
                "{WEBHOOK} WHERE w.conversation_id = ?1 AND w.revoked_at IS NULL
                 ORDER BY w.created_at, w.id LIMIT 1000"
            ))?
            .query_map([conv], webhook_row)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Bot accounts (not webhooks') by name, after `after`, at most `limit`.
    pub async fn bots(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Account>, StoreError> {
        self.with(move |c| super::accounts::account_page(c, "kind = 'bot'", after, limit))
            .await
    }

    /// `user`'s role in a conversation, if a member.
    pub async fn member_role(
        &self,
        conversation_id: &str,
        user: &str,
    ) -> Result<Option<MemberRole>, StoreError> {
        let (conv, user) = (conversation_id.to_string(), user.to_string());
        self.with(move |c| {
            let role: Option<String> = c
                .prepare_cached(
                    "SELECT role FROM members WHERE conversation_id = ?1 AND username = ?2",
                )?
                .query_row([conv, user], |r| r.get(0))
                .optional()?;
            Ok(role.map(|r| MemberRole::parse(&r).unwrap_or_default()))
        })
        .await
    }

    /// Which of `names` are bots (of either kind).
    pub async fn bots_among(&self, names: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.with(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT 1 FROM users WHERE username = ?1 AND kind <> 'person'")?;
            let mut out = Vec::new();
            for n in names {
                if stmt.query_row([&n], |_| Ok(())).optional()?.is_some() {
                    out.push(n);
                }
            }
            Ok(out)
        })
        .await
    }
}
