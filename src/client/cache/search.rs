//! The cache's search index: the current text of every message held, in a
//! contentless FTS5 table like chatd's, so that a search answers at once
//! and offline with the same query language ([`crate::proto::search`]).
//!
//! `search_docs` maps each index row to its message. A row's number is
//! the message's time (ms) times 4,096, plus a few to keep it unique, so
//! that the index's own rowid order is newest first and a search stops as
//! soon as its page is full. The index is set from
//! a message's current state (the sender's latest edit, not deleted)
//! whenever the message, an edit of it or its deletion is stored, in
//! whatever order they arrive; text cleared by retention and forgotten
//! conversations leave it too.

use super::schema::Seq;
use super::unread::{MESSAGE_STATE, MessageState};
use super::{Cache, CacheError};
use crate::proto::search::{Place, SearchQuery, snippet};
use crate::proto::{ConvKind, SearchHit};
use rusqlite::{Connection, OptionalExtension, params};

/// The schema of the index (cache migration 5).
pub(crate) const SCHEMA: &str = "
CREATE TABLE search_docs (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    sender          TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE VIRTUAL TABLE search_text USING fts5(
    body, content='', contentless_delete=1,
    tokenize='unicode61 remove_diacritics 0'
);
";

/// The migration that brings [`SCHEMA`]; [`fill`] runs with it.
pub(crate) const SEARCH_VERSION: usize = 5;

/// One message's current text, `None` when it is deleted, empty or not held.
fn current(
    conn: &Connection,
    conv: &str,
    seq: u64,
) -> Result<Option<(String, i64, String)>, CacheError> {
    let state = conn
        .prepare_cached(&format!(
            "{MESSAGE_STATE} AND m.conversation_id = ?1 AND m.seq = ?2"
        ))?
        .query_row(params![conv, Seq(seq)], MessageState::from_row)
        .optional()?;
    Ok(state.and_then(|m| {
        let text = m.search_text();
        (!m.deleted && !text.trim().is_empty()).then_some((text, m.ts, m.sender))
    }))
}

/// Messages per millisecond a doc number can tell apart before it runs
/// into the next millisecond's (harmless: order is then only close).
const PER_MS: i64 = 4096;

/// A doc number for a message sent at `ts`: ordered by time. The next
/// after the last one taken in that millisecond, found with one seek (a
/// busy conversation caught up puts dozens of messages in a millisecond,
/// and probing them one by one made indexing quadratic in them).
fn free_doc(conn: &Connection, ts: i64) -> Result<i64, CacheError> {
    let base = ts.clamp(0, i64::MAX / PER_MS - 1) * PER_MS;
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(id) FROM search_docs WHERE id >= ?1 AND id < ?2")?
        .query_row([base, base + PER_MS], |r| r.get(0))?;
    let mut doc = last.map_or(base, |l| l + 1);
    // Past the millisecond's range (thousands in one), step over the next
    // one's taken numbers.
    let mut taken = conn.prepare_cached("SELECT 1 FROM search_docs WHERE id = ?1")?;
    while taken.exists([doc])? {
        doc += 1;
    }
    Ok(doc)
}

/// Set message `seq`'s index rows from what the cache holds now.
pub(crate) fn refresh(conn: &Connection, conv: &str, seq: u64) -> Result<(), CacheError> {
    let doc: Option<i64> = conn
        .prepare_cached("SELECT id FROM search_docs WHERE conversation_id = ?1 AND seq = ?2")?
        .query_row(params![conv, Seq(seq)], |r| r.get(0))
        .optional()?;
    if let Some(doc) = doc {
        conn.prepare_cached("DELETE FROM search_text WHERE rowid = ?1")?
            .execute([doc])?;
    }
    match current(conn, conv, seq)? {
        Some((body, ts, sender)) => {
            let doc = match doc {
                Some(d) => d,
                None => {
                    let doc = free_doc(conn, ts)?;
                    conn.prepare_cached(
                        "INSERT INTO search_docs (id, conversation_id, seq, ts, sender)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![doc, conv, Seq(seq), ts, sender])?;
                    doc
                }
            };
            conn.prepare_cached("INSERT INTO search_text (rowid, body) VALUES (?1, ?2)")?
                .execute(params![doc, body])?;
        }
        None => {
            if let Some(doc) = doc {
                conn.prepare_cached("DELETE FROM search_docs WHERE id = ?1")?
                    .execute([doc])?;
            }
        }
    }
    Ok(())
}

/// Drop the index rows of conversation `conv`.
pub(crate) fn forget_conversation(conn: &Connection, conv: &str) -> Result<(), CacheError> {
    conn.execute(
        "DELETE FROM search_text WHERE rowid IN
             (SELECT id FROM search_docs WHERE conversation_id = ?1)",
        [conv],
    )?;
    conn.execute("DELETE FROM search_docs WHERE conversation_id = ?1", [conv])?;
    Ok(())
}

/// Index every message held (the upgrade to [`SEARCH_VERSION`]).
pub(crate) fn fill(conn: &Connection) -> Result<(), CacheError> {
    let all: Vec<(String, Seq)> = conn
        .prepare("SELECT conversation_id, seq FROM events WHERE kind IN ('message', 'file')")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (conv, seq) in all {
        refresh(conn, &conv, seq.0)?;
    }
    Ok(())
}

impl Cache {
    /// The conversations held that `place` names, for `me`.
    fn named(&self, place: &Place, me: &str) -> Result<Vec<String>, CacheError> {
        let mut out = Vec::new();
        for c in self.conversations()? {
            let hit = match place {
                Place::Channel(n) => c.kind == ConvKind::Channel && c.title == *n,
                Place::Named(n) => c.kind != ConvKind::Dm && c.title == *n,
                Place::Dm(u) => {
                    c.kind == ConvKind::Dm && u != me && c.members.iter().any(|m| m == u)
                }
            };
            if hit {
                out.push(c.id.clone());
            }
        }
        Ok(out)
    }

    /// The newest `limit` messages held that match `query` (restricted to
    /// `only`, a conversation id, when given), newest first (by time, to
    /// the millisecond).
    pub fn search(
        &self,
        query: &SearchQuery,
        only: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>, CacheError> {
        let me = self.me()?.unwrap_or_default();
        let mut convs: Option<Vec<String>> = only.map(|c| vec![c.to_string()]);
        if let Some(place) = &query.within {
            let named = self.named(place, &me)?;
            convs = Some(match convs {
                Some(c) => c.into_iter().filter(|x| named.contains(x)).collect(),
                None => named,
            });
        }
        if convs.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let convs = convs.map(|c| serde_json::to_string(&c).unwrap_or_default());
        let filters = "(?2 IS NULL OR d.sender = ?2) AND (?3 IS NULL OR d.ts < ?3)
             AND (?4 IS NULL OR d.ts >= ?4)
             AND (?5 IS NULL OR d.conversation_id IN (SELECT value FROM json_each(?5)))";
        let sql = match query.fts_match() {
            Some(_) => format!(
                "SELECT d.conversation_id, d.seq, d.ts, d.sender
                 FROM search_text JOIN search_docs d ON d.id = search_text.rowid
                 WHERE search_text MATCH ?1 AND {filters}
                 ORDER BY search_text.rowid DESC LIMIT ?6"
            ),
            None => format!(
                "SELECT d.conversation_id, d.seq, d.ts, d.sender FROM search_docs d
                 WHERE ?1 IS NULL AND {filters} ORDER BY d.id DESC LIMIT ?6"
            ),
        };
        let rows: Vec<(String, Seq, i64, String)> = self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![
                    query.fts_match(),
                    query.from,
                    query.before,
                    query.after,
                    convs,
                    limit as i64
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?
            .collect::<Result<_, _>>()?;
        let words = query.words();
        let mut hits = Vec::with_capacity(rows.len());
        for (conv, seq, ts, sender) in rows {
            let body = current(&self.conn, &conv, seq.0)?
                .map(|c| c.0)
                .unwrap_or_default();
            let (snippet, highlights) = snippet(&body, &words);
            hits.push(SearchHit {
                conversation_id: conv,
                seq: seq.0,
                ts,
                sender,
                snippet,
                highlights,
            });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(conn: &Connection, ts: i64, seq: u64) -> i64 {
        let doc = free_doc(conn, ts).unwrap();
        conn.execute(
            "INSERT INTO search_docs (id, conversation_id, seq, ts, sender) VALUES (?1, 'c', ?2, ?3, 'u')",
            params![doc, seq as i64, ts],
        )
        .unwrap();
        doc
    }

    #[test]
    fn doc_numbers_follow_time_and_never_collide() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        // Many messages in one millisecond take consecutive numbers.
        let same: Vec<i64> = (0..50).map(|i| take(&conn, 1_000, i)).collect();
        assert_eq!(same[0], 1_000 * PER_MS);
        assert!(same.windows(2).all(|w| w[1] == w[0] + 1), "{same:?}");
        // A later millisecond comes after, an earlier one before.
        assert!(take(&conn, 1_001, 100) > same[49]);
        assert!(take(&conn, 999, 101) < same[0]);
        // A number freed in the middle is not handed out twice.
        conn.execute("DELETE FROM search_docs WHERE id = ?1", [same[10]])
            .unwrap();
        let next = take(&conn, 1_000, 102);
        assert_eq!(next, same[49] + 1);
        // A millisecond whose range is full spills into the next one's
        // numbers without taking one already used there.
        let full = 5_000 * PER_MS;
        conn.execute(
            "INSERT INTO search_docs (id, conversation_id, seq, ts, sender) VALUES (?1, 'c', 200, 5000, 'u'), (?2, 'c', 201, 5001, 'u')",
            params![full + PER_MS - 1, full + PER_MS],
        )
        .unwrap();
        assert_eq!(take(&conn, 5_000, 202), full + PER_MS + 1);
    }
}
