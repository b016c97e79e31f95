//! The sync stage of `sync = "full"`: commits are made durable off the
//! writer's path, and only then answered.
//!
//! With `synchronous=FULL` SQLite fsyncs the WAL inside every `COMMIT`, so
//! the writer sat in the fsync while the next group of requests waited to
//! be started. Instead the writer's connection commits with
//! `synchronous=NORMAL` (the commit is written to the WAL, not synced) and
//! hands each commit, with its changes and its callers' answers, to this
//! stage. The stage fdatasyncs the WAL file (once for every commit that
//! arrived meanwhile: the next group is applied and written while the
//! previous one is being synced), then hands the answers to the publisher,
//! strictly in commit order. So no caller hears `ok` for a change before it
//! is durable against power loss, as with `synchronous=FULL`.
//!
//! The changes themselves (the pushes to the other members) go to the
//! [`CommitSink`] either at once, as the writer hands the commit over
//! ([`PushMode::AtCommit`], the default: a delivery does not wait for the
//! disk), or with the answers once synced ([`PushMode::AfterSync`]). Both
//! go through the one publisher task, the changes first, so no caller
//! hears `ok` before its change is in the hub either way.
//!
//! Why syncing the WAL file from here is enough:
//!
//! - `fdatasync` on any descriptor of the WAL file flushes every write made
//!   to it before the call, whichever connection made it; the WAL is
//!   replayed on recovery up to its last valid commit, so what is durable is
//!   always a prefix of the commits, and the answers go out in that order.
//! - Checkpoints (see `checkpoint`) may copy commits that this stage has not
//!   synced yet into the database file: SQLite syncs the WAL before it
//!   copies any frame, and the database file once a checkpoint has copied
//!   the whole WAL (before the WAL may start over), whenever `synchronous`
//!   is not `OFF` on the checkpointing connection (`walCheckpoint` in
//!   `wal.c`; the checkpoint thread's connection keeps `synchronous=FULL`,
//!   the writer's, which finishes a checkpoint now and then, has `NORMAL`).
//!   A checkpoint therefore only ever makes such commits durable for real.
//! - The WAL is restarted (written again from its start, with new salts)
//!   only after every frame in it has been checkpointed, so frames this
//!   stage has yet to sync are never overwritten; the new header is synced
//!   by SQLite itself (`syncHeader`), and the frames after it by this stage.
//!   The file is the same inode throughout: SQLite deletes it only when the
//!   last connection closes, and chatd's stay open until the stage is done.
//!
//! What is visible early: read connections (history), the writer's own
//! validation and, with [`PushMode::AtCommit`], the members' pushes see a
//! commit as soon as it is in the WAL, a fraction of a millisecond before
//! it is synced and acknowledged. A power loss in that window loses such a
//! commit together with everything after it; a client that has seen it
//! meanwhile notices at its next sync, since its copy then holds events the
//! server does not (see PROTOCOL.md, "No silent divergence"). No `ok` is
//! ever sent for it; its sender's client sends it again, from its outbox
//! or, if the push reached it, as that repair resends its own messages.
//!
//! If the sync fails, nothing that was waiting for it can be called durable
//! (after a failed fsync Linux may have dropped the dirty pages, and a second
//! fsync proves nothing): its callers and those of every later commit get an
//! error, the sink is not told of what it has not heard yet, and the store
//! is marked failed, so the writer refuses every further write. The commits
//! stay in the database and in the writer's mirror, which thus agree with
//! each other and with what was pushed. chatd must be restarted (it then
//! loads whatever the disk holds).

use super::stats::WriteStats;
use super::writer::{CommitSink, Pending};
use super::{Committed, PushMode, StoreError};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

