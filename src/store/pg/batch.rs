//! Group commit on PostgreSQL: conversation writes queue in lanes, and each
//! lane commits what has queued in one transaction.
//!
//! A conversation always goes to the same lane (its gate stripe decides),
//! so a lane's FIFO order is the order its writes were submitted in, and
//! one lane's transactions run one after another. A transaction first locks
//! every conversation of its batch, in id order (so that lanes on
//! different nodes queue on the rows instead of deadlocking), then applies
//! each write in turn: the rules decide over the transaction's facts, which
//! see the writes before them in the batch. A refusal writes nothing (the
//! rules decide before anything is written), so it is answered without
//! disturbing the rest. One `COMMIT` (one WAL flush) answers them all, and
//! many sends to one conversation take one row lock instead of one each.
//!
//! A batch of plain messages only (the commonest by far) is first decided
//! without any lock and written by one statement that commits itself (see
//! [`bulk`]): a conversation's row is then locked for that statement and
//! its commit alone, not for the reads and the decisions, so lanes on
//! other nodes wait for it far less. Messages to a conversation whose
//! members changed between the reads and the write are decided again in
//! the locked transaction above.
//!
//! A transaction that lost a race runs again as a whole. One that fails
//! for another reason is split: each write runs alone, so that one bad
//! write fails by itself.

use super::db::Tx;
use super::{Op, PgStore, Reply, STRIPES, W, bulk};
use crate::store::log::{Append, Appended, Committed, StoreError};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most writes one transaction commits.
pub(super) const MAX_BATCH: usize = 256;

/// Writes waiting in one lane before submitters wait.
const LANE_DEPTH: usize = 4096;

/// A write waiting in a lane, and where its answer goes.
pub(super) struct Job {
    pub(super) op: Op,
    /// The conversation it writes, when known beforehand.
    pub(super) conv: Option<String>,
    pub(super) reply: Answer,
}

impl Job {
    /// Whether it is a plain message ([`bulk::plain`]).
    fn plain(&self) -> bool {
        self.append().is_some_and(bulk::plain)
    }

