//! The client's local cache: one SQLite file holding the conversations, their
//! events, receipts and the outbox. It is the client's single source of
//! truth: the app state is rebuilt from it at start, before the network
//! connects, and every event from the server goes through it.
//!
//! - [`Cache::apply_events`] stores events idempotently and keeps, per
//!   conversation, the `cursor` (invariant 4) and the missing ranges.
//! - [`Cache::messages`] folds edits, deletions, reactions and replies into
//!   rows at read time, so arrival order never matters.
//! - [`Cache::conversations`] gives the conversation list.
//! - The outbox keeps requests until the server's event for them is held.
//! - [`Cache::search`] answers searches from what is held (see `search`).

mod apply;
mod convs;
mod fold;
mod outbox;
mod schema;
mod search;
mod secret;
mod unread;

#[cfg(test)]
mod tests;

pub use crate::client::text::mentions as mentions_user;
pub use apply::{ApplyOutcome, ConvProgress};
pub use outbox::{OutboxItem, OutboxRequest, outbox_mark_sent_in, set_meta_in};

use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// What can go wrong with the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cache file is corrupt: {0}")]
    Corrupt(String),
    #[error("cache file I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("cache schema version {found} is newer than this program supports ({supported})")]
    TooNew { found: u32, supported: u32 },
}

impl CacheError {
    /// Whether the file itself is damaged (as opposed to locked, unreadable
    /// or from a newer program): only then is moving it aside the remedy.
    pub fn is_corruption(&self) -> bool {
        match self {
            CacheError::Corrupt(_) => true,
            CacheError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ),
            _ => false,
        }
    }
}

fn corrupt(what: impl std::fmt::Display) -> CacheError {
    CacheError::Corrupt(what.to_string())
}

/// The meta key under which the signed-in username is kept.
pub const META_ME: &str = "me";

/// The client's cache over one SQLite connection.
pub struct Cache {
    conn: Connection,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Cache {
    /// Open (or create) the cache file at `path` and bring its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Cache, CacheError> {
        prepare_file(path.as_ref())?;
        let mut conn = Connection::open(path.as_ref())?;
        schema::configure(&conn, true)?;
        schema::migrate(&mut conn)?;
        Ok(Cache { conn })
    }

    /// Check the file for damage (SQLite's `quick_check`): a corruption
    /// error when it is damaged.
    pub fn verify(&self) -> Result<(), CacheError> {
        schema::quick_check(&self.conn)
    }

    /// A cache that lives only as long as the value (tests, `--no-cache`).
    pub fn open_in_memory() -> Result<Cache, CacheError> {
        let mut conn = Connection::open_in_memory()?;
        schema::configure(&conn, false)?;
        schema::migrate(&mut conn)?;
        Ok(Cache { conn })
    }

    /// Open the cache at `path`; if the file is not a database or fails
    /// `PRAGMA quick_check`, move it (with its `-wal`/`-shm`) aside to
    /// `<name>.corrupt-<unix-ts>` and start an empty cache. Returns the
    /// path the damaged file was moved to, so the caller can tell the user.
    ///
    /// Errors that do not mean damage (a locked file, permissions, a schema
    /// from a newer program) are returned and the file is left alone.
    pub fn open_or_recover(path: impl AsRef<Path>) -> Result<(Cache, Option<PathBuf>), CacheError> {
        let path = path.as_ref();
        match Self::open_checked(path) {
            Ok(cache) => Ok((cache, None)),
            Err(e) if e.is_corruption() => {
                let moved = move_aside(path)?;
                tracing::warn!(
                    "cache {} was damaged ({e}); moved to {}",
                    path.display(),
                    moved.display()
                );
                Ok((Self::open(path)?, Some(moved)))
            }
            Err(e) => Err(e),
        }
    }

    fn open_checked(path: &Path) -> Result<Cache, CacheError> {
        prepare_file(path)?;
        let conn = Connection::open(path)?;
        schema::configure(&conn, true)?;
        schema::quick_check(&conn)?;
        let mut cache = Cache { conn };
        schema::migrate(&mut cache.conn)?;
        Ok(cache)
    }

    /// A transaction on the cache, for changes that must commit together
    /// with the cache's own (the crypto state, `e2e::Crypto::save`, with the
    /// outbox or inbox change it belongs to).
    pub fn transaction(&mut self) -> Result<rusqlite::Transaction<'_>, CacheError> {
        Ok(self.conn.transaction()?)
    }

    /// The connection, for reads of tables kept by other modules
    /// (`e2e::Crypto::load`).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Store a key/value setting.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), CacheError> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Read a key/value setting.
    pub fn meta(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The signed-in username, if known.
    pub fn me(&self) -> Result<Option<String>, CacheError> {
        self.meta(META_ME)
    }

    /// Record the signed-in username; the unread flags are recomputed
    /// when they were kept for someone else.
    pub fn set_me(&mut self, user: &str) -> Result<(), CacheError> {
        // Most starts reopen the same account: no write (and no sync) then.
        if self.me()?.as_deref() != Some(user) {
            self.set_meta(META_ME, user)?;
        }
        unread::ensure_flags(&mut self.conn)
    }
}

/// Rename `path` and its `-wal`/`-shm` companions to `<name>.corrupt-<ts>`
/// (with a numeric suffix if that name is taken). Returns the new path.
fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    let mut target = path.with_file_name(format!("{name}.corrupt-{ts}"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{name}.corrupt-{ts}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(path, suffix);
        if side.exists() {
            std::fs::rename(&side, with_suffix(&target, suffix))?;
        }
    }
    Ok(target)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Create the directory a cache file lives in (`0700`), and the file itself
/// `0600`: the cache holds the user's history.
fn prepare_file(path: &Path) -> Result<(), CacheError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::dir(dir)?;
    }
    crate::private::file(path)?;
    for suffix in ["-wal", "-shm"] {
        crate::private::restrict(&with_suffix(path, suffix))?;
    }
    Ok(())
}
