//! The session commands after the handshake: `logout` revokes this
//! connection's token and closes; a second handshake is refused.

use super::super::{Outcome, Session, close, error};
use crate::proto::{ProtoError, encode_ok_empty};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// `register`, `login` or `auth` on a connection that already has a user.
pub(super) fn already_authenticated(id: Option<u64>) -> Outcome {
    Outcome::Reply(error(id, &ProtoError::invalid("already authenticated")))
}

impl Session {
    /// Revoke this connection's device session, answer, then close.
    pub(super) async fn logout(&mut self, rid: u64) -> Result<Outcome, ProtoError> {
        let hash = self.token_digest.map(hex::encode).unwrap_or_default();
        self.shared
            .store
            .revoke_session(hash)
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Close(
            encode_ok_empty(rid),
            close(CloseCode::Normal, "logged out"),
        ))
    }
}
