//! Test support shared by every integration test: chatd in process on
//! `127.0.0.1:0` ([`server`]) or as a child process ([`chatd`]), raw protocol peers ([`raw`]), headless engine
//! clients ([`client`]), homes for `chat` subprocesses ([`cli`]), the
//! [`World`] fixture that puts them together, and bounded waits. The
//! servers run on SQLite, or on PostgreSQL and Redis when `CHATD_TEST_PG`
//! and `CHATD_TEST_REDIS` say so ([`backend`]).
//!
//! Every wait is bounded, so that no test can hang.

#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod balancer;
pub mod chatd;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod keys;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod secret;
pub mod server;
pub mod tmux;
pub mod world;

pub use backend::skip_on_postgres;
pub use cli::{Home, Ran};
pub use client::{Client, Fault, describe_rows, has_missing, row_bodies, row_seqs};
pub use raw::{
    Closed, Peer, Ws, assert_dense, connect_ws, conv_id, is_event, message_bodies, seq_of,
};
pub use server::Server;
pub use world::World;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one reply or push on a raw connection may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a headless client may take to reach a state (it connects,
/// reconnects and catches up first).
pub const CLIENT_WAIT: Duration = Duration::from_secs(20);

/// A password every test user shares.
pub const PASSWORD: &str = "correct horse battery";

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A process-unique suffix for client_msg_ids and names.
pub fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small deterministic generator (xorshift64*), so that a seed replays
/// the same faults or the same garbage.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
