//! `receipt`: move this user's delivered and read pointers in a
//! conversation forward, answered with where they stand once durable.

use super::super::{Outcome, Session, error};
use crate::proto::{ProtoError, ReceiptOk, encode_ok};
use crate::server::hub::receipt_of;
use crate::store::log::StoreError;
use futures_util::FutureExt;

impl Session {
    /// Queue the receipt to the writer; a receipt that moves nothing is
    /// answered with the pointers the hub holds.
    pub(super) async fn receipt(
        &mut self,
        rid: u64,
        user: String,
        conversation_id: String,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<Outcome, ProtoError> {
        let shared = self.shared.clone();
        shared.hub.check_member(&user, &conversation_id)?;
        let rx = shared
            .store
            .submit_receipt(
                &user,
                &conversation_id,
                delivered.unwrap_or(0),
                read.unwrap_or(0),
            )
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Later(
            async move {
                match rx.await.unwrap_or(Err(StoreError::Closed)) {
                    Ok(Some(p)) => encode_ok(
                        rid,
                        &ReceiptOk {
                            delivered: p.delivered,
                            read: p.read,
                        },
                    ),
                    Ok(None) => {
                        let p = receipt_of(&shared.hub, &user, &conversation_id);
                        encode_ok(
                            rid,
                            &ReceiptOk {
                                delivered: p.delivered,
                                read: p.read,
                            },
                        )
                    }
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }
}
