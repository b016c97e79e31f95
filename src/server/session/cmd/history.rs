//! `history`: a page of a conversation's log, for gap filling and
//! scrollback, read from the store once membership is checked.

use super::super::{Outcome, Session, error};
use crate::proto::{HistoryOk, ProtoError, encode_ok};
use futures_util::FutureExt;

impl Session {
    /// Events of `conversation_id` after `after` and before `before`, at
    /// most `limit` of them (capped) and a frame's worth of bytes.
    pub(super) fn history(
        &self,
        rid: u64,
        user: &str,
        conversation_id: String,
        after: Option<u64>,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Outcome, ProtoError> {
        let shared = self.shared.clone();
        let limits = &shared.limits;
        let last_seq = shared.hub.check_member(user, &conversation_id)?;
        let cap = limits.history_page_cap;
        let limit = limit.unwrap_or(cap).min(cap);
        // A reply must fit the largest frame chatd sends: large events
        // make shorter pages.
        let max_bytes = limits.reply_bytes();
        Ok(Outcome::Later(
            async move {
                match shared
                    .store
                    .readers()
                    .history(&conversation_id, after, before, limit, max_bytes)
                    .await
                {
                    Ok(events) => {
                        let last_seq = events.last().map(|e| e.seq).unwrap_or(0).max(last_seq);
                        encode_ok(rid, &HistoryOk { events, last_seq })
                    }
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }
}
