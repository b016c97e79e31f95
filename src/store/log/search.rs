//! The search index: each message's current text in an FTS5 table, kept in
//! the same transaction as the event that changes it.
//!
//! - `search_text` is a contentless FTS5 table (`content=''`,
//!   `contentless_delete=1`): it holds the index of the words, not a second
//!   copy of the text. Snippets are cut from the log itself.
//! - `search_docs` maps the index's rowid (a message's *doc* number, also
//!   kept in `events.doc`) to the message: conversation, seq, time, sender.
//!   Doc numbers are given out in commit order, so "newest first" is the
//!   index's own rowid order and a page stops as soon as it is full.
//!
//! A `message` (or a shared `file`, by its name and caption) adds its doc;
//! an `edit` replaces the words under the same
//! doc (the message keeps its place); a `delete` removes both rows.

use super::writer::Writer;
use super::{Readers, StoreError};
use crate::proto::search::{SearchQuery, snippet};
use crate::proto::{EventBody, Millis, SearchHit, SearchOrder};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

/// The schema of the index (migration 5).
pub(super) const SCHEMA: &str = "
    ALTER TABLE events ADD COLUMN doc INTEGER;
    CREATE TABLE search_docs (
        id              INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        ts              INTEGER NOT NULL,
        sender          TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE search_text USING fts5(
        body, content='', contentless_delete=1,
        tokenize='unicode61 remove_diacritics 0'
    );
    INSERT INTO search_text(search_text, rank) VALUES ('automerge', 16);
";

/// Every message's current text: the author's latest edit, else its own
/// body; with whether it was deleted.
const CURRENT: &str = "
    SELECT m.conversation_id, m.seq, m.ts, m.sender,
        CASE WHEN m.kind = 'file'
             THEN coalesce(json_extract(m.data, '$.file.name'), '')
                  || coalesce(' — ' || json_extract(m.data, '$.caption'), '')
             ELSE coalesce((SELECT json_extract(e.data, '$.body') FROM events e INDEXED BY events_targets
                  WHERE e.conversation_id = m.conversation_id AND e.target_seq = m.seq
                    AND e.kind = 'edit' ORDER BY e.seq DESC LIMIT 1),
                 json_extract(m.data, '$.body'), '') END,
        EXISTS (SELECT 1 FROM events d INDEXED BY events_targets
                WHERE d.conversation_id = m.conversation_id AND d.target_seq = m.seq
                  AND d.kind = 'delete'),
        m.doc
    FROM events m WHERE m.kind IN ('message', 'file')";

/// Fill the index from the log (the upgrade to schema 5): every message
/// gets a doc number in the order of its time; the ones not deleted and
/// with text are indexed.
pub(super) fn fill(conn: &Connection) -> Result<(), StoreError> {
    let mut select = conn.prepare(&format!(
        "{CURRENT} ORDER BY m.ts, m.conversation_id, m.seq"
    ))?;
    let mut set_doc =
        conn.prepare("UPDATE events SET doc = ?3 WHERE conversation_id = ?1 AND seq = ?2")?;
    let mut doc = 0i64;
    let mut rows = select.query([])?;
    while let Some(r) = rows.next()? {
        let (conv, seq, ts, sender): (String, i64, Millis, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let (text, deleted): (String, bool) = (r.get(4)?, r.get(5)?);
        doc += 1;
        set_doc.execute(params![conv, seq, doc])?;
        if !deleted && !text.trim().is_empty() {
            add(conn, doc, &conv, seq, ts, &sender, &text)?;
        }
    }
    Ok(())
}

/// The first doc number not given out yet.
pub(super) fn next_doc(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM search_docs), 0),
                    coalesce((SELECT max(doc) FROM events WHERE doc IS NOT NULL), 0)) + 1",
        [],
        |r| r.get(0),
    )?)
}

