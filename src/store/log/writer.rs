//! The single writer: group commit, sequencing and write-side validation.
//!
//! The writer keeps a mirror of what validation needs (conversation kinds,
//! last seqs, members, channel names, DM keys, usernames) so that a request is
//! checked and sequenced without extra reads. The mirror changes only as
//! operations succeed inside the open transaction; if a commit fails the
//! mirror is reloaded from the database and every request of the batch fails.
//!
//! A commit is published (sink, then answers) by a task on the runtime. With
//! `sync = "normal"` the writer hands it over as soon as it is made. With
//! `sync = "full"` it goes to the sync stage (see `durable`), which hands
//! the answers over once the WAL is synced, while the writer goes on with
//! the next group; its changes go to the task at once or with the answers
//! (`PushMode`).

use super::checkpoint::Checkpointer;
use super::durable::{Batch, Failed, Published, Publisher, SyncStage, not_durable};
use super::gather::Gather;
use super::mirror::Mirror;
use super::stats::WriteStats;
use super::{
    AccountReply, Appended, Committed, KeyReply, StoreConfig, StoreError, WriteLimits, WriteOp,
};
use crate::proto::ReceiptPair;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

/// Receives committed changes in commit order, on the publisher task (with
/// `sync = "full"`, once they are durable only under
/// `PushMode::AfterSync`). It must not block: it runs on the runtime,
/// between a commit and the replies to its callers.
pub trait CommitSink: Send + Sync + 'static {
    fn committed(&self, changes: &[Committed]);
}

/// A sink for a store nobody listens to (tools, tests).
pub struct NoSink;

impl CommitSink for NoSink {
    fn committed(&self, _: &[Committed]) {}
}

pub(super) struct WriterThread {
    /// The writer's thread, the sync stage's (which ends after the writer,
    /// once everything queued is synced and published), then the checkpoint
    /// thread (which ends after the writer, with a last checkpoint).
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// The task that publishes commits and answers callers.
    publisher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the writer writes through.
pub(super) struct Disk {
    /// The write connection.
    pub(super) conn: Connection,
    /// A read-write connection for the checkpoint thread.
    pub(super) checkpoint: Connection,
    /// The WAL file, which the sync stage syncs (`sync = "full"` only).
    pub(super) wal: Option<std::fs::File>,
}

/// Commits waiting for the publisher task before the writer waits.
const REPLY_QUEUE: usize = 64;

impl WriterThread {
    pub(super) fn start(
        disk: Disk,
        snapshot: &super::Snapshot,
        rx: mpsc::Receiver<WriteOp>,
        config: &StoreConfig,
        limits: WriteLimits,
        sink: Arc<dyn CommitSink>,
        stats: Arc<WriteStats>,
    ) -> Result<WriterThread, StoreError> {
        let Disk {
            conn,
            checkpoint: checkpoint_conn,
            wal,
        } = disk;
        let mirror = Mirror::from_snapshot(snapshot);
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Open("the store must be opened inside the runtime".into()))?;
        let (checkpointer, checkpoint_handle) = Checkpointer::start(checkpoint_conn)?;
        // Commits are published from a task on the runtime, in order: the
        // writer (or the sync stage) hands over a whole commit with one
        // wake-up instead of waking each member and caller from its own
        // thread (on a busy core each such wake-up can cost a context
        // switch), and a connection woken by both a push and an answer runs
        // once the task is done, writing both with one send.
        let (out, mut to_publish) = mpsc::channel::<Published>(REPLY_QUEUE);
        let task_sink = sink.clone();
        let publisher = runtime.spawn(async move {
            while let Some(p) = to_publish.recv().await {
                p.deliver(&*task_sink);
            }
        });
        let failed = stats.failed();
        let publish = Publisher { sink, out, stats };
        let mut handles = Vec::new();
        let out = match wal {
            None => Output::Inline(publish),
            Some(wal) => {
                let (stage, handle) = SyncStage::start(wal, publish, failed.clone(), config.push)
                    .map_err(|e| {
                    StoreError::Open(format!("cannot start the sync thread: {e}"))
                })?;
                handles.push(handle);
                Output::Synced(stage)
            }
        };
        let batch_max = config.batch_max.max(1);
        let gather = Gather::new(
            std::time::Duration::from_micros(config.commit_delay_us),
            config.commit_delay_above,
        );
        let next_doc = super::search::next_doc(&conn)?;
        let mut writer = Writer {
            next_doc,
            conn,
            mirror,
            limits,
            changes: Vec::new(),
            checkpointer: Some(checkpointer),
            unindexed: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("chatd-writer".into())
            .spawn(move || writer.run(rx, batch_max, gather, out, failed))
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        handles.insert(0, handle);
        handles.push(checkpoint_handle);
        Ok(WriterThread {
            handles: Mutex::new(handles),
            publisher: Mutex::new(Some(publisher)),
        })
    }

    /// The publisher task, to await after [`WriterThread::join`].
    pub(super) fn take_publisher(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.publisher.lock().ok().and_then(|mut p| p.take())
    }

