//! Search on PostgreSQL: each message's current words in a `tsvector`
//! under a GIN index, kept in the transaction of the event that changes
//! them.
//!
//! The words are split by [`tokens`], the same function that cuts the
//! snippets, and stored as they are (lowercased, no stemming, no stop
//! words), with their positions: a query term matches the same words, in
//! order, as with the embedded store's full-text index. `search_docs`
//! holds one row per searchable message under its doc number (also in
//! `events.doc`), given out from a sequence as messages are written, so
//! "newest first" is the index's own order. Snippets are cut from the log.

use super::PgReaders;
use super::db::{exec, get, opt, rows};
use crate::proto::search::{snippet, tokens};
use crate::proto::{EventBody, Millis, SearchHit, SearchOrder};
use crate::store::log::{Cursor, SCAN_BUDGET, SearchPage, SearchScope, StoreError};
use deadpool_postgres::GenericClient;
use std::collections::BTreeMap;

/// Matches `rank` order ranks, the newest first.
const RANK_WINDOW: i64 = 10_000;

/// PostgreSQL's limits on a tsvector: the length of one word and the
/// positions kept for each.
const MAX_WORD_BYTES: usize = 2046;
const MAX_POSITIONS: usize = 255;
const MAX_POSITION: usize = 16_383;

/// A quoted lexeme in tsvector/tsquery syntax.
fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for ch in word.chars() {
        if ch == '\'' || ch == '\\' {
            out.push(ch);
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// The words of `text` as a tsvector literal: each word with the
/// positions it occurs at.
pub(super) fn words(text: &str) -> String {
    let mut at: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, _, w)) in tokens(text).into_iter().enumerate() {
        if w.len() > MAX_WORD_BYTES {
            continue;
        }
        let positions = at.entry(w).or_default();
        if positions.len() < MAX_POSITIONS {
            positions.push((i + 1).min(MAX_POSITION));
        }
    }
    let mut out = String::new();
    for (w, positions) in at {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&quote(&w));
        out.push(':');
        let mut last = 0;
        let mut first = true;
        for p in positions {
            // Positions past the last one PostgreSQL keeps collapse.
            if p == last {
                continue;
            }
            if !first {
                out.push(',');
            }
            out.push_str(&p.to_string());
            last = p;
            first = false;
        }
    }
    out
}

/// A query that every term must match, each as a phrase of its words;
/// `None` without terms.
pub(super) fn query(terms: &[String]) -> Option<String> {
    let phrases: Vec<String> = terms
        .iter()
        .filter_map(|t| {
            let ws: Vec<String> = tokens(t)
                .into_iter()
                .filter(|(_, _, w)| w.len() <= MAX_WORD_BYTES)
                .map(|(_, _, w)| quote(&w))
                .collect();
            (!ws.is_empty()).then(|| format!("({})", ws.join(" <-> ")))
        })
        .collect();
    (!phrases.is_empty()).then(|| phrases.join(" & "))
}

/// What a shared file is found by: its name, then its caption.
pub(super) fn file_text(name: &str, caption: Option<&str>) -> String {
    match caption {
        Some(c) => format!("{name} — {c}"),
        None => name.to_string(),
    }
}

/// Index `text` under `doc` (nothing when it has no words).
pub(super) async fn add(
    c: &impl GenericClient,
    doc: i64,
    conv: &str,
    seq: i64,
    ts: Millis,
    sender: &str,
    text: &str,
) -> Result<(), StoreError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    exec(
        c,
        "INSERT INTO search_docs (id, conversation_id, seq, ts, sender, words)
         VALUES ($1, $2, $3, $4, $5, $6::text::tsvector)
         ON CONFLICT (id) DO UPDATE SET words = excluded.words",
        &[&doc, &conv, &seq, &ts, &sender, &words(text)],
    )
    .await?;
    Ok(())
}

pub(super) async fn remove(c: &impl GenericClient, doc: i64) -> Result<(), StoreError> {
    exec(c, "DELETE FROM search_docs WHERE id = $1", &[&doc]).await?;
    Ok(())
}

