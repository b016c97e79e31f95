//! WAL checkpoints off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, on the committing connection: the writer would stop taking
//! requests while pages are copied into the database file and the file is
//! synced. Instead the writer's connection has automatic checkpoints off,
//! and this thread, on a connection of its own, runs a passive checkpoint
//! (which never blocks the writer or readers) shortly after commits, at
//! most once per [`MIN_INTERVAL`]. The WAL file is cut back to
//! [`WAL_SIZE_LIMIT`] after it has been reset.
//!
//! Under a steady stream of commits such a checkpoint is never complete: the
//! writer appends while it copies, and SQLite starts the WAL over (at the
//! writer's next transaction) only once every frame in it has been copied.
//! The WAL would then grow without bound, every commit appending to fresh
//! blocks of the file. So when a pass finds the WAL longer than
//! [`RESTART_FRAMES`], this thread first prepares (see [`prepare_finish`]:
//! it syncs the database file and copies what was written meanwhile), then
//! asks the writer to finish the job:
//! between two groups, the writer runs a passive checkpoint of its own,
//! which copies the few frames written since and lets its next transaction
//! restart the WAL (unless a reader still uses it; then a later pass asks
//! again). Like every checkpoint it syncs the WAL before copying from it.
//! Every request waits while the writer finishes, so the less it finds to
//! copy and to sync the better.

