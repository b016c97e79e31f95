//! Unread bookkeeping kept when events are stored, so the conversation list
//! counts flags through an index instead of reading message bodies.
//!
//! Each `message` and `file` row carries two flags (a file's caption is its
//! text):
//! - `counts_unread`: a live message from someone else. My own messages,
//!   deleted messages and every other kind (edits, deletions, reactions,
//!   joins, leaves, renames, creates) are 0.
//! - `mentions_me`: of those, the ones whose *current* body (the sender's
//!   latest edit applied) mentions me. An edit that adds a mention raises
//!   it, an edit that removes it clears it.
//!
//! The flags are recomputed for one message whenever the message, an edit
//! of it or its deletion is stored, whatever order they arrive in. They
//! depend on who "me" is: the user they were computed for is kept in
//! `meta` under [`META_FLAGS_ME`], and when it differs from the signed-in
//! user (a cache written before the flags existed, a cache that learnt
//! `me` after storing events) every flag is recomputed once.

use super::schema::Seq;
use super::{CacheError, META_ME};
use crate::client::text::mentions;
use rusqlite::{Connection, OptionalExtension, params};

/// The meta key naming the user the flags were computed for.
pub(crate) const META_FLAGS_ME: &str = "flags_me";

/// A message's sender, stored text, whether it is deleted, and the text of
/// the sender's latest edit: everything its flags depend on. The lookups of
/// edits and deletions go through `events_target` by name: left to itself,
/// the planner walks the conversation's whole primary key for each message.
pub(crate) const MESSAGE_STATE: &str = "SELECT m.conversation_id, m.seq, m.sender, m.text,
     EXISTS(SELECT 1 FROM events d INDEXED BY events_target
            WHERE d.conversation_id = m.conversation_id
            AND d.target_seq = m.seq AND d.kind = 'delete'),
     (SELECT e.text FROM events e INDEXED BY events_target
      WHERE e.conversation_id = m.conversation_id
      AND e.target_seq = m.seq AND e.kind = 'edit' AND e.sender = m.sender
      ORDER BY e.seq DESC LIMIT 1),
     m.ts, json_extract(m.data, '$.file.name')
 FROM events m WHERE m.kind IN ('message', 'file')";

/// One message's state, as [`MESSAGE_STATE`] selects it: what its flags
/// and its search text depend on.
pub(crate) struct MessageState {
    conv: String,
    seq: Seq,
    pub(crate) sender: String,
    /// A message's body, a shared file's caption.
    text: Option<String>,
    pub(crate) deleted: bool,
    edited: Option<String>,
    pub(crate) ts: i64,
    /// A shared file's name (`None` for a message).
    file_name: Option<String>,
}

impl MessageState {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageState> {
        Ok(MessageState {
            conv: r.get(0)?,
            seq: r.get(1)?,
            sender: r.get(2)?,
            text: r.get(3)?,
            deleted: r.get(4)?,
            edited: r.get(5)?,
            ts: r.get(6)?,
            file_name: r.get(7)?,
        })
    }

    /// What a search finds it by: a message's current body, a shared
    /// file's name and caption (`name — caption`).
    pub(crate) fn search_text(&self) -> String {
        let body = self
            .edited
            .as_deref()
            .or(self.text.as_deref())
            .unwrap_or("");
        match &self.file_name {
            Some(name) if body.is_empty() => name.clone(),
            Some(name) => format!("{name} — {body}"),
            None => body.to_string(),
        }
    }

    /// `(counts_unread, mentions_me)` for the user `me` ("" when unknown:
    /// every message counts, none mentions).
    fn flags(&self, me: &str) -> (bool, bool) {
        let counts = !self.deleted && self.sender != me;
        let body = self.edited.as_deref().or(self.text.as_deref());
        (counts, counts && body.is_some_and(|b| mentions(b, me)))
    }
}

fn write_flags(conn: &Connection, m: &MessageState, me: &str) -> Result<(), CacheError> {
    let (counts, mention) = m.flags(me);
    conn.prepare_cached(
        "UPDATE events SET counts_unread = ?3, mentions_me = ?4
         WHERE conversation_id = ?1 AND seq = ?2",
    )?
    .execute(params![m.conv, m.seq, counts, mention])?;
    Ok(())
}

/// Recompute the flags of message `seq` from the events held for it (no-op
/// when `seq` is not a held message).
pub(crate) fn refresh_message(
    conn: &Connection,
    conv: &str,
    seq: u64,
    me: &str,
) -> Result<(), CacheError> {
    let state = conn
        .prepare_cached(&format!(
            "{MESSAGE_STATE} AND m.conversation_id = ?1 AND m.seq = ?2"
        ))?
        .query_row(params![conv, Seq(seq)], MessageState::from_row)
        .optional()?;
    match state {
        Some(m) => write_flags(conn, &m, me),
        None => Ok(()),
    }
}

/// Recompute every message's flags for `me`.
fn refresh_all(conn: &Connection, me: &str) -> Result<(), CacheError> {
    conn.execute(
        "UPDATE events SET counts_unread = 0, mentions_me = 0
         WHERE counts_unread <> 0 OR mentions_me <> 0",
        [],
    )?;
    let mut stmt = conn.prepare(MESSAGE_STATE)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let m = MessageState::from_row(row)?;
        if m.flags(me) != (false, false) {
            write_flags(conn, &m, me)?;
        }
    }
    Ok(())
}

/// Bring the flags in line with the signed-in user: recompute them all
/// when they were computed for someone else (or never), in one transaction.
pub(crate) fn ensure_flags(conn: &mut Connection) -> Result<(), CacheError> {
    let meta = |conn: &Connection, key: &str| -> Result<Option<String>, CacheError> {
        Ok(conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    };
    let me = meta(conn, META_ME)?.unwrap_or_default();
    if meta(conn, META_FLAGS_ME)?.as_deref() == Some(me.as_str()) {
        return Ok(());
    }
    let tx = conn.transaction()?;
    refresh_all(&tx, &me)?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![META_FLAGS_ME, me],
    )?;
    tx.commit()?;
    Ok(())
}
