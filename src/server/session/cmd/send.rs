//! The log writes: `send`, `send_file`, `edit`, `delete` and `react` become one event
//! each, checked here, appended by the writer (which assigns the seq and
//! enforces authorship and idempotency) and answered with the seq once
//! committed.

use super::super::{Outcome, Session, error};
use crate::proto::{AppendOk, EventBody, ProtoError, encode_ok};
use crate::server::validate;
use crate::store::log::{Append, StoreError};
use futures_util::FutureExt;

impl Session {
    /// Check a message, edit, deletion or reaction, then append it.
    pub(super) async fn log_event(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        client_msg_id: String,
        body: EventBody,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        validate::client_msg_id(&client_msg_id, limits)?;
        match &body {
            EventBody::Message { body, .. } | EventBody::Edit { body, .. } => {
                validate::body(body, limits)?
            }
            EventBody::Reaction { emoji, .. } => validate::emoji(emoji, limits)?,
            EventBody::File { file, caption, .. } => {
                validate::file(file, self.shared.files.config.max_upload_bytes)?;
                if let Some(caption) = caption {
                    validate::body(caption, limits)?;
                }
            }
            _ => {}
        }
        self.append_event(
            rid,
            Append::Event {
                user,
                conversation_id,
                client_msg_id,
                body,
            },
        )
        .await
    }

    /// Queue an append; reply with its seq once durable.
    pub(super) async fn append_event(
        &mut self,
        rid: u64,
        op: Append,
    ) -> Result<Outcome, ProtoError> {
        let rx = self.submit_append(op).await?;
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
}
