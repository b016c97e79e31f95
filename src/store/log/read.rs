//! The read side of the log: a few read-only connections, each on a thread
//! of its own, and the start-up snapshot.
//!
//! Reads are queued to the reader threads rather than run as blocking
//! tasks: a thread that finds several reads waiting runs them one after
//! another in one read transaction, without going to sleep and being woken
//! for each, and SQLite takes its WAL read lock (two `fcntl` calls) once for
//! all of them. Every read queued before the transaction starts sees every
//! commit acknowledged before it was queued, as a read of its own would.

use super::{ConvRecord, Snapshot, StoreError};
use crate::proto::{ByteBudget, ConvKind, Event, EventBody, MemberRole, ReceiptPair};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Most reads one thread takes from the queue at a time (and runs in one
/// read transaction). Small, so that a slow read (a search) holds up few
/// others.
const BATCH: usize = 8;

/// Reads waiting for a thread, per thread, before callers wait to queue.
const QUEUED_PER_THREAD: usize = 256;

/// A read: run on a connection, it answers its caller.
struct Job {
    run: Box<dyn FnOnce(&Connection) + Send>,
    /// The read opens a transaction of its own, so it runs outside the
    /// batch's.
    alone: bool,
}

/// Read-only connections shared by all sessions.
#[derive(Clone)]
pub struct Readers {
    jobs: mpsc::Sender<Job>,
}

impl Readers {
    /// One thread per connection. The threads end once every `Readers`
    /// handle is gone.
    pub(super) fn new(conns: Vec<Connection>) -> Result<Readers, StoreError> {
        let (jobs, rx) = mpsc::channel(QUEUED_PER_THREAD * conns.len().max(1));
        let rx = Arc::new(Mutex::new(rx));
        let threads = conns.len().max(1);
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("chatd-read-{i}"))
                .spawn(move || serve(&conn, &rx, threads))
                .map_err(|e| StoreError::Open(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(Readers { jobs })
    }

    /// Run `f` on a free read connection, perhaps in one read transaction
    /// with other reads: `f` must not open a transaction (see
    /// `with_own_transaction`).
    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(f, false).await
    }

    /// Run `f`, which opens a transaction of its own, on a free read
    /// connection.
    async fn with_own_transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(f, true).await
    }

    async fn queue<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        alone: bool,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let run = Box::new(move |c: &Connection| {
            // A read that panics answers as a closed store would; the
            // thread and its connection go on.
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(c)))
                .unwrap_or(Err(StoreError::Closed));
            let _ = tx.send(out);
        });
        self.jobs
            .send(Job { run, alone })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// One text value by one key (`sql` has a single `?1`), if any.
    async fn lookup(&self, sql: &'static str, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(sql)?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// The password hash of a user, if the user exists.
    pub async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        self.lookup(
            // Bots have no password: their login fails as an unknown
            // user's does, against the decoy hash.
            "SELECT password_hash FROM users WHERE username = ?1 AND kind = 'person'",
            username,
        )
        .await
    }

    /// The ids of the events at these `(conversation, seq)`s, in order
    /// (`None`: no such event, or one written before ids).
    pub async fn event_ids(
        &self,
        at: Vec<(String, u64)>,
    ) -> Result<Vec<Option<String>>, StoreError> {
        self.with(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT eid FROM events WHERE conversation_id = ?1 AND seq = ?2")?;
            at.iter()
                .map(|(conv, seq)| {
                    Ok(stmt
                        .query_row(params![conv, (*seq).min(i64::MAX as u64) as i64], |r| {
                            r.get::<_, Option<String>>(0)
                        })
                        .optional()?
                        .flatten())
                })
                .collect()
        })
        .await
    }

    /// Events of a conversation: the first `limit` after `after`, or the last
    /// `limit` before `before`, ascending by seq.
    ///
    /// A page also stops before its events pass `max_bytes` of JSON (but
    /// holds at least one event), so that a reply of large messages stays a
    /// frame every peer accepts; the client continues from its edge.
    pub async fn history(
        &self,
        conversation_id: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let conv = conversation_id.to_string();
        // Seqs are stored as i64: larger bounds mean "no bound".
        let after = after.map(|a| a.min(i64::MAX as u64));
        let before = before.map(|b| b.min(i64::MAX as u64));
        self.with(move |c| {
            let mut events = Vec::with_capacity(limit.min(1024) as usize);
            let mut budget = ByteBudget::new(max_bytes);
            match before {
                Some(before) => {
                    let lower = after.unwrap_or(0) as i64;
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, ts, sender, client_msg_id, data, eid, bot FROM events
                         WHERE conversation_id = ?1 AND seq < ?2 AND seq > ?3
                         ORDER BY seq DESC LIMIT ?4",
                    )?;
                    let rows = stmt.query_map(params![conv, before as i64, lower, limit], |r| {
                        row(&conv, r)
                    })?;
                    for ev in rows {
                        let ev = ev??;
                        if !budget.admit(json_len(&ev) + 1) {
                            break;
                        }
                        events.push(ev);
                    }
                    events.reverse();
                }
                None => {
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, ts, sender, client_msg_id, data, eid, bot FROM events
                         WHERE conversation_id = ?1 AND seq > ?2
                         ORDER BY seq ASC LIMIT ?3",
                    )?;
                    let rows = stmt
                        .query_map(params![conv, after.unwrap_or(0) as i64, limit], |r| {
                            row(&conv, r)
                        })?;
                    for ev in rows {
                        let ev = ev??;
                        if !budget.admit(json_len(&ev) + 1) {
                            break;
                        }
                        events.push(ev);
                    }
                }
            }
            Ok(events)
        })
        .await
    }

    /// What the server keeps in memory, read again (as at start-up), in
    /// one read transaction so that it is one point of the log.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.with_own_transaction(|c| {
            let tx = c.unchecked_transaction()?;
            let snap = load_snapshot(&tx)?;
            tx.finish()?;
            Ok(snap)
        })
        .await
    }

    /// Usernames starting with `prefix`, sorted, at most `limit`.
    pub async fn users(&self, prefix: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT username FROM users WHERE substr(username, 1, length(?1)) = ?1
                 ORDER BY username LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![prefix, limit], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }
}

