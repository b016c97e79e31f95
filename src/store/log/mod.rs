//! chatd's durable log on SQLite: accounts, sessions, conversations,
//! membership, receipts and every conversation's event log.
//!
//! One writer thread owns the only write connection. It takes requests from a
//! bounded queue, applies as many as are waiting in one transaction (group
//! commit: a lone request commits at once, a burst shares one fsync), assigns
//! each conversation's next seq, and only then answers. Committed changes go
//! to a [`CommitSink`] in commit order, before any caller hears `ok`. With
//! `sync = "full"` a sync stage of its own fsyncs the WAL and only then
//! answers, while the writer applies the next group (see `durable`); the
//! changes are published at once or after the sync ([`PushMode`]).
//! Reads go through a small pool of read-only connections (WAL lets them run
//! beside the writer).
//!
//! This type is the storage seam: the server talks to it only through the
//! methods below, which a PostgreSQL backend can provide as well.

mod accounts;
mod bots;
pub use bots::{BotOp, Webhook};
mod checkpoint;
mod durable;
mod facts;
mod files;
mod gather;
mod keys;
pub use keys::{KeyCaps, KeyOp, KeyReply, StoredDevice};
mod mirror;
mod ops;
mod read;
pub mod retention;
mod roles;
pub use roles::Blocks;
mod schema;
mod search;
mod secret;
pub use search::{Cursor, SCAN_BUDGET, SearchPage, SearchScope};
pub use secret::SecretOp;
mod stats;
pub use stats::{Buckets, Snapshot as BucketsSnapshot, WriteStats};
mod walvfs;
mod writer;

use crate::proto::{ConvKind, Event, EventBody, MemberRole, ProtoError, ReceiptPair};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use accounts::{
    AccountOp, AccountReply, Registration, Revoke, SessionLife, SessionRow, SessionUse, offline,
};
pub use read::Readers;
pub use writer::{CommitSink, NoSink};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request was refused (not a member, no such message, ...).
    #[error("{0}")]
    Rejected(ProtoError),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot open the database: {0}")]
    Open(String),
    /// A write failed as a whole (its commit, or the sync that makes it
    /// durable).
    #[error("write failed: {0}")]
    Write(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// A PostgreSQL statement failed.
    #[error("database error: {0}")]
    Postgres(String),
    /// The database cannot be reached (no connection from the pool, a
    /// dropped connection): nothing was done.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// The answer a client gets for this failure.
    pub fn to_proto(&self) -> ProtoError {
        match self {
            StoreError::Rejected(e) => e.clone(),
            StoreError::Unavailable(_) => {
                ProtoError::unavailable("the database is unreachable or busy; retry later")
            }
            _ => ProtoError::internal(),
        }
    }
}

impl From<ProtoError> for StoreError {
    fn from(e: ProtoError) -> Self {
        StoreError::Rejected(e)
    }
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync the WAL after every commit, before anything is acknowledged:
    /// acknowledged writes survive power loss. The writer does not wait for
    /// the fsync; a sync stage does (see `durable`).
    Full,
    /// Write the WAL on every commit, fsync only at checkpoints: acknowledged
    /// writes survive a crash or `kill -9` of chatd, not a power loss.
    Normal,
}

/// When, with `sync = "full"`, the other members get a commit's pushes.
/// Its callers hear `ok` only once it is synced either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushMode {
    /// As soon as the commit is in the WAL, when history reads see it
    /// too: a message reaches the other members without waiting for the
    /// disk's sync. Should the power fail before that sync, they may have
    /// seen a message the server then no longer holds; their clients
    /// notice at their next sync and put it right (PROTOCOL.md, "No
    /// silent divergence"), and its sender's client sends it again (from
    /// its outbox, or, if its own push reached it, in that repair).
    #[default]
    AtCommit,
    /// Only once the commit is synced, with its answers: nobody ever sees
    /// a change that a power loss could take back, at the cost of the
    /// sync's time on every delivery.
    AfterSync,
}

