//! Users and their presence: `users` looks names up in the store and adds
//! the presence of those who are the caller's contacts from the hub;
//! `presence` sets this user's status.

use super::super::{Outcome, Session, error};
use super::reply_if;
use crate::proto::{BlocksOk, PresenceStatus, ProtoError, UsersOk, encode_ok, encode_ok_empty};
use crate::store::log::AccountOp;
use futures_util::FutureExt;

impl Session {
    /// Up to `limit` (50 by default, 200 at most) users whose name starts
    /// with `prefix`, answered once the store has read them.
    pub(super) fn users(
        &self,
        rid: u64,
        viewer: &str,
        prefix: Option<String>,
        limit: Option<u32>,
    ) -> Outcome {
        let shared = self.shared.clone();
        let viewer = viewer.to_string();
        let prefix = prefix.unwrap_or_default();
        let limit = limit.unwrap_or(50).min(200);
        Outcome::Later(
            async move {
                let readers = shared.store.readers();
                let found = match readers.users(&prefix, limit).await {
                    Ok(users) => users,
                    Err(e) => return error(Some(rid), &e.to_proto()),
                };
                let bots = match readers.bots_among(found.clone()).await {
                    Ok(bots) => bots,
                    Err(e) => return error(Some(rid), &e.to_proto()),
                };
                let mut users = shared.hub.users_seen_by(&viewer, &found);
                for u in &mut users {
                    u.bot = bots.contains(&u.user);
                }
                encode_ok(rid, &UsersOk { users })
            }
            .boxed(),
        )
    }

    /// Start (`on`) or stop blocking `target`. Private: `target` is not
    /// told, and only sees the blocker go offline.
    pub(super) async fn block(
        &self,
        rid: u64,
        user: &str,
        target: String,
        on: bool,
    ) -> Result<Outcome, ProtoError> {
        self.account_change(AccountOp::Block {
            blocker: user.to_string(),
            blocked: target,
            on,
        })
        .await?;
        Ok(Outcome::Reply(encode_ok_empty(rid)))
    }

    /// The users `user` blocks.
    pub(super) async fn blocks(&self, rid: u64, user: &str) -> Result<Outcome, ProtoError> {
        let users = self
            .shared
            .store
            .readers()
            .blocks(user)
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Reply(encode_ok(rid, &BlocksOk { users })))
    }

    /// Set `user`'s status to online or away; offline is the connection
    /// closing.
    pub(super) fn presence(
        &self,
        id: Option<u64>,
        user: &str,
        status: PresenceStatus,
    ) -> Result<Outcome, ProtoError> {
        if status == PresenceStatus::Offline {
            return Err(ProtoError::invalid(
                "status must be online or away; close the connection to go offline",
            ));
        }
        self.shared.hub.set_status(user, status);
        Ok(reply_if(id))
    }
}