/// The length of `v` encoded as JSON, without allocating it.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

type RowResult = Result<Event, StoreError>;

fn row(conv: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let seq: i64 = r.get(0)?;
    let data: String = r.get(4)?;
    let body: EventBody = match serde_json::from_str(&data) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Err(StoreError::Open(format!(
                "event {conv}/{seq} is unreadable: {e}"
            ))));
        }
    };
    Ok(Ok(Event {
        conversation_id: conv.to_string(),
        seq: seq as u64,
        ts: r.get(1)?,
        sender: r.get(2)?,
        client_msg_id: r.get(3)?,
        eid: r.get(5)?,
        bot: r.get::<_, Option<bool>>(6)?.unwrap_or(false),
        body,
    }))
}

/// Read what the server keeps in memory: users, conversations, members and
/// their receipts.
pub(super) fn load_snapshot(c: &Connection) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    let mut stmt = c.prepare("SELECT username FROM users ORDER BY username")?;
    for u in stmt.query_map([], |r| r.get::<_, String>(0))? {
        snap.users.push(u?);
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut stmt = c.prepare(&format!(
        "SELECT id, kind, name, {} FROM conversations c",
        super::LAST_SEQ
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (id, kind, name, last_seq) = row?;
        let kind = ConvKind::parse(&kind)
            .ok_or_else(|| StoreError::Open(format!("conversation {id}: bad kind {kind}")))?;
        index.insert(id.clone(), snap.conversations.len());
        snap.conversations.push(ConvRecord {
            id,
            kind,
            name,
            last_seq: last_seq as u64,
            receipts: Default::default(),
            roles: Default::default(),
        });
    }
    let mut stmt =
        c.prepare("SELECT conversation_id, username, delivered_seq, read_seq, role FROM members")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (conv, user, d, rd, role) = row?;
        if let Some(&i) = index.get(&conv) {
            if let Some(role) = MemberRole::parse(&role).filter(|r| r.manages()) {
                snap.conversations[i].roles.insert(user.clone(), role);
            }
            snap.conversations[i].receipts.insert(
                user,
                ReceiptPair {
                    delivered: d as u64,
                    read: rd as u64,
                },
            );
        }
    }
    let mut stmt = c.prepare("SELECT id FROM conversations WHERE encrypted = 1")?;
    for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
        snap.encrypted.push(id?);
    }
    let mut stmt = c.prepare("SELECT username FROM users WHERE kind <> 'person'")?;
    for u in stmt.query_map([], |r| r.get::<_, String>(0))? {
        snap.bots.push(u?);
    }
    let mut stmt = c.prepare("SELECT blocker, blocked FROM blocks")?;
    for b in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        snap.blocks.push(b?);
    }
    Ok(snap)
}

