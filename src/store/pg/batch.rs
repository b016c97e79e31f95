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
//! A transaction that lost a race runs again as a whole. One that fails
//! for another reason is split: each write runs alone, so that one bad
//! write fails by itself.

use super::db::{exec, retryable};
use super::{ATTEMPTS, Op, PgStore, Reply, STRIPES, W, bulk};
use crate::store::log::{Committed, StoreError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;
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
        let convs: Vec<&str> = jobs.iter().filter_map(|j| j.conv.as_deref()).collect();
        let held = self.inner.gate.lock(&convs).await;
        let mut ids: Vec<&str> = convs.clone();
        ids.sort_unstable();
        ids.dedup();
        let started = Instant::now();
        let mut attempt = 1;
        let outcome = loop {
            match self.inner.db.bounded(self.attempt_batch(&jobs, &ids)).await {
                Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "store: running a batch again: {e}");
                    let jitter = rand::random::<u64>() % (2 << attempt);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    attempt += 1;
                }
                done => break done,
            }
        };
        match outcome {
            Ok((replies, changes)) => {
                if !changes.is_empty() {
                    self.inner.sink.committed(&changes);
                }
                drop(held);
                let stats = &self.inner.stats;
                stats.batch_ops.observe(jobs.len() as u64);
                stats.commit_time.observe_time(started.elapsed());
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
                drop(held);
            }
            Err(e) => {
                drop(held);
                let again = again(&e);
                for job in jobs {
                    (job.reply)(Err(again()));
                }
            }
        }
    }

    /// One try at committing a batch: its answers (a refusal among them
    /// wrote nothing) and what it changed, in order.
    async fn attempt_batch(
        &self,
        jobs: &[Job],
        convs: &[&str],
    ) -> Result<(Vec<Result<Reply, StoreError>>, Vec<Committed>), StoreError> {
        let mut client = self.inner.db.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await?;
        if !convs.is_empty() {
            exec(
                &tx,
                "SELECT 1 FROM conversations WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
                &[&convs],
            )
            .await?;
        }
        let mut replies = Vec::with_capacity(jobs.len());
        let mut changes = Vec::new();
        let mut rest = jobs;
        while let Some(job) = rest.first() {
            let mut w = W {
                tx: &tx,
                changes: Vec::new(),
                limits: &self.inner.limits,
            };
            // A run of plain messages is written together.
            let run = rest
                .iter()
                .take_while(|j| matches!(&j.op, Op::Append(a) if bulk::plain(a)))
                .count();
            if run > 0 {
                let ops = rest[..run]
                    .iter()
                    .filter_map(|j| match &j.op {
                        Op::Append(a) => Some(a.clone()),
                        _ => None,
                    })
                    .collect();
                match bulk::apply(&mut w, ops).await {
                    Ok(answers) => {
                        changes.append(&mut w.changes);
                        replies.extend(answers.into_iter().map(|a| a.map(Reply::Append)));
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                }
                rest = &rest[run..];
                continue;
            }
            match super::apply(&mut w, job.op.clone()).await {
                Ok(reply) => {
                    changes.append(&mut w.changes);
                    replies.push(Ok(reply));
                }
                Err(e @ StoreError::Rejected(_)) => replies.push(Err(e)),
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
            rest = &rest[1..];
        }
        tx.commit().await?;
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
