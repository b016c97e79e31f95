//! Login throttling, bounded unauthenticated work, the client address and
//! the memory of password hashing, against real sockets. Many client
//! addresses are simulated by a trusted proxy's `X-Forwarded-For` (the test
//! connects from 127.0.0.1 and lists it in `[net] trusted_proxies`).

use crate::support::chatd::Chatd;
use crate::support::{PASSWORD, Peer, Server, WAIT};
use chat::server::Config;
use chat::server::config::Registration;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A server whose backoff is quick enough to measure in a test: a few free
/// failures, then 50 ms doubling to 400 ms.
fn quick(tweak: impl FnOnce(&mut Config)) -> Server {
    Server::start_with(|c| {
        c.auth.registration = Registration::Open;
        c.auth.account_free_failures = 3;
        c.auth.address_free_failures = 1000;
        c.auth.backoff_base_ms = 50;
        c.auth.backoff_max_ms = 400;
        c.net.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        tweak(c);
    })
}

/// A connection that claims, through `X-Forwarded-For`, to come from
/// `from`; `None` if the server refuses it.
async fn connect_as(server: &Server, from: Option<&str>) -> Option<Peer> {
    let mut req = server.ws_url().into_client_request().ok()?;
    if let Some(from) = from {
        req.headers_mut()
            .insert("X-Forwarded-For", from.parse().ok()?);
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .ok()?
        .ok()?;
    Some(Peer::from_ws(ws))
}

/// One `login` on a new connection from `from`; the reply, or `None` if
/// the connection ended first.
async fn login_as(server: &Server, from: Option<&str>, name: &str, pw: &str) -> Option<Value> {
    let mut p = connect_as(server, from).await?;
    let id = p
        .try_send_req(json!({"type":"login","username":name,"password":pw,"device":"t"}))
        .await?;
    let r = p.try_reply(id).await;
    p.close().await;
    r
}

fn retry_after(r: &Value) -> Duration {
    Duration::from_millis(r["retry_after_ms"].as_u64().expect("retry_after_ms"))
}

/// What a guessing loop got.
#[derive(Debug, Default)]
struct Guesses {
    /// Answered `auth_failed`: the password was checked.
    checked: u32,
    /// Answered `rate_limited`: refused unchecked.
    refused: u32,
    elapsed: Duration,
}

impl Guesses {
    fn per_minute(&self) -> f64 {
        f64::from(self.checked) * 60.0 / self.elapsed.as_secs_f64()
    }
}

/// Guess `name`'s password on a new connection per guess for `run`, the
/// way a patient attacker would: waiting out every `retry_after_ms`.
/// `from(i)` is the address the i-th guess claims.
async fn guess(
    server: &Server,
    name: &str,
    run: Duration,
    from: impl Fn(u32) -> Option<String>,
) -> Guesses {
    let started = Instant::now();
    let mut g = Guesses::default();
    for i in 0..2000 {
        if started.elapsed() >= run {
            break;
        }
        let r = login_as(server, from(i).as_deref(), name, &format!("guess {i}"))
            .await
            .expect("a reply");
        match r["code"].as_str() {
            Some("auth_failed") => g.checked += 1,
            Some("rate_limited") => {
                g.refused += 1;
                let left = run.saturating_sub(started.elapsed());
                tokio::time::sleep(retry_after(&r).min(left)).await;
            }
            _ => panic!("unexpected answer to a guess: {r}"),
        }
    }
    g.elapsed = started.elapsed();
    g
}

/// The most guesses the quick backoff allows in `run`: 3 free, then waits
/// of 50, 100, 200 ms and 400 ms after that (plus one for timing slack).
fn allowed(run: Duration) -> u32 {
    3 + 3 + (run.as_millis() as u32).saturating_sub(350) / 400 + 1 + 1
}

#[tokio::test]
async fn a_new_connection_per_guess_does_not_escape_the_account_throttle() {
    let server = quick(|_| {});
    let _alice = server.user("alice").await;
    let run = Duration::from_secs(3);

    let one = guess(&server, "alice", run, |_| None).await;
    println!(
        "one address: {} guesses checked, {} refused in {:?}: {:.0} guesses/min \
         (backoff capped at 400 ms; at the default 5 min cap: 12/hour)",
        one.checked,
        one.refused,
        one.elapsed,
        one.per_minute()
    );
    assert!(one.checked <= allowed(run), "{one:?}");
    assert!(one.refused > 0, "{one:?}");

    // Another account, guessed from a new address for every guess.
    let _bob = server.user("bob").await;
    let many = guess(&server, "bob", run, |i| {
        Some(format!("10.{}.{}.7", i / 250, i % 250))
    })
    .await;
    println!(
        "many addresses: {} guesses checked, {} refused in {:?}: {:.0} guesses/min",
        many.checked,
        many.refused,
        many.elapsed,
        many.per_minute()
    );
    assert!(many.checked <= allowed(run), "{many:?}");

    // Unknown accounts are throttled alike: the answer does not reveal
    // which names exist.
    let ghost = guess(&server, "nobody", Duration::from_secs(1), |_| None).await;
    assert!(ghost.refused > 0, "{ghost:?}");

    // The right password, on time, still works.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = login_as(&server, Some("10.200.0.1"), "alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn failures_from_one_address_throttle_that_address_across_accounts() {
    let server = quick(|c| {
        c.auth.address_free_failures = 4;
        c.auth.backoff_base_ms = 10_000;
        c.auth.backoff_max_ms = 60_000;
    });
    let _users = server.users(["alice", "bob"]).await;
    let from = Some("192.0.2.1");
    // Four free failures, spread over accounts and kinds.
    for (name, pw) in [("alice", "x"), ("bob", "y"), ("carol", "z")] {
        let r = login_as(&server, from, name, pw).await.unwrap();
        assert_eq!(r["code"], "auth_failed", "{r}");
    }
    let mut p = connect_as(&server, from).await.unwrap();
    let taken = p
        .request(json!({"type":"register","username":"alice","password":PASSWORD}))
        .await;
    assert_eq!(taken["code"], "username_taken", "{taken}");
    let r = login_as(&server, from, "bob", "w").await.unwrap();
    assert_eq!(r["code"], "auth_failed", "the fifth is checked: {r}");
    // Now the address waits, whatever it tries.
    let r = login_as(&server, from, "alice", PASSWORD).await.unwrap();
    assert_eq!(r["code"], "rate_limited", "{r}");
    let mut p = connect_as(&server, from).await.unwrap();
    let r = p
        .request(json!({"type":"register","username":"dave","password":PASSWORD}))
        .await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    // Another address is not affected.
    let r = login_as(&server, Some("192.0.2.2"), "alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn retry_after_ms_is_given_and_honoured() {
    let server = quick(|c| {
        c.auth.account_free_failures = 2;
        c.auth.backoff_base_ms = 300;
        c.auth.backoff_max_ms = 5000;
    });
    let _alice = server.user("alice").await;
    for _ in 0..3 {
        let r = login_as(&server, None, "alice", "wrong").await.unwrap();
        assert_eq!(r["code"], "auth_failed", "{r}");
    }
    // The right password during the wait is refused unchecked.
    let r = login_as(&server, None, "alice", PASSWORD).await.unwrap();
    assert_eq!(r["code"], "rate_limited", "{r}");
    let wait = retry_after(&r);
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(300),
        "{r}"
    );
    assert!(r["message"].as_str().unwrap().contains("try again"), "{r}");
    tokio::time::sleep(wait).await;
    let r = login_as(&server, None, "alice", PASSWORD).await.unwrap();
    assert_eq!(r["type"], "ok", "after retry_after_ms: {r}");
    // The login cleared alice's count: the next failures are free again.
    for _ in 0..2 {
        let r = login_as(&server, None, "alice", "wrong").await.unwrap();
        assert_eq!(r["code"], "auth_failed", "{r}");
    }
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let tweak = |c: &mut Config| {
        c.auth.account_free_failures = 1000;
        c.auth.address_free_failures = 2;
        c.auth.backoff_base_ms = 60_000;
        c.auth.backoff_max_ms = 60_000;
    };
    // No trusted proxies: every guess comes from 127.0.0.1, whatever the
    // header says, and that address is throttled.
    let server = quick(|c| {
        tweak(c);
        c.net.trusted_proxies.clear();
    });
    let _alice = server.user("alice").await;
    let mut answers = Vec::new();
    for i in 0..4 {
        let from = format!("198.51.100.{i}");
        let r = login_as(&server, Some(&from), "alice", "wrong")
            .await
            .unwrap();
        answers.push(r["code"].as_str().unwrap_or("?").to_string());
    }
    assert_eq!(
        answers,
        ["auth_failed", "auth_failed", "auth_failed", "rate_limited"]
    );
    // From a trusted proxy the same header names four addresses.
    let server = quick(tweak);
    let _alice = server.user("alice").await;
    for i in 0..4 {
        let from = format!("198.51.100.{i}");
        let r = login_as(&server, Some(&from), "alice", "wrong")
            .await
            .unwrap();
        assert_eq!(r["code"], "auth_failed", "{r}");
    }
}

#[tokio::test]
async fn unauthenticated_connections_are_capped_per_address() {
    let server = quick(|c| c.limits.max_unauthenticated_per_address = 3);
    let _alice = server.user("alice").await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let mut peer = connect_as(&server, Some("192.0.2.9")).await.unwrap();
        // Answered, so counted: a connection takes its place after the
        // upgrade, and the fourth must not overtake the third.
        peer.err(json!({"type": "conversations"}), "unauthenticated")
            .await;
        waiting.push(peer);
    }
    let mut over = connect_as(&server, Some("192.0.2.9")).await.unwrap();
    let closed = over.expect_closed(WAIT).await;
    assert_eq!(closed.code(), Some(1013), "{closed:?}");
    // Another address is not affected.
    let mut other = connect_as(&server, Some("192.0.2.10")).await.unwrap();
    assert_eq!(other.login("alice", PASSWORD).await["type"], "ok");
    // Authenticating frees a place.
    assert_eq!(waiting[0].login("alice", PASSWORD).await["type"], "ok");
    let mut again = connect_as(&server, Some("192.0.2.9")).await.unwrap();
    assert_eq!(again.login("alice", PASSWORD).await["type"], "ok");
}

