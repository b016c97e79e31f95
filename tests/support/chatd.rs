//! The real `chatd` binary as a child process on a data dir, for tests that
//! kill it, or measure its memory apart from the test process. On
//! PostgreSQL (see [`backend`](super::backend)) the data dir's database is
//! passed with `--store`, the same one at every start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A chatd child process on a data dir.
pub struct Chatd {
    child: Child,
    pub addr: SocketAddr,
}

pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

pub fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("chatd.toml");
    std::fs::write(
        &path,
        "[auth]\nregistration = \"open\"\nargon2_memory_kib = 64\nargon2_iterations = 1\n\n\
         [limits]\nrequests_per_sec = 100000\nrequest_burst = 100000\n",
    )
    .expect("write config");
    path
}

/// Whether chatd at `addr` is healthy: `/healthz` says ok (on PostgreSQL:
/// its store, and its bus if it has one, answer), as the client checks.
pub async fn healthy(addr: SocketAddr) -> bool {
    chat::client::net::healthy(&addr.to_string()).await
}

impl Chatd {
    pub async fn start(data: &Path, config: &Path) -> Chatd {
        Self::start_logging(data, config, "warn").await
    }

    /// Like [`Chatd::start`], logging with the filter `rust_log` (into
    /// `chatd.log` of `data`, as always).
    pub async fn start_logging(data: &Path, config: &Path, rust_log: &str) -> Chatd {
        let addr = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("chatd.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(config)
            .args(super::backend::chatd_args(data))
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chatd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !healthy(addr).await {
            assert!(
                Instant::now() < deadline,
                "chatd did not become healthy; its log:\n{}",
                std::fs::read_to_string(data.join("chatd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Chatd { child, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub async fn kill9(mut self) {
        self.child.kill().await.expect("SIGKILL chatd");
    }
}

impl Chatd {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("chatd is running")
    }

    /// The child's resident memory, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}