/// Commits the writer may be ahead of the sync stage before it waits.
/// With pushes at commit, this is how long a slow sync (the disk busy with
/// another process's writes) leaves deliveries going on: a quiet server
/// commits each message alone, so at 2,000 messages a second 1,024 commits
/// are half a second. Each waiting commit holds only its callers' answers
/// (its changes are published), and under load commits hold more requests
/// each, so the writer's own pace bounds what waits here.
const AHEAD: usize = 1024;

/// One commit on its way to the callers.
pub(super) struct Batch {
    /// What the commit changed, in order.
    pub(super) changes: Vec<Committed>,
    pub(super) replies: Vec<Pending>,
    /// The transaction committed, so the WAL holds writes to sync. `false`
    /// for a batch that failed as a whole: its answers are errors already.
    pub(super) written: bool,
    /// Write requests the commit applied.
    pub(super) ops: usize,
    /// When the writer took the commit's first request.
    pub(super) started: Instant,
}

/// Hands commits, with their answers, to the task that publishes them, in
/// commit order.
#[derive(Clone)]
pub(super) struct Publisher {
    /// What the task reports commits to (used here only if the task is
    /// gone).
    pub(super) sink: Arc<dyn CommitSink>,
    /// To the task that publishes.
    pub(super) out: mpsc::Sender<Published>,
    /// Where commit sizes and times are counted.
    pub(super) stats: Arc<WriteStats>,
}

/// Commits' changes and their callers' answers, in commit order.
pub(super) struct Published {
    pub(super) changes: Vec<Committed>,
    pub(super) replies: Vec<Pending>,
}

impl Published {
    /// Fan-out first, so that no caller hears `ok` before its change is in
    /// the hub; then the answers. Run on the runtime, the connections this
    /// wakes run once it is done, each finding its push and its answer
    /// together (one write to the socket for both).
    pub(super) fn deliver(self, sink: &dyn CommitSink) {
        if !self.changes.is_empty() {
            sink.committed(&self.changes);
        }
        for p in self.replies {
            p.send();
        }
    }
}

impl Publisher {
    /// Hand a commit to the publisher task. Waits while it is behind; if it
    /// is gone (the runtime is stopping), publishes from here so that
    /// nobody is left without an answer.
    pub(super) fn publish(&self, changes: Vec<Committed>, replies: Vec<Pending>) {
        if changes.is_empty() && replies.is_empty() {
            return;
        }
        if let Err(e) = self.out.blocking_send(Published { changes, replies }) {
            e.0.deliver(&*self.sink);
        }
    }
}

/// The file whose writes a commit must wait for.
pub(super) trait SyncFile: Send + 'static {
    fn sync(&mut self) -> io::Result<()>;
}

impl SyncFile for std::fs::File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Set once a sync has failed: from then on nothing can be acknowledged.
#[derive(Debug, Clone, Default)]
pub(super) struct Failed(Arc<AtomicBool>);

impl Failed {
    pub(super) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The error callers get once the WAL could not be synced.
pub(super) fn not_durable() -> StoreError {
    StoreError::Write("the log could not be synced to disk".into())
}

/// The writer's side of the stage.
pub(super) struct SyncStage {
    tx: SyncSender<Batch>,
    /// Where a commit's changes go as it is handed over
    /// ([`PushMode::AtCommit`]); `None`: they wait for its sync.
    early: Option<Publisher>,
}

impl SyncStage {
    /// Start the stage's thread, syncing `file` (the WAL).
    pub(super) fn start(
        file: impl SyncFile,
        publisher: Publisher,
        failed: Failed,
        push: PushMode,
    ) -> io::Result<(SyncStage, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(AHEAD);
        let early = match push {
            PushMode::AtCommit => Some(publisher.clone()),
            PushMode::AfterSync => None,
        };
        let handle = std::thread::Builder::new()
            .name("chatd-sync".into())
            .spawn(move || run(rx, file, publisher, failed))?;
        Ok((SyncStage { tx, early }, handle))
    }

