//! A WebSocket relay on loopback between a client and chatd: it passes
//! every text frame through and records it (both ways), and can cut the
//! connection right after a chosen client frame went up, before its
//! answer comes back (the answer is read from chatd and thrown away), or
//! answer a chosen client frame itself with a transient error, as a busy
//! server would, without passing it on, or hold the client's frames from
//! a chosen one on until released, as a stalled uplink would (in order:
//! chatd's frames still come down meanwhile), or lose a chosen frame of
//! chatd's on the way down.

use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// Which way a recorded frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    Up,
    Down,
}

#[derive(Default)]
struct State {
    frames: Vec<(Way, String)>,
    /// Cut the connection after the next client frame holding this.
    cut_on: Option<String>,
    /// Answer the next client frame holding this with `unavailable`.
    refuse_on: Option<String>,
    refused: u64,
    /// Hold the client's frames from the next one holding this on.
    hold_on: Option<String>,
    /// Frames held so far.
    held: u64,
    /// Throw away the next frame from chatd holding this.
    lose_on: Option<String>,
    lost: u64,
    cuts: u64,
    connections: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub struct Relay {
    /// `host:port`, as a client takes it.
    pub addr: String,
    state: Arc<Mutex<State>>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        for t in self.state.lock().unwrap().tasks.drain(..) {
            t.abort();
        }
    }
}

impl Relay {
    /// A relay to chatd at `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let state: Arc<Mutex<State>> = Arc::default();
        let upstream = format!("ws://{upstream}/ws");
        let s = state.clone();
        let release = Arc::new(Notify::new());
        let r = release.clone();
        let task = tokio::spawn(async move {
            for _ in 0..1_000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let t = tokio::spawn(relay(client, upstream.clone(), s.clone(), r.clone()));
                let mut st = s.lock().unwrap();
                st.connections += 1;
                st.tasks.push(t);
            }
        });
        Relay {
            addr,
            state,
            release,
            task,
        }
    }

    /// Hold the client's frames from the next one containing `text` on
    /// (that one included), in order, until [`Relay::release`].
    pub fn hold_from(&self, text: &str) {
        self.state.lock().unwrap().hold_on = Some(text.to_string());
    }

    /// How many client frames are held (or were, before a release).
    pub fn held(&self) -> u64 {
        self.state.lock().unwrap().held
    }

    /// Throw away the next frame from chatd containing `text`.
    pub fn lose_next(&self, text: &str) {
        self.state.lock().unwrap().lose_on = Some(text.to_string());
    }

    /// How many frames from chatd were thrown away so.
    pub fn lost(&self) -> u64 {
        self.state.lock().unwrap().lost
    }

    /// Pass the held frames on, and stop holding.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// Cut the connection after the next client frame containing `text`
    /// has gone up, before chatd's answer comes down.
    pub fn cut_after(&self, text: &str) {
        self.state.lock().unwrap().cut_on = Some(text.to_string());
    }

    /// Answer the next client frame containing `text` with an
    /// `unavailable` error, keeping it from chatd.
    pub fn refuse_next(&self, text: &str) {
        self.state.lock().unwrap().refuse_on = Some(text.to_string());
    }

    /// How many frames were answered so.
    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused
    }

    /// How many connections were cut so.
    pub fn cuts(&self) -> u64 {
        self.state.lock().unwrap().cuts
    }

    /// How many connections came in.
    pub fn connections(&self) -> u64 {
        self.state.lock().unwrap().connections
    }

    /// Every text frame passed (or thrown away) so far.
    pub fn frames(&self) -> Vec<(Way, String)> {
        self.state.lock().unwrap().frames.clone()
    }

    /// Whether a frame containing `text` has gone `way`.
    pub fn saw(&self, way: Way, text: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.frames.iter().any(|(w, f)| *w == way && f.contains(text))
    }
}

/// Most client frames held at once; past it the connection is dropped.
const MAX_HELD: usize = 1_000;

async fn relay(
    client: TcpStream,
    upstream: String,
    state: Arc<Mutex<State>>,
    release: Arc<Notify>,
) {
    let Ok(client) = tokio_tungstenite::accept_async(client).await else {
        return;
    };
    let Ok((server, _)) = tokio_tungstenite::connect_async(&upstream).await else {
        return;
    };
    let (mut c_tx, mut c_rx) = client.split();
    let (mut s_tx, mut s_rx) = server.split();
    // The client's frames held back, and whether later ones join them.
    let mut held: VecDeque<Message> = VecDeque::new();
    let mut holding = false;
    loop {
        tokio::select! {
            _ = release.notified(), if holding => {
                holding = false;
                for m in held.drain(..) {
                    if s_tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
            m = c_rx.next() => {
                let Some(Ok(m)) = m else { return };
                let mut cut = false;
                let mut refuse = None;
                if let Message::Text(t) = &m {
                    let mut st = state.lock().unwrap();
                    st.frames.push((Way::Up, t.to_string()));
                    if st.hold_on.as_deref().is_some_and(|c| t.contains(c)) {
                        st.hold_on = None;
                        holding = true;
                    }
                    if holding {
                        st.held += 1;
                    }
                }
                if holding {
                    if held.len() >= MAX_HELD {
                        return;
                    }
                    held.push_back(m);
                    continue;
                }
                if let Message::Text(t) = &m {
                    let mut st = state.lock().unwrap();
                    if st.cut_on.as_deref().is_some_and(|c| t.contains(c)) {
                        st.cut_on = None;
                        st.cuts += 1;
                        cut = true;
                    }
                    if st.refuse_on.as_deref().is_some_and(|c| t.contains(c)) {
                        st.refuse_on = None;
                        st.refused += 1;
                        let id = serde_json::from_str::<serde_json::Value>(t)
                            .ok()
                            .and_then(|v| v["id"].as_u64());
                        refuse = Some(serde_json::json!({
                            "type": "error",
                            "id": id,
                            "code": "unavailable",
                            "message": "the database is busy; retry later",
                        }));
                    }
                }
                if let Some(answer) = refuse {
                    let answer = Message::Text(answer.to_string().into());
                    if c_tx.send(answer).await.is_err() {
                        return;
                    }
                    continue;
                }
                if s_tx.send(m).await.is_err() {
                    return;
                }
                if cut {
                    // Let chatd answer, and keep the answer from the client.
                    let drain = async {
                        while let Some(Ok(m)) = s_rx.next().await {
                            if let Message::Text(t) = m {
                                state.lock().unwrap().frames.push((Way::Down, t.to_string()));
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
                    return;
                }
            }
            m = s_rx.next() => {
                let Some(Ok(m)) = m else { return };
                if let Message::Text(t) = &m {
                    let mut st = state.lock().unwrap();
                    st.frames.push((Way::Down, t.to_string()));
                    if st.lose_on.as_deref().is_some_and(|c| t.contains(c)) {
                        st.lose_on = None;
                        st.lost += 1;
                        continue;
                    }
                }
                if c_tx.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}
