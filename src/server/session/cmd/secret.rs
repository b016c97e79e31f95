//! Writes of secret conversations: a `send`, `send_file`, `edit` or
//! `react` that carries its ciphertext (and shares of its Megolm session)
//! goes to the store as one write, event and shares together; and
//! `keys_share`. The store's rules refuse ciphertext in a normal
//! conversation and text in a secret one.

use super::super::{Outcome, Session, error};
use crate::proto::{AppendOk, EventBody, ProtoError, ToDeviceMessage, encode_ok, encode_ok_empty};
use crate::server::validate;
use crate::store::log::{SecretOp, StoreError};
use futures_util::FutureExt;

impl Session {
    /// A message, file, edit or reaction: with its ciphertext (`secret`)
    /// and `shares`, a secret conversation's; else a normal one's.
    pub(super) async fn log_any_event(
        &mut self,
        rid: u64,
        user: String,
        (conversation_id, client_msg_id, body): (String, String, EventBody),
        secret: bool,
        shares: Vec<ToDeviceMessage>,
    ) -> Result<Outcome, ProtoError> {
        if !secret {
            if !shares.is_empty() {
                return Err(ProtoError::invalid(
                    "shares go with an encrypted message only",
                ));
            }
            return self
                .log_event(rid, user, conversation_id, client_msg_id, body)
                .await;
        }
        let limits = &self.shared.limits;
        validate::client_msg_id(&client_msg_id, limits)?;
        if let EventBody::File { file, .. } = &body {
            validate::file_digest(file, self.shared.files.config.max_upload_bytes)?;
        }
        for s in &shares {
            validate::to_device(s, limits)?;
        }
        let op = SecretOp::Event {
            user,
            token_hash: self.own_token_hash(),
            conversation_id,
            client_msg_id,
            body,
            shares,
            caps: self.key_caps(),
        };
        let rx = self
            .shared
            .store
            .submit_secret(op)
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Later(
            async move {
                match rx.await.unwrap_or(Err(StoreError::Closed)) {
                    Ok(done) => match done.seq {
                        Some((seq, ts)) => encode_ok(rid, &AppendOk { seq, ts }),
                        None => error(Some(rid), &ProtoError::internal()),
                    },
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }

    /// `keys_share`: deliver and record shares of a Megolm session ahead
    /// of a send.
    pub(super) async fn keys_share(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        session_id: String,
        shares: Vec<ToDeviceMessage>,
    ) -> Result<Outcome, ProtoError> {
        for s in &shares {
            validate::to_device(s, &self.shared.limits)?;
        }
        let op = SecretOp::Share {
            user,
            token_hash: self.own_token_hash(),
            conversation_id,
            session_id,
            shares,
            caps: self.key_caps(),
        };
        let rx = self
            .shared
            .store
            .submit_secret(op)
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Later(
            async move {
                match rx.await.unwrap_or(Err(StoreError::Closed)) {
                    Ok(_) => encode_ok_empty(rid),
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }
}
