//! Group commit under load. While write requests arrive faster than
//! `[store] commit_delay_above` a second, a batch that found fewer than
//! [`ENOUGH`] of them waits `[store] commit_delay_us` for more before it
//! commits (as PostgreSQL's `commit_delay` waits when other transactions
//! are open). Below that rate nothing waits: a request that arrives alone
//! is committed at once.
//!
//! Each commit costs the same few WAL pages, a sync and a push to every
//! member however many messages it carries; at thousands of messages a
//! second into one conversation, commits of one or two messages spend the
//! core on those, and every member gets one send per commit.

use std::time::{Duration, Instant};

/// How long the arrival rate is counted over.
const WINDOW: Duration = Duration::from_millis(20);

/// A batch of this many requests is committed without waiting.
const ENOUGH: usize = 8;

/// Whether the writer is busy enough for a batch to wait.
pub(super) struct Gather {
    delay: Duration,
    /// Requests per second from which a small batch waits.
    above: u64,
    /// From the first request taken on.
    window_start: Option<Instant>,
    taken: u64,
    busy: bool,
}

impl Gather {
    pub(super) fn new(delay: Duration, above: u64) -> Gather {
        Gather {
            delay,
            above,
            window_start: None,
            taken: 0,
            busy: false,
        }
    }

    /// How long a batch of `len` requests waits for more: `None` unless
    /// requests came in at the busy rate over the last window.
    pub(super) fn wait(&self, len: usize) -> Option<Duration> {
        (self.busy && len < ENOUGH && !self.delay.is_zero()).then_some(self.delay)
    }

    /// Count a batch of `n` requests taken at `now`; a window that has
    /// ended decides whether the next ones wait.
    pub(super) fn taken(&mut self, now: Instant, n: usize) {
        let start = *self.window_start.get_or_insert(now);
        self.taken += n as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            let per_sec = u128::from(self.taken) * 1_000_000 / elapsed.as_micros().max(1);
            self.busy = self.above > 0 && per_sec >= u128::from(self.above);
            self.window_start = Some(now);
            self.taken = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_micros(300);

    /// Feed `per_sec` requests a second, one batch of `batch` at a time,
    /// for `ms` milliseconds; the batches that would have waited.
    fn feed(g: &mut Gather, start: Instant, per_sec: u64, batch: usize, ms: u64) -> (usize, usize) {
        let gap = Duration::from_micros(1_000_000 * batch as u64 / per_sec);
        let (mut waited, mut batches) = (0, 0);
        let mut t = start;
        while t < start + Duration::from_millis(ms) {
            if g.wait(batch).is_some() {
                waited += 1;
            }
            g.taken(t, batch);
            batches += 1;
            t += gap;
        }
        (waited, batches)
    }

    #[test]
    fn requests_below_the_rate_never_wait() {
        let now = Instant::now();
        let mut g = Gather::new(DELAY, 4_000);
        assert_eq!(feed(&mut g, now, 1_000, 1, 1_000).0, 0);
        assert_eq!(
            feed(&mut g, now + Duration::from_secs(1), 3_500, 1, 1_000).0,
            0
        );
    }

    #[test]
    fn small_batches_wait_once_requests_come_at_the_rate() {
        let now = Instant::now();
        let mut g = Gather::new(DELAY, 4_000);
        let (waited, batches) = feed(&mut g, now, 12_000, 1, 1_000);
        // All but the first window's.
        assert!(
            waited >= batches - 12_000 * 25 / 1_000,
            "{waited} of {batches}"
        );
        assert_eq!(g.wait(1), Some(DELAY));
        // A batch that has enough commits at once.
        assert_eq!(g.wait(ENOUGH), None);
        assert_eq!(g.wait(ENOUGH - 1), Some(DELAY));
    }

    #[test]
    fn a_quiet_spell_ends_the_waiting() {
        let now = Instant::now();
        let mut g = Gather::new(DELAY, 4_000);
        feed(&mut g, now, 12_000, 1, 100);
        assert!(g.wait(1).is_some());
        // One request after a second of nothing: the window it closes
        // counted one request.
        g.taken(now + Duration::from_millis(1_100), 1);
        assert_eq!(g.wait(1), None);
    }

    /// The writer asks the gate: once busy, a request taken alone waits,
    /// and one sent while it waits is committed with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_waits_for_more_while_busy() {
        use crate::proto::Role;
        use crate::store::log::{AccountOp, LogStore, NoSink, StoreConfig, SyncMode, WriteLimits};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            sync: SyncMode::Normal,
            commit_delay_us: 1_000_000,
            // Two requests a window and it is busy.
            commit_delay_above: 1,
            ..StoreConfig::default()
        };
        let limits = WriteLimits {
            max_members: 10,
            max_conversations_per_user: 10,
        };
        let (store, _) = LogStore::open(dir.path(), &config, limits, Arc::new(NoSink)).unwrap();
        let store = Arc::new(store);
        let create = |name: &str| {
            let (store, name) = (store.clone(), name.to_string());
            tokio::spawn(async move {
                store
                    .account(AccountOp::CreateUser {
                        username: name,
                        password_hash: "x".into(),
                        role: Role::Member,
                    })
                    .await
                    .unwrap();
            })
        };
        // Not busy yet: alice is committed alone; bob, after the first
        // window, closes it busy, and is committed alone too.
        create("alice").await.unwrap();
        tokio::time::sleep(WINDOW + Duration::from_millis(5)).await;
        create("bob").await.unwrap();
        // A batch is counted just after its answers go out.
        let stats = store.stats();
        let settled = |ops: f64| {
            let stats = stats.clone();
            async move {
                for _ in 0..10_000 {
                    if stats.batch_ops.snapshot().sum >= ops {
                        // Read again: a batch's count is added before
                        // its sum, and a snapshot reads them in turn.
                        let s = stats.batch_ops.snapshot();
                        return (s.count, s.sum);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                panic!("{ops} requests never counted");
            }
        };
        assert_eq!(settled(2.0).await, (2, 2.0));
        // Carol's batch waits (a second); dave arrives meanwhile.
        let carol = create("carol");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dave = create("dave");
        carol.await.unwrap();
        dave.await.unwrap();
        assert_eq!(settled(4.0).await, (3, 4.0), "carol and dave together");
    }

    #[test]
    fn a_zero_delay_or_rate_turns_it_off() {
        let now = Instant::now();
        let mut g = Gather::new(Duration::ZERO, 4_000);
        assert_eq!(feed(&mut g, now, 20_000, 1, 200).0, 0);
        let mut g = Gather::new(DELAY, 0);
        assert_eq!(feed(&mut g, now, 20_000, 1, 200).0, 0);
    }
}
