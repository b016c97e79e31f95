//! The cache's on-disk schema: connection pragmas and the ordered list of
//! migrations, tracked with `PRAGMA user_version`.

use super::CacheError;
use rusqlite::Connection;
use std::time::Duration;

/// How long a statement waits for a lock held by another connection.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migrations in order; migration `i` brings the schema to version `i + 1`.
/// Released entries are never edited, only appended to.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE conversations (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    name     TEXT,
    members  TEXT NOT NULL DEFAULT '[]',
    last_seq INTEGER NOT NULL DEFAULT 0,
    -- every seq in floor..=cursor is held; seqs below floor are older
    -- history not fetched yet (scrollback), not a gap
    floor    INTEGER NOT NULL DEFAULT 1,
    cursor   INTEGER NOT NULL DEFAULT 0,
    muted    INTEGER NOT NULL DEFAULT 0,
    -- 1 while only events are known, not the server's description
    stub     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE receipts (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user            TEXT NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0,
    read            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user)
) WITHOUT ROWID;

CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    sender          TEXT NOT NULL,
    client_msg_id   TEXT,
    kind            TEXT NOT NULL,
    -- the message an edit, delete or reaction applies to; NULL for rows
    target_seq      INTEGER,
    -- message body (for mention counting without decoding `data`)
    text            TEXT,
    -- the event body as JSON (proto::EventBody)
    data            TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;

CREATE INDEX events_rows ON events(conversation_id, seq) WHERE target_seq IS NULL;
CREATE INDEX events_target ON events(conversation_id, target_seq) WHERE target_seq IS NOT NULL;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    client_msg_id   TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    request         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    seq             INTEGER,
    error           TEXT
);
CREATE INDEX outbox_conv ON outbox(conversation_id, id);
"#,
    r#"
-- unread bookkeeping (see unread.rs); filled in by unread::ensure_flags
ALTER TABLE events ADD COLUMN counts_unread INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN mentions_me INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_unread ON events(conversation_id, seq, mentions_me) WHERE counts_unread = 1;
"#,
    r#"
-- the server's id of each event, to prove at sync that this copy is its
ALTER TABLE events ADD COLUMN eid TEXT;
"#,
    r#"
-- members of conversations too large for the server to list them
ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
"#, // the search index (see search.rs), filled by search::fill
    super::search::SCHEMA,
    r#"
-- shared files count as messages: their caption is their text, and the
-- unread flags are computed again with them (see unread::ensure_flags)
UPDATE events SET text = coalesce(json_extract(data, '$.caption'), '') WHERE kind = 'file';
DELETE FROM meta WHERE key = 'flags_me';
"#,
    r#"
-- 1 when a bot sent the event (the server marks it)
ALTER TABLE events ADD COLUMN bot INTEGER;
"#,
    // secret conversations: this device's crypto state (see e2e/store.rs)
    crate::client::e2e::store::SCHEMA,
    r#"
-- 1 for a secret (end-to-end encrypted) conversation
ALTER TABLE conversations ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;
-- events of secret conversations not decrypted yet, with why; tried again
-- when new keys arrive (the event's row holds a placeholder and the
-- ciphertext)
CREATE TABLE e2e_undecrypted (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
"#,
];

/// The schema version this build writes.
pub(crate) fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Set the per-connection pragmas. `file` is false for in-memory caches,
/// where WAL does not apply.
pub(crate) fn configure(conn: &Connection, file: bool) -> Result<(), CacheError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if file {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CacheError::Corrupt(format!(
                "could not switch the journal to WAL (got {mode})"
            )));
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // One plan per statement: without it SQLite prepares a cached
    // statement again whenever a new value is bound to a `LIMIT ?`.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Storing a page of events runs about twenty statements (the event,
    // its search entry, the unread flags, the cursor, the gaps) and the
    // engine more between pages: with rusqlite's default of 16 the cache
    // went round, every statement parsed and planned again on each use.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Bring the schema up to date, one transaction per migration, then the
/// unread flags up to date for the signed-in user.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), CacheError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = latest_version();
    if found > supported {
        return Err(CacheError::TooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == super::search::SEARCH_VERSION {
            super::search::fill(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
    }
    super::unread::ensure_flags(conn)
}

/// `PRAGMA quick_check`: `Ok(())` when SQLite reports the file sound.
pub(crate) fn quick_check(conn: &Connection) -> Result<(), CacheError> {
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(CacheError::Corrupt(lines.join("; ")))
    }
}

/// A seq or counter as SQLite stores it (a non-negative `INTEGER`). Values
/// above `i64::MAX` are written as `i64::MAX`; negative stored values are
/// reported as out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seq(pub u64);

impl rusqlite::ToSql for Seq {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(i64::try_from(self.0).unwrap_or(i64::MAX).into())
    }
}

impl rusqlite::types::FromSql for Seq {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let i = i64::column_result(v)?;
        u64::try_from(i)
            .map(Seq)
            .map_err(|_| rusqlite::types::FromSqlError::OutOfRange(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// Pages of the cache bind a new `LIMIT` each time: the cached
    /// statement runs again as prepared.
    #[test]
    fn cached_statements_are_not_prepared_again_for_new_limits() {
        let conn = Connection::open_in_memory().unwrap();
        configure(&conn, false).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
        for limit in [1, 3, 2] {
            let mut stmt = conn
                .prepare_cached("SELECT k FROM t WHERE k > ?1 ORDER BY k LIMIT ?2")
                .unwrap();
            let n = stmt
                .query_map(rusqlite::params![0, limit], |r| r.get::<_, i64>(0))
                .unwrap()
                .count();
            assert_eq!(n, limit as usize);
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "LIMIT {limit}"
            );
        }
    }
}
