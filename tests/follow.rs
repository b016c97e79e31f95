//! `chat tail --follow --json` as a subprocess behind a fault-injecting
//! proxy: pushes are dropped, duplicated and reordered, and the connection
//! is cut several times while 500 messages arrive. Every message must be
//! printed exactly once, in seq order, for several seeds, over the
//! WebSocket and over the HTTP fallback (behind a proxy that refuses the
//! upgrade).

mod support;

use chat::proto::{Event, EventBody};
use std::io::BufRead;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::proxy::{Faults, Proxy, Upgrade};
use support::{Home, Rng, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES: usize = 500;
/// The whole run of one seed, sending included, must end within this.
const DEADLINE: Duration = Duration::from_secs(90);

/// What the proxy did, for the assertions.
#[derive(Default)]
struct Counts {
    pushes: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    resets: AtomicU64,
}

/// The length of the first complete WebSocket frame in `buf`, if any.
fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return None,
        n => (u64::from(n), 2),
    };
    if masked {
        head += 4;
    }
    let total = head + usize::try_from(len).ok()?;
    (buf.len() >= total).then_some(total)
}

/// Whether a server frame is an unfragmented text frame carrying an event push.
fn is_event_push(frame: &[u8]) -> bool {
    let text = frame[0] == 0x81;
    let head = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    text && frame[head..].starts_with(br#"{"type":"event""#)
}

/// Forward server→client, putting faults into event pushes. Returns when
/// either side closes or a reset is due.
async fn pump_down(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rng: &mut Rng,
    resets_at: &[u64],
    counts: &Counts,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // The HTTP upgrade answer passes as it is.
    let mut upgraded = false;
    let mut held: Option<Vec<u8>> = None;
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !upgraded {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            if to.write_all(&head).await.is_err() {
                return;
            }
            upgraded = true;
        }
        while let Some(len) = frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let mut out: Vec<Vec<u8>> = Vec::new();
            if is_event_push(&frame) {
                let seen = counts.pushes.fetch_add(1, Ordering::SeqCst) + 1;
                if resets_at.contains(&seen) {
                    counts.resets.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if rng.chance(10) {
                    counts.dropped.fetch_add(1, Ordering::SeqCst);
                } else if rng.chance(10) {
                    counts.duplicated.fetch_add(1, Ordering::SeqCst);
                    out.push(frame.clone());
                    out.push(frame);
                } else if held.is_none() && rng.chance(10) {
                    counts.reordered.fetch_add(1, Ordering::SeqCst);
                    held = Some(frame);
                } else {
                    out.push(frame);
                    out.extend(held.take());
                }
            } else {
                out.push(frame);
            }
            for f in out {
                if to.write_all(&f).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A proxy on loopback in front of `upstream`.
async fn start_proxy(upstream: String, seed: u64, counts: Arc<Counts>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    // Resets after these many pushes seen (several while messages arrive).
    let resets_at: Vec<u64> = vec![30 + seed % 20, 90 + seed % 30, 160, 240 + seed % 40];
    tokio::spawn(async move {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        for _ in 0..1000 {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut c_read, c_write) = client.into_split();
            let (s_read, mut s_write) = server.into_split();
            let up = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut c_read, &mut s_write).await;
            });
            let mut conn_rng = Rng(rng.next() | 1);
            let counts = counts.clone();
            let resets_at = resets_at.clone();
            tokio::spawn(async move {
                pump_down(s_read, c_write, &mut conn_rng, &resets_at, &counts).await;
                // Dropping both halves closes the connection under the client.
                up.abort();
            });
        }
    });
    addr.to_string()
}

/// Take lines from `rx` until `until` holds or `limit` passes.
fn collect(
    rx: &std::sync::mpsc::Receiver<String>,
    lines: &mut Vec<String>,
    until: impl Fn(&[String]) -> bool,
    limit: Duration,
) {
    let end = Instant::now() + limit;
    while !until(lines) && Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
}

/// Which way `chat tail` reaches chatd.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A WebSocket, through a proxy that drops, duplicates and reorders
    /// pushes and cuts the connection.
    WebSocket,
    /// A proxy that refuses WebSocket upgrades (so the client falls back to
    /// HTTP) and does the same to the event stream.
    Http,
}

fn follow_through_faults(seed: u64) {
    follow_through(seed, Via::WebSocket)
}