/// Set one message's index row from the log as it is now (after its text
/// was cleared, say).
pub(super) async fn reindex(
    c: &impl GenericClient,
    conv: &str,
    seq: i64,
) -> Result<(), StoreError> {
    let Some(row) = opt(
        c,
        "SELECT doc, ts, sender,
                EXISTS (SELECT 1 FROM events d WHERE d.conversation_id = m.conversation_id
                        AND d.target_seq = m.seq AND d.kind = 'delete')
         FROM events m WHERE conversation_id = $1 AND seq = $2 AND kind IN ('message', 'file')",
        &[&conv, &seq],
    )
    .await?
    else {
        return Ok(());
    };
    let Some(doc) = get::<Option<i64>>(&row, 0)? else {
        return Ok(());
    };
    let (ts, sender, deleted): (Millis, String, bool) =
        (get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
    remove(c, doc).await?;
    if !deleted {
        let text = current_text(c, conv, seq).await?;
        add(c, doc, conv, seq, ts, &sender, &text).await?;
    }
    Ok(())
}

/// The current text of message `seq`: its latest edit's, else its own.
async fn current_text(c: &impl GenericClient, conv: &str, seq: i64) -> Result<String, StoreError> {
    let row = opt(
        c,
        "SELECT COALESCE(
             (SELECT e.data FROM events e WHERE e.conversation_id = $1 AND e.target_seq = $2
              AND e.kind = 'edit' ORDER BY e.seq DESC LIMIT 1),
             (SELECT m.data FROM events m WHERE m.conversation_id = $1 AND m.seq = $2))",
        &[&conv, &seq],
    )
    .await?;
    let data: Option<String> = match row {
        Some(r) => get(&r, 0)?,
        None => None,
    };
    Ok(text_of(data.as_deref()))
}

/// The searchable text of a stored message or edit.
fn text_of(data: Option<&str>) -> String {
    match data.map(serde_json::from_str::<EventBody>) {
        Some(Ok(EventBody::Message { body, .. } | EventBody::Edit { body, .. })) => body,
        Some(Ok(EventBody::File { file, caption, .. })) => {
            file_text(&file.name, caption.as_deref())
        }
        _ => String::new(),
    }
}

/// A page's candidates with their current text, in the page's order.
/// The filters are applied in the database (readable conversations,
/// `from:`, `before:`, `after:`), so every row is a hit.
const FILTERS: &str = "d.conversation_id = ANY($1)
     AND ($2::text IS NULL OR d.sender = $2)
     AND ($3::bigint IS NULL OR d.ts < $3)
     AND ($4::bigint IS NULL OR d.ts >= $4)";

/// The columns of a hit, from a page `p` of docs.
const HIT: &str = "SELECT p.id, p.conversation_id, p.seq, p.ts, p.sender,
     COALESCE(
         (SELECT e.data FROM events e WHERE e.conversation_id = p.conversation_id
          AND e.target_seq = p.seq AND e.kind = 'edit' ORDER BY e.seq DESC LIMIT 1),
         (SELECT m.data FROM events m WHERE m.conversation_id = p.conversation_id
          AND m.seq = p.seq))";

