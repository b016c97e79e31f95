//! The rules' questions ([`crate::store::rules::Facts`]) answered by the
//! writer: from its mirror where it holds the answer, else from its
//! connection, inside the open transaction. Nothing here waits.

use super::StoreError;
use super::writer::Writer;
use crate::proto::{ConvKind, MemberRole};
use crate::store::rules::{Facts, Prior, Target};
use rusqlite::{OptionalExtension, params};
use std::future::{Future, ready};

/// The writer, asked by the rules.
pub(super) struct Mirrored<'a>(pub(super) &'a Writer);

impl Mirrored<'_> {
    fn server_admin(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached(
                "SELECT 1 FROM users WHERE username = ?1 AND role = 'admin'
                 AND deactivated_at IS NULL",
            )?
            .query_row([user], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn removed(&self, conv: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached("SELECT 1 FROM removed WHERE conversation_id = ?1 AND username = ?2")?
            .query_row(params![conv, user], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn prior(&self, user: &str, cmid: &str) -> Result<Option<Prior>, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached(
                "SELECT conversation_id, seq, ts, kind FROM events
                 WHERE sender = ?1 AND client_msg_id = ?2",
            )?
            .query_row(params![user, cmid], |r| {
                Ok(Prior {
                    conversation_id: r.get(0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    ts: r.get(2)?,
                    kind: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn target(&self, conv: &str, seq: u64) -> Result<Option<Target>, StoreError> {
        let conn = &self.0.conn;
        let row: Option<(String, String)> = conn
            .prepare_cached(
                "SELECT sender, kind FROM events WHERE conversation_id = ?1 AND seq = ?2",
            )?
            .query_row(params![conv, seq as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((sender, kind)) = row else {
            return Ok(None);
        };
        let deleted: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events
                 WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 'delete')",
            )?
            .query_row(params![conv, seq as i64], |r| r.get(0))?;
        Ok(Some(Target {
            sender,
            kind,
            deleted,
        }))
    }

    fn upload_size(&self, user: &str, digest: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached("SELECT size FROM uploads WHERE username = ?1 AND digest = ?2")?
            .query_row(params![user, digest], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|s| s as u64))
    }
}

impl Facts for Mirrored<'_> {
    fn kind(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Result<Option<ConvKind>, StoreError>> + Send {
        ready(Ok(self.0.mirror.convs.get(conv).map(|c| c.kind)))
    }

    fn role(
        &mut self,
        conv: &str,
        user: &str,
    ) -> impl Future<Output = Result<Option<MemberRole>, StoreError>> + Send {
        let role = self
            .0
            .mirror
            .convs
            .get(conv)
            .filter(|c| c.members.contains(user))
            .map(|c| c.role(user));
        ready(Ok(role))
    }

    fn member_count(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        ready(Ok(self
            .0
            .mirror
            .convs
            .get(conv)
            .map_or(0, |c| c.members.len())))
    }

    fn members(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Result<Vec<(String, MemberRole)>, StoreError>> + Send {
        let members = self.0.mirror.convs.get(conv).map_or_else(Vec::new, |c| {
            c.members.iter().map(|m| (m.clone(), c.role(m))).collect()
        });
        ready(Ok(members))
    }

    fn user_exists(&mut self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        // An account made beside the running server (`chatd admin`) is in
        // the database before the mirror.
        ready(if self.0.mirror.users.contains(name) {
            Ok(true)
        } else {
            super::accounts::exists(&self.0.conn, name)
        })
    }

    fn server_admin(
        &mut self,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Mirrored::server_admin(self, user))
    }

    fn blocks(
        &mut self,
        blocker: &str,
        blocked: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.0.mirror.blocks.blocks(blocker, blocked)))
    }

    fn memberships(
        &mut self,
        user: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        ready(Ok(self
            .0
            .mirror
            .memberships
            .get(user)
            .copied()
            .unwrap_or(0)))
    }

    fn dm(&mut self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        ready(Ok(self.0.mirror.dms.get(key).cloned()))
    }

    fn channel(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        ready(Ok(self.0.mirror.channels.get(name).cloned()))
    }

    fn removed(
        &mut self,
        conv: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Mirrored::removed(self, conv, user))
    }

    fn prior(
        &mut self,
        user: &str,
        client_msg_id: &str,
    ) -> impl Future<Output = Result<Option<Prior>, StoreError>> + Send {
        ready(Mirrored::prior(self, user, client_msg_id))
    }

    fn target(
        &mut self,
        conv: &str,
        seq: u64,
    ) -> impl Future<Output = Result<Option<Target>, StoreError>> + Send {
        ready(Mirrored::target(self, conv, seq))
    }

    fn upload_size(
        &mut self,
        user: &str,
        digest: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        ready(Mirrored::upload_size(self, user, digest))
    }

    fn encrypted(&mut self, conv: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self
            .0
            .mirror
            .convs
            .get(conv)
            .is_some_and(|c| c.encrypted)))
    }
}
