//! Login throttling and the admission of handshakes.
//!
//! Failed `login`s count against the account named and against the client's
//! address; failed `register`s against the address. After a few free
//! failures each further attempt waits: `backoff_base_ms`, doubling per
//! failure up to `backoff_max_ms`. While a wait runs the attempt is refused
//! (`rate_limited`, with the time left) before any lookup or hashing. A
//! successful login clears its account's count; a count is forgotten after
//! `failure_memory_secs` without a new failure.
//!
//! Memory stays bounded: accounts are keyed by a keyed 64-bit hash of the
//! name (never the attacker's string), IPv6 addresses by their /64, and
//! each table holds at most `throttle_entries`, forgetting the least
//! recently failed first. Beside the failures: a cap on connections per
//! address that have not authenticated, a server-wide token bucket of
//! handshakes, and a per-address cap on hashes in flight.
//!
//! The tables ([`Failures`], [`Recent`]) are pure logic over the instants
//! they are given; [`Throttle`] reads the clock.

use super::config::AuthConfig;
use super::limiter::TokenBucket;
use crate::proto::Limits;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

/// A map of at most about `cap` entries that forgets the least recently
/// touched first: two generations; when the young one fills, the old one
/// is dropped and the young one becomes old. Touching an old entry moves
/// it back to the young generation.
#[derive(Debug)]
pub struct Recent<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn new(cap: usize) -> Self {
        Recent {
            young: HashMap::new(),
            old: HashMap::new(),
            cap: cap.max(2),
        }
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V>
    where
        K: Clone,
    {
        if !self.young.contains_key(key) {
            let v = self.old.remove(key)?;
            self.insert(key.clone(), v);
        }
        self.young.get_mut(key)
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.cap / 2 && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    pub fn remove(&mut self, key: &K) {
        self.young.remove(key);
        self.old.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// How long to wait after a number of failures.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
    /// Failures are forgotten after this long without one.
    pub memory: Duration,
}

impl Backoff {
    /// The wait after `failures` failures: none for the free ones, then
    /// `base`, doubling, at most `max`.
    pub fn wait(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free - 1).min(40);
        self.base
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max)
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
}

/// Failures per key, with the backoff they earn.
#[derive(Debug)]
pub struct Failures<K> {
    backoff: Backoff,
    table: Recent<K, Count>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    pub fn new(backoff: Backoff, cap: usize) -> Self {
        Failures {
            backoff,
            table: Recent::new(cap),
        }
    }

    /// How much longer `key` must wait before its next attempt, if at all.
    pub fn wait(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let c = *self.table.get_mut(key)?;
        let since = now.saturating_duration_since(c.last);
        if since >= self.backoff.memory.max(self.backoff.max) {
            self.table.remove(key);
            return None;
        }
        let left = self.backoff.wait(c.failures).saturating_sub(since);
        (!left.is_zero()).then_some(left)
    }

    /// Count a failure of `key` at `now`; returns the wait it earns.
    pub fn fail(&mut self, key: K, now: Instant) -> Duration {
        // An old count is forgotten first, as `wait` would.
        let _ = self.wait(&key, now);
        let failures = match self.table.get_mut(&key) {
            Some(c) => {
                c.failures = c.failures.saturating_add(1);
                c.last = now;
                c.failures
            }
            None => {
                self.table.insert(
                    key,
                    Count {
                        failures: 1,
                        last: now,
                    },
                );
                1
            }
        };
        self.backoff.wait(failures)
    }