async fn run(c: &impl GenericClient, scope: &SearchScope) -> Result<SearchPage, StoreError> {
    let q = &scope.query;
    let want = (scope.limit + 1) as i64;
    let readable: Vec<&str> = scope.readable.iter().map(String::as_str).collect();
    let (from, before, after) = (&q.from, &q.before, &q.after);
    let budget = SCAN_BUDGET as i64;
    let tsq = query(&q.terms);
    let words = q.words();
    let mut page = SearchPage {
        hits: Vec::new(),
        resume: None,
    };
    let found = match (&tsq, scope.order) {
        (Some(tsq), SearchOrder::Rank) => {
            let skip = match scope.cursor {
                Some(Cursor::Skip(n)) => n,
                _ => 0,
            };
            // Only the newest RANK_WINDOW matches are ranked, so a very
            // common word costs a bounded amount.
            let floor: i64 = match opt(
                c,
                "SELECT id FROM search_docs WHERE words @@ $1::text::tsquery
                 ORDER BY id DESC OFFSET $2 LIMIT 1",
                &[tsq, &(RANK_WINDOW - 1)],
            )
            .await?
            {
                Some(r) => get(&r, 0)?,
                None => 0,
            };
            let found = rows(
                c,
                &format!(
                    "{HIT} FROM (SELECT d.*, ts_rank(d.words, $5::text::tsquery) AS rank
                                 FROM search_docs d
                                 WHERE d.words @@ $5::text::tsquery AND d.id >= $6 AND {FILTERS}
                                 ORDER BY rank DESC, d.id DESC LIMIT $7 OFFSET $8) p
                     ORDER BY p.rank DESC, p.id DESC"
                ),
                &[&readable, from, before, after, tsq, &floor, &want, &skip],
            )
            .await?;
            let mut n = skip;
            let mut out = Vec::new();
            for r in found {
                n += 1;
                out.push((r, Cursor::Skip(n)));
            }
            out
        }
        (tsq, _) => {
            let below = match scope.cursor {
                Some(Cursor::Below(d)) => d,
                _ => i64::MAX,
            };
            // Scan at most the budget of docs below the cursor: a query
            // whose filters reject most of them answers with fewer hits and
            // a cursor to go on from.
            let found = rows(
                c,
                &format!(
                    "{HIT} FROM (SELECT d.* FROM (SELECT * FROM search_docs
                                                  WHERE ($5::text IS NULL OR words @@ $5::text::tsquery)
                                                    AND id < $6
                                                  ORDER BY id DESC LIMIT $7) d
                                 WHERE {FILTERS} ORDER BY d.id DESC LIMIT $8) p
                     ORDER BY p.id DESC"
                ),
                &[&readable, from, before, after, tsq, &below, &budget, &want],
            )
            .await?;
            let mut out = Vec::new();
            for r in found {
                let doc: i64 = get(&r, 0)?;
                out.push((r, Cursor::Below(doc)));
            }
            if out.len() < want as usize {
                // Where the scan stopped, if the budget ran out.
                let edge = opt(
                    c,
                    "SELECT MIN(id), COUNT(*) FROM (SELECT id FROM search_docs
                     WHERE ($1::text IS NULL OR words @@ $1::text::tsquery) AND id < $2
                     ORDER BY id DESC LIMIT $3) s",
                    &[tsq, &below, &budget],
                )
                .await?;
                if let Some(r) = edge
                    && get::<i64>(&r, 1)? >= budget
                {
                    page.resume = get::<Option<i64>>(&r, 0)?.map(Cursor::Below);
                }
            }
            out
        }
    };
    for (r, after) in found {
        let data: Option<String> = get(&r, 5)?;
        let text = text_of(data.as_deref());
        let (snippet, highlights) = snippet(&text, &words);
        page.hits.push((
            SearchHit {
                conversation_id: get(&r, 1)?,
                seq: get::<i64>(&r, 2)? as u64,
                ts: get(&r, 3)?,
                sender: get(&r, 4)?,
                snippet,
                highlights,
            },
            after,
        ));
    }
    Ok(page)
}

impl PgReaders {
    /// One page of search hits in the conversations of `scope.readable`.
    pub async fn search(&self, scope: SearchScope) -> Result<SearchPage, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                run(&c, &scope).await
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_positions_and_quote_what_needs_it() {
        assert_eq!(
            words("Deploy the KEY, deploy!"),
            "'deploy':1,4 'key':3 'the':2"
        );
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(words("  — "), "");
    }

    #[test]
    fn queries_are_phrases_joined_by_and() {
        let q = query(&["rotated token".into(), "Key".into()]);
        assert_eq!(q.as_deref(), Some("('rotated' <-> 'token') & ('key')"));
        assert_eq!(query(&[]), None);
    }
}