fn follow_through(seed: u64, via: Via) {
    let started = Instant::now();
    let w = World::new();
    let url = w.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counts = Arc::new(Counts::default());
    let mut http_proxy = None;
    let proxy = match via {
        Via::WebSocket => rt.block_on(start_proxy(url.clone(), seed, counts.clone())),
        Via::Http => {
            let resets_at: Vec<u64> = vec![30 + seed % 20, 90 + seed % 30, 160, 240 + seed % 40];
            let p = rt.block_on(Proxy::start(
                &url,
                Upgrade::Refuse,
                Faults {
                    seed: Some(seed),
                    resets_at,
                },
            ));
            let addr = p.addr.clone();
            http_proxy = Some(p);
            addr
        }
    };
    let bob = Home::new(w.dir("bob"), &proxy);
    bob.register("bob");
    let (mut alice, conv) = rt.block_on(async {
        let mut alice = w.user("alice").await;
        let conv = alice.create_dm("bob").await;
        alice.send_msg(&conv, "start").await;
        (alice, conv)
    });

    let mut child = bob
        .command(&["tail", "@alice", "--follow", "--json", "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat tail");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let err_lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let errs = err_lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            errs.lock().unwrap().push(line);
        }
    });

    let mut lines = Vec::new();
    collect(&rx, &mut lines, |l| !l.is_empty(), Duration::from_secs(30));
    assert!(
        !lines.is_empty(),
        "tail printed nothing; stderr: {:?}",
        err_lines.lock().unwrap()
    );

    // 500 messages over about ten seconds, so the resets land among them.
    rt.block_on(async {
        for i in 0..MESSAGES {
            alice.send_msg(&conv, &format!("m{i}")).await;
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let left = DEADLINE.saturating_sub(started.elapsed());
    collect(&rx, &mut lines, |l| l.len() > MESSAGES, left);
    // Anything printed twice would arrive in the next moment.
    collect(&rx, &mut lines, |_| false, Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();

    let events: Vec<Event> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let bodies: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect();
    let mut want = vec!["start".to_string()];
    want.extend((0..MESSAGES).map(|i| format!("m{i}")));
    let stderr = err_lines.lock().unwrap().join("\n");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seed {seed}: seqs not consecutive: {seqs:?}\nstderr:\n{stderr}"
    );
    assert_eq!(
        bodies,
        want,
        "seed {seed}: printed {} messages\nstderr:\n{stderr}",
        bodies.len()
    );
    let c = |a: &AtomicU64| a.load(Ordering::SeqCst);
    if let Some(p) = &http_proxy {
        let counts = &p.counts;
        assert!(
            c(&counts.resets) >= 2,
            "seed {seed}: only {} resets",
            c(&counts.resets)
        );
        assert!(c(&counts.dropped) > 0 && c(&counts.duplicated) > 0 && c(&counts.reordered) > 0);
        assert!(
            c(&counts.upgrades) >= 1,
            "seed {seed}: the WebSocket was tried first"
        );
        // A cut stream is resumed where it stopped (or, if that fails,
        // opened anew and caught up by seq).
        assert!(
            c(&counts.resumes) + c(&counts.streams) > 2,
            "seed {seed}: the stream was never resumed"
        );
    } else {
        assert!(
            c(&counts.resets) >= 2,
            "seed {seed}: only {} resets",
            c(&counts.resets)
        );
        assert!(c(&counts.dropped) > 0 && c(&counts.duplicated) > 0 && c(&counts.reordered) > 0);
        assert!(
            stderr.contains("reconnecting"),
            "seed {seed}: a lost connection is said on stderr: {stderr}"
        );
    }
    drop(http_proxy);
    drop(rt);
    drop(w);
}

#[test]
fn tail_follow_prints_every_event_once_in_order_seed_1() {
    follow_through_faults(1);
}

#[test]
fn tail_follow_prints_every_event_once_in_order_seed_2() {
    follow_through_faults(2);
}

#[test]
fn tail_follow_prints_every_event_once_in_order_seed_3() {
    follow_through_faults(3);
}

#[test]
fn tail_follow_over_the_http_fallback_prints_every_event_once_in_order_seed_4() {
    follow_through(4, Via::Http);
}

#[test]
fn tail_follow_over_the_http_fallback_prints_every_event_once_in_order_seed_5() {
    follow_through(5, Via::Http);
}