fn add(
    conn: &Connection,
    doc: i64,
    conv: &str,
    seq: i64,
    ts: Millis,
    sender: &str,
    text: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO search_docs (id, conversation_id, seq, ts, sender)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![doc, conv, seq, ts, sender])?;
    conn.prepare_cached("INSERT INTO search_text (rowid, body) VALUES (?1, ?2)")?
        .execute(params![doc, text])?;
    Ok(())
}

/// A message written in the open transaction and not yet indexed.
pub(super) struct Unindexed {
    doc: i64,
    conv: String,
    seq: i64,
    ts: Millis,
    sender: String,
    text: String,
}

impl Unindexed {
    pub(super) fn add(&self, conn: &Connection) -> Result<(), StoreError> {
        add(
            conn,
            self.doc,
            &self.conv,
            self.seq,
            self.ts,
            &self.sender,
            &self.text,
        )
    }
}

fn remove(conn: &Connection, doc: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM search_text WHERE rowid = ?1")?
        .execute([doc])?;
    conn.prepare_cached("DELETE FROM search_docs WHERE id = ?1")?
        .execute([doc])?;
    Ok(())
}

/// Set one message's index rows from the log as it is now (after its text
/// was cleared by retention, say).
pub(super) fn reindex(conn: &Connection, conv: &str, seq: i64) -> Result<(), StoreError> {
    let row: Option<(Option<i64>, Millis, String, String, bool)> = conn
        .prepare_cached(&format!(
            "{CURRENT} AND m.conversation_id = ?1 AND m.seq = ?2"
        ))?
        .query_row(params![conv, seq], |r| {
            Ok((r.get(6)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let Some((Some(doc), ts, sender, text, deleted)) = row else {
        return Ok(());
    };
    remove(conn, doc)?;
    if !deleted && !text.trim().is_empty() {
        add(conn, doc, conv, seq, ts, &sender, &text)?;
    }
    Ok(())
}

impl Writer {
    /// The doc number a new message takes, if `body` is one.
    pub(super) fn doc_for(&self, body: &EventBody) -> Option<i64> {
        // A secret conversation's messages are not searched on the server.
        (matches!(body, EventBody::Message { .. } | EventBody::File { .. })
            && body.encrypted().is_none())
        .then_some(self.next_doc)
    }

    /// Keep the index in step with an event just written (inside the same
    /// transaction: a new message is indexed with the others of its batch
    /// just before the commit). Doc numbers only grow: one skipped by a
    /// refused operation is never reused, which is harmless.
    pub(super) fn index_event(
        &mut self,
        conv: &str,
        seq: u64,
        ts: Millis,
        sender: &str,
        body: &EventBody,
    ) -> Result<(), StoreError> {
        if body.encrypted().is_some() {
            return Ok(());
        }
        match body {
            EventBody::Message { body, .. } => {
                let doc = self.next_doc;
                self.next_doc += 1;
                if !body.trim().is_empty() {
                    self.unindexed.push(Unindexed {
                        doc,
                        conv: conv.to_string(),
                        seq: seq as i64,
                        ts,
                        sender: sender.to_string(),
                        text: body.clone(),
                    });
                }
            }
            EventBody::File { file, caption, .. } => {
                let doc = self.next_doc;
                self.next_doc += 1;
                self.unindexed.push(Unindexed {
                    doc,
                    conv: conv.to_string(),
                    seq: seq as i64,
                    ts,
                    sender: sender.to_string(),
                    text: file_text(&file.name, caption.as_deref()),
                });
            }
            EventBody::Edit {
                target_seq, body, ..
            } => {
                let target = *target_seq as i64;
                let row: Option<(Option<i64>, Millis, String)> = self
                    .conn
                    .prepare_cached(
                        "SELECT doc, ts, sender FROM events WHERE conversation_id = ?1 AND seq = ?2",
                    )?
                    .query_row(params![conv, target], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                let Some((doc, mts, author)) = row else {
                    return Ok(());
                };
                let doc = match doc {
                    Some(d) => d,
                    None => {
                        let d = self.next_doc;
                        self.next_doc += 1;
                        self.conn
                            .prepare_cached(
                                "UPDATE events SET doc = ?3 WHERE conversation_id = ?1 AND seq = ?2",
                            )?
                            .execute(params![conv, target, d])?;
                        d
                    }
                };
                remove(&self.conn, doc)?;
                if !body.trim().is_empty() {
                    add(&self.conn, doc, conv, target, mts, &author, body)?;
                }
            }
            EventBody::Delete { target_seq } => {
                let doc: Option<Option<i64>> = self
                    .conn
                    .prepare_cached(
                        "SELECT doc FROM events WHERE conversation_id = ?1 AND seq = ?2",
                    )?
                    .query_row(params![conv, *target_seq as i64], |r| r.get(0))
                    .optional()?;
                if let Some(Some(doc)) = doc {
                    remove(&self.conn, doc)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What a search may read and how.
pub struct SearchScope {
    pub query: SearchQuery,
    /// The conversations whose messages may be returned.
    pub readable: HashSet<String>,
    pub order: SearchOrder,
    /// Where the previous page stopped ([`SearchHit`]s carry theirs).
    pub cursor: Option<Cursor>,
    /// Hits wanted (the store returns one more when more follow).
    pub limit: usize,
}

/// Where a page of search results starts: below a doc number (newest
/// first) or after a number of ranked rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Below(i64),
    Skip(i64),
}

impl Cursor {
    /// The opaque form sent as `next`.
    pub fn encode(self) -> String {
        match self {
            Cursor::Below(d) => format!("n{d}"),
            Cursor::Skip(n) => format!("r{n}"),
        }
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let n: i64 = s.get(1..)?.parse().ok().filter(|n| *n >= 0)?;
        match s.as_bytes().first()? {
            b'n' => Some(Cursor::Below(n)),
            b'r' => Some(Cursor::Skip(n)),
            _ => None,
        }
    }
}

/// Matches `rank` order ranks, the newest first.
pub const RANK_WINDOW: i64 = 10_000;

/// Candidate rows one page looks at, at most: a query whose filters reject
/// most matches answers with fewer hits and a `next` to go on from.
pub const SCAN_BUDGET: usize = 10_000;

/// A page of hits, each with the cursor just after it; and, when the page
/// stopped because its scan budget ran out, where to go on.
pub struct SearchPage {
    pub hits: Vec<(SearchHit, Cursor)>,
    pub resume: Option<Cursor>,
}

struct Candidate {
    doc: i64,
    conv: String,
    seq: i64,
    ts: Millis,
    sender: String,
}

fn candidate(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        doc: r.get(0)?,
        conv: r.get(1)?,
        seq: r.get(2)?,
        ts: r.get(3)?,
        sender: r.get(4)?,
    })
}

/// The current text of message `seq`: its latest edit's, else its own.
/// The edits are found through `events_targets` by name: left to itself,
/// the planner walks the conversation's whole primary key for the
/// `ORDER BY seq DESC`.
fn current_text(c: &Connection, conv: &str, seq: i64) -> Result<String, StoreError> {
    let edited: Option<String> = c
        .prepare_cached(
            "SELECT data FROM events INDEXED BY events_targets
             WHERE conversation_id = ?1 AND target_seq = ?2
             AND kind = 'edit' ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![conv, seq], |r| r.get(0))
        .optional()?;
    let data = match edited {
        Some(d) => d,
        None => c
            .prepare_cached("SELECT data FROM events WHERE conversation_id = ?1 AND seq = ?2")?
            .query_row(params![conv, seq], |r| r.get(0))?,
    };
    Ok(match serde_json::from_str::<EventBody>(&data) {
        Ok(EventBody::Message { body, .. } | EventBody::Edit { body, .. }) => body,
        Ok(EventBody::File { file, caption, .. }) => file_text(&file.name, caption.as_deref()),
        _ => String::new(),
    })
}

/// What a shared file is found by: its name, then its caption.
pub(super) fn file_text(name: &str, caption: Option<&str>) -> String {
    match caption {
        Some(c) => format!("{name} — {c}"),
        None => name.to_string(),
    }
}

fn run(c: &Connection, scope: &SearchScope) -> Result<SearchPage, StoreError> {
    let q = &scope.query;
    let want = scope.limit + 1;
    let mut page = SearchPage {
        hits: Vec::new(),
        resume: None,
    };
    let words = q.words();
    let keep = |cand: Candidate, after: Cursor, page: &mut SearchPage| -> Result<(), StoreError> {
        if !scope.readable.contains(&cand.conv) || !q.admits(&cand.sender, cand.ts) {
            return Ok(());
        }
        let text = current_text(c, &cand.conv, cand.seq)?;
        let (snippet, highlights) = snippet(&text, &words);
        page.hits.push((
            SearchHit {
                conversation_id: cand.conv,
                seq: cand.seq as u64,
                ts: cand.ts,
                sender: cand.sender,
                snippet,
                highlights,
            },
            after,
        ));
        Ok(())
    };
    let mut scanned = 0usize;
    match (q.fts_match(), scope.order) {
        (Some(expr), SearchOrder::Rank) => {
            let skip = match scope.cursor {
                Some(Cursor::Skip(n)) => n,
                _ => 0,
            };
            // bm25 scores every match it ranks: only the newest
            // RANK_WINDOW matches are ranked, so a very common word costs
            // a bounded amount.
            let floor: i64 = c
                .prepare_cached(
                    "SELECT rowid FROM search_text WHERE search_text MATCH ?1
                     ORDER BY rowid DESC LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![expr, RANK_WINDOW - 1], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let mut stmt = c.prepare_cached(
                "SELECT d.id, d.conversation_id, d.seq, d.ts, d.sender
                 FROM (SELECT rowid AS doc, rank FROM search_text
                       WHERE search_text MATCH ?1 AND rowid >= ?4
                       ORDER BY rank LIMIT ?2 OFFSET ?3) AS m
                 JOIN search_docs d ON d.id = m.doc ORDER BY m.rank",
            )?;
            let mut rows = stmt.query(params![expr, SCAN_BUDGET as i64, skip, floor])?;
            while let Some(r) = rows.next()? {
                scanned += 1;
                keep(
                    candidate(r)?,
                    Cursor::Skip(skip + scanned as i64),
                    &mut page,
                )?;
                if page.hits.len() >= want {
                    return Ok(page);
                }
            }
            if scanned >= SCAN_BUDGET {
                page.resume = Some(Cursor::Skip(skip + scanned as i64));
            }
        }
        (fts, _) => {
            let below = match scope.cursor {
                Some(Cursor::Below(d)) => d,
                _ => i64::MAX,
            };
            let sql = if fts.is_some() {
                "SELECT d.id, d.conversation_id, d.seq, d.ts, d.sender
                 FROM search_text JOIN search_docs d ON d.id = search_text.rowid
                 WHERE search_text MATCH ?1 AND search_text.rowid < ?2
                 ORDER BY search_text.rowid DESC"
            } else {
                "SELECT id, conversation_id, seq, ts, sender FROM search_docs
                 WHERE ?1 IS NULL AND id < ?2 ORDER BY id DESC"
            };
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query(params![fts, below])?;
            while let Some(r) = rows.next()? {
                let cand = candidate(r)?;
                let doc = cand.doc;
                scanned += 1;
                keep(cand, Cursor::Below(doc), &mut page)?;
                if page.hits.len() >= want {
                    return Ok(page);
                }
                if scanned >= SCAN_BUDGET {
                    page.resume = Some(Cursor::Below(doc));
                    break;
                }
            }
        }
    }
    Ok(page)
}

impl Readers {
    /// One page of search hits in the conversations of `scope.readable`.
    pub async fn search(&self, scope: SearchScope) -> Result<SearchPage, StoreError> {
        self.with(move |c| run(c, &scope)).await
    }
}
