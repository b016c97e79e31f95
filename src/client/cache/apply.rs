//! Storing events: idempotent by (conversation, seq), with the per-conversation
//! `floor`/`cursor` bookkeeping that finds gaps (invariant 4).
//!
//! Every seq in `floor..=cursor` is held. Seqs below `floor` are older history
//! not fetched yet (scrollback asks for them), seqs in `cursor+1..=last_seq`
//! that are not held are gaps. The floor starts at 1, so by default the whole
//! log counts; [`Cache::set_floor`] declares that only the newest part is
//! wanted, and the floor moves down by itself as older pages arrive.

use super::convs::ensure_conversation;
use super::schema::Seq;
use super::unread::refresh_message;
use super::{Cache, CacheError, corrupt};
use crate::client::text::mentions;
use crate::proto::{Event, EventBody};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::{BTreeMap, HashMap};

/// The largest seq SQLite's signed integers can hold; larger ones are ignored.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// What one [`Cache::apply_events`] call did to each conversation it touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub conversations: BTreeMap<String, ConvProgress>,
}

/// The state of one conversation after an apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvProgress {
    /// Highest seq up to which everything (from the floor) is held.
    pub cursor: u64,
    /// The last seq known to exist.
    pub last_seq: u64,
    /// Seqs stored by this call (not held before), ascending.
    pub stored: Vec<u64>,
    /// Inclusive ranges between the cursor and `last_seq` still missing.
    pub missing: Vec<(u64, u64)>,
}

impl ConvProgress {
    /// Whether this call stored anything new for the conversation.
    pub fn stored_any(&self) -> bool {
        !self.stored.is_empty()
    }
}

impl ApplyOutcome {
    /// Whether anything new was stored at all.
    pub fn stored_any(&self) -> bool {
        self.conversations.values().any(ConvProgress::stored_any)
    }
}

/// The denormalized columns of an event: kind, target seq, message text.
pub(super) fn columns(body: &EventBody) -> (Option<u64>, Option<&str>) {
    match body {
        EventBody::Message { body, .. } => (None, Some(body)),
        EventBody::File { caption, .. } => (None, Some(caption.as_deref().unwrap_or(""))),
        EventBody::Edit {
            target_seq, body, ..
        } => (Some(*target_seq), Some(body)),
        EventBody::Delete { target_seq } | EventBody::Reaction { target_seq, .. } => {
            (Some(*target_seq), None)
        }
        _ => (None, None),
    }
}

/// A deleted message's text is not kept: when a deletion is stored, the
/// stored body of its target and of the target's edits is cleared; a
/// message or edit stored after its deletion is cleared as it arrives.
pub(super) fn forget_deleted_text(
    conn: &Connection,
    conv: &str,
    ev: &Event,
) -> Result<(), CacheError> {
    let target = match &ev.body {
        EventBody::Delete { target_seq } => Some(*target_seq),
        EventBody::Message { .. } | EventBody::File { .. } | EventBody::Edit { .. } => {
            let message = match &ev.body {
                EventBody::Edit { target_seq, .. } => *target_seq,
                _ => ev.seq,
            };
            let deleted = conn
                .prepare_cached(
                    "SELECT 1 FROM events INDEXED BY events_target
                     WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 'delete' LIMIT 1",
                )?
                .query_row(params![conv, Seq(message)], |_| Ok(()))
                .optional()?
                .is_some();
            deleted.then_some(message)
        }
        _ => None,
    };
    if let Some(t) = target {
        conn.prepare_cached(
            "UPDATE events SET text = '', data = json_set(data, '$.body', '')
             WHERE conversation_id = ?1
               AND ((seq = ?2 AND kind = 'message') OR (target_seq = ?2 AND kind = 'edit'))",
        )?
        .execute(params![conv, Seq(t)])?;
        // A shared file's caption goes the same way.
        conn.prepare_cached(
            "UPDATE events SET text = '', data = json_remove(data, '$.caption')
             WHERE conversation_id = ?1 AND seq = ?2 AND kind = 'file'",
        )?
        .execute(params![conv, Seq(t)])?;
    }
    Ok(())
}

/// The message whose stored unread flags an edit or a deletion changes.
fn changed_message(body: &EventBody) -> Option<u64> {
    match body {
        EventBody::Edit { target_seq, .. } | EventBody::Delete { target_seq } => Some(*target_seq),
        _ => None,
    }
}

