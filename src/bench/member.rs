//! Fan-out members that read like the client (`--members-read client`, the
//! default): each connection is a tokio-tungstenite `WebSocketStream` with
//! the client's settings (`client::net::conn::client_ws_config`: reads of
//! 8 KiB, the library's default write buffer), read on its own task with
//! `next()`, every text frame decoded into a [`ServerFrame`] by
//! [`ServerFrame::decode`] as the client's network task does, pings
//! answered by tungstenite. Latency is taken from
//! the decoded event's body.
//!
//! A sender is one task that owns its connection, as the client's network
//! task does: it sends each `send` request (with a `client_msg_id`, encoded
//! by [`Request::encode`]) on its pace and reads the replies and pushes in
//! between; the `ok` of each request is awaited and its latency kept.
//!
//! What the client does after decoding (handing the frame to its engine,
//! the cache, the screen) is not modelled.
//!
//! With `--members-read frames` the members are the same tasks on the same
//! connections, but each text frame is parsed only for what the measure
//! needs (`type`, `id`, `body`, borrowed from the frame) as a light
//! protocol client in another language might: it tells how much of a
//! client-like member's cost is the client's full decode.

use super::fanout::{Pace, Stats, count_body};
use super::wire::{self, Hot, Ws};
use crate::proto::{EventBody, Request, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// One step's sending, handed to a sender's task.
pub(super) struct Burst {
    pub(super) pace: Pace,
    pub(super) conv: String,
    pub(super) pad: String,
    /// How many were sent, when the step's sending is over.
    pub(super) done: oneshot::Sender<u64>,
}

fn lock(stats: &Mutex<Stats>) -> std::sync::MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// One decoded frame: a message event's latency, a reply's fate. Returns
/// the id of an `ok` reply.
fn on_frame(frame: ServerFrame, stats: &Mutex<Stats>, epoch: Instant) -> Option<u64> {
    match frame {
        ServerFrame::Event(ev) => {
            if let EventBody::Message { body, .. } = &ev.body {
                count_body(body, stats, epoch);
            }
            None
        }
        ServerFrame::Ok(ok) => Some(ok.id),
        ServerFrame::Error(_) => {
            lock(stats).errors += 1;
            None
        }
        _ => None,
    }
}

/// Decode one text frame as the client does; `Err` counts it unreadable.
fn decode(text: &str, stats: &Mutex<Stats>) -> Option<ServerFrame> {
    match ServerFrame::decode(text) {
        Ok(f) => Some(f),
        Err(_) => {
            lock(stats).unreadable += 1;
            None
        }
    }
}

/// How a member parses each text frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Parse {
    /// Into a [`ServerFrame`], as the client does.
    Full,
    /// Only `type`, `id` and `body`, borrowed from the frame.
    Hot,
}

/// One text frame, counted. Returns the id of an `ok` reply.
fn on_text(text: &str, parse: Parse, stats: &Mutex<Stats>, epoch: Instant) -> Option<u64> {
    if parse == Parse::Full {
        return decode(text, stats).and_then(|f| on_frame(f, stats, epoch));
    }
    let Some(hot) = Hot::parse(text) else {
        lock(stats).unreadable += 1;
        return None;
    };
    match hot.ty.as_ref() {
        "event" => {
            if let Some(body) = hot.body {
                count_body(&body, stats, epoch);
            }
            None
        }
        "ok" => hot.id,
        "error" => {
            lock(stats).errors += 1;
            None
        }
        _ => None,
    }
}

/// A member that only receives.
pub(super) async fn receive(mut ws: Ws, parse: Parse, stats: Arc<Mutex<Stats>>, epoch: Instant) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                if on_text(t.as_str(), parse, &stats, epoch).is_some() {
                    lock(&stats).acks += 1;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    lock(&stats).closed = true;
}

/// The sending in progress in a sender's task.
struct Sending {
    burst: Burst,
    conv: String,
    k: u64,
    sent: u64,
}

impl Sending {
    /// When message `k` is due.
    fn due(&self) -> tokio::time::Instant {
        self.burst.pace.start + self.burst.pace.period.mul_f64(self.k as f64)
    }
}

/// A member that sends: one task owns the connection; bursts come from
/// `ctl`; it ends when `ctl` closes or the connection does.
pub(super) async fn send_and_receive(
    mut ws: Ws,
    parse: Parse,
    mut next_id: u64,
    stats: Arc<Mutex<Stats>>,
    epoch: Instant,
    mut ctl: mpsc::Receiver<Burst>,
) {
    // Requests in flight: id → send instant (µs since `epoch`).
    let mut inflight: HashMap<u64, u64> = HashMap::new();
    let mut sending: Option<Sending> = None;
    let timer = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(timer);
    loop {
        tokio::select! {
            burst = ctl.recv(), if sending.is_none() => {
                let Some(burst) = burst else { break };
                let s = Sending {
                    conv: burst.conv.clone(),
                    burst,
                    k: 0,
                    sent: 0,
                };
                if s.due() >= s.burst.pace.end {
                    let _ = s.burst.done.send(0);
                } else {
                    timer.as_mut().reset(s.due());
                    sending = Some(s);
                }
            }
            () = &mut timer, if sending.is_some() => {
                let Some(s) = sending.as_mut() else { continue };
                let step = s.burst.pace.step;
                let t = wire::micros_since(epoch);
                let req = Request::Send {
                    conversation_id: s.conv.clone(),
                    client_msg_id: format!("m{step}-{next_id}"),
                    body: format!("b{step}:{t}:{}", s.burst.pad),
                    reply_to: None,
                    encrypted: None,
                    shares: Vec::new(),
                };
                let id = next_id;
                next_id += 1;
                inflight.insert(id, t);
                if ws.send(Message::Text(req.encode(Some(id)).into())).await.is_err() {
                    if let Some(s) = sending.take() {
                        let _ = s.burst.done.send(s.sent);
                    }
                    break;
                }
                s.sent += 1;
                s.k += 1;
                if s.due() >= s.burst.pace.end {
                    if let Some(s) = sending.take() {
                        let _ = s.burst.done.send(s.sent);
                    }
                } else {
                    timer.as_mut().reset(s.due());
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Some(id) = on_text(t.as_str(), parse, &stats, epoch)
                        && let Some(at) = inflight.remove(&id)
                    {
                        let now = wire::micros_since(epoch);
                        let mut st = lock(&stats);
                        st.acks += 1;
                        st.ack_lat.push(now.saturating_sub(at));
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if let Some(s) = sending.take() {
        let _ = s.burst.done.send(s.sent);
    }
    lock(&stats).closed = true;
}
