//! A connection's outbound push queue: bounded, and holding no memory while
//! empty (an idle connection costs a few dozen bytes here, not a
//! preallocated block). The hub pushes without waiting; a full queue marks
//! the connection kicked, and its task closes it. One signal wakes the
//! connection's task for all of it (frames, a ping due, a kick), so that an
//! idle connection waits on one thing here.

use super::hub::Frame;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Capacity above which an emptied queue gives its memory back.
const KEEP_CAPACITY: usize = 4;

/// What [`PushQueue::drain`] found besides frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The queue overflowed: the connection must close.
    pub kicked: bool,
    /// A ping was requested (and is now taken).
    pub ping: bool,
    /// Frames remain beyond the batch.
    pub more: bool,
}

pub struct PushQueue {
    inner: Mutex<Inner>,
    cap: usize,
    /// Frames are waiting, a ping is due, or the queue overflowed.
    signal: Notify,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Frame>,
    kicked: bool,
    /// The server's pinger asked this connection to ping its peer.
    ping_due: bool,
}

impl PushQueue {
    pub fn new(cap: usize) -> PushQueue {
        PushQueue {
            inner: Mutex::new(Inner::default()),
            cap: cap.max(1),
            signal: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a frame. Returns false when the queue is full (the connection
    /// is then kicked and gets nothing more) or already kicked.
    pub fn push(&self, frame: Frame) -> bool {
        let mut inner = self.lock();
        if inner.kicked {
            return false;
        }
        if inner.frames.len() >= self.cap {
            inner.kicked = true;
            inner.frames = VecDeque::new();
            drop(inner);
            // Everyone waiting learns of a kick (a write blocked on a full
            // socket as well as the connection's main wait).
            self.signal.notify_waiters();
            self.signal.notify_one();
            return false;
        }
        inner.frames.push_back(frame);
        drop(inner);
        self.signal.notify_one();
        true
    }

    /// Hand up to `max` frames to `write`, in order, and report what else
    /// is waiting, all under one lock.
    pub fn drain(&self, max: usize, mut write: impl FnMut(&Frame)) -> Drained {
        let mut inner = self.lock();
        let n = inner.frames.len().min(max);
        for frame in inner.frames.drain(..n) {
            write(&frame);
        }
        if inner.frames.is_empty() && inner.frames.capacity() > KEEP_CAPACITY {
            inner.frames = VecDeque::new();
        }
        Drained {
            kicked: inner.kicked,
            ping: std::mem::take(&mut inner.ping_due),
            more: !inner.frames.is_empty(),
        }
    }

    /// Ask the connection to ping its peer (and to check that it has heard
    /// from it lately). The server's one pinger does this for every
    /// connection in turn, so that no connection needs a timer of its own.
    pub fn request_ping(&self) {
        self.lock().ping_due = true;
        self.signal.notify_one();
    }

    /// Completes when something may be waiting: frames, a ping due or a
    /// kick.
    pub fn ready(&self) -> Notified<'_> {
        self.signal.notified()
    }

    /// Wake the reader again (after a batch, when more is waiting).
    pub fn rearm(&self) {
        self.signal.notify_one();
    }

    /// Whether the queue overflowed: the connection must close.
    pub fn is_kicked(&self) -> bool {
        self.lock().kicked
    }

    /// Whether frames, a ping or a kick are waiting.
    pub fn has_work(&self) -> bool {
        let inner = self.lock();
        inner.kicked || inner.ping_due || !inner.frames.is_empty()
    }

    /// Completes once the connection has been kicked. It takes other
    /// wake-ups too, so whoever waits on this must [`rearm`](Self::rearm)
    /// when done if [`has_work`](Self::has_work).
    pub async fn kicked(&self) {
        loop {
            let signalled = self.signal.notified();
            if self.is_kicked() {
                return;
            }
            signalled.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Frame {
        Frame::from(s.to_string())
    }

    fn drain_all(q: &PushQueue, max: usize) -> (Vec<String>, Drained) {
        let mut out = Vec::new();
        let d = q.drain(max, |fr| out.push(fr.as_str().to_string()));
        (out, d)
    }

    #[tokio::test]
    async fn bounded_then_kicked() {
        let q = PushQueue::new(2);
        assert!(q.push(f("a")) && q.push(f("b")));
        assert!(!q.push(f("c")), "full");
        // Kicked: the waiter learns at once, and nothing more is queued.
        tokio::time::timeout(std::time::Duration::from_secs(1), q.kicked())
            .await
            .unwrap();
        assert!(!q.push(f("d")));
        let (out, d) = drain_all(&q, 10);
        assert!(out.is_empty(), "a kicked queue is dropped");
        assert!(d.kicked && !d.more);
    }

    #[tokio::test]
    async fn batches_in_order_and_gives_memory_back() {
        let q = PushQueue::new(1000);
        for i in 0..200 {
            assert!(q.push(f(&i.to_string())));
        }
        tokio::time::timeout(std::time::Duration::from_secs(1), q.ready())
            .await
            .unwrap();
        let (out, d) = drain_all(&q, 64);
        assert!(d.more, "more remain");
        assert_eq!(out.len(), 64);
        assert_eq!(out[0], "0");
        let mut last = None;
        for _ in 0..10 {
            let (out, d) = drain_all(&q, 64);
            last = out.last().cloned().or(last);
            if !d.more {
                break;
            }
        }
        assert_eq!(last.as_deref(), Some("199"));
        assert_eq!(q.lock().frames.capacity(), 0);
        assert!(!q.has_work());
    }

    #[tokio::test]
    async fn a_ping_request_wakes_and_is_taken_once() {
        let q = PushQueue::new(10);
        q.request_ping();
        assert!(q.has_work());
        tokio::time::timeout(std::time::Duration::from_secs(1), q.ready())
            .await
            .unwrap();
        let (out, d) = drain_all(&q, 64);
        assert!(out.is_empty() && d.ping && !d.kicked);
        assert!(!drain_all(&q, 64).1.ping, "taken");
    }
}