/// A reader thread: take the next read and this thread's share of what
/// waits behind it (up to [`BATCH`]) and run them, those that can share one
/// in one read transaction, until the queue is closed. With few reads
/// waiting each thread takes one, so that reads run side by side where
/// there are cores for them; batches form when every thread is busy.
fn serve(conn: &Connection, rx: &Mutex<mpsc::Receiver<Job>>, threads: usize) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        {
            let Ok(mut rx) = rx.lock() else { return };
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            batch.push(first);
            let share = (rx.len() / threads).min(BATCH - 1);
            for _ in 0..share {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let shared = batch.iter().filter(|j| !j.alone).count();
        // One read alone needs no transaction around it.
        let open = shared > 1 && conn.execute_batch("BEGIN").is_ok();
        let mut alone = Vec::new();
        for job in batch.drain(..) {
            if job.alone {
                alone.push(job);
            } else {
                (job.run)(conn);
            }
        }
        if open && conn.execute_batch("COMMIT").is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in alone {
            (job.run)(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OpenFlags;
    use std::time::Duration;

    /// A database with `t(x)` holding 1, a connection to write it, and
    /// readers with one thread (so that every queued read shares its
    /// batches).
    fn setup() -> (tempfile::TempDir, Connection, Readers) {
        setup_with(1)
    }

    fn setup_with(threads: usize) -> (tempfile::TempDir, Connection, Readers) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let w = Connection::open(&path).unwrap();
        w.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        w.execute_batch("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let conns = (0..threads)
            .map(|_| Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap())
            .collect();
        (dir, w, Readers::new(conns).unwrap())
    }

    /// Occupy the reader thread until the returned sender is used.
    async fn hold(r: &Readers) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let r = r.clone();
        let held = tokio::spawn(async move {
            r.with(move |_| {
                let _ = started.send(());
                let _ = wait.recv_timeout(Duration::from_secs(10));
                Ok(())
            })
            .await
            .unwrap();
        });
        running.await.unwrap();
        (release, held)
    }

    /// Reads waiting for a thread.
    fn waiting(r: &Readers) -> usize {
        r.jobs.max_capacity() - r.jobs.capacity()
    }

    /// Wait (bounded) until the number of reads waiting satisfies `ok`.
    async fn until_waiting(r: &Readers, ok: impl Fn(usize) -> bool) {
        for _ in 0..1000 {
            if ok(waiting(r)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the queue never got there ({} waiting)", waiting(r));
    }

    /// Wait (bounded) until `n` reads are queued behind the held one.
    async fn queued(r: &Readers, n: usize) {
        until_waiting(r, |w| w >= n).await
    }

    /// Queue `f` as a read from a task of its own.
    fn spawn_read<T: Send + 'static>(
        r: &Readers,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, StoreError>> {
        let r = r.clone();
        tokio::spawn(async move { r.with(f).await })
    }

    fn read_x(r: &Readers) -> tokio::task::JoinHandle<Result<i64, StoreError>> {
        spawn_read(r, |c| {
            Ok(c.query_row("SELECT max(x) FROM t", [], |r| r.get(0))?)
        })
    }

    #[tokio::test]
    async fn a_read_with_a_transaction_of_its_own_runs_beside_a_batch() {
        let (_dir, _w, r) = setup();
        let (release, held) = hold(&r).await;
        let mut reads = Vec::new();
        for i in 0..6 {
            if i == 3 {
                let r = r.clone();
                reads.push(tokio::spawn(async move {
                    r.with_own_transaction(|c| {
                        let tx = c.unchecked_transaction()?;
                        let x = tx.query_row("SELECT max(x) FROM t", [], |r| r.get(0))?;
                        tx.finish()?;
                        Ok(x)
                    })
                    .await
                }));
            } else {
                reads.push(read_x(&r));
            }
            queued(&r, i + 1).await;
        }
        release.send(()).unwrap();
        held.await.unwrap();
        for read in reads {
            assert_eq!(read.await.unwrap().unwrap(), 1);
        }
    }

    #[tokio::test]
    async fn reads_queued_together_see_what_was_committed_before_they_were_queued() {
        let (_dir, w, r) = setup();
        assert_eq!(read_x(&r).await.unwrap().unwrap(), 1);
        let (release, held) = hold(&r).await;
        let before = read_x(&r);
        queued(&r, 1).await;
        w.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let after = read_x(&r);
        queued(&r, 2).await;
        release.send(()).unwrap();
        held.await.unwrap();
        // Both run in one transaction that starts after both were queued.
        assert_eq!(before.await.unwrap().unwrap(), 2);
        assert_eq!(after.await.unwrap().unwrap(), 2);
        // And the next batch sees the next commit: no transaction is kept
        // open between batches.
        w.execute("INSERT INTO t VALUES (3)", []).unwrap();
        assert_eq!(read_x(&r).await.unwrap().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_quick_read_does_not_wait_behind_a_slow_one_while_another_thread_is_free() {
        let (_dir, _w, r) = setup_with(2);
        let (release_a, held_a) = hold(&r).await;
        let (release_b, held_b) = hold(&r).await;
        // A slow read, then a quick one, both waiting.
        let (slow_done, slow_wait) = std::sync::mpsc::channel::<()>();
        let slow = spawn_read(&r, move |_| {
            let _ = slow_wait.recv_timeout(Duration::from_secs(10));
            Ok(())
        });
        queued(&r, 1).await;
        let quick = read_x(&r);
        queued(&r, 2).await;
        // One thread comes free: it takes the slow read and leaves the
        // quick one to the other thread rather than taking both.
        release_a.send(()).unwrap();
        held_a.await.unwrap();
        until_waiting(&r, |w| w <= 1).await;
        release_b.send(()).unwrap();
        held_b.await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), quick).await;
        slow_done.send(()).unwrap();
        assert_eq!(
            answer
                .expect("the quick read waited for the slow one")
                .unwrap()
                .unwrap(),
            1
        );
        slow.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_read_that_panics_leaves_the_reader_serving() {
        let (_dir, _w, r) = setup();
        let (release, held) = hold(&r).await;
        let first = read_x(&r);
        queued(&r, 1).await;
        let panics = spawn_read(&r, |_| -> Result<(), StoreError> {
            panic!("a read that fails badly")
        });
        queued(&r, 2).await;
        let last = read_x(&r);
        queued(&r, 3).await;
        release.send(()).unwrap();
        held.await.unwrap();
        assert!(matches!(panics.await.unwrap(), Err(StoreError::Closed)));
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(last.await.unwrap().unwrap(), 1);
        assert_eq!(read_x(&r).await.unwrap().unwrap(), 1);
    }
}