    /// Queue a commit (its changes published first with
    /// [`PushMode::AtCommit`]). Waits while the stage is [`AHEAD`] commits
    /// behind.
    pub(super) fn push(&self, mut batch: Batch) {
        if let Some(early) = &self.early {
            early.publish(std::mem::take(&mut batch.changes), Vec::new());
        }
        if let Err(e) = self.tx.send(batch) {
            // The stage is gone (it panicked): this commit cannot be
            // published; its callers must not wait forever.
            tracing::error!("sync stage: gone; failing a commit's callers");
            for p in e.0.replies {
                p.fail_with(not_durable()).send();
            }
        }
    }
}

/// Sync and publish until the writer is gone (then everything it queued is
/// done before this returns).
fn run(rx: Receiver<Batch>, mut file: impl SyncFile, publisher: Publisher, failed: Failed) {
    let _ = quick_wakeups();
    let mut changes = Vec::new();
    let mut replies = Vec::new();
    // (ops, started) of the commits being published.
    let mut timed = Vec::new();
    while let Ok(first) = rx.recv() {
        // Everything committed by now shares one sync.
        let mut group = vec![first];
        group.extend(rx.try_iter());
        let written = group.iter().any(|b| b.written);
        if written && !failed.is_set() {
            let syncing = Instant::now();
            let synced = file.sync();
            publisher.stats.sync_time.observe_time(syncing.elapsed());
            if let Err(e) = synced {
                tracing::error!(
                    "cannot sync the WAL: {e}; no further write will be accepted, restart chatd"
                );
                failed.set();
            }
        }
        let ok = !failed.is_set();
        for mut b in group {
            if ok {
                changes.append(&mut b.changes);
                replies.append(&mut b.replies);
                if b.written {
                    timed.push((b.ops, b.started));
                }
            } else {
                replies.extend(b.replies.into_iter().map(|p| p.fail_with(not_durable())));
            }
        }
        publisher.publish(std::mem::take(&mut changes), std::mem::take(&mut replies));
        for (ops, started) in timed.drain(..) {
            publisher.stats.batch_ops.observe(ops as u64);
            publisher.stats.commit_time.observe_time(started.elapsed());
        }
    }
    tracing::debug!("sync stage: writer gone, exiting");
}

/// Ask the scheduler to run this thread soon after it wakes: a short time
/// slice (Linux 6.12 and later, with the EEVDF scheduler; allowed without
/// privileges, and keeping the thread's policy and nice value). Every
/// acknowledgement waits for this thread to wake from its `fdatasync`, and
/// on a core kept busy by the runtime a thread with the default slice
/// waited for a runtime worker's slice to end first: under `chatd-bench
/// ingest` a sync took 1.4 ms on average, 1.0 ms with the short slice,
/// where the disk alone needs about 0.6 ms to sync as much. Where the
/// kernel does not offer it, nothing changes. Whether the slice was set.
fn quick_wakeups() -> bool {
    #[cfg(target_os = "linux")]
    {
        /// The shortest slice the kernel accepts.
        const SLICE_NS: u64 = 100_000;
        // SAFETY: `sched_getscheduler` and `getpriority` read this thread's
        // own settings; `sched_setattr` is given a fully initialised
        // `sched_attr` of the size it is told, for this thread (tid 0).
        let result = unsafe {
            if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
                return false;
            }
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            if nice == -1 && *libc::__errno_location() != 0 {
                return false;
            }
            let attr = libc::sched_attr {
                size: std::mem::size_of::<libc::sched_attr>() as u32,
                sched_policy: libc::SCHED_OTHER as u32,
                sched_flags: 0,
                sched_nice: nice,
                sched_priority: 0,
                sched_runtime: SLICE_NS,
                sched_deadline: 0,
                sched_period: 0,
            };
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &attr as *const libc::sched_attr,
                0,
            )
        };
        if result != 0 {
            tracing::debug!(
                "sync stage: no short time slice: {}",
                io::Error::last_os_error()
            );
        }
        result == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests;
