//! The write side of a connection: replies, the pushes its queue holds,
//! pings and flushes, each bounded in time and given up on a kick.
//!
//! Pushes the socket takes at once are written without boxing anything or
//! arming a timer ([`ServerConn::signalled`]); the rest wait in a step
//! ([`ServerConn::finish_pushes`]).

use super::close;
use super::conn::{Flow, ServerConn, Wake, Ws};
use crate::server::queue::{Drained, PushQueue};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl ServerConn {
    /// Write a reply; close quietly if the peer is gone.
    pub(super) async fn send_text(&mut self, text: &str) -> Flow {
        self.s.shared.metrics.reply(text);
        match write_text(&mut self.ws, &self.s.queue, text).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close(None),
        }
    }

    /// Write a reply, and every other reply already answered, with one
    /// flush: a client that pipelines requests (a catch-up's history
    /// pages) gets them in one send rather than one each.
    pub(super) async fn send_replies(&mut self, first: String) -> Flow {
        self.s.shared.metrics.reply(&first);
        self.ws.get_mut().queue_text(first.as_bytes());
        self.queue_ready_replies();
        match flush(&mut self.ws, &self.s.queue).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close(None),
        }
    }

    /// Queue every reply already answered behind what is buffered. Polled
    /// without the task's waker: the connection's wait polls `inflight`
    /// again (with it) before it sleeps.
    fn queue_ready_replies(&mut self) {
        let Some(inflight) = self.inflight.as_mut() else {
            return;
        };
        while let Some(Some(reply)) = inflight.next().now_or_never() {
            self.s.shared.metrics.reply(&reply);
            self.ws.get_mut().queue_text(reply.as_bytes());
        }
        if inflight.is_empty() {
            self.inflight = None;
        }
    }

    /// The queue signalled: pushes are waiting, the pinger asked for a
    /// ping, the queue overflowed, or the server is shutting down. Drains
    /// the queue into the socket buffer and sends it if the socket takes it
    /// at once. `Err` is what remains to be done in a step: the shutdown,
    /// or a ping or a flush that has to wait ([`ServerConn::finish_pushes`]).
    pub(super) fn signalled(&mut self) -> Result<Flow, Wake> {
        let queue = &self.s.queue;
        if let Some(why) = queue.ended() {
            return Ok(Flow::Close(Some(close(CloseCode::Policy, why.reason()))));
        }
        if queue.take_shutdown() {
            // Pushes may be waiting too: look again after the shutdown.
            queue.rearm();
            return Err(Wake::Shutdown);
        }
        let io = self.ws.get_mut();
        let drained = queue.drain(PUSH_BATCH, |frame| io.queue_text(frame.as_bytes()));
        if drained.kicked {
            self.s.shared.metrics.kicked();
            return Ok(Flow::Close(Some(close(
                CloseCode::Policy,
                "too slow: outbound queue full; reconnect and resync",
            ))));
        }
        if drained.more {
            queue.rearm();
        }
        // Answers that are ready go out with the pushes.
        self.queue_ready_replies();
        if drained.ping {
            return Err(Wake::Drained(drained));
        }
        match self.ws.get_mut().try_flush() {
            Some(Ok(())) => Ok(Flow::Continue),
            Some(Err(_)) => Ok(Flow::Close(None)),
            None => Err(Wake::Drained(drained)),
        }
    }

    /// The rest of [`ServerConn::signalled`]: ping if asked, and flush.
    pub(super) async fn finish_pushes(&mut self, drained: Drained) -> Flow {
        let queue = &self.s.queue;
        if drained.ping {
            let idle = Duration::from_secs(self.s.shared.limits.idle_timeout_secs.max(1));
            if self.last_heard.elapsed() > idle {
                return Flow::Close(Some(close(CloseCode::Away, "idle timeout")));
            }
            // Queued behind the frames already buffered; the flush sends
            // them all.
            if write(&mut self.ws, queue, Message::Ping(Default::default()))
                .await
                .is_err()
            {
                return Flow::Close(None);
            }
        }
        match flush(&mut self.ws, queue).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close(None),
        }
    }
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most queued pushes written with one flush.
const PUSH_BATCH: usize = 64;

/// Write one control message, giving up if the peer stops reading or is
/// kicked.
async fn write(ws: &mut Ws, queue: &PushQueue, msg: Message) -> Result<(), ()> {
    tokio::select! {
        r = ws.send(msg) => r.map_err(|_| ()),
        _ = queue.kicked() => Err(()),
        _ = tokio::time::sleep(WRITE_TIMEOUT) => Err(()),
    }
}

/// Send what has been queued on the socket, with the same bounds.
async fn flush(ws: &mut Ws, queue: &PushQueue) -> Result<(), ()> {
    // Most flushes complete at once (the socket has room): then there is
    // no timer to set and no kick to watch for. Control frames tungstenite
    // may hold go out with its next read or write.
    if let Some(r) = ws.get_mut().try_flush() {
        return r.map_err(|_| ());
    }
    tokio::select! {
        r = ws.flush() => r.map_err(|_| ()),
        _ = queue.kicked() => Err(()),
        _ = tokio::time::sleep(WRITE_TIMEOUT) => Err(()),
    }
}

/// Write one text frame (a reply).
async fn write_text(ws: &mut Ws, queue: &PushQueue, text: &str) -> Result<(), ()> {
    ws.get_mut().queue_text(text.as_bytes());
    flush(ws, queue).await
}