/// The unread flags of a message as it arrives (its own body; edits and a
/// deletion already held are applied by [`refresh_changed_before`]).
fn message_flags(ev: &Event, me: &str) -> (bool, bool) {
    match &ev.body {
        EventBody::Message { body, .. } if ev.sender != me => (true, mentions(body, me)),
        EventBody::File { caption, .. } if ev.sender != me => {
            (true, caption.as_deref().is_some_and(|c| mentions(c, me)))
        }
        _ => (false, false),
    }
}

/// Recompute the flags of messages just stored (`stored`, ascending) that
/// edits or deletions held before them target: those arrived out of order.
fn refresh_changed_before(
    conn: &Connection,
    conv: &str,
    stored: &[u64],
    me: &str,
) -> Result<(), CacheError> {
    let (Some(&lo), Some(&hi)) = (stored.first(), stored.last()) else {
        return Ok(());
    };
    let targets: Vec<u64> = conn
        .prepare_cached(
            "SELECT DISTINCT target_seq FROM events INDEXED BY events_target
             WHERE conversation_id = ?1 AND target_seq >= ?2 AND target_seq <= ?3
             AND kind IN ('edit', 'delete')",
        )?
        .query_map(params![conv, Seq(lo), Seq(hi)], |r| r.get::<_, Seq>(0))?
        .map(|s| s.map(|s| s.0))
        .collect::<Result<_, _>>()?;
    for seq in targets {
        if stored.binary_search(&seq).is_ok() {
            refresh_message(conn, conv, seq, me)?;
        }
    }
    Ok(())
}

/// The columns [`event_from_row`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str = "seq, ts, sender, client_msg_id, data, eid, bot";

/// Decode an event selected with [`EVENT_COLUMNS`].
pub(crate) fn event_from_row(conv: &str, row: &Row<'_>) -> Result<Event, CacheError> {
    let data: String = row.get(4)?;
    Ok(Event {
        conversation_id: conv.to_string(),
        seq: row.get::<_, Seq>(0)?.0,
        ts: row.get(1)?,
        sender: row.get(2)?,
        client_msg_id: row.get(3)?,
        eid: row.get(5)?,
        bot: row.get::<_, Option<bool>>(6)?.unwrap_or(false),
        body: serde_json::from_str(&data).map_err(|e| corrupt(format!("event body: {e}")))?,
    })
}

/// Move the floor down over held events just below it, then the cursor up
/// over held events just above it. Returns `(floor, cursor)`.
fn advance(conn: &Connection, conv: &str) -> Result<(u64, u64), CacheError> {
    let (mut floor, mut cursor): (u64, u64) = conn
        .prepare_cached("SELECT floor, cursor FROM conversations WHERE id = ?1")?
        .query_row([conv], |r| {
            Ok((r.get::<_, Seq>(0)?.0, r.get::<_, Seq>(1)?.0))
        })?;
    floor = floor.max(1);
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM events WHERE conversation_id = ?1 AND seq < ?2 ORDER BY seq DESC",
        )?;
        let mut rows = stmt.query(params![conv, Seq(floor)])?;
        while let Some(r) = rows.next()? {
            if r.get::<_, Seq>(0)?.0 + 1 != floor {
                break;
            }
            floor -= 1;
        }
    }
    cursor = cursor.max(floor - 1);
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM events WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![conv, Seq(cursor)])?;
        while let Some(r) = rows.next()? {
            if r.get::<_, Seq>(0)?.0 != cursor + 1 {
                break;
            }
            cursor += 1;
        }
    }
    conn.prepare_cached("UPDATE conversations SET floor = ?2, cursor = ?3 WHERE id = ?1")?
        .execute(params![conv, Seq(floor), Seq(cursor)])?;
    Ok((floor, cursor))
}

fn last_seq_and_cursor(conn: &Connection, conv: &str) -> Result<Option<(u64, u64)>, CacheError> {
    Ok(conn
        .prepare_cached("SELECT last_seq, cursor FROM conversations WHERE id = ?1")?
        .query_row([conv], |r| {
            Ok((r.get::<_, Seq>(0)?.0, r.get::<_, Seq>(1)?.0))
        })
        .optional()?)
}

