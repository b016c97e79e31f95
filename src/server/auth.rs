//! Passwords and session tokens.
//!
//! Passwords are hashed with argon2id on a small fixed set of threads
//! (`max_concurrent_hashes`), fed by a bounded queue. A thread allocates
//! one argon2 memory buffer when work arrives, reuses it for every hash
//! while the queue has more, and frees it when the queue runs dry: the
//! memory hashing takes is bounded by the threads, and a burst of logins
//! leaves nothing behind once it is over. Handshakes reserve
//! a place in the queue first ([`Hasher::reserve`]) and are refused at once
//! when it is full. Tokens are 32 random bytes shown to the client once and
//! stored only as their SHA-256.

use super::config::AuthConfig;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use sha2::{Digest, Sha256};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Hashes and verifies passwords on dedicated threads.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    /// Places in the queue plus the threads: what [`Hasher::reserve`] hands out.
    slots: Arc<Semaphore>,
    threads: usize,
    /// Recent time of one hash, in microseconds (a moving average).
    recent_us: Arc<AtomicU64>,
    /// Hashes being computed now.
    running: Arc<AtomicUsize>,
    /// Bytes of argon2 memory the threads hold now.
    held: Arc<AtomicUsize>,
    /// A hash of a random password, verified against when the user does not
    /// exist so that both failures take the same time.
    decoy: Arc<String>,
}

/// A reserved place for one hash (or verification) in the queue.
pub struct HashSlot(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed")]
    Hash,
    #[error("cannot start a hashing thread: {0}")]
    Thread(std::io::Error),
}

/// Work for a hashing thread.
enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, AuthError>>,
    },
    Verify {
        password: String,
        stored: String,
        reply: oneshot::Sender<bool>,
    },
}

impl Hasher {
    pub fn new(cfg: &AuthConfig) -> Result<Hasher, AuthError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| AuthError::Params(e.to_string()))?;
        let threads = cfg.max_concurrent_hashes.max(1);
        let queue = cfg.hash_queue.max(1);
        let (jobs, rx) = mpsc::channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        let recent_us = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let decoy = hash_with(
            &params,
            &new_token(),
            &mut vec![Block::new(); params.block_count()],
        )?;
        for n in 0..threads {
            let rx = rx.clone();
            let params = params.clone();
            let recent = recent_us.clone();
            let busy = running.clone();
            let held = held.clone();
            std::thread::Builder::new()
                .name(format!("chatd-hash-{n}"))
                .spawn(move || work(&rx, &params, &recent, &busy, &held))
                .map_err(AuthError::Thread)?;
        }
        Ok(Hasher {
            jobs,
            slots: Arc::new(Semaphore::new(threads + queue)),
            threads,
            recent_us,
            running,
            held,
            decoy: Arc::new(decoy),
        })
    }

    /// Reserve a place in the hashing queue, or learn how long to wait for
    /// one. Hashes without a reservation (a password change, an admin
    /// command) wait for a place instead.
    pub fn reserve(&self) -> Result<HashSlot, Duration> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(HashSlot(permit)),
            Err(_) => Err(self.drain_time()),
        }
    }

    /// About how long the queue, full, takes to drain.
    fn drain_time(&self) -> Duration {
        let one = Duration::from_micros(self.recent_us.load(Ordering::Relaxed).max(1_000));
        let waiting = self.jobs.max_capacity() - self.jobs.capacity() + self.threads;
        one * (waiting.div_ceil(self.threads) as u32)
    }

    /// Hashes (and verifications) waiting for a thread, and being
    /// computed.
    pub fn load(&self) -> (usize, usize) {
        let waiting = self.jobs.max_capacity() - self.jobs.capacity();
        (waiting, self.running.load(Ordering::Relaxed))
    }

    /// Bytes of argon2 memory held by the hashing threads now: up to
    /// `argon2_memory_kib` per thread while hashes are queued, none once
    /// the queue is empty.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Hash a new password.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Hash { password, reply })
            .await
            .map_err(|_| AuthError::Hash)?;
        answer.await.map_err(|_| AuthError::Hash)?
    }

    /// Check a password against a stored hash, or against the decoy when the
    /// user is unknown (`None`), which always fails.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.as_ref().clone());
        let (reply, answer) = oneshot::channel();
        if self
            .jobs
            .send(Job::Verify {
                password,
                stored,
                reply,
            })
            .await
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false) && known
    }
}

