//! What the writer and the sync stage measure of their commits, in atomics
//! that anyone may read at any time (chatd's metrics read them when
//! scraped). The store knows nothing of who reads them.
//!
//! A histogram here is a fixed set of buckets of integer observations
//! (operations, or nanoseconds): observing one is a few relaxed atomic
//! adds on the thread that measured it, and nothing is locked.

use super::durable::Failed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the batch size buckets, in operations.
const OPS_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Upper bounds of the duration buckets, in nanoseconds: 50 µs to 5 s.
const NANOS_BOUNDS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Commits as the writer and the sync stage saw them.
#[derive(Debug)]
pub struct WriteStats {
    /// Write requests applied by each commit.
    pub batch_ops: Buckets,
    /// From a group's first request taken by the writer to its answers
    /// handed over, durable (with `sync = "full"`, after the fsync).
    pub commit_time: Buckets,
    /// Each fdatasync of the WAL (`sync = "full"` only).
    pub sync_time: Buckets,
    failed: Failed,
}

impl WriteStats {
    /// The flag the sync stage sets when a sync fails, and the writer
    /// reads.
    pub(super) fn failed(&self) -> Failed {
        self.failed.clone()
    }

    /// Whether writes are refused for good: a sync of the WAL failed, and
    /// chatd must be restarted.
    pub fn writes_failed(&self) -> bool {
        self.failed.is_set()
    }
}

impl Default for WriteStats {
    fn default() -> Self {
        WriteStats {
            batch_ops: Buckets::new(OPS_BOUNDS, 1.0),
            commit_time: Buckets::new(NANOS_BOUNDS, 1e-9),
            sync_time: Buckets::new(NANOS_BOUNDS, 1e-9),
            failed: Failed::default(),
        }
    }
}

/// A histogram of integer observations with fixed upper bounds.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [u64],
    /// One count per bound, then one for the values above the last.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// What one unit is worth when read ([`Buckets::snapshot`]):
    /// 1e-9 turns nanoseconds into seconds.
    scale: f64,
}

/// A histogram as read: (upper bound, count in that bucket alone), the
/// last bound infinite; the sum and the count of all observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Buckets {
    fn new(bounds: &'static [u64], scale: f64) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    pub fn observe_time(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The histogram now. The count is the buckets' total, so the two
    /// always agree; the sum may lag them by an observation under way.
    pub fn snapshot(&self) -> Snapshot {
        let mut count = 0;
        let buckets = self
            .bounds
            .iter()
            .map(|&b| b as f64 * self.scale)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter())
            .map(|(bound, c)| {
                let c = c.load(Ordering::Relaxed);
                count += c;
                (bound, c)
            })
            .collect();
        Snapshot {
            buckets,
            sum: self.sum.load(Ordering::Relaxed) as f64 * self.scale,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let s = WriteStats::default();
        for v in [1, 2, 3, 4, 5, 10_000] {
            s.batch_ops.observe(v);
        }
        let snap = s.batch_ops.snapshot();
        assert_eq!(snap.count, 6);
        assert_eq!(snap.sum, 10_015.0);
        let at = |bound: f64| snap.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(1.0), 1);
        assert_eq!(at(2.0), 1);
        assert_eq!(at(4.0), 2, "3 and 4");
        assert_eq!(at(8.0), 1);
        assert_eq!(at(f64::INFINITY), 1, "above the last bound");
    }

    #[test]
    fn durations_read_in_seconds() {
        let s = WriteStats::default();
        s.commit_time.observe_time(Duration::from_micros(300));
        let snap = s.commit_time.snapshot();
        assert_eq!(snap.count, 1);
        assert!((snap.sum - 0.0003).abs() < 1e-12);
        let (bound, _) = snap.buckets.iter().find(|(_, c)| *c == 1).unwrap();
        assert!((bound - 0.0005).abs() < 1e-12, "{bound}");
        assert!(!s.writes_failed());
    }
}