    /// Wait for the writer, then the sync stage and the checkpoint thread,
    /// to finish (after every sender is gone).
    pub(super) fn join(&self) {
        let handles = self
            .handles
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for h in handles {
            let _ = h.join();
        }
    }
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) mirror: Mirror,
    pub(super) limits: WriteLimits,
    /// Changes of the open transaction, published after it commits.
    pub(super) changes: Vec<Committed>,
    /// Told about each commit; dropped when the writer stops.
    pub(super) checkpointer: Option<Checkpointer>,
    /// The search index's next doc number (see `search`).
    pub(super) next_doc: i64,
    /// New messages of the open transaction not yet in the search index:
    /// indexed together before it commits, outside the operations'
    /// savepoints (at each of which the full-text index would otherwise
    /// write out what it holds, a segment per message).
    pub(super) unindexed: Vec<super::search::Unindexed>,
}

/// Where a commit goes once it is made.
enum Output {
    /// Published by the writer at once (`sync = "normal"`).
    Inline(Publisher),
    /// Answered by the sync stage once the WAL is synced (`sync = "full"`).
    Synced(SyncStage),
}

/// A reply waiting for its batch to commit.
pub(super) enum Pending {
    Account(
        tokio::sync::oneshot::Sender<Result<AccountReply, StoreError>>,
        Result<AccountReply, StoreError>,
    ),
    Append(
        tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
        Result<Appended, StoreError>,
    ),
    Receipt(
        tokio::sync::oneshot::Sender<Result<Option<ReceiptPair>, StoreError>>,
        Result<Option<ReceiptPair>, StoreError>,
    ),
    Keys(
        tokio::sync::oneshot::Sender<Result<KeyReply, StoreError>>,
        Result<KeyReply, StoreError>,
    ),
}

impl Pending {
    fn fail(self) -> Pending {
        self.fail_with(StoreError::Write("commit failed".into()))
    }
    /// The same caller, answered with `err` instead.
    pub(super) fn fail_with(self, err: StoreError) -> Pending {
        match self {
            Pending::Account(tx, _) => Pending::Account(tx, Err(err)),
            Pending::Append(tx, _) => Pending::Append(tx, Err(err)),
            Pending::Receipt(tx, _) => Pending::Receipt(tx, Err(err)),
            Pending::Keys(tx, _) => Pending::Keys(tx, Err(err)),
        }
    }
    pub(super) fn send(self) {
        match self {
            Pending::Account(tx, r) => drop(tx.send(r)),
            Pending::Append(tx, r) => drop(tx.send(r)),
            Pending::Receipt(tx, r) => drop(tx.send(r)),
            Pending::Keys(tx, r) => drop(tx.send(r)),
        }
    }
}

/// Whether an operation may change or remove what is in the search index
/// (rather than only add to it).
fn touches_index(op: &WriteOp) -> bool {
    match op {
        WriteOp::Append {
            op: super::Append::Event { body, .. },
            ..
        } => matches!(
            body,
            crate::proto::EventBody::Edit { .. } | crate::proto::EventBody::Delete { .. }
        ),
        WriteOp::Append { .. }
        | WriteOp::Receipt { .. }
        | WriteOp::Keys { .. }
        | WriteOp::Secret { .. } => false,
        WriteOp::Account { .. } => true,
    }
}

pub(super) use crate::store::rules::rejected;

