//! Moving up: copy an embedded (SQLite) chatd into an empty PostgreSQL
//! database, `chatd migrate --from DATA_DIR --to postgres://…`.
//!
//! Accounts, sessions, invitations, conversations with their members,
//! roles and receipts, blocks, uploads, webhooks, the whole log (seqs,
//! ids, timestamps and the stored text as written) and what secret
//! conversations keep (device keys, inboxes, Megolm sessions and their
//! holders; a store from before them has none) go across in one
//! transaction, by binary `COPY`. The search index is rebuilt from the log
//! under the same doc numbers, each conversation's counter is set to its
//! last seq, and before the commit the copy is checked: the row count of
//! every table, the number of secret conversations and the last seq of
//! every conversation must match the source. The source is only read; a failure leaves the target empty.

use super::search;
use crate::store::log::{StoreError, db_path};
use deadpool_postgres::Transaction;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// The tables copied, parents before children (a device after its
/// session, its keys and inbox after it).
const TABLES: [&str; 21] = [
    "users",
    "sessions",
    "invites",
    "invite_uses",
    "account_changes",
    "conversations",
    "members",
    "removed",
    "blocks",
    "events",
    "uploads",
    "file_refs",
    "webhooks",
    "identity_keys",
    "devices",
    "one_time_keys",
    "fallback_keys",
    "used_key_ids",
    "inbox",
    "megolm_sessions",
    "megolm_holders",
];

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Conversations whose last seq was checked.
    pub conversations: u64,
    /// Messages put back in the search index.
    pub indexed: u64,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, n) in &self.rows {
            writeln!(f, "{table:<16} {n:>10} rows")?;
        }
        write!(
            f,
            "checked: every table's row count, and the last seq of {} conversations; {} messages indexed for search",
            self.conversations, self.indexed
        )
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

fn source(e: rusqlite::Error) -> StoreError {
    StoreError::Open(format!("reading the embedded store: {e}"))
}

/// Copy the embedded store in `data` into the (empty) database at `url`,
/// migrating it first.
pub async fn from_sqlite(data: &Path, url: &str) -> Result<Copied, StoreError> {
    let path = db_path(data);
    if !path.exists() {
        return Err(StoreError::Open(format!(
            "{}: no chatd database there",
            path.display()
        )));
    }
    let lite = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    lite.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(source)?;
    let check: String = lite
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(source)?;
    if check != "ok" {
        return Err(StoreError::Open(format!(
            "{}: integrity check failed: {check}",
            path.display()
        )));
    }
    super::migrate(url).await?;
    let pool = super::db::Db::new(url, 1, super::db::TIMEOUTS)?;
    let mut client = pool.client().await?;
    let result = async {
        // A copy takes as long as the log is long.
        client
            .batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
            .await
            .map_err(db)?;
        // One snapshot of the source, however long the copy takes (a
        // running chatd may go on writing beside it).
        lite.execute_batch("BEGIN").map_err(source)?;
        let tx = client.transaction().await.map_err(db)?;
        let copied = copy_all(&lite, &tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(copied)
    }
    .await;
    let _ = lite.execute_batch("ROLLBACK");
    drop(client);
    pool.close();
    result
}

async fn copy_all(lite: &Connection, tx: &Transaction<'_>) -> Result<Copied, StoreError> {
    let taken: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM conversations)",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if taken {
        return Err(StoreError::Open(
            "the target database already holds accounts or conversations; copy into an empty one"
                .into(),
        ));
    }
    let mut copied = Copied::default();
    for table in TABLES {
        let n = if has_table(lite, table)? {
            copy_table(lite, tx, table).await?
        } else {
            0
        };
        copied.rows.insert(table.to_string(), n);
    }
    tx.batch_execute(
        "UPDATE conversations c SET last_seq =
             COALESCE((SELECT MAX(seq) FROM events e WHERE e.conversation_id = c.id), 0);
         SELECT setval('account_changes_id_seq', COALESCE(MAX(id), 1), MAX(id) IS NOT NULL)
             FROM account_changes;",
    )
    .await
    .map_err(db)?;
    copied.indexed = rebuild_search(tx).await?;
    copied.conversations = verify(lite, tx, &copied).await?;
    Ok(copied)
}

/// Whether the source has `table` (an older embedded store may lack the
/// newer ones).
fn has_table(lite: &Connection, table: &str) -> Result<bool, StoreError> {
    lite.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get(0),
    )
    .map_err(source)
}

/// The columns `table` has in both stores, with their PostgreSQL types.
async fn columns(
    lite: &Connection,
    tx: &Transaction<'_>,
    table: &str,
) -> Result<Vec<(String, Type)>, StoreError> {
    let mut theirs = Vec::new();
    let mut stmt = lite
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .map_err(source)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(source)?;
    for n in names {
        theirs.push(n.map_err(source)?);
    }
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1
             ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(db)?;
    let mut both = Vec::new();
    for row in rows {
        let (name, ty): (String, String) = (row.get(0), row.get(1));
        if !theirs.contains(&name) {
            continue;
        }
        let ty = match ty.as_str() {
            "bigint" => Type::INT8,
            "integer" => Type::INT4,
            "boolean" => Type::BOOL,
            "text" => Type::TEXT,
            other => {
                return Err(StoreError::Open(format!(
                    "{table}.{name}: cannot copy a column of type {other}"
                )));
            }
        };
        both.push((name, ty));
    }
    Ok(both)
}

