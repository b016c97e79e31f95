//! The rules' questions ([`Facts`]) answered inside the write's open
//! transaction.
//!
//! The first question about a conversation (its kind: every rule asks it
//! before anything else about the conversation) takes the conversation's
//! row lock, so that no writer on any node changes its members, roles or
//! log between the decision and the commit.

use super::db::Conn;
use super::db::{get, one, opt, rows};
use crate::proto::{ConvKind, MemberRole};
use crate::store::log::StoreError;
use crate::store::rules::{Facts, Prior, Target};

pub(super) struct PgFacts<'a> {
    tx: &'a Conn,
    /// Whether asking a conversation's kind locks it.
    lock: bool,
}

impl<'a> PgFacts<'a> {
    /// Facts for a write that changes conversations: their rows are locked
    /// as they are asked about.
    pub(super) fn locking(tx: &'a Conn) -> PgFacts<'a> {
        PgFacts { tx, lock: true }
    }

    /// The transaction the facts are read in.
    pub(super) fn tx(&self) -> &'a Conn {
        self.tx
    }

    /// Facts for a write that only reads conversations (a receipt).
    pub(super) fn reading(tx: &'a Conn) -> PgFacts<'a> {
        PgFacts { tx, lock: false }
    }
}

fn role_of(s: &str) -> MemberRole {
    MemberRole::parse(s).unwrap_or_default()
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

impl Facts for PgFacts<'_> {
    async fn kind(&mut self, conv: &str) -> Result<Option<ConvKind>, StoreError> {
        let sql = if self.lock {
            "SELECT kind FROM conversations WHERE id = $1 FOR NO KEY UPDATE"
        } else {
            "SELECT kind FROM conversations WHERE id = $1"
        };
        let Some(row) = opt(self.tx, sql, &[&conv]).await? else {
            return Ok(None);
        };
        let kind: String = get(&row, 0)?;
        ConvKind::parse(&kind)
            .map(Some)
            .ok_or_else(|| StoreError::Postgres(format!("conversation {conv}: bad kind {kind}")))
    }

    async fn role(&mut self, conv: &str, user: &str) -> Result<Option<MemberRole>, StoreError> {
        super::bots::member_role(self.tx, conv, user).await
    }

    async fn member_count(&mut self, conv: &str) -> Result<usize, StoreError> {
        let row = one(
            self.tx,
            "SELECT COUNT(*) FROM members WHERE conversation_id = $1",
            &[&conv],
        )
        .await?;
        Ok(count(get(&row, 0)?))
    }

    async fn members(&mut self, conv: &str) -> Result<Vec<(String, MemberRole)>, StoreError> {
        let found = rows(
            self.tx,
            "SELECT username, role FROM members WHERE conversation_id = $1",
            &[&conv],
        )
        .await?;
        found
            .iter()
            .map(|r| Ok((get(r, 0)?, role_of(&get::<String>(r, 1)?))))
            .collect()
    }

    async fn user_exists(&mut self, name: &str) -> Result<bool, StoreError> {
        super::accounts::exists(self.tx, name).await
    }

    async fn server_admin(&mut self, user: &str) -> Result<bool, StoreError> {
        Ok(opt(
            self.tx,
            "SELECT 1 FROM users WHERE username = $1 AND role = 'admin'
             AND deactivated_at IS NULL",
            &[&user],
        )
        .await?
        .is_some())
    }

    async fn blocks(&mut self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        Ok(opt(
            self.tx,
            "SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2",
            &[&blocker, &blocked],
        )
        .await?
        .is_some())
    }

    async fn memberships(&mut self, user: &str) -> Result<usize, StoreError> {
        let row = one(
            self.tx,
            "SELECT COUNT(*) FROM members WHERE username = $1",
            &[&user],
        )
        .await?;
        Ok(count(get(&row, 0)?))
    }

    async fn dm(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let row = opt(
            self.tx,
            "SELECT id FROM conversations WHERE dm_key = $1",
            &[&key],
        )
        .await?;
        row.map(|r| get(&r, 0)).transpose()
    }

    async fn channel(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        super::append::channel_named(self.tx, name).await
    }

    async fn removed(&mut self, conv: &str, user: &str) -> Result<bool, StoreError> {
        Ok(opt(
            self.tx,
            "SELECT 1 FROM removed WHERE conversation_id = $1 AND username = $2",
            &[&conv, &user],
        )
        .await?
        .is_some())
    }

    async fn prior(
        &mut self,
        user: &str,
        client_msg_id: &str,
    ) -> Result<Option<Prior>, StoreError> {
        let row = opt(
            self.tx,
            "SELECT conversation_id, seq, ts, kind FROM events
             WHERE sender = $1 AND client_msg_id = $2",
            &[&user, &client_msg_id],
        )
        .await?;
        row.map(|r| {
            Ok(Prior {
                conversation_id: get(&r, 0)?,
                seq: get::<i64>(&r, 1)? as u64,
                ts: get(&r, 2)?,
                kind: get(&r, 3)?,
            })
        })
        .transpose()
    }

    async fn target(&mut self, conv: &str, seq: u64) -> Result<Option<Target>, StoreError> {
        let seq = seq.min(i64::MAX as u64) as i64;
        let row = opt(
            self.tx,
            "SELECT sender, kind, EXISTS (SELECT 1 FROM events d
                                          WHERE d.conversation_id = e.conversation_id
                                            AND d.target_seq = e.seq AND d.kind = 'delete')
             FROM events e WHERE conversation_id = $1 AND seq = $2",
            &[&conv, &seq],
        )
        .await?;
        row.map(|r| {
            Ok(Target {
                sender: get(&r, 0)?,
                kind: get(&r, 1)?,
                deleted: get(&r, 2)?,
            })
        })
        .transpose()
    }

    async fn upload_size(&mut self, user: &str, digest: &str) -> Result<Option<u64>, StoreError> {
        super::files::upload_size(self.tx, user, digest).await
    }

    async fn encrypted(&mut self, conv: &str) -> Result<bool, StoreError> {
        // Asked after the kind, which locked the row: the flag holds still.
        let row = opt(
            self.tx,
            "SELECT encrypted FROM conversations WHERE id = $1",
            &[&conv],
        )
        .await?;
        row.map_or(Ok(false), |r| get(&r, 0))
    }
}