fn missing(conn: &Connection, conv: &str) -> Result<Vec<(u64, u64)>, CacheError> {
    let Some((last_seq, cursor)) = last_seq_and_cursor(conn, conv)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut next = cursor + 1;
    let mut stmt = conn.prepare_cached(
        "SELECT seq FROM events WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![conv, Seq(cursor), Seq(last_seq)])?;
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, Seq>(0)?.0;
        if seq > next {
            out.push((next, seq - 1));
        }
        next = seq + 1;
    }
    if next <= last_seq {
        out.push((next, last_seq));
    }
    Ok(out)
}

impl Cache {
    /// Store events from the server, in one transaction. Idempotent: events
    /// already held (by conversation and seq) are ignored, so duplicates and
    /// any order give the same result. Raises each conversation's `last_seq`,
    /// advances its cursor, keeps the unread flags of the messages touched,
    /// and drops outbox entries the events acknowledge.
    /// Events of unknown conversations are kept under a placeholder row.
    pub fn apply_events(&mut self, events: &[Event]) -> Result<ApplyOutcome, CacheError> {
        let me = self.me()?;
        let me_name = me.as_deref().unwrap_or_default();
        let tx = self.conn.transaction()?;
        let mut touched: BTreeMap<&str, (u64, Vec<u64>)> = BTreeMap::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                 (conversation_id, seq, ts, sender, client_msg_id, kind, target_seq, text, data,
                  counts_unread, mentions_me, eid, bot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut acked = tx.prepare_cached(
                "DELETE FROM outbox WHERE client_msg_id = ?1 AND conversation_id = ?2",
            )?;
            for ev in events.iter().filter(|e| (1..=MAX_SEQ).contains(&e.seq)) {
                let conv = ev.conversation_id.as_str();
                let entry = match touched.get_mut(conv) {
                    Some(entry) => entry,
                    None => {
                        ensure_conversation(&tx, conv)?;
                        touched.entry(conv).or_default()
                    }
                };
                entry.0 = entry.0.max(ev.seq);
                let (target, text) = columns(&ev.body);
                let data = serde_json::to_string(&ev.body).map_err(corrupt)?;
                let (counts, mention) = message_flags(ev, me_name);
                let n = insert.execute(params![
                    conv,
                    Seq(ev.seq),
                    ev.ts,
                    ev.sender,
                    ev.client_msg_id,
                    ev.body.kind(),
                    target.map(Seq),
                    text,
                    data,
                    counts,
                    mention,
                    ev.eid,
                    ev.bot.then_some(1)
                ])?;
                if n == 0 {
                    continue;
                }
                entry.1.push(ev.seq);
                if let Some(message) = changed_message(&ev.body) {
                    refresh_message(&tx, conv, message, me_name)?;
                }
                forget_deleted_text(&tx, conv, ev)?;
                match &ev.body {
                    EventBody::Message { .. } | EventBody::File { .. } => {
                        super::search::refresh(&tx, conv, ev.seq)?
                    }
                    EventBody::Edit { target_seq, .. } | EventBody::Delete { target_seq } => {
                        super::search::refresh(&tx, conv, *target_seq)?
                    }
                    _ => {}
                }
                if let Some(id) = &ev.client_msg_id
                    && me.as_deref().is_none_or(|me| me == ev.sender)
                {
                    acked.execute(params![id, conv])?;
                }
            }
        }
        let mut outcome = ApplyOutcome::default();
        for (conv, (max_seq, mut stored)) in touched {
            tx.prepare_cached(
                "UPDATE conversations SET last_seq = max(last_seq, ?2) WHERE id = ?1",
            )?
            .execute(params![conv, Seq(max_seq)])?;
            let (_, cursor) = advance(&tx, conv)?;
            stored.sort_unstable();
            refresh_changed_before(&tx, conv, &stored, me_name)?;
            let last_seq = last_seq_and_cursor(&tx, conv)?.map_or(max_seq, |(l, _)| l);
            outcome.conversations.insert(
                conv.to_string(),
                ConvProgress {
                    cursor,
                    last_seq,
                    stored,
                    missing: missing(&tx, conv)?,
                },
            );
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// For every conversation whose cursor event has a server id, that id:
    /// what `sync` sends as `heads`, so the server can say whether this
    /// copy is its own.
    pub fn heads(&self) -> Result<HashMap<String, String>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id, e.eid FROM conversations c
             JOIN events e ON e.conversation_id = c.id AND e.seq = c.cursor
             WHERE e.eid IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// My messages in `conv` (newest `limit`, oldest first) as sends the
    /// outbox can repeat: after the server's copy turned out to differ,
    /// sending them again (same client_msg_id) restores the ones it lost
    /// and is answered with the original seq for the ones it kept.
    pub fn my_messages_to_resend(
        &self,
        conv: &str,
        me: &str,
        limit: u32,
    ) -> Result<Vec<(String, String, Option<u64>)>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT client_msg_id, data FROM events
             WHERE conversation_id = ?1 AND sender = ?2 AND kind = 'message'
               AND client_msg_id IS NOT NULL
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![conv, me, limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cmid, data) = row?;
            if let Ok(EventBody::Message { body, reply_to, .. }) = serde_json::from_str(&data)
                && !body.is_empty()
            {
                out.push((cmid, body, reply_to));
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Clear the text of messages and edits older than `cutoff` (the
    /// server's retention); returns how many were cleared.
    pub fn forget_text_before(&mut self, cutoff: i64) -> Result<usize, CacheError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE events SET text = '', data = json_set(data, '$.body', '')
             WHERE kind IN ('message', 'edit') AND ts < ?1 AND coalesce(text, '') <> ''",
            [cutoff],
        )?;
        if n > 0 {
            let old: Vec<(String, Seq)> = tx
                .prepare("SELECT conversation_id, seq FROM search_docs WHERE ts < ?1")?
                .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (conv, seq) in old {
                super::search::refresh(&tx, &conv, seq.0)?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Highest seq up to which every event (from the floor) is held.
    pub fn cursor(&self, conv: &str) -> Result<u64, CacheError> {
        Ok(last_seq_and_cursor(&self.conn, conv)?.map_or(0, |(_, c)| c))
    }

    /// Every conversation's cursor: what a `sync` request sends.
    pub fn cursors(&self) -> Result<HashMap<String, u64>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, cursor FROM conversations")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, Seq>(1)?.0)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Inclusive ranges of seqs between the cursor and `last_seq` that are
    /// known to exist but not held: the gaps to fetch.
    pub fn missing_ranges(&self, conv: &str) -> Result<Vec<(u64, u64)>, CacheError> {
        missing(&self.conn, conv)
    }

    /// The lowest seq of the held run that reaches the cursor (`None` while
    /// that run is empty). Scrollback fetches history before it when it is
    /// above 1.
    pub fn oldest_held(&self, conv: &str) -> Result<Option<u64>, CacheError> {
        let row: Option<(u64, u64)> = self
            .conn
            .query_row(
                "SELECT floor, cursor FROM conversations WHERE id = ?1",
                [conv],
                |r| Ok((r.get::<_, Seq>(0)?.0, r.get::<_, Seq>(1)?.0)),
            )
            .optional()?;
        Ok(row.and_then(|(floor, cursor)| (cursor >= floor).then_some(floor)))
    }

    /// Declare that history below `floor` is not wanted for now (the cache
    /// holds only the newest part of a long conversation): those seqs stop
    /// counting as gaps. If events just below `floor` are held, the floor
    /// extends down over them; older pages lower it as they arrive.
    pub fn set_floor(&mut self, conv: &str, floor: u64) -> Result<(), CacheError> {
        let floor = floor.max(1);
        let tx = self.conn.transaction()?;
        ensure_conversation(&tx, conv)?;
        tx.execute(
            "UPDATE conversations SET floor = ?2, cursor = ?2 - 1 WHERE id = ?1",
            params![conv, Seq(floor)],
        )?;
        advance(&tx, conv)?;
        tx.commit()?;
        Ok(())
    }

    /// One held event.
    pub fn event(&self, conv: &str, seq: u64) -> Result<Option<Event>, CacheError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE conversation_id = ?1 AND seq = ?2"
        ))?;
        let mut rows = stmt.query(params![conv, Seq(seq)])?;
        match rows.next()? {
            Some(row) => Ok(Some(event_from_row(conv, row)?)),
            None => Ok(None),
        }
    }

    /// Held events with seq in `from..=to`, ascending.
    pub fn events(&self, conv: &str, from: u64, to: u64) -> Result<Vec<Event>, CacheError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE conversation_id = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq"
        ))?;
        let mut rows = stmt.query(params![conv, Seq(from), Seq(to)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(event_from_row(conv, row)?);
        }
        Ok(out)
    }
}