    fn append(&self) -> Option<&Append> {
        match &self.op {
            Op::Append(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a write's answer goes.
pub(super) type Answer = Box<dyn FnOnce(Result<Reply, StoreError>) + Send + Sync>;

/// The submitting side of the lanes.
pub(super) struct Lanes {
    senders: Vec<mpsc::Sender<Job>>,
    stop: CancellationToken,
}

impl Lanes {
    /// `n` lanes, and the receiving end of each for its worker.
    pub(super) fn new(n: usize) -> (Lanes, Vec<mpsc::Receiver<Job>>, CancellationToken) {
        let n = n.clamp(1, STRIPES);
        let (senders, receivers) = (0..n).map(|_| mpsc::channel(LANE_DEPTH)).unzip();
        let stop = CancellationToken::new();
        let lanes = Lanes {
            senders,
            stop: stop.clone(),
        };
        (lanes, receivers, stop)
    }

    /// Queue `job` in the lane of `stripe` (a conversation's gate stripe,
    /// or any number for a write without one). Waits while the lane is full.
    pub(super) async fn submit(&self, stripe: usize, job: Job) -> Result<(), StoreError> {
        let lane = &self.senders[stripe % self.senders.len()];
        lane.send(job).await.map_err(|_| StoreError::Closed)
    }

    /// Tell the workers to finish what has queued and stop.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

/// A lane's worker: take what has queued (up to [`MAX_BATCH`]), commit it,
/// answer, and again; once stopped, finish the queue and return.
pub(super) async fn work(store: PgStore, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            () = stop.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        store.run_batch(jobs).await;
    }
}

/// Answer every write of `jobs` with the failure `e` of the batch.
fn fail_all(jobs: Vec<Job>, e: &StoreError) {
    let again = again(e);
    for job in jobs {
        (job.reply)(Err(again()));
    }
}

/// The same failure again, for each write of a batch that failed as one:
/// its kind and text are worked out once, then each answer copies them.
fn again(e: &StoreError) -> impl Fn() -> StoreError + use<> {
    type Make = fn(String) -> StoreError;
    let same: Option<(Make, String)> = match e {
        StoreError::Closed => None,
        StoreError::Unavailable(s) => Some((StoreError::Unavailable, s.clone())),
        StoreError::Postgres(s) => Some((StoreError::Postgres, s.clone())),
        e => Some((StoreError::Write, e.to_string())),
    };
    move || match &same {
        None => StoreError::Closed,
        Some((make, text)) => make(text.clone()),
    }
}

impl PgStore {
    /// Commit `jobs` together and answer each; see the module doc.
    async fn run_batch(&self, jobs: Vec<Job>) {
        let convs: Vec<String> = jobs.iter().filter_map(|j| j.conv.clone()).collect();
        let refs: Vec<&str> = convs.iter().map(String::as_str).collect();
        let held = self.inner.gate.lock(&refs).await;
        let started = Instant::now();
        let n = jobs.len();
        let jobs = if jobs.iter().all(Job::plain) {
            self.run_unlocked(jobs).await
        } else {
            jobs
        };
        if !jobs.is_empty() {
            self.run_locked(jobs).await;
        }
        drop(held);
        let stats = &self.inner.stats;
        stats.batch_ops.observe(n as u64);
        stats.commit_time.observe_time(started.elapsed());
    }

    /// Decide and write a batch of plain messages without taking any lock
    /// ([`bulk::Mode::Unlocked`]), and answer them; answers the messages
    /// to be decided again under their conversations' locks (all of them
    /// if the try failed for a reason other than the database being away).
    async fn run_unlocked(&self, jobs: Vec<Job>) -> Vec<Job> {
        let ops: Vec<Append> = jobs.iter().filter_map(Job::append).cloned().collect();
        let outcome = self
            .retrying("deciding plain messages again", || {
                self.attempt_unlocked(&ops)
            })
            .await;
        match outcome {
            Ok((answers, changes)) => {
                if !changes.is_empty() {
                    self.inner.sink.committed(&changes);
                }
                let mut left = Vec::new();
                for (job, answer) in jobs.into_iter().zip(answers) {
                    match answer {
                        Some(r) => (job.reply)(r.map(Reply::Append)),
                        None => left.push(job),
                    }
                }
                left
            }
            Err(e @ (StoreError::Unavailable(_) | StoreError::Closed)) => {
                fail_all(jobs, &e);
                Vec::new()
            }
            Err(e) => {
                tracing::debug!("store: plain messages go under the lock after: {e}");
                jobs
            }
        }
    }

    /// One try at [`PgStore::run_unlocked`]: each message's answer, or
    /// `None` to decide it again under the lock, and what was written.
    async fn attempt_unlocked(
        &self,
        ops: &[Append],
    ) -> Result<(Vec<Option<Result<Appended, StoreError>>>, Vec<Committed>), StoreError> {
        let c = self.inner.db.client().await?;
        let mut w = W {
            tx: &c,
            changes: Vec::new(),
            limits: &self.inner.limits,
        };
        let answers = bulk::apply(&mut w, ops.to_vec(), bulk::Mode::Unlocked).await?;
        Ok((answers, w.changes))
    }

    /// Commit `jobs` in one transaction that locks their conversations
    /// first, again if it lost a race, and answer each.
    async fn run_locked(&self, jobs: Vec<Job>) {
        let mut ids: Vec<&str> = jobs.iter().filter_map(|j| j.conv.as_deref()).collect();
        ids.sort_unstable();
        ids.dedup();
        let outcome = self
            .retrying("running a batch again", || self.attempt_batch(&jobs, &ids))
            .await;
        match outcome {
            Ok((replies, changes)) => {
                if !changes.is_empty() {
                    self.inner.sink.committed(&changes);
                }
                for (job, reply) in jobs.into_iter().zip(replies) {
                    (job.reply)(reply);
                }
            }
            Err(e) if jobs.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
                tracing::warn!(
                    writes = jobs.len(),
                    "store: a batch failed ({e}); running its writes one by one"
                );
                // Still holding the batch's conversations: the writes keep
                // their order.
                for job in jobs {
                    let r = self.write(job.op, Vec::new()).await;
                    (job.reply)(r);
                }
            }
            Err(e) => fail_all(jobs, &e),
        }
    }

    /// One try at committing a batch: its answers (a refusal among them
    /// wrote nothing) and what it changed, in order.
    async fn attempt_batch(
        &self,
        jobs: &[Job],
        convs: &[&str],
    ) -> Result<(Vec<Result<Reply, StoreError>>, Vec<Committed>), StoreError> {
        let tx = Tx::on(self.inner.db.client().await?);
        match self.run_in(&tx, jobs, convs).await {
            Ok(done) => {
                // Unless the batch's last write took the COMMIT along.
                if tx.is_open() {
                    tx.commit().await?;
                }
                Ok(done)
            }
            Err(e) => {
                if tx.is_open() {
                    let _ = tx.rollback().await;
                }
                Err(e)
            }
        }
    }

    /// Begin `tx`, lock the batch's conversations and apply each write in
    /// turn; the transaction is left open unless a run of plain messages
    /// that is the whole batch committed it with its writes.
    async fn run_in(
        &self,
        tx: &Tx,
        jobs: &[Job],
        convs: &[&str],
    ) -> Result<(Vec<Result<Reply, StoreError>>, Vec<Committed>), StoreError> {
        let c = tx.conn();
        // A batch that opens with plain messages begins, locks and reads
        // their facts in one round trip; any other begins and locks in one.
        if !jobs.first().is_some_and(Job::plain) {
            let lock = c.prepare_cached(bulk::LOCK).await?;
            let opening = bulk::Around {
                begin: Some(tx),
                lock: convs,
                commit: None,
            };
            bulk::open(c, opening, &lock).await?;
        }
        let mut replies = Vec::with_capacity(jobs.len());
        let mut changes = Vec::new();
        let mut rest = jobs;
        while let Some(job) = rest.first() {
            let mut w = W {
                tx: c,
                changes: Vec::new(),
                limits: &self.inner.limits,
            };
            // A run of plain messages is written together.
            let run = rest.iter().take_while(|j| j.plain()).count();
            if run > 0 {
                let ops = rest[..run]
                    .iter()
                    .filter_map(Job::append)
                    .cloned()
                    .collect();
                let first = rest.len() == jobs.len();
                let around = bulk::Around {
                    begin: first.then_some(tx),
                    lock: if first { convs } else { &[] },
                    commit: (run == rest.len() && first).then_some(tx),
                };
                let answers = bulk::apply(&mut w, ops, bulk::Mode::Locked(around)).await?;
                changes.append(&mut w.changes);
                // Under the lock every message is decided here.
                replies.extend(answers.into_iter().map(|a| match a {
                    Some(r) => r.map(Reply::Append),
                    None => Err(StoreError::Write("a locked message was not written".into())),
                }));
                rest = &rest[run..];
                continue;
            }
            match super::apply(&mut w, job.op.clone()).await {
                Ok(reply) => {
                    changes.append(&mut w.changes);
                    replies.push(Ok(reply));
                }
                Err(e @ StoreError::Rejected(_)) => replies.push(Err(e)),
                Err(e) => return Err(e),
            }
            rest = &rest[1..];
        }
        Ok((replies, changes))
    }
}

#[cfg(test)]
mod tests {
    use super::again;
    use crate::store::log::StoreError;

    #[test]
    fn each_write_of_a_failed_batch_gets_the_same_failure() {
        let unavailable = again(&StoreError::Unavailable("gone".into()));
        for _ in 0..2 {
            assert!(matches!(unavailable(), StoreError::Unavailable(s) if s == "gone"));
        }
        let pg = again(&StoreError::Postgres("deadlock".into()));
        assert!(matches!(pg(), StoreError::Postgres(s) if s == "deadlock"));
        assert!(matches!(again(&StoreError::Closed)(), StoreError::Closed));
        // Anything else becomes a failed write that says what it was.
        let other = again(&StoreError::Open("no file".into()));
        for _ in 0..2 {
            assert!(
                matches!(other(), StoreError::Write(s) if s == "cannot open the database: no file")
            );
        }
    }
}
