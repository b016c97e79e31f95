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
const KEEP_CAPACITY: usize = 64;

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
            self.signal.notify_one();
            return false;
        }
        inner.frames.push_back(frame);
        drop(inner);
        self.signal.notify_one();
        true
    }

    /// Move up to `max` frames into `out`. Returns whether more remain.
    pub fn take(&self, out: &mut Vec<Frame>, max: usize) -> bool {
        let mut inner = self.lock();
        let n = inner.frames.len().min(max);
        out.extend(inner.frames.drain(..n));
        if inner.frames.is_empty() && inner.frames.capacity() > KEEP_CAPACITY {
            inner.frames = VecDeque::new();
        }
        !inner.frames.is_empty()
    }

    /// Ask the connection to ping its peer (and to check that it has heard
    /// from it lately). The server's one pinger does this for every
    /// connection in turn, so that no connection needs a timer of its own.
    pub fn request_ping(&self) {
        self.lock().ping_due = true;
        self.signal.notify_one();
    }

    /// Whether a ping was requested since the last call.
    pub fn take_ping(&self) -> bool {
        std::mem::take(&mut self.lock().ping_due)
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
        let mut out = Vec::new();
        assert!(!q.take(&mut out, 10));
        assert!(out.is_empty(), "a kicked queue is dropped");
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
        let mut out = Vec::new();
        assert!(q.take(&mut out, 64), "more remain");
        assert_eq!(out.len(), 64);
        assert_eq!(out[0].as_str(), "0");
        out.clear();
        while q.take(&mut out, 64) {}
        assert_eq!(out.last().map(|f| f.as_str()), Some("199"));
        assert_eq!(q.lock().frames.capacity(), 0);
    }
}
