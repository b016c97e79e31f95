//! The load generator behind `chatd-bench`: scenarios that drive a real chatd
//! over real WebSockets (started here from the release binary, or reached at
//! `--url`) and report throughput, latency percentiles, CPU and memory; plus
//! the client-side figures (start-up from a large cache, rendering, UI-loop
//! latency under incoming events).
//!
//! - [`server`] starts chatd on a temp data dir with cheap password hashing,
//!   optionally pinned to a CPU with `taskset`, and samples its CPU and RSS;
//! - [`wire`] is a deliberately light client (bind a source address, connect,
//!   JSON requests for set-up, a tiny hot-path frame parse);
//! - [`proc`] reads `/proc` for CPU time and RSS;
//! - [`report`] holds the percentiles and the JSON/text report;
//! - [`member`] is the fan-out member that reads like the client (the
//!   default; `--members-read raw` keeps the light one in [`fanout`]);
//! - one module per scenario: [`fanout`], [`ingest`], [`idle`], [`catchup`]
//!   (also the storm), [`noisy`], [`search`] (server and offline search),
//!   and [`client`] for the client figures.
//!
//! Every scenario is bounded in time; every wait has a deadline.

pub mod catchup;
pub mod cli;
pub mod client;
pub mod client_run;
pub mod fanout;
pub mod files;
pub mod idle;
pub mod ingest;
pub mod member;
pub mod noisy;
pub mod proc;
pub mod report;
pub mod search;
pub mod server;
pub mod storm;
pub mod wire;

pub use report::Report;
pub use server::{Server, ServerOpts};

/// A short random tag so that user names of separate runs never collide on a
/// shared server.
pub fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

/// Raise this process's open-file limit to its hard limit (the generator
/// holds one descriptor per connection).
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}