    pub fn clear(&mut self, key: &K) {
        self.table.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

/// What an address is counted as: IPv4 addresses one by one, IPv6 ones by
/// their /64 (what one subscriber usually holds).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        v4 => v4,
    }
}

/// A username as logs show it: control and bidi-formatting characters
/// dropped, at most 64 characters.
pub fn loggable(name: &str) -> String {
    let mut out: String = name
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(64)
        .collect();
    if name.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Why an attempt may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures of this account (or from this address).
    Failures(Duration),
    /// The server takes no more handshakes this second.
    Busy(Duration),
}

/// The server's throttle: failures per account and per address, handshakes
/// per second, unauthenticated connections and hashes in flight per
/// address.
pub struct Throttle {
    accounts: Mutex<Failures<u64>>,
    addresses: Mutex<Failures<IpAddr>>,
    names: RandomState,
    handshakes: Mutex<TokenBucket>,
    unauthenticated: Mutex<HashMap<IpAddr, usize>>,
    max_unauthenticated: usize,
    hashing: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    hashes_per_address: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Throttle {
    pub fn new(auth: &AuthConfig, limits: &Limits) -> Arc<Throttle> {
        let backoff = |free| Backoff {
            free,
            base: Duration::from_millis(auth.backoff_base_ms.max(1)),
            max: Duration::from_millis(auth.backoff_max_ms.max(1)),
            memory: Duration::from_secs(auth.failure_memory_secs),
        };
        Arc::new(Throttle {
            accounts: Mutex::new(Failures::new(
                backoff(auth.account_free_failures),
                auth.throttle_entries,
            )),
            addresses: Mutex::new(Failures::new(
                backoff(auth.address_free_failures),
                auth.throttle_entries,
            )),
            names: RandomState::new(),
            handshakes: Mutex::new(TokenBucket::new(
                limits.handshakes_per_sec,
                limits.handshake_burst,
            )),
            unauthenticated: Mutex::new(HashMap::new()),
            max_unauthenticated: limits.max_unauthenticated_per_address.max(1),
            hashing: Mutex::new(HashMap::new()),
            hashes_per_address: auth.hashes_per_address.max(1),
        })
    }

    /// The key of an account name: a hash keyed per process, so that the
    /// table never holds what a peer typed.
    pub fn account_key(&self, name: &str) -> u64 {
        self.names.hash_one(name)
    }

    /// Whether an attempt from `addr` (on `account`, for a login) may go
    /// ahead now; takes a handshake token when it may.
    pub fn check(&self, addr: IpAddr, account: Option<u64>) -> Result<(), Refusal> {
        let now = Instant::now();
        let by_account = account.and_then(|k| lock(&self.accounts).wait(&k, now));
        let by_address = lock(&self.addresses).wait(&address_key(addr), now);
        if let Some(wait) = by_account.max(by_address) {
            return Err(Refusal::Failures(wait));
        }
        lock(&self.handshakes).take_or_wait().map_err(Refusal::Busy)
    }

    /// How long `addr` must wait after its recent failures, if at all
    /// (for requests that present a token and hash nothing).
    pub fn address_wait(&self, addr: IpAddr) -> Option<Duration> {
        lock(&self.addresses).wait(&address_key(addr), Instant::now())
    }

    /// Count a failed attempt; returns the wait it earns (the longer of
    /// the account's and the address's).
    pub fn fail(&self, addr: IpAddr, account: Option<u64>) -> Duration {
        let now = Instant::now();
        let by_account = account.map_or(Duration::ZERO, |k| lock(&self.accounts).fail(k, now));
        let by_address = lock(&self.addresses).fail(address_key(addr), now);
        by_account.max(by_address)
    }

    /// A successful login: the account starts afresh.
    pub fn succeed(&self, account: u64) {
        lock(&self.accounts).clear(&account);
    }

    /// A new connection from `addr` that has not authenticated yet; `None`
    /// when the address already has its share of such connections.
    pub fn unauthenticated(self: &Arc<Self>, addr: IpAddr) -> Option<Unauthenticated> {
        let key = address_key(addr);
        let mut map = lock(&self.unauthenticated);
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_unauthenticated {
            return None;
        }
        *n += 1;
        Some(Unauthenticated {
            throttle: self.clone(),
            key,
        })
    }

    /// Wait for a turn to hash for `addr`: at most `hashes_per_address`
    /// at once per address, so that one address holds few places in the
    /// queue however many connections it opens.
    pub async fn hash_turn(self: &Arc<Self>, addr: IpAddr) -> HashTurn {
        let key = address_key(addr);
        let sem = lock(&self.hashing)
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.hashes_per_address)))
            .clone();
        let permit = sem.clone().acquire_owned().await.ok();
        HashTurn {
            throttle: self.clone(),
            key,
            sem: Some(sem),
            permit,
        }
    }
}