/// One hashing thread: take jobs until every [`Hasher`] is gone. The
/// argon2 buffer is allocated for the first job after an idle spell and
/// kept while more are queued; when the queue is empty it is freed before
/// waiting (the allocator keeps the pages for a moment, so a steady trickle
/// of logins does not pay for them each time).
fn work(
    rx: &Mutex<mpsc::Receiver<Job>>,
    params: &Params,
    recent_us: &AtomicU64,
    running: &AtomicUsize,
    held: &AtomicUsize,
) {
    let mut scratch = Scratch {
        blocks: Vec::new(),
        held,
    };
    loop {
        // Another thread holding the queue is waiting for work (or about
        // to find it): the queue is empty, so this buffer is not needed.
        let mut queue = match rx.try_lock() {
            Ok(queue) => queue,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                scratch.release();
                rx.lock().unwrap_or_else(PoisonError::into_inner)
            }
        };
        let job = match queue.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) => {
                scratch.release();
                queue.blocking_recv()
            }
            Err(TryRecvError::Disconnected) => None,
        };
        drop(queue);
        let Some(job) = job else { return };
        let memory = scratch.get(params);
        let started = Instant::now();
        running.fetch_add(1, Ordering::Relaxed);
        // A job that panics drops its reply (the caller sees a failure)
        // and leaves this thread serving the next: the threads are fixed,
        // none may be lost.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hash_with(params, &password, memory));
            }
            Job::Verify {
                password,
                stored,
                reply,
            } => {
                let _ = reply.send(verify_with(&password, &stored, memory));
            }
        }));
        running.fetch_sub(1, Ordering::Relaxed);
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let before = recent_us.load(Ordering::Relaxed);
        let avg = if before == 0 {
            took
        } else {
            (before * 7 + took) / 8
        };
        recent_us.store(avg, Ordering::Relaxed);
    }
}

/// A hashing thread's argon2 memory, counted in `held` while allocated.
struct Scratch<'a> {
    blocks: Vec<Block>,
    held: &'a AtomicUsize,
}

impl Scratch<'_> {
    /// The buffer for `params`, allocated if it is not.
    fn get(&mut self, params: &Params) -> &mut [Block] {
        if self.blocks.is_empty() {
            self.blocks = vec![Block::new(); params.block_count()];
            self.held.fetch_add(self.bytes(), Ordering::Relaxed);
        }
        &mut self.blocks
    }

    /// Free the buffer, if allocated.
    fn release(&mut self) {
        self.held.fetch_sub(self.bytes(), Ordering::Relaxed);
        self.blocks = Vec::new();
    }

    fn bytes(&self) -> usize {
        std::mem::size_of_val(self.blocks.as_slice())
    }
}

/// Argon2 into `out`, in `memory` when it is large enough (else in a
/// buffer of the size needed, for a stored hash with larger parameters).
fn argon2_into(
    argon: &Argon2,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut [Block],
) -> Result<(), argon2::Error> {
    let need = argon.params().block_count();
    if memory.len() >= need {
        argon.hash_password_into_with_memory(password, salt, out, &mut memory[..need])
    } else {
        let mut larger = vec![Block::new(); need];
        argon.hash_password_into_with_memory(password, salt, out, &mut larger[..])
    }
}