/// Storage settings (`[store]` in chatd's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub sync: SyncMode,
    /// When pushes go out with `sync = "full"` (no difference with
    /// `"normal"`, where a commit is answered as soon as it is written).
    pub push: PushMode,
    /// Most requests one group commit applies.
    pub batch_max: usize,
    /// How long a commit of few requests waits for more while requests
    /// come in faster than `commit_delay_above` a second (0: never).
    pub commit_delay_us: u64,
    /// Write requests a second from which small commits wait
    /// `commit_delay_us` (0: never).
    pub commit_delay_above: u64,
    /// Requests waiting for the writer before senders are made to wait.
    pub queue: usize,
    /// Read-only connections for history and lookups.
    pub readers: usize,
    /// Where the store lives: `None` (the default) is the embedded SQLite
    /// database in the data directory; `postgres://USER@HOST/DB` is a
    /// PostgreSQL database that any number of chatd nodes share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connections each node keeps to PostgreSQL.
    pub pool: usize,
    /// Transactions each node commits conversation writes in at once
    /// (PostgreSQL): each commits everything queued for its conversations
    /// together, so fewer and fuller ones cost the database less.
    pub writers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            sync: SyncMode::Full,
            push: PushMode::AtCommit,
            batch_max: 512,
            commit_delay_us: 300,
            commit_delay_above: 4_000,
            queue: 4096,
            readers: 4,
            url: None,
            pool: 16,
            writers: 1,
        }
    }
}

/// A conversation as loaded at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvRecord {
    pub id: String,
    pub kind: ConvKind,
    pub name: Option<String>,
    pub last_seq: u64,
    pub receipts: BTreeMap<String, ReceiptPair>,
    /// Owner and admins.
    pub roles: BTreeMap<String, MemberRole>,
}

/// Everything the server keeps in memory, read once at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<String>,
    /// Bot accounts (with a token, or a webhook's).
    pub bots: Vec<String>,
    pub conversations: Vec<ConvRecord>,
    /// (blocker, blocked) pairs.
    pub blocks: Vec<(String, String)>,
    /// The ids of secret conversations.
    pub encrypted: Vec<String>,
}

/// A change to the log or to receipts, as the writer reports it after commit.
#[derive(Debug, Clone)]
pub enum Committed {
    /// A conversation came into being (just before its `create` event).
    Created {
        id: String,
        kind: ConvKind,
        name: Option<String>,
    },
    /// An event, with its push frame (encoded once, from the stored body).
    Event(Arc<Event>, String),
    Receipt {
        conversation_id: String,
        user: String,
        receipt: ReceiptPair,
    },
    /// A user was registered.
    User(String),
    /// `blocker` started (`on`) or stopped blocking `blocked`.
    Block {
        blocker: String,
        blocked: String,
        on: bool,
    },
    /// The conversation just created is secret (right after its
    /// `Created`, before its first event).
    Encrypted(String),
    /// A to-device message for the connections of `user` that use the
    /// session whose token's SHA-256 is `token`: its push frame.
    ToDevice {
        user: String,
        token: [u8; 32],
        push: String,
    },
    /// `user`'s devices changed (or their identity key was replaced).
    Devices {
        user: String,
        identity_changed: bool,
    },
}

/// Append requests. The `user` is the authenticated caller.
#[derive(Debug, Clone)]
pub enum Append {
    /// A message, edit, deletion or reaction.
    Event {
        user: String,
        conversation_id: String,
        client_msg_id: String,
        body: EventBody,
    },
    Create {
        user: String,
        kind: ConvKind,
        name: Option<String>,
        members: Vec<String>,
    },
    Join {
        user: String,
        conversation_id: Option<String>,
        name: Option<String>,
    },
    Leave {
        user: String,
        conversation_id: String,
    },
    AddMembers {
        user: String,
        conversation_id: String,
        members: Vec<String>,
    },
    RemoveMembers {
        user: String,
        conversation_id: String,
        members: Vec<String>,
    },
    SetRole {
        user: String,
        conversation_id: String,
        target: String,
        role: MemberRole,
    },
    Rename {
        user: String,
        conversation_id: String,
        client_msg_id: Option<String>,
        name: String,
    },
}

/// What an append produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub conversation_id: String,
    /// The seq and timestamp of the event written, or of the original one on
    /// an idempotent retry; `None` when nothing needed writing (joining a
    /// channel twice, creating a DM that exists).
    pub seq: Option<(u64, i64)>,
}