/// A connection counted as not yet authenticated, until dropped.
pub struct Unauthenticated {
    throttle: Arc<Throttle>,
    key: IpAddr,
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        let mut map = lock(&self.throttle.unauthenticated);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// An address's turn to hash, until dropped.
pub struct HashTurn {
    throttle: Arc<Throttle>,
    key: IpAddr,
    sem: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for HashTurn {
    fn drop(&mut self) {
        self.permit.take();
        let Some(sem) = self.sem.take() else { return };
        let mut map = lock(&self.throttle.hashing);
        // Clones are made under this lock: two references (the table's and
        // this one) mean nobody else holds or waits for this address.
        if Arc::strong_count(&sem) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(free: u32) -> Backoff {
        Backoff {
            free,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            memory: Duration::from_secs(900),
        }
    }

    #[test]
    fn backoff_doubles_after_the_free_failures_up_to_the_cap() {
        let b = backoff(3);
        let waits: Vec<u64> = (0..=14).map(|f| b.wait(f).as_secs()).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        );
        assert_eq!(b.wait(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_failure_earns_a_wait_that_runs_out() {
        let t0 = Instant::now();
        let mut f = Failures::new(backoff(2), 100);
        assert_eq!(f.wait(&"alice", t0), None);
        assert_eq!(f.fail("alice", t0), Duration::ZERO);
        assert_eq!(f.fail("alice", t0), Duration::ZERO);
        assert_eq!(f.wait(&"alice", t0), None, "two free failures");
        assert_eq!(f.fail("alice", t0), Duration::from_secs(1));
        assert_eq!(f.wait(&"alice", t0), Some(Duration::from_secs(1)));
        let t = t0 + Duration::from_millis(400);
        assert_eq!(f.wait(&"alice", t), Some(Duration::from_millis(600)));
        assert_eq!(f.wait(&"bob", t), None, "per key");
        let t = t0 + Duration::from_secs(1);
        assert_eq!(f.wait(&"alice", t), None);
        assert_eq!(f.fail("alice", t), Duration::from_secs(2));
        assert_eq!(
            f.wait(&"alice", t + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        f.clear(&"alice");
        assert_eq!(f.wait(&"alice", t), None, "cleared");
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_while() {
        let t0 = Instant::now();
        let mut f = Failures::new(backoff(0), 100);
        for _ in 0..20 {
            f.fail(1u64, t0);
        }
        assert_eq!(f.wait(&1, t0), Some(Duration::from_secs(300)));
        assert!(f.wait(&1, t0 + Duration::from_secs(299)).is_some());
        assert_eq!(f.wait(&1, t0 + Duration::from_secs(900)), None);
        assert_eq!(f.len(), 0, "the entry is gone");
        assert_eq!(
            f.fail(1, t0 + Duration::from_secs(900)),
            Duration::from_secs(1),
            "counting starts afresh"
        );
    }

    #[test]
    fn tables_stay_bounded_and_keep_the_recent() {
        let t0 = Instant::now();
        let mut f = Failures::new(backoff(0), 1000);
        f.fail(u64::MAX, t0);
        for k in 0..100_000u64 {
            f.fail(k, t0);
            if k % 100 == 0 {
                // Touched now and then: stays.
                assert!(f.wait(&u64::MAX, t0).is_some(), "lost at {k}");
            }
            assert!(f.len() <= 1000, "{} entries", f.len());
        }
        assert!(f.wait(&0, t0).is_none(), "the least recent are forgotten");
        assert!(f.wait(&99_999, t0).is_some());
    }

    #[test]
    fn addresses_count_by_ipv4_address_and_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(address_key(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(address_key(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
    }

    #[test]
    fn logged_names_are_clean_and_short() {
        assert_eq!(loggable("alice"), "alice");
        assert_eq!(loggable("al\u{1b}[31mice\n\u{202e}x"), "al[31micex");
        let long = loggable(&"a".repeat(1000));
        assert_eq!(long.chars().count(), 65);
        assert!(long.ends_with('…'));
    }

    fn config() -> (AuthConfig, Limits) {
        let auth = AuthConfig {
            account_free_failures: 2,
            address_free_failures: 4,
            backoff_base_ms: 1000,
            backoff_max_ms: 8000,
            hashes_per_address: 1,
            ..AuthConfig::default()
        };
        let limits = Limits {
            handshakes_per_sec: 10,
            handshake_burst: 3,
            max_unauthenticated_per_address: 2,
            ..Limits::default()
        };
        (auth, limits)
    }

    #[tokio::test(start_paused = true)]
    async fn accounts_and_addresses_back_off_separately() {
        let (auth, mut limits) = config();
        limits.handshake_burst = 1000;
        let t = Throttle::new(&auth, &limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let alice_key = t.account_key("alice");
        let alice = Some(alice_key);
        let bob = Some(t.account_key("bob"));
        assert_ne!(alice, bob);
        t.fail(a, alice);
        t.fail(b, alice);
        assert_eq!(t.fail(a, alice), Duration::from_secs(1), "third of alice");
        assert_eq!(
            t.check(b, alice),
            Err(Refusal::Failures(Duration::from_secs(1))),
            "alice is throttled from any address"
        );
        assert_eq!(t.check(b, bob), Ok(()), "bob is not");
        // Address a: 2 failures so far; 2 more are free, then it waits.
        t.fail(a, bob);
        t.fail(a, None);
        assert_eq!(t.fail(a, None), Duration::from_secs(1));
        assert!(matches!(t.check(a, None), Err(Refusal::Failures(_))));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.check(a, None), Ok(()));
        assert_eq!(t.check(b, alice), Ok(()), "alice's wait ran out too");
        t.succeed(alice_key);
        t.fail(b, alice);
        assert_eq!(t.check(b, alice), Ok(()), "a login cleared alice's count");
    }

    #[tokio::test(start_paused = true)]
    async fn handshakes_per_second_are_bounded_server_wide() {
        let (auth, limits) = config();
        let t = Throttle::new(&auth, &limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.check(a, None), Ok(()));
        }
        let Err(Refusal::Busy(wait)) = t.check(a, None) else {
            panic!("the burst is spent")
        };
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(101),
            "{wait:?}"
        );
        tokio::time::advance(wait).await;
        assert_eq!(t.check(a, None), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn unauthenticated_connections_are_capped_per_address() {
        let (auth, limits) = config();
        let t = Throttle::new(&auth, &limits);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::2".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = t.unauthenticated(a).unwrap();
        let two = t.unauthenticated(a2).unwrap();
        assert!(t.unauthenticated(a).is_none(), "the same /64");
        assert!(t.unauthenticated(b).is_some());
        drop(one);
        let three = t.unauthenticated(a);
        assert!(three.is_some());
        drop((two, three));
        assert!(lock(&t.unauthenticated).is_empty(), "nothing left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn hashes_take_turns_per_address() {
        let (auth, limits) = config();
        let t = Throttle::new(&auth, &limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = t.hash_turn(a).await;
        let other = tokio::time::timeout(Duration::from_secs(1), t.hash_turn(b)).await;
        assert!(other.is_ok(), "another address does not wait");
        let second = tokio::time::timeout(Duration::from_secs(1), t.hash_turn(a)).await;
        assert!(second.is_err(), "the same address waits its turn");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), t.hash_turn(a)).await;
        assert!(second.is_ok());
        drop((second, other));
        assert!(lock(&t.hashing).is_empty(), "nothing left behind");
    }
}