use super::StoreError;
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Least time between two checkpoints.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Size the WAL file is truncated to after a reset (`journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// WAL frames (pages of 4 KiB) beyond which the writer is asked to let the
/// WAL start over.
const RESTART_FRAMES: i64 = 4096;

/// Frames written during a pass below which [`prepare_finish`] stops
/// making passes.
const FINISH_FRAMES: i64 = 256;

/// Passes [`prepare_finish`] makes at most before it asks the writer anyway.
const CATCH_UP_PASSES: usize = 4;

/// The writer's handle: [`Checkpointer::committed`] after each commit.
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
    /// Set by the checkpoint thread when the writer should finish a
    /// checkpoint (see the module doc).
    restart: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Start the checkpoint thread on `conn` (a read-write connection).
    pub(super) fn start(conn: Connection) -> Result<(Checkpointer, JoinHandle<()>), StoreError> {
        let (wake, rx) = sync_channel(1);
        let restart = Arc::new(AtomicBool::new(false));
        let asks = restart.clone();
        let handle = std::thread::Builder::new()
            .name("chatd-checkpoint".into())
            .spawn(move || run(conn, rx, &asks))
            .map_err(|e| StoreError::Open(format!("cannot start the checkpoint thread: {e}")))?;
        Ok((Checkpointer { wake, restart }, handle))
    }

    /// A commit added to the WAL. Never blocks.
    pub(super) fn committed(&self) {
        let _ = self.wake.try_send(());
    }

    /// Called by the writer between transactions, on its own connection:
    /// if the checkpoint thread asked for it, copy what is left of the WAL
    /// so that the next transaction starts it over.
    pub(super) fn finish(&self, writer: &Connection) {
        if !self.restart.swap(false, Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        match checkpoint(writer) {
            Ok((log, done)) => tracing::debug!(
                log,
                done,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "checkpoint: finished by the writer"
            ),
            Err(e) => tracing::warn!("checkpoint by the writer failed: {e}"),
        }
    }
}

/// Checkpoint after commits until the writer is gone.
fn run(conn: Connection, wake: Receiver<()>, restart: &AtomicBool) {
    // The database file, synced before the writer is asked to finish.
    // (Without it the writer syncs everything when it finishes.)
    let db = conn
        .path()
        .filter(|p| !p.is_empty())
        .and_then(|p| match std::fs::File::open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("checkpoint: cannot open {p} to sync it: {e}");
                None
            }
        });
    let mut last = Instant::now() - MIN_INTERVAL;
    while wake.recv().is_ok() {
        let since = last.elapsed();
        if since < MIN_INTERVAL {
            std::thread::sleep(MIN_INTERVAL - since);
        }
        // Commits made meanwhile are covered by this checkpoint.
        match wake.try_recv() {
            Ok(()) | Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {}
        }
        last = Instant::now();
        match checkpoint(&conn) {
            Ok((log, done)) => {
                tracing::trace!(
                    log,
                    done,
                    ms = last.elapsed().as_secs_f64() * 1000.0,
                    "checkpoint: a pass"
                );
                if log > 0 && done < log {
                    tracing::debug!(log, done, "checkpoint: part of the WAL is still in use")
                }
                if log >= RESTART_FRAMES {
                    prepare_finish(&conn, db.as_ref(), log);
                    restart.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!("checkpoint failed: {e}"),
        }
    }
    // The writer has stopped: one last pass, so the WAL is small on disk.
    if let Err(e) = checkpoint(&conn) {
        tracing::warn!("final checkpoint failed: {e}");
    }
}

/// Leave the writer little to do when it finishes a checkpoint, after a
/// pass that copied the WAL up to frame `log`.
///
/// A pass that does not reach the end of the WAL (and under a steady
/// stream of commits none does) copies pages into the database file
/// without syncing it: only the checkpoint that completes the WAL syncs
/// the database file, since only then may the WAL start over. That is the
/// writer's, and it used to sync every page copied since the last restart
/// (about 10 ms under a steady load of small messages) while every request
/// waited. So first this thread syncs what its passes copied; then it
/// copies again what was written meanwhile, pass after pass until little is
/// left, and syncs that too. Syncing more often than SQLite would is always
/// safe.
fn prepare_finish(conn: &Connection, db: Option<&std::fs::File>, mut log: i64) {
    let started = Instant::now();
    let sync = |what: &str| {
        if let Some(db) = db
            && let Err(e) = db.sync_data()
        {
            tracing::warn!("cannot sync the database file {what}: {e}");
        }
    };
    sync("after a checkpoint");
    let mut copied = false;
    for _ in 0..CATCH_UP_PASSES {
        match checkpoint(conn) {
            Ok((now, _)) => {
                // Frame numbers only grow until the WAL starts over.
                let behind = now - log;
                log = now;
                copied |= behind > 0;
                if behind <= FINISH_FRAMES {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("checkpoint failed: {e}");
                break;
            }
        }
    }
    if copied {
        sync("after catching up");
    }
    tracing::trace!(
        log,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "checkpoint: ready for the writer to finish"
    );
}

/// A passive checkpoint: (frames in the WAL, frames copied back).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database `t.db` in a new directory, opened by a "writer" in WAL
    /// mode with automatic checkpoints off, as chatd's writer is.
    fn wal_db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let writer = Connection::open(dir.path().join("t.db")).unwrap();
        writer
            .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        (dir, writer)
    }

    #[test]
    fn commits_are_checkpointed_off_the_writer() {
        let (dir, writer) = wal_db();
        let path = dir.path().join("t.db");
        writer.execute_batch("CREATE TABLE t(x BLOB)").unwrap();
        let (cp, handle) = Checkpointer::start(Connection::open(&path).unwrap()).unwrap();
        for i in 0..50 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000 + ?1))", [i])
                .unwrap();
            cp.committed();
        }
        // Only a checkpoint copies pages into the database file, and nothing
        // but the checkpoint thread runs one here. Bounded wait.
        let db_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while db_len() < 50 * 4000 {
            assert!(Instant::now() < deadline, "the WAL was never checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(cp);
        handle.join().unwrap();
        let n: i64 = writer
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 50);
    }

    #[test]
    fn the_writers_finish_is_prepared_by_copying_what_was_written_since() {
        let (dir, writer) = wal_db();
        let path = dir.path().join("t.db");
        writer.execute_batch("CREATE TABLE t(x BLOB)").unwrap();
        let insert = |n: i64| {
            for i in 0..n {
                writer
                    .execute("INSERT INTO t VALUES (zeroblob(4000 + ?1))", [i])
                    .unwrap();
            }
        };
        let conn = Connection::open(&path).unwrap();
        insert(10);
        let (log, done) = checkpoint(&conn).unwrap();
        assert_eq!(log, done);
        // Written after the pass: only in the WAL.
        insert(50);
        let db_len = || std::fs::metadata(&path).unwrap().len();
        assert!(db_len() < 60 * 4000);
        let db = std::fs::File::open(&path).unwrap();
        prepare_finish(&conn, Some(&db), log);
        assert!(
            db_len() >= 60 * 4000,
            "what was written since was not copied"
        );
        let n: i64 = writer
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 60);
    }

    #[test]
    fn a_wal_written_without_pause_starts_over() {
        let (dir, writer) = wal_db();
        let path = dir.path().join("t.db");
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        writer.pragma_update(None, "journal_size_limit", 0).unwrap();
        writer.pragma_update(None, "synchronous", "OFF").unwrap();
        writer
            .execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, x BLOB)")
            .unwrap();
        let (cp, handle) = Checkpointer::start(Connection::open(&path).unwrap()).unwrap();
        // Commit without pause, rewriting the same rows; the WAL grows
        // until the writer is asked to finish a checkpoint, and then its
        // next commit restarts it (cut back to `journal_size_limit`).
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let big = (RESTART_FRAMES as u64) * 4096;
        let (mut peak, mut i) = (0, 0i64);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "the WAL never started over");
            writer
                .execute(
                    "INSERT OR REPLACE INTO t VALUES (?1, zeroblob(3000))",
                    [i % 64],
                )
                .unwrap();
            i += 1;
            cp.committed();
            cp.finish(&writer);
            let len = wal_len();
            peak = peak.max(len);
            if peak >= big && len < peak / 2 {
                break;
            }
        }
        drop(cp);
        handle.join().unwrap();
    }
}