/// Limits the writer enforces.
#[derive(Debug, Clone)]
pub struct WriteLimits {
    pub max_members: usize,
    /// Conversations one user may be in.
    pub max_conversations_per_user: usize,
}

pub(crate) enum WriteOp {
    Account {
        op: AccountOp,
        reply: oneshot::Sender<Result<AccountReply, StoreError>>,
    },
    Append {
        op: Append,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    Receipt {
        user: String,
        conversation_id: String,
        delivered: u64,
        read: u64,
        reply: oneshot::Sender<Result<Option<ReceiptPair>, StoreError>>,
    },
    Keys {
        op: KeyOp,
        reply: oneshot::Sender<Result<KeyReply, StoreError>>,
    },
    Secret {
        op: SecretOp,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
}

/// Handle to the log. Cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    tx: mpsc::Sender<WriteOp>,
    readers: Readers,
    writer: Arc<writer::WriterThread>,
    stats: Arc<WriteStats>,
}

/// A conversation's last seq, read from its log (the events table is the
/// only place a seq is written, and `conversations.last_seq` is no longer
/// maintained; for a conversations row aliased `c`).
pub(crate) const LAST_SEQ: &str =
    "COALESCE((SELECT MAX(seq) FROM events e WHERE e.conversation_id = c.id), 0)";

/// The database file inside a data directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("chatd.db")
}

/// The WAL file beside the database.
fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn open_conn(path: &Path, read_only: bool, sync: SyncMode) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    // Connections that write gather each transaction's WAL frames into
    // one write (see `walvfs`).
    let opened = match walvfs::name().filter(|_| !read_only) {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    };
    let conn = opened.map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    tune(&conn)?;
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open(format!(
                "{}: cannot switch to WAL mode (got {mode})",
                path.display()
            )));
        }
        let sync = match sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(conn)
}

/// What every connection to the database gets, whatever it is for (the
/// server's, the retention sweep's, `chatd admin`'s): a wait for locks,
/// and cached statements that stay prepared. SQLite re-prepares a
/// statement whenever a new value is bound to a parameter its plan looked
/// at (a `LIMIT ?`, a `LIKE ?`), so every history page would be parsed and
/// planned again; the query planner stability guarantee keeps one plan per
/// statement.
pub(crate) fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The data dir `0700` and the database with its companions `0600`: they
/// hold password hashes, token digests and every message.
pub(crate) fn private_files(dir: &Path, db: &Path) -> Result<(), StoreError> {
    let failed = |p: &Path, e: std::io::Error| StoreError::Open(format!("{}: {e}", p.display()));
    crate::private::dir(dir).map_err(|e| failed(dir, e))?;
    crate::private::file(db).map_err(|e| failed(db, e))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        crate::private::restrict(&p).map_err(|e| failed(&p, e))?;
    }
    Ok(())
}

