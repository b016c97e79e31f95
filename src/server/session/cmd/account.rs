//! A user's own account: `sessions`, `revoke_session`, `change_password`
//! and `logout`. Ending a session closes its live connections at once
//! (through the hub), with a close reason saying why.

use super::super::handshake::digests;
use super::super::{Outcome, Session, close};
use crate::proto::{
    ErrorCode, ProtoError, RevokedOk, SessionInfo, SessionsOk, encode_ok, encode_ok_empty,
};
use crate::server::queue::Ended;
use crate::server::validate;
use crate::store::log::{AccountOp, AccountReply, Revoke};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl Session {
    /// The hex hash of this connection's token, as the store keeps it.
    pub(super) fn own_token_hash(&self) -> String {
        self.token_digest.map(hex::encode).unwrap_or_default()
    }

    /// Apply an account change that ends sessions; close their connections.
    pub(super) async fn end_sessions(
        &self,
        user: &str,
        op: AccountOp,
        why: Ended,
    ) -> Result<u32, ProtoError> {
        let AccountReply::Revoked(hashes) = self.account_change(op).await? else {
            return Ok(0);
        };
        if !hashes.is_empty() {
            self.shared
                .hub
                .end_sessions(user, Some(&digests(&hashes)), why);
        }
        Ok(hashes.len() as u32)
    }

    /// Revoke this connection's session, answer, then close. Other
    /// connections on the same token close too.
    pub(super) async fn logout(&mut self, rid: u64, user: &str) -> Result<Outcome, ProtoError> {
        let op = AccountOp::RevokeSessions {
            username: user.to_string(),
            which: Revoke::Token(self.own_token_hash()),
        };
        self.end_sessions(user, op, Ended::LoggedOut).await?;
        Ok(Outcome::Close(
            encode_ok_empty(rid),
            close(CloseCode::Normal, "logged out"),
        ))
    }

    /// This account's sessions, most recently used first.
    pub(super) async fn sessions(&self, rid: u64, user: &str) -> Result<Outcome, ProtoError> {
        let rows = self
            .shared
            .store
            .readers()
            .sessions(user)
            .await
            .map_err(|e| e.to_proto())?;
        let own = self.own_token_hash();
        let life = self.shared.accounts.life;
        let sessions = rows
            .into_iter()
            .map(|r| SessionInfo {
                current: r.token_hash == own,
                expires_at: life.expires_at(r.created_at, r.last_seen),
                id: r.id,
                device: r.device,
                created_at: r.created_at,
                last_seen: r.last_seen,
                last_address: r.last_address,
            })
            .collect();
        Ok(Outcome::Reply(encode_ok(rid, &SessionsOk { sessions })))
    }

    /// Revoke one session by id, or every other one.
    pub(super) async fn revoke_session(
        &self,
        rid: u64,
        user: &str,
        session_id: Option<String>,
        others: bool,
    ) -> Result<Outcome, ProtoError> {
        let which = match (session_id, others) {
            (None, true) => Revoke::AllBut(self.own_token_hash()),
            (Some(id), false) => Revoke::Id(id),
            _ => {
                return Err(ProtoError::invalid(
                    "name one session_id, or set others: true",
                ));
            }
        };
        let one = matches!(which, Revoke::Id(_));
        let op = AccountOp::RevokeSessions {
            username: user.to_string(),
            which,
        };
        let revoked = self.end_sessions(user, op, Ended::Revoked).await?;
        if one && revoked == 0 {
            return Err(ProtoError::not_found("no such session"));
        }
        Ok(Outcome::Reply(encode_ok(rid, &RevokedOk { revoked })))
    }

    /// A new password, given the old one; every other session ends.
    pub(super) async fn change_password(
        &self,
        rid: u64,
        user: &str,
        old_password: String,
        new_password: String,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        if old_password.len() > limits.max_password_bytes {
            return Err(ProtoError::new(ErrorCode::AuthFailed, "wrong password"));
        }
        validate::password(&new_password, limits)?;
        let stored = self.stored_hash(user).await?;
        if !self.shared.hasher.verify(old_password, stored).await {
            tracing::info!(user = %user, "password change refused: wrong password");
            return Err(ProtoError::new(ErrorCode::AuthFailed, "wrong password"));
        }
        let hash = self.hash_password(new_password).await?;
        let op = AccountOp::SetPassword {
            username: user.to_string(),
            password_hash: hash,
            keep: Some(self.own_token_hash()),
        };
        let revoked = self.end_sessions(user, op, Ended::PasswordChanged).await?;
        tracing::info!(user = %user, revoked, "password changed");
        Ok(Outcome::Reply(encode_ok(rid, &RevokedOk { revoked })))
    }
}
