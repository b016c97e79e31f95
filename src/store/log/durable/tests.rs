//! The sync stage against a file whose syncs are timed, held or failed.

use super::*;
use crate::proto::ReceiptPair;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// What happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Handed(u64),
    SyncStart,
    SyncEnd,
    Committed(u64),
    /// The caller of this commit heard `ok`.
    Answered(u64),
}

type Log = Arc<Mutex<Vec<Ev>>>;

struct TestFile {
    log: Log,
    /// Syncs after this many succeed fail.
    fail_after: usize,
    done: usize,
    /// When set, each sync waits for a word on it (at most 10 s).
    gate: Option<std::sync::mpsc::Receiver<()>>,
}

impl TestFile {
    fn new(log: &Log, fail_after: usize) -> TestFile {
        TestFile {
            log: log.clone(),
            fail_after,
            done: 0,
            gate: None,
        }
    }
}

impl SyncFile for TestFile {
    fn sync(&mut self) -> io::Result<()> {
        self.log.lock().unwrap().push(Ev::SyncStart);
        match &self.gate {
            Some(gate) => drop(gate.recv_timeout(Duration::from_secs(10))),
            // Long enough for later commits to queue up behind this sync.
            None => std::thread::sleep(Duration::from_millis(3)),
        }
        self.done += 1;
        if self.done > self.fail_after {
            return Err(io::Error::other("disk gone"));
        }
        self.log.lock().unwrap().push(Ev::SyncEnd);
        Ok(())
    }
}

struct TestSink(Log);

impl CommitSink for TestSink {
    fn committed(&self, changes: &[Committed]) {
        let mut log = self.0.lock().unwrap();
        for c in changes {
            let Committed::User(n) = c else {
                panic!("unexpected change")
            };
            log.push(Ev::Committed(n.parse().unwrap()));
        }
    }
}

type Answer = oneshot::Receiver<Result<Option<ReceiptPair>, StoreError>>;

/// Each commit's number and whether its caller heard `ok`.
type Outcomes = Vec<(u64, Result<(), String>)>;

/// Hand `n` commits (one change and one caller each; every fourth one
/// a failed batch) to a stage that syncs through `file`. Returns the
/// answers in the order the publisher handed them over, the log (the
/// sink is called where the publisher task would call it), and
/// whether the stage marked the store failed. With `first_alone`, the
/// first commit's sync is over before the others are handed over.
fn drive(
    n: u64,
    fail_after: usize,
    first_alone: bool,
    push: PushMode,
) -> (Outcomes, Vec<Ev>, bool) {
    let log: Log = Arc::default();
    let (stage, handle, failed, collector) = start(&log, TestFile::new(&log, fail_after), push);
    let mut waiting: Vec<Answer> = Vec::new();
    for i in 0..n {
        let (tx, rx) = oneshot::channel();
        waiting.push(rx);
        let batch = if i % 4 == 3 {
            Batch {
                changes: Vec::new(),
                replies: vec![Pending::Receipt(tx, Err(StoreError::Write("x".into())))],
                written: false,
                ops: 1,
                started: Instant::now(),
            }
        } else {
            let pair = ReceiptPair {
                delivered: i,
                read: 0,
            };
            Batch {
                changes: vec![Committed::User(i.to_string())],
                replies: vec![Pending::Receipt(tx, Ok(Some(pair)))],
                written: true,
                ops: 1,
                started: Instant::now(),
            }
        };
        log.lock().unwrap().push(Ev::Handed(i));
        stage.push(batch);
        if i == 0 && first_alone {
            wait_for(&log, &Ev::SyncEnd);
        }
        if i % 3 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(stage);
    handle.join().unwrap();
    let results = collector.join().unwrap();
    assert_eq!(results.len(), n as usize, "every caller is answered");
    let results = results
        .into_iter()
        .zip(0..)
        .map(|(r, i)| match r {
            Ok(Some(p)) => {
                assert_eq!(p.delivered, i, "answers in commit order");
                (i, Ok(()))
            }
            Ok(None) => panic!("unexpected answer"),
            Err(e) => (i, Err(e.to_string())),
        })
        .collect();
    let log = log.lock().unwrap().clone();
    (results, log, failed.is_set())
}

type Collector = std::thread::JoinHandle<Vec<Result<Option<ReceiptPair>, StoreError>>>;

/// A stage syncing `file`, and a thread doing what the publisher task
/// does (report, then answer, logging both); it returns the answers in
/// the order it got them, once the stage is gone.
fn start(
    log: &Log,
    file: TestFile,
    push: PushMode,
) -> (SyncStage, JoinHandle<()>, Failed, Collector) {
    let (out, mut published) = mpsc::channel::<Published>(4);
    let sink: Arc<dyn CommitSink> = Arc::new(TestSink(log.clone()));
    let publisher = Publisher {
        sink: sink.clone(),
        out,
        stats: Arc::default(),
    };
    let failed = Failed::default();
    let (stage, handle) = SyncStage::start(file, publisher, failed.clone(), push).unwrap();
    let log = log.clone();
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        while let Some(Published { changes, replies }) = published.blocking_recv() {
            if !changes.is_empty() {
                sink.committed(&changes);
            }
            for p in replies {
                let Pending::Receipt(_, r) = p else {
                    panic!("unexpected reply")
                };
                if let Ok(Some(pair)) = &r {
                    log.lock().unwrap().push(Ev::Answered(pair.delivered));
                }
                out.push(r);
            }
        }
        out
    });
    (stage, handle, failed, collector)
}