impl LogStore {
    /// Open (creating if needed) the database in `dir`, migrate it, start the
    /// writer, and return the store with what the server keeps in memory.
    pub fn open(
        dir: &Path,
        config: &StoreConfig,
        limits: WriteLimits,
        sink: Arc<dyn CommitSink>,
    ) -> Result<(LogStore, Snapshot), StoreError> {
        let path = db_path(dir);
        private_files(dir, &path)?;
        let mut conn = open_conn(&path, false, config.sync)?;
        let integrity: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            return Err(StoreError::Open(format!(
                "{}: integrity check failed: {integrity}",
                path.display()
            )));
        }
        schema::migrate(&mut conn)?;
        // Checkpoints run on their own thread (see `checkpoint`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", checkpoint::WAL_SIZE_LIMIT)?;
        let snapshot = read::load_snapshot(&conn)?;
        // With "full", the writer commits without waiting for the disk and
        // the sync stage fsyncs the WAL before anything is published. The
        // WAL file exists by now (the migration and the snapshot went
        // through it) and stays while any connection is open.
        let wal = match config.sync {
            SyncMode::Full => {
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                let wal = wal_path(&path);
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&wal)
                    .map_err(|e| StoreError::Open(format!("{}: {e}", wal.display())))?;
                Some(file)
            }
            SyncMode::Normal => None,
        };
        let mut readers = Vec::new();
        for _ in 0..config.readers.max(1) {
            readers.push(open_conn(&path, true, config.sync)?);
        }
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let disk = writer::Disk {
            conn,
            checkpoint: open_conn(&path, false, config.sync)?,
            wal,
        };
        let stats = Arc::new(WriteStats::default());
        let writer =
            writer::WriterThread::start(disk, &snapshot, rx, config, limits, sink, stats.clone())?;
        Ok((
            LogStore {
                tx,
                readers: Readers::new(readers)?,
                writer: Arc::new(writer),
                stats,
            },
            snapshot,
        ))
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    async fn wait<T>(rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Apply a change to accounts, sessions or invitations.
    pub async fn account(&self, op: AccountOp) -> Result<AccountReply, StoreError> {
        Self::wait(self.submit(|reply| WriteOp::Account { op, reply }).await?).await
    }

    /// Queue an append and return a receiver for its durable result.
    ///
    /// Appends submitted one after another from one task are sequenced in
    /// that order; awaiting the receiver can then happen concurrently.
    pub async fn submit_append(
        &self,
        op: Append,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        self.submit(|reply| WriteOp::Append { op, reply }).await
    }

    /// Append and wait until the result is durable.
    pub async fn append(&self, op: Append) -> Result<Appended, StoreError> {
        Self::wait(self.submit_append(op).await?).await
    }

    /// Apply a change to device keys or inboxes.
    pub async fn keys(&self, op: KeyOp) -> Result<KeyReply, StoreError> {
        Self::wait(self.submit(|reply| WriteOp::Keys { op, reply }).await?).await
    }

    /// Queue a write to a secret conversation (in order with appends) and
    /// return a receiver for its durable result.
    pub async fn submit_secret(
        &self,
        op: SecretOp,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        self.submit(|reply| WriteOp::Secret { op, reply }).await
    }

    /// Queue a receipt update; the receiver yields the new pointers, or
    /// `None` when nothing moved.
    pub async fn submit_receipt(
        &self,
        user: &str,
        conversation_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<oneshot::Receiver<Result<Option<ReceiptPair>, StoreError>>, StoreError> {
        let (user, conversation_id) = (user.to_string(), conversation_id.to_string());
        self.submit(|reply| WriteOp::Receipt {
            user,
            conversation_id,
            delivered,
            read,
            reply,
        })
        .await
    }

    pub async fn receipt(
        &self,
        user: &str,
        conversation_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<Option<ReceiptPair>, StoreError> {
        Self::wait(
            self.submit_receipt(user, conversation_id, delivered, read)
                .await?,
        )
        .await
    }

    /// The read side.
    pub fn readers(&self) -> &Readers {
        &self.readers
    }

    /// What the writer measures of its commits, and whether writes failed.
    pub fn stats(&self) -> Arc<WriteStats> {
        self.stats.clone()
    }

    /// Stop accepting writes, finish everything queued, and wait for the
    /// writer to exit. Other clones become unusable.
    pub async fn close(self) {
        let writer = self.writer.clone();
        drop(self);
        let publisher = writer.take_publisher();
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        // The writer is gone: its last commits are published, then this ends.
        if let Some(p) = publisher {
            let _ = p.await;
        }
    }
}

/// A new event id: 64 random bits in hex. Unique enough to tell two events
/// at one seq apart (after a restore, say), which is all it is for.
pub fn new_event_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Conversation ids: 16 random bytes, hex.
pub fn new_conversation_id() -> String {
    use rand::RngExt;
    let bytes: [u8; 12] = rand::rng().random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{StatementStatus, params};

    /// A page of history binds a new `LIMIT` each time: the cached
    /// statement must run again as prepared, not be parsed anew.
    #[test]
    fn a_cached_statement_is_not_prepared_again_for_new_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open_conn(&path, false, SyncMode::Full).unwrap();
        conn.execute_batch(
            "CREATE TABLE e (c TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (c, seq));
             INSERT INTO e VALUES ('a', 1), ('a', 2), ('a', 3);",
        )
        .unwrap();
        for limit in [1, 2, 3, 1] {
            let mut stmt = conn
                .prepare_cached("SELECT seq FROM e WHERE c = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
                .unwrap();
            let n = stmt
                .query_map(params!["a", 0, limit], |r| r.get::<_, i64>(0))
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
