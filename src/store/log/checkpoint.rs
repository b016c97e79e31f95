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

use super::StoreError;
use rusqlite::Connection;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Least time between two checkpoints.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Size the WAL file is truncated to after a reset (`journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The writer's handle: [`Checkpointer::committed`] after each commit.
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Start the checkpoint thread on `conn` (a read-write connection).
    pub(super) fn start(conn: Connection) -> Result<(Checkpointer, JoinHandle<()>), StoreError> {
        let (wake, rx) = sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("chatd-checkpoint".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Open(format!("cannot start the checkpoint thread: {e}")))?;
        Ok((Checkpointer { wake }, handle))
    }

    /// A commit added to the WAL. Never blocks.
    pub(super) fn committed(&self) {
        let _ = self.wake.try_send(());
    }
}

/// Checkpoint after commits until the writer is gone.
fn run(conn: Connection, wake: Receiver<()>) {
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
            Ok((log, done)) if log > 0 && done < log => {
                tracing::debug!(log, done, "checkpoint: part of the WAL is still in use")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("checkpoint failed: {e}"),
        }
    }
    // The writer has stopped: one last pass, so the WAL is small on disk.
    if let Err(e) = checkpoint(&conn) {
        tracing::warn!("final checkpoint failed: {e}");
    }
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

    #[test]
    fn commits_are_checkpointed_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
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
}
