//! Events of secret conversations: the engine decrypts them before they
//! are stored, so the cache holds their text for display and offline
//! search, beside the ciphertext (kept in the event's `encrypted` object).
//! One that could not be decrypted yet is stored with a placeholder and
//! noted here with why, to be tried again when new keys arrive.

use super::apply::{columns, forget_deleted_text};
use super::schema::Seq;
use super::unread::refresh_message;
use super::{Cache, CacheError, corrupt};
use crate::proto::{Event, EventBody};
use rusqlite::params;

/// Most undecrypted events tried again at once.
pub const RETRY_BATCH: u32 = 500;

impl Cache {
    /// Note that event `seq` of `conv` is held undecrypted, and why.
    pub fn mark_undecrypted(
        &mut self,
        conv: &str,
        seq: u64,
        reason: &str,
    ) -> Result<(), CacheError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO e2e_undecrypted(conversation_id, seq, reason)
             SELECT ?1, ?2, ?3 WHERE EXISTS
               (SELECT 1 FROM events WHERE conversation_id = ?1 AND seq = ?2)",
            params![conv, Seq(seq), reason],
        )?;
        Ok(())
    }

    /// Undecrypted events (of `conv`, or of every conversation), oldest
    /// first, at most [`RETRY_BATCH`].
    pub fn undecrypted(&self, conv: Option<&str>) -> Result<Vec<Event>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.conversation_id, u.seq FROM e2e_undecrypted u
             WHERE ?1 IS NULL OR u.conversation_id = ?1
             ORDER BY u.conversation_id, u.seq LIMIT ?2",
        )?;
        let keys: Vec<(String, Seq)> = stmt
            .query_map(params![conv, RETRY_BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(keys.len());
        for (c, seq) in keys {
            if let Some(ev) = self.event(&c, seq.0)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Why event `seq` of `conv` is not decrypted (`None`: it is, or is
    /// not a secret one).
    pub fn undecrypted_reason(&self, conv: &str, seq: u64) -> Result<Option<String>, CacheError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT reason FROM e2e_undecrypted WHERE conversation_id = ?1 AND seq = ?2",
                params![conv, Seq(seq)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Put the decrypted `body` in place of the placeholder of event `seq`
    /// of `conv`, with the unread flags and the search index brought up to
    /// date; the event is no longer undecrypted.
    pub fn set_decrypted(
        &mut self,
        conv: &str,
        seq: u64,
        body: &EventBody,
    ) -> Result<(), CacheError> {
        let me = self.me()?.unwrap_or_default();
        let tx = self.conn.transaction()?;
        let (_, text) = columns(body);
        let data = serde_json::to_string(body).map_err(corrupt)?;
        let n = tx.execute(
            "UPDATE events SET text = ?3, data = ?4 WHERE conversation_id = ?1 AND seq = ?2",
            params![conv, Seq(seq), text, data],
        )?;
        tx.execute(
            "DELETE FROM e2e_undecrypted WHERE conversation_id = ?1 AND seq = ?2",
            params![conv, Seq(seq)],
        )?;
        if n > 0 {
            let probe = Event {
                conversation_id: conv.to_string(),
                seq,
                ts: 0,
                sender: String::new(),
                client_msg_id: None,
                eid: None,
                bot: false,
                body: body.clone(),
            };
            forget_deleted_text(&tx, conv, &probe)?;
            let message = match body {
                EventBody::Edit { target_seq, .. } => Some(*target_seq),
                EventBody::Message { .. } | EventBody::File { .. } => Some(seq),
                _ => None,
            };
            if let Some(m) = message {
                refresh_message(&tx, conv, m, &me)?;
                super::search::refresh(&tx, conv, m)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