/// One SQLite value as the PostgreSQL column's type wants it.
fn convert(
    table: &str,
    column: &str,
    ty: &Type,
    v: Value,
) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    let bad = |v: &Value| {
        StoreError::Open(format!(
            "{table}.{column}: cannot copy {v:?} into a {ty} column"
        ))
    };
    Ok(match (ty, v) {
        (t, Value::Null) if *t == Type::INT8 => Box::new(None::<i64>),
        (t, Value::Null) if *t == Type::INT4 => Box::new(None::<i32>),
        (t, Value::Null) if *t == Type::BOOL => Box::new(None::<bool>),
        (t, Value::Null) if *t == Type::TEXT => Box::new(None::<String>),
        (t, Value::Integer(i)) if *t == Type::INT8 => Box::new(i),
        (t, Value::Integer(i)) if *t == Type::INT4 => {
            let v = Value::Integer(i);
            Box::new(i32::try_from(i).map_err(|_| bad(&v))?)
        }
        (t, Value::Integer(i)) if *t == Type::BOOL => Box::new(i != 0),
        (t, Value::Text(s)) if *t == Type::TEXT => Box::new(s),
        (t, Value::Integer(i)) if *t == Type::TEXT => Box::new(i.to_string()),
        (_, v) => return Err(bad(&v)),
    })
}

async fn copy_table(
    lite: &Connection,
    tx: &Transaction<'_>,
    table: &str,
) -> Result<u64, StoreError> {
    let cols = columns(lite, tx, table).await?;
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let types: Vec<Type> = cols.iter().map(|(_, t)| t.clone()).collect();
    let sink = tx
        .copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            names.join(", ")
        ))
        .await
        .map_err(db)?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let mut stmt = lite
        .prepare(&format!("SELECT {} FROM {table}", names.join(", ")))
        .map_err(source)?;
    let mut rows = stmt.query([]).map_err(source)?;
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(source)? {
        let mut values = Vec::with_capacity(cols.len());
        for (i, (name, ty)) in cols.iter().enumerate() {
            let v: Value = row.get(i).map_err(source)?;
            values.push(convert(table, name, ty, v)?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        writer.as_mut().write(&refs).await.map_err(db)?;
        n += 1;
    }
    writer.finish().await.map_err(db)?;
    Ok(n)
}

/// Index every message that had a search doc in the source, under the
/// same doc number, from its current text; later messages number on.
async fn rebuild_search(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let rows = tx
        .query(
            "SELECT conversation_id, seq FROM events
             WHERE doc IS NOT NULL AND kind IN ('message', 'file') ORDER BY doc",
            &[],
        )
        .await
        .map_err(db)?;
    let mut n = 0;
    for row in rows {
        let (conv, seq): (String, i64) = (row.get(0), row.get(1));
        search::reindex(tx, &conv, seq).await?;
        n += 1;
    }
    tx.batch_execute(
        "SELECT setval('search_doc_numbers', COALESCE(MAX(doc), 1), MAX(doc) IS NOT NULL)
         FROM events",
    )
    .await
    .map_err(db)?;
    Ok(n)
}

/// Check the copy against the source: every table's row count, which
/// conversations are secret, and every conversation's last seq. Answers how many conversations were checked.
async fn verify(
    lite: &Connection,
    tx: &Transaction<'_>,
    copied: &Copied,
) -> Result<u64, StoreError> {
    for (table, n) in &copied.rows {
        let theirs: i64 = if has_table(lite, table)? {
            lite.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .map_err(source)?
        } else {
            0
        };
        let ours: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .map_err(db)?
            .get(0);
        if theirs != ours || ours as u64 != *n {
            return Err(StoreError::Open(format!(
                "{table}: {theirs} rows in the source, {ours} copied"
            )));
        }
    }
    // Secret conversations stay secret.
    let flagged: bool = lite
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('conversations') WHERE name = 'encrypted')",
            [],
            |r| r.get(0),
        )
        .map_err(source)?;
    let theirs: i64 = if flagged {
        lite.query_row(
            "SELECT COUNT(*) FROM conversations WHERE encrypted <> 0",
            [],
            |r| r.get(0),
        )
        .map_err(source)?
    } else {
        0
    };
    let ours: i64 = tx
        .query_one("SELECT COUNT(*) FROM conversations WHERE encrypted", &[])
        .await
        .map_err(db)?
        .get(0);
    if theirs != ours {
        return Err(StoreError::Open(format!(
            "{theirs} secret conversations in the source, {ours} copied secret"
        )));
    }
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut stmt = lite
        .prepare(
            "SELECT c.id, COALESCE((SELECT MAX(seq) FROM events e WHERE e.conversation_id = c.id), 0)
             FROM conversations c",
        )
        .map_err(source)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(source)?;
    for r in rows {
        let (id, seq) = r.map_err(source)?;
        last.insert(id, seq);
    }
    let ours = tx
        .query("SELECT id, last_seq FROM conversations", &[])
        .await
        .map_err(db)?;
    if ours.len() != last.len() {
        return Err(StoreError::Open(format!(
            "{} conversations in the source, {} copied",
            last.len(),
            ours.len()
        )));
    }
    for row in ours {
        let (id, seq): (String, i64) = (row.get(0), row.get(1));
        if last.get(&id) != Some(&seq) {
            return Err(StoreError::Open(format!(
                "conversation {id}: last seq {:?} in the source, {seq} copied",
                last.get(&id)
            )));
        }
    }
    Ok(last.len() as u64)
}