/// A new PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) for `password`.
fn hash_with(params: &Params, password: &str, memory: &mut [Block]) -> Result<String, AuthError> {
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2_into(&argon, password.as_bytes(), &salt, &mut out, memory)
        .map_err(|_| AuthError::Hash)?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|_| AuthError::Hash)?,
        salt: Some(Salt::new(&salt).map_err(|_| AuthError::Hash)?),
        hash: Some(Output::new(&out).map_err(|_| AuthError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (any argon2 variant,
/// version and parameters it names). The comparison is constant-time.
fn verify_with(password: &str, stored: &str, memory: &mut [Block]) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm.as_str()) else {
        return false;
    };
    let version = match phc.version {
        Some(v) => match Version::try_from(v) {
            Ok(v) => v,
            Err(_) => return false,
        },
        None => Version::default(),
    };
    let Ok(params) = Params::try_from(&phc) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon2_into(&argon, password.as_bytes(), salt.as_ref(), &mut out, memory).is_err() {
        return false;
    }
    Output::new(&out).is_ok_and(|computed| computed == *expected)
}

/// A new random session token (64 hex characters).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The SHA-256 of a token; what is stored is its hex form ([`token_hash`]).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What is stored for a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(token_digest(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> AuthConfig {
        AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = Hasher::new(&fast()).unwrap();
        let a = h.hash("correct horse".into()).await.unwrap();
        let b = h.hash("correct horse".into()).await.unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(h.verify("correct horse".into(), Some(a.clone())).await);
        assert!(!h.verify("wrong".into(), Some(a)).await);
        assert!(!h.verify("anything".into(), None).await);
    }

    #[tokio::test]
    async fn hashes_of_the_argon2_crate_verify_and_the_other_way_round() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let cfg = fast();
        let h = Hasher::new(&cfg).unwrap();
        let params = Params::new(64, 1, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(h.verify("correct horse".into(), Some(theirs.clone())).await);
        assert!(!h.verify("correct horsf".into(), Some(theirs)).await);
        // Stored with other parameters (and other variants) than ours.
        let larger = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(256, 2, 2, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(h.verify("pw".into(), Some(larger)).await);
        let ours = h.hash("battery staple".into()).await.unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");
        assert!(
            Argon2::default()
                .verify_password(b"battery staple", ours.as_str())
                .is_ok()
        );
        // The same thread's buffer, reused, gives the same answers.
        for _ in 0..5 {
            assert!(h.verify("battery staple".into(), Some(ours.clone())).await);
        }
        assert!(!h.verify("x".into(), Some("not a hash".into())).await);
        assert!(
            !h.verify("x".into(), Some("$argon2id$v=19$m=64,t=1,p=1$".into()))
                .await
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_with_a_wait() {
        let cfg = AuthConfig {
            hash_queue: 3,
            ..fast()
        };
        let h = Hasher::new(&cfg).unwrap();
        let slots: Vec<HashSlot> = (0..5).map(|_| h.reserve().unwrap()).collect();
        let wait = h
            .reserve()
            .err()
            .expect("two threads and three places are taken");
        assert!(wait >= Duration::from_millis(1), "{wait:?}");
        drop(slots);
        assert!(h.reserve().is_ok());
    }

    #[tokio::test]
    async fn a_burst_of_hashes_leaves_no_memory_held() {
        let cfg = fast();
        let h = Hasher::new(&cfg).unwrap();
        let per_thread = Params::new(64, 1, 1, None).unwrap().block_count() * 1024;
        let burst: Vec<_> = (0..40)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.hash(format!("pw{i}")).await })
            })
            .collect();
        let mut most = 0;
        for t in burst {
            most = most.max(h.held_bytes());
            assert!(t.await.unwrap().is_ok());
        }
        assert!(most <= 2 * per_thread, "{most} bytes held by two threads");
        // Each thread frees its buffer once the queue is empty.
        let mut waited = 0;
        while h.held_bytes() > 0 && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(h.held_bytes(), 0, "argon2 memory kept after the burst");
        // And a later hash still works (and frees again).
        assert!(h.hash("later".into()).await.is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_ne!(token_hash(&t), t);
    }
}