/// Add what is queued to `batch`, up to `max` requests in all.
fn take_queued(rx: &mut mpsc::Receiver<WriteOp>, batch: &mut Vec<WriteOp>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

impl Writer {
    fn run(
        &mut self,
        mut rx: mpsc::Receiver<WriteOp>,
        batch_max: usize,
        mut gather: Gather,
        out: Output,
        failed: Failed,
    ) {
        let mut batch = Vec::with_capacity(batch_max);
        while let Some(first) = rx.blocking_recv() {
            let started = Instant::now();
            batch.push(first);
            take_queued(&mut rx, &mut batch, batch_max);
            if let Some(delay) = gather.wait(batch.len()) {
                std::thread::sleep(delay);
                take_queued(&mut rx, &mut batch, batch_max);
            }
            gather.taken(started, batch.len());
            let ops = batch.len();
            let (replies, written) = if failed.is_set() {
                // A sync failed: nothing written from now on could be
                // acknowledged.
                let replies = batch
                    .drain(..)
                    .map(|op| self.refuse(op).fail_with(not_durable()))
                    .collect();
                (replies, false)
            } else {
                self.commit_batch(&mut batch)
            };
            match &out {
                Output::Inline(publish) => {
                    publish.publish(std::mem::take(&mut self.changes), replies);
                    if written {
                        publish.stats.batch_ops.observe(ops as u64);
                        publish.stats.commit_time.observe_time(started.elapsed());
                    }
                }
                Output::Synced(stage) => stage.push(Batch {
                    changes: std::mem::take(&mut self.changes),
                    replies,
                    written,
                    ops,
                    started,
                }),
            }
            if written && let Some(c) = &self.checkpointer {
                c.committed();
                c.finish(&self.conn);
            }
        }
        self.checkpointer = None;
        tracing::debug!("writer: queue closed, exiting");
    }

    /// Apply and commit a batch: its callers' answers, and whether it
    /// committed.
    fn commit_batch(&mut self, batch: &mut Vec<WriteOp>) -> (Vec<Pending>, bool) {
        let mut pending = Vec::with_capacity(batch.len());
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!("writer: cannot begin a transaction: {e}");
            for op in batch.drain(..) {
                pending.push(self.refuse(op));
            }
            return (pending.into_iter().map(Pending::fail).collect(), false);
        }
        for op in batch.drain(..) {
            pending.push(self.apply(op));
        }
        let committed = self
            .index_pending()
            .map_err(|e| e.to_string())
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(|e| e.to_string()));
        if let Err(e) = committed {
            tracing::error!("writer: commit failed: {e}");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.changes.clear();
            self.unindexed.clear();
            match Mirror::load(&self.conn) {
                Ok(m) => self.mirror = m,
                Err(e) => tracing::error!("writer: cannot reload state: {e}"),
            }
            return (pending.into_iter().map(Pending::fail).collect(), false);
        }
        (pending, true)
    }

    fn refuse(&mut self, op: WriteOp) -> Pending {
        match op {
            WriteOp::Account { reply, .. } => Pending::Account(reply, Err(StoreError::Closed)),
            WriteOp::Append { reply, .. } => Pending::Append(reply, Err(StoreError::Closed)),
            WriteOp::Receipt { reply, .. } => Pending::Receipt(reply, Err(StoreError::Closed)),
            WriteOp::Keys { reply, .. } => Pending::Keys(reply, Err(StoreError::Closed)),
            WriteOp::Secret { reply, .. } => Pending::Append(reply, Err(StoreError::Closed)),
        }
    }

    /// Apply one operation inside a savepoint, so that a failure undoes
    /// only its own writes.
    fn apply(&mut self, op: WriteOp) -> Pending {
        // An edit, a deletion or an account change may take messages out
        // of the index or change them: those waiting go in first, outside
        // this operation's savepoint (so that its failure cannot undo
        // them).
        if touches_index(&op)
            && let Err(e) = self.index_pending()
        {
            return self.refuse_with(op, e);
        }
        let mark = self.changes.len();
        let index_mark = self.unindexed.len();
        if let Err(e) = self.exec_cached("SAVEPOINT op") {
            return self.refuse_with(op, e.into());
        }
        let result = match op {
            WriteOp::Account { op, reply } => {
                // Sessions ended take their devices along (a trigger):
                // their users' contacts hear of it.
                let done = self
                    .account(op)
                    .and_then(|r| self.sessions_took_devices().map(|()| r));
                Pending::Account(reply, done)
            }
            WriteOp::Keys { op, reply } => Pending::Keys(reply, self.keys(op)),
            WriteOp::Secret { op, reply } => Pending::Append(reply, self.secret(op)),
            WriteOp::Append { op, reply } => Pending::Append(reply, self.append(op)),
            WriteOp::Receipt {
                user,
                conversation_id,
                delivered,
                read,
                reply,
            } => Pending::Receipt(
                reply,
                self.receipt(&user, &conversation_id, delivered, read),
            ),
        };
        let (failed, db_error) = match &result {
            Pending::Account(_, r) => (r.is_err(), matches!(r, Err(StoreError::Db(_)))),
            // A write error may come after the mirror moved (a secret
            // send's shares are written after its event): reload it too.
            Pending::Append(_, r) => (
                r.is_err(),
                matches!(r, Err(StoreError::Db(_) | StoreError::Write(_))),
            ),
            Pending::Receipt(_, r) => (r.is_err(), matches!(r, Err(StoreError::Db(_)))),
            Pending::Keys(_, r) => (r.is_err(), matches!(r, Err(StoreError::Db(_)))),
        };
        let end = if failed {
            self.changes.truncate(mark);
            self.unindexed.truncate(index_mark);
            self.exec_cached("ROLLBACK TO op")
                .and_then(|_| self.exec_cached("RELEASE op"))
        } else {
            self.exec_cached("RELEASE op")
        };
        if let Err(e) = end {
            tracing::error!("writer: savepoint failed: {e}");
        }
        if db_error {
            // The mirror may hold part of the undone operation: rebuild it
            // from the transaction as it stands after the rollback.
            match Mirror::load(&self.conn) {
                Ok(m) => self.mirror = m,
                Err(e) => tracing::error!("writer: cannot reload state: {e}"),
            }
        }
        result
    }

    /// Index the messages waiting (see [`Writer::unindexed`]).
    fn index_pending(&mut self) -> Result<(), StoreError> {
        for u in std::mem::take(&mut self.unindexed) {
            u.add(&self.conn)?;
        }
        Ok(())
    }

    /// Run a statement without parameters through the statement cache (the
    /// savepoint statements run for every operation).
    fn exec_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    fn refuse_with(&mut self, op: WriteOp, e: StoreError) -> Pending {
        tracing::error!("writer: {e}");
        self.refuse(op)
    }
}