/// A flood of failing registers and logins from one address, on many
/// connections at once, while someone else logs in from another address:
/// that login waits for a few hashes at most, not for the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_other_logins_fast() {
    // Real hashing cost, so that a queue of the flood's hashes would show.
    let server = Server::start_with(|c| {
        let real = chat::server::config::AuthConfig::default();
        c.auth.registration = Registration::Open;
        c.auth.argon2_memory_kib = real.argon2_memory_kib;
        c.auth.argon2_iterations = real.argon2_iterations;
        c.auth.max_concurrent_hashes = real.max_concurrent_hashes;
        c.net.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    let _users = server.users(["alice", "mallory"]).await;
    let time_login = || async {
        let t = Instant::now();
        let r = login_as(&server, Some("203.0.113.1"), "alice", PASSWORD)
            .await
            .unwrap();
        assert_eq!(r["type"], "ok", "{r}");
        t.elapsed()
    };
    let mut quiet = Vec::new();
    for _ in 0..5 {
        quiet.push(time_login().await);
    }

    let url = server.ws_url();
    let stop = Instant::now() + Duration::from_secs(4);
    let mut flood = Vec::new();
    for t in 0..16u32 {
        let url = url.clone();
        flood.push(tokio::spawn(async move {
            let (mut checked, mut refused, mut closed) = (0u32, 0u32, 0u32);
            for i in 0..5000u32 {
                if Instant::now() >= stop {
                    break;
                }
                let mut req = url.as_str().into_client_request().unwrap();
                req.headers_mut()
                    .insert("X-Forwarded-For", "198.51.100.66".parse().unwrap());
                let Ok(Ok((ws, _))) =
                    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await
                else {
                    closed += 1;
                    continue;
                };
                let mut p = Peer::from_ws(ws);
                let frame = match (t + i) % 3 {
                    0 => {
                        json!({"type":"login","username":"mallory","password":format!("guess {i}")})
                    }
                    1 => json!({"type":"register","username":"alice","password":PASSWORD}),
                    _ => {
                        json!({"type":"register","username":format!("f{t}x{i}"),"password":"short"})
                    }
                };
                let answer = match p.try_send_req(frame).await {
                    Some(id) => p.try_reply(id).await,
                    None => None,
                };
                match answer.as_ref().and_then(|r| r["code"].as_str()) {
                    Some("rate_limited") => refused += 1,
                    Some(_) => checked += 1,
                    None => closed += 1,
                }
                p.close().await;
            }
            (checked, refused, closed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut flooded = Vec::new();
    for _ in 0..5 {
        flooded.push(time_login().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut checked, mut refused, mut closed) = (0, 0, 0);
    for f in flood {
        let (c, r, x) = tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("the flood ends")
            .expect("no panic");
        checked += c;
        refused += r;
        closed += x;
    }
    let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!(
        "login latency from another address: quiet {:?} (worst {:?}); during the flood {:?} (worst {:?}); \
         the flood: {checked} answered, {refused} rate_limited, {closed} cut off",
        quiet,
        worst(&quiet),
        flooded,
        worst(&flooded)
    );
    assert!(refused > checked, "the flood was throttled");
    assert!(
        checked <= 20 + 40,
        "the flooding address got its free failures and few more: {checked}"
    );
    assert!(
        worst(&flooded) < Duration::from_millis(1500),
        "a login from another address waited {:?}",
        worst(&flooded)
    );
}

/// chatd's memory after a burst of 1,000 logins (real argon2 parameters)
/// is back to within 10 % of where it was before the burst: the hashing
/// threads reuse their buffers. Run against a chatd process of its own so
/// that nothing else in this process counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_after_a_burst_of_logins_returns_to_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("chatd.toml");
    std::fs::write(&config, "[auth]\nregistration = \"open\"\n").unwrap();
    let chatd = Chatd::start(&data, &config).await;
    let url = chatd.url();
    const USERS: usize = 8;
    for u in 0..USERS {
        let mut p = Peer::connect(&url).await;
        p.register(&format!("user{u}")).await;
        p.close().await;
    }
    // `n` logins, `USERS` at a time, each on a new connection.
    let burst = |n: usize| {
        let url = url.clone();
        async move {
            let t = Instant::now();
            let mut tasks = Vec::new();
            for u in 0..USERS {
                let url = url.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..n / USERS {
                        let mut p = Peer::connect(&url).await;
                        let r = p.login(&format!("user{u}"), PASSWORD).await;
                        assert_eq!(r["type"], "ok", "{r}");
                        p.close().await;
                    }
                }));
            }
            for t in tasks {
                tokio::time::timeout(Duration::from_secs(120), t)
                    .await
                    .expect("logins end")
                    .expect("no panic");
            }
            t.elapsed()
        }
    };
    let start_kib = chatd.rss_kib();
    let warm = burst(200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = chatd.rss_kib();
    let took = burst(1000).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = chatd.rss_kib();
    println!(
        "chatd RSS: {start_kib} KiB at start, {before} KiB after 200 warm-up logins ({warm:?}), \
         {after} KiB after 1000 more ({took:?}, {:.1} ms a login): {:+.1} %",
        took.as_secs_f64(),
        (after as f64 - before as f64) * 100.0 / before as f64
    );
    assert!(
        after * 10 <= before * 11,
        "RSS grew from {before} KiB to {after} KiB over 1000 logins"
    );
}

/// When the hashing queue is full, a login is refused at once with a wait,
/// not queued without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hash_queue_answers_at_once() {
    let server = Server::start_with(|c| {
        c.auth.registration = Registration::Open;
        c.auth.argon2_memory_kib = 19 * 1024;
        c.auth.argon2_iterations = 8;
        c.auth.max_concurrent_hashes = 1;
        c.auth.hash_queue = 2;
        c.net.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    let _alice = server.user("alice").await;
    // One login alone: how long a hash takes here.
    let t = Instant::now();
    let r = login_as(&server, None, "alice", PASSWORD).await.unwrap();
    assert_eq!(r["type"], "ok", "{r}");
    let one = t.elapsed();
    // Twelve at once from twelve addresses (all connected first): one
    // hashing, two queued, the rest refused.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let from = format!("192.0.2.{}", i + 1);
        let mut p = connect_as(&server, Some(&from)).await.unwrap();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            ready.wait().await;
            let t = Instant::now();
            let r = p.login("alice", PASSWORD).await;
            (r, t.elapsed())
        }));
    }
    let (mut refused, mut ok) = (Vec::new(), Vec::new());
    for task in tasks {
        let (r, took) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("answered")
            .expect("no panic");
        match r["code"].as_str() {
            None => ok.push(took),
            Some("rate_limited") => {
                assert!(r["retry_after_ms"].as_u64().unwrap() > 0, "{r}");
                refused.push(took);
            }
            Some(_) => panic!("{r}"),
        }
    }
    println!("one hash: {one:?}; logged in after {ok:?}; refused after {refused:?}");
    assert!(ok.len() >= 3, "the thread and the queue were used");
    assert!(!refused.is_empty(), "some were refused");
    let slowest = ok.iter().max().copied().unwrap_or_default();
    assert!(
        refused.iter().all(|t| *t < slowest),
        "refusals come before the queue is through ({slowest:?}): {refused:?}"
    );
}
