//! A proxy on loopback like the ones that push clients onto the HTTP
//! fallback: it refuses (or never answers) WebSocket upgrades and passes
//! plain HTTP through. On request it also puts faults into server-sent
//! event streams (pushes dropped, duplicated, reordered; the connection cut
//! after some pushes), and can be taken down (every connection cut, new
//! ones closed at once) and brought back.

use super::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to a WebSocket upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// Answer `403 Forbidden`, as a filtering proxy does.
    Refuse,
    /// Never answer, as a proxy that swallows what it does not know does.
    Swallow,
    /// Let it through (the network got better).
    Pass,
}

impl Upgrade {
    fn from_u8(v: u8) -> Upgrade {
        match v {
            0 => Upgrade::Refuse,
            1 => Upgrade::Swallow,
            _ => Upgrade::Pass,
        }
    }
}

/// Faults for event streams.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Seed of the drops, duplicates and reorders (none without).
    pub seed: Option<u64>,
    /// Cut the stream's connection when this many pushes have been seen.
    pub resets_at: Vec<u64>,
}

/// What the proxy did, for the assertions.
#[derive(Default)]
pub struct Counts {
    pub upgrades: AtomicU64,
    pub streams: AtomicU64,
    pub resumes: AtomicU64,
    pub pushes: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub resets: AtomicU64,
}

impl Counts {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }
}

pub struct Proxy {
    pub addr: String,
    pub counts: Arc<Counts>,
    down: Arc<AtomicBool>,
    upgrade: Arc<std::sync::atomic::AtomicU8>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|g| *g += 1);
    }
}

impl Proxy {
    pub async fn start(upstream: &str, upgrade: Upgrade, faults: Faults) -> Proxy {
        let upstream = upstream
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let counts = Arc::new(Counts::default());
        let down = Arc::new(AtomicBool::new(false));
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(upgrade as u8));
        let (cut, _) = watch::channel(0u64);
        let (c, d, k, m) = (counts.clone(), down.clone(), cut.clone(), mode.clone());
        let task = tokio::spawn(async move {
            let mut rng = Rng(faults.seed.unwrap_or(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            for _ in 0..10_000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let conn = Conn {
                    upstream: upstream.clone(),
                    upgrade: Upgrade::from_u8(m.load(Ordering::SeqCst)),
                    faults: faults.clone(),
                    counts: c.clone(),
                    rng: Rng(rng.next() | 1),
                };
                let mut cut = k.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn.serve(client) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            counts,
            down,
            upgrade: mode,
            cut,
            task,
        }
    }

    /// What to do with upgrades from now on.
    pub fn set_upgrade(&self, upgrade: Upgrade) {
        self.upgrade.store(upgrade as u8, Ordering::SeqCst);
    }

    /// Cut every connection and refuse new ones (`true`), or accept again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.send_modify(|g| *g += 1);
        }
    }
}

struct Conn {
    upstream: String,
    upgrade: Upgrade,
    faults: Faults,
    counts: Arc<Counts>,
    rng: Rng,
}

impl Conn {
    async fn serve(mut self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        // The first request's head decides what this connection is.
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if head.len() > 64 * 1024 {
                return;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        if text.contains("upgrade: websocket") && self.upgrade != Upgrade::Pass {
            self.counts.upgrades.fetch_add(1, Ordering::SeqCst);
            match self.upgrade {
                Upgrade::Refuse => {
                    let _ = client
                        .write_all(
                            b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 28\r\nconnection: close\r\n\r\nwebsockets are not allowed\r\n",
                        )
                        .await;
                }
                Upgrade::Pass => {}
                Upgrade::Swallow => {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(60),
                        client.read(&mut chunk),
                    )
                    .await;
                }
            }
            return;
        }
        let stream = text.starts_with("post /stream") || text.starts_with("get /stream");
        if text.starts_with("post /stream") {
            self.counts.streams.fetch_add(1, Ordering::SeqCst);
        } else if text.starts_with("get /stream") {
            self.counts.resumes.fetch_add(1, Ordering::SeqCst);
        }
        let Ok(server) = TcpStream::connect(&self.upstream).await else {
            return;
        };
        let _ = server.set_nodelay(true);
        let (mut c_read, mut c_write) = client.into_split();
        let (mut s_read, mut s_write) = server.into_split();
        if s_write.write_all(&head).await.is_err() {
            return;
        }
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut c_read, &mut s_write).await;
        });
        let faulty = stream && (self.faults.seed.is_some() || !self.faults.resets_at.is_empty());
        if faulty {
            self.pump_events(&mut s_read, &mut c_write).await;
        } else {
            let _ = tokio::io::copy(&mut s_read, &mut c_write).await;
        }
        up.abort();
    }

    /// Forward an event stream's response, event by event, with faults.
    /// Returns when either side closes or a reset is due.
    async fn pump_events<R, W>(&mut self, from: &mut R, to: &mut W)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut head_done = false;
        let mut events = Vec::new();
        let mut held: Option<Vec<u8>> = None;
        loop {
            let n = match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            raw.extend_from_slice(&chunk[..n]);
            if !head_done {
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head: Vec<u8> = raw.drain(..end + 4).collect();
                if to.write_all(&head).await.is_err() {
                    return;
                }
                head_done = true;
                if !String::from_utf8_lossy(&head)
                    .to_ascii_lowercase()
                    .contains("text/event-stream")
                {
                    // A refusal: pass it as it is.
                    let _ = to.write_all(&raw).await;
                    let _ = tokio::io::copy(from, to).await;
                    return;
                }
            }
            // De-chunk what is complete.
            while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
                let size_text = String::from_utf8_lossy(&raw[..line_end]).to_string();
                let Ok(size) =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                else {
                    return;
                };
                if raw.len() < line_end + 2 + size + 2 {
                    break;
                }
                if size == 0 {
                    let _ = to.write_all(b"0\r\n\r\n").await;
                    return;
                }
                events.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
                raw.drain(..line_end + 2 + size + 2);
            }
            // Each complete event, as its own chunk.
            while let Some(end) = events.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = events.drain(..end + 2).collect();
                let mut out: Vec<Vec<u8>> = Vec::new();
                if String::from_utf8_lossy(&event).contains("data: {\"type\":\"event\"") {
                    let seen = self.counts.pushes.fetch_add(1, Ordering::SeqCst) + 1;
                    if self.faults.resets_at.contains(&seen) {
                        self.counts.resets.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let faults = self.faults.seed.is_some();
                    if faults && self.rng.chance(10) {
                        self.counts.dropped.fetch_add(1, Ordering::SeqCst);
                    } else if faults && self.rng.chance(10) {
                        self.counts.duplicated.fetch_add(1, Ordering::SeqCst);
                        out.push(event.clone());
                        out.push(event);
                    } else if faults && held.is_none() && self.rng.chance(10) {
                        self.counts.reordered.fetch_add(1, Ordering::SeqCst);
                        held = Some(event);
                    } else {
                        out.push(event);
                        out.extend(held.take());
                    }
                } else {
                    out.push(event);
                }
                for e in out {
                    let mut framed = format!("{:x}\r\n", e.len()).into_bytes();
                    framed.extend_from_slice(&e);
                    framed.extend_from_slice(b"\r\n");
                    if to.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