/// Wait (at most 10 s) until `log` holds `ev`.
fn wait_for(log: &Log, ev: &Ev) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains(ev) {
        assert!(std::time::Instant::now() < deadline, "no {ev:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Index of `ev` in `log`.
fn at(log: &[Ev], ev: &Ev) -> usize {
    log.iter().position(|e| e == ev).unwrap()
}

/// The commits reported to the sink, in the order reported.
fn reported(log: &[Ev]) -> Vec<u64> {
    log.iter()
        .filter_map(|e| match e {
            Ev::Committed(i) => Some(*i),
            _ => None,
        })
        .collect()
}

/// Whether a sync that began after `ev` ended before `later`.
fn synced_between(log: &[Ev], ev: &Ev, later: &Ev) -> bool {
    let (from, to) = (at(log, ev), at(log, later));
    let Some(end) = log[..to].iter().rposition(|e| *e == Ev::SyncEnd) else {
        return false;
    };
    log[..end]
        .iter()
        .rposition(|e| *e == Ev::SyncStart)
        .is_some_and(|start| start > from)
}

/// Forty commits through a stage whose syncs all succeed: every caller
/// of a written commit hears `ok`, every other one its error, and the
/// sink sees every written commit in order. Returns the log and the
/// written commits.
fn forty_commits(push: PushMode) -> (Vec<Ev>, Vec<u64>) {
    let (results, log, failed) = drive(40, usize::MAX, false, push);
    assert!(!failed);
    for (i, r) in &results {
        assert_eq!(r.is_ok(), i % 4 != 3, "commit {i}: {r:?}");
    }
    let expected: Vec<u64> = (0..40).filter(|i| i % 4 != 3).collect();
    assert_eq!(
        reported(&log),
        expected,
        "the sink sees every commit, in order"
    );
    (log, expected)
}

#[test]
fn changes_are_published_in_order_after_a_sync_that_covers_them() {
    let (log, expected) = forty_commits(PushMode::AfterSync);
    for i in expected {
        assert!(
            synced_between(&log, &Ev::Handed(i), &Ev::Committed(i)),
            "commit {i} reported before a sync covered it"
        );
        assert!(at(&log, &Ev::Committed(i)) < at(&log, &Ev::Answered(i)));
    }
    let syncs = log.iter().filter(|e| **e == Ev::SyncStart).count();
    assert!(
        syncs < 30,
        "commits waiting together share a sync ({syncs})"
    );
}

#[test]
fn at_commit_changes_are_published_at_once_and_answers_after_their_sync() {
    let (log, expected) = forty_commits(PushMode::AtCommit);
    for i in expected {
        assert!(
            synced_between(&log, &Ev::Handed(i), &Ev::Answered(i)),
            "commit {i} answered before a sync covered it"
        );
        assert!(
            at(&log, &Ev::Committed(i)) < at(&log, &Ev::Answered(i)),
            "commit {i} answered before its change was reported"
        );
    }
}

#[test]
fn at_commit_a_push_does_not_wait_for_the_sync() {
    for push in [PushMode::AtCommit, PushMode::AfterSync] {
        let log: Log = Arc::default();
        let (open, gate) = std::sync::mpsc::channel();
        let mut file = TestFile::new(&log, usize::MAX);
        file.gate = Some(gate);
        let (stage, handle, _, collector) = start(&log, file, push);
        let (tx, _answer) = oneshot::channel();
        let pair = ReceiptPair {
            delivered: 7,
            read: 0,
        };
        stage.push(Batch {
            changes: vec![Committed::User("7".into())],
            replies: vec![Pending::Receipt(tx, Ok(Some(pair)))],
            written: true,
            ops: 1,
            started: Instant::now(),
        });
        wait_for(&log, &Ev::SyncStart);
        if push == PushMode::AtCommit {
            wait_for(&log, &Ev::Committed(7));
        } else {
            std::thread::sleep(Duration::from_millis(20));
            assert!(!log.lock().unwrap().contains(&Ev::Committed(7)));
        }
        assert!(
            !log.lock().unwrap().contains(&Ev::Answered(7)),
            "{push:?}: answered while its sync was still running"
        );
        open.send(()).unwrap();
        drop(stage);
        handle.join().unwrap();
        collector.join().unwrap();
        let log = log.lock().unwrap().clone();
        assert!(
            at(&log, &Ev::SyncEnd) < at(&log, &Ev::Answered(7)),
            "{push:?}"
        );
    }
}

/// A sync that takes long (the disk busy with another process's writes)
/// holds up the answers but not the pushes of the commits after it, for
/// as many commits as the stage lets the writer be ahead; then the
/// writer waits.
#[test]
fn at_commit_pushes_go_on_while_a_sync_takes_long() {
    let log: Log = Arc::default();
    let (open, gate) = std::sync::mpsc::channel();
    let mut file = TestFile::new(&log, usize::MAX);
    file.gate = Some(gate);
    let (stage, handle, _, collector) = start(&log, file, PushMode::AtCommit);
    let total = 3 * AHEAD as u64;
    let handed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = std::thread::spawn({
        let handed = handed.clone();
        move || {
            for i in 0..total {
                let (tx, _answer) = oneshot::channel();
                stage.push(Batch {
                    changes: vec![Committed::User(i.to_string())],
                    replies: vec![Pending::Receipt(tx, Ok(None))],
                    written: true,
                    ops: 1,
                    started: Instant::now(),
                });
                handed.store(i + 1, Ordering::SeqCst);
            }
        }
    });
    wait_for(&log, &Ev::SyncStart);
    // 1,000 commits at 2,000 a second is half a second of a busy
    // server's writes.
    wait_for(&log, &Ev::Committed(999));
    assert!(!log.lock().unwrap().contains(&Ev::SyncEnd));
    // Bounded: the first sync's group, then at most AHEAD queued.
    std::thread::sleep(Duration::from_millis(50));
    let ahead = handed.load(Ordering::SeqCst);
    assert!(
        ahead < total,
        "the writer waits at last ({ahead} handed over)"
    );
    assert!(ahead >= AHEAD as u64, "{ahead}");
    while open.send(()).is_ok() && !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.join().unwrap();
    drop(open);
    handle.join().unwrap();
    assert_eq!(collector.join().unwrap().len(), total as usize);
    assert_eq!(
        reported(&log.lock().unwrap()),
        (0..total).collect::<Vec<_>>()
    );
}

#[test]
fn a_failed_sync_fails_its_callers_and_every_later_one() {
    for push in [PushMode::AfterSync, PushMode::AtCommit] {
        // The first sync succeeds (commit 0 alone), the second fails.
        let (results, log, failed) = drive(40, 1, true, push);
        assert!(failed);
        if push == PushMode::AfterSync {
            assert_eq!(reported(&log), [0], "nothing after the failure");
        } else {
            let handed: Vec<u64> = (0..40).filter(|i| i % 4 != 3).collect();
            assert_eq!(reported(&log), handed, "pushed as handed over");
        }
        assert!(results[0].1.is_ok());
        let answered = log.iter().filter(|e| matches!(e, Ev::Answered(_))).count();
        assert_eq!(answered, 1, "{push:?}: only commit 0 heard ok");
        for (i, r) in &results[1..] {
            let e = r.as_ref().unwrap_err();
            if i % 4 != 3 {
                assert!(e.contains("could not be synced"), "commit {i}: {e}");
            }
        }
        assert_eq!(log.iter().filter(|e| **e == Ev::SyncEnd).count(), 1);
        assert_eq!(
            log.iter().filter(|e| **e == Ev::SyncStart).count(),
            2,
            "no sync is tried after one failed"
        );
    }
}

/// The sync thread asks for a short slice and keeps its nice value;
/// where the kernel shows its scheduling state, the slice is the one
/// asked for.
#[cfg(target_os = "linux")]
#[test]
fn the_sync_thread_asks_for_quick_wakeups() {
    std::thread::spawn(|| {
        // SAFETY: reads this thread's own nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let applied = quick_wakeups();
        assert_eq!(nice(), before, "the nice value changed");
        let Ok(sched) = std::fs::read_to_string("/proc/thread-self/sched") else {
            return;
        };
        let slice = sched
            .lines()
            .find(|l| l.starts_with("se.slice"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Custom slices came with Linux 6.12; before, the field is
        // accepted and ignored.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release.split(|c: char| !c.is_ascii_digit());
        let version = (
            v.next().and_then(|x| x.parse::<u32>().ok()).unwrap_or(0),
            v.next().and_then(|x| x.parse::<u32>().ok()).unwrap_or(0),
        );
        if version >= (6, 12)
            && let Some(slice) = slice
        {
            assert!(applied, "the kernel refused the slice");
            assert_eq!(slice, 100_000);
        }
    })
    .join()
    .unwrap();
}
