//! A connection's outbound push queue: bounded, and holding no memory while
//! empty (an idle connection costs a few dozen bytes here, not a
//! preallocated block). The hub pushes without waiting; a full queue marks
//! the connection kicked, and its task closes it.
//!
//! Only the connection's own task ever waits on its queue, so the queue
//! keeps that task's waker and one "something happened" flag (frames, a
//! ping due, a kick) rather than a list of waiters: a push wakes the task
//! only if it is not already due to look.

use super::hub::Frame;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};

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
    /// The connection task's waker.
    waker: AtomicWaker,
    /// Frames are waiting, a ping is due, or the queue overflowed, and the
    /// task has not looked since.
    signalled: AtomicBool,
    /// The queue overflowed: the connection must close. Set under the
    /// lock; read without it by a write watching for a kick.
    kicked: AtomicBool,
    /// The server is shutting down: the connection should drain and close.
    shutdown: AtomicBool,
    /// The connection's session ended ([`Ended`] as a number; 0: it did
    /// not): the connection must close at once.
    ended: AtomicU8,
    /// Frames waiting, as of the last change (set under the lock, read
    /// without it by the metrics).
    queued: AtomicUsize,
}

/// Why a connection's session ended while it was open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Ended {
    LoggedOut = 1,
    Revoked = 2,
    PasswordChanged = 3,
    Deactivated = 4,
}

impl Ended {
    pub(crate) fn from_u8(v: u8) -> Option<Ended> {
        match v {
            1 => Some(Ended::LoggedOut),
            2 => Some(Ended::Revoked),
            3 => Some(Ended::PasswordChanged),
            4 => Some(Ended::Deactivated),
            _ => None,
        }
    }

    /// The close reason the peer reads.
    pub fn reason(self) -> &'static str {
        match self {
            Ended::LoggedOut => "logged out",
            Ended::Revoked => "session revoked",
            Ended::PasswordChanged => "password changed; log in again",
            Ended::Deactivated => "account deactivated",
        }
    }
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Frame>,
    /// The server's pinger asked this connection to ping its peer.
    ping_due: bool,
}

impl PushQueue {
    pub fn new(cap: usize) -> PushQueue {
        PushQueue {
            inner: Mutex::new(Inner::default()),
            cap: cap.max(1),
            waker: AtomicWaker::new(),
            signalled: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            ended: AtomicU8::new(0),
            queued: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wake the task unless it is already due to look.
    fn signal(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Queue a frame. Returns false when the queue is full (the connection
    /// is then kicked and gets nothing more) or already kicked.
    pub fn push(&self, frame: Frame) -> bool {
        let mut inner = self.lock();
        if self.kicked.load(Ordering::Acquire) {
            return false;
        }
        if inner.frames.len() >= self.cap {
            self.kicked.store(true, Ordering::Release);
            inner.frames = VecDeque::new();
            self.queued.store(0, Ordering::Relaxed);
            drop(inner);
            // Wake even if already signalled: a write blocked on a full
            // socket is watching for this.
            self.signalled.store(true, Ordering::Release);
            self.waker.wake();
            return false;
        }
        inner.frames.push_back(frame);
        self.queued.store(inner.frames.len(), Ordering::Relaxed);
        drop(inner);
        self.signal();
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
        self.queued.store(inner.frames.len(), Ordering::Relaxed);
        Drained {
            kicked: self.kicked.load(Ordering::Acquire),
            ping: std::mem::take(&mut inner.ping_due),
            more: !inner.frames.is_empty(),
        }
    }

    /// Ask the connection to ping its peer (and to check that it has heard
    /// from it lately). The server's one pinger does this for every
    /// connection in turn, so that no connection needs a timer of its own.
    pub fn request_ping(&self) {
        self.lock().ping_due = true;
        self.signal();
    }

    /// Tell the connection the server is shutting down (the hub does this
    /// for every authenticated connection).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.signal();
    }

    /// End the connection: its session is over.
    pub fn end(&self, why: Ended) {
        self.ended.store(why as u8, Ordering::Release);
        self.signal();
    }

    /// Why the connection's session ended, if it did.
    pub fn ended(&self) -> Option<Ended> {
        Ended::from_u8(self.ended.load(Ordering::Acquire))
    }

    /// Whether shutdown was requested since the last call.
    pub fn take_shutdown(&self) -> bool {
        self.shutdown.swap(false, Ordering::AcqRel)
    }

    /// Completes when something may be waiting: frames, a ping due or a
    /// kick. It can be awaited again and again (by the connection's task).
    pub fn ready(&self) -> Ready<'_> {
        Ready(self)
    }

    /// Frames waiting to be written, without taking the lock.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Make the task look again (after a batch, when more is waiting).
    pub fn rearm(&self) {
        self.signal();
    }

    /// Whether frames, a ping or a kick are waiting.
    #[cfg(test)]
    pub fn has_work(&self) -> bool {
        let inner = self.lock();
        self.kicked.load(Ordering::Acquire) || inner.ping_due || !inner.frames.is_empty()
    }

    /// Completes once the connection has been kicked (for the connection's
    /// task, while it waits on something else).
    pub fn kicked(&self) -> Kicked<'_> {
        Kicked(self)
    }
}

/// See [`PushQueue::ready`].
pub struct Ready<'a>(&'a PushQueue);

impl Future for Ready<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let q = self.0;
        q.waker.register(cx.waker());
        if q.signalled.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// See [`PushQueue::kicked`].
pub struct Kicked<'a>(&'a PushQueue);

impl Future for Kicked<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let q = self.0;
        q.waker.register(cx.waker());
        if q.kicked.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
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
        // The connection's wait wakes too.
        tokio::time::timeout(std::time::Duration::from_secs(1), q.ready())
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

#[cfg(test)]
mod wake_tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_burst_of_pushes_wakes_the_task_once_until_it_looks() {
        let q = PushQueue::new(100);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut ready = q.ready();
        assert!(Pin::new(&mut ready).poll(&mut cx).is_pending());
        for i in 0..10 {
            assert!(q.push(Frame::from(i.to_string())));
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the burst");
        assert!(Pin::new(&mut ready).poll(&mut cx).is_ready());
        assert!(
            Pin::new(&mut ready).poll(&mut cx).is_pending(),
            "looked: quiet again"
        );
        assert!(q.push(Frame::from("again".to_string())));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
