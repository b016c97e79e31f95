//! The chatd under test: started here from the release `chatd` next to this
//! executable (on a temp data dir, with a config that makes password hashing
//! cheap and lifts the per-connection request limits), or an existing one at
//! `--url`.

use super::proc;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the server comes from.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerOpts {
    /// Use the chatd at this address (`host:port`) instead of starting one;
    /// its CPU and memory are then not reported.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// The chatd binary to start [default: `chatd` next to this executable]
    #[arg(long, global = true, value_name = "PATH")]
    pub chatd: Option<PathBuf>,
    /// Pin the started chatd to these CPUs (`taskset -c LIST`), e.g. `0`.
    #[arg(long, global = true, value_name = "LIST")]
    pub chatd_cpu: Option<String>,
    /// Keep chatd's data dir and log after the run (printed on stderr).
    #[arg(long, global = true)]
    pub keep: bool,
    /// Give the started chatd its default per-user request budget
    /// (`requests_per_sec`, `request_burst`) instead of an unlimited one.
    #[arg(long, global = true)]
    pub default_budget: bool,
}

/// A running chatd (owned or not).
pub struct Server {
    /// `127.0.0.1:port`.
    pub addr: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
    keep: bool,
}

/// The `[limits]`/`[auth]` overrides every started chatd gets.
pub fn bench_config(listen: &str, data: &std::path::Path, default_budget: bool) -> String {
    let budget = if default_budget {
        ""
    } else {
        "requests_per_sec = 1000000\nrequest_burst = 1000000\n"
    };
    format!(
        r#"listen = "{listen}"
data = "{}"

[auth]
# Benchmarks register thousands of accounts.
registration = "open"
argon2_memory_kib = 64
argon2_iterations = 1
argon2_parallelism = 1
max_concurrent_hashes = 8
# Thousands of accounts register from one address at once.
hash_queue = 4096
hashes_per_address = 64

[limits]
{budget}max_connections_per_user = 10000
# `idle` holds up to 19,000 (the machine's open-file limit is 20,000).
max_connections = 19500
max_unauthenticated_per_address = 100000
handshakes_per_sec = 1000000
handshake_burst = 1000000
# `noisy` builds hundreds of groups as one user.
max_creates_per_hour = 1000000

[files]
# `files` moves one file of up to a few GiB.
max_upload_bytes = 17179869184
quota_bytes = 68719476736
"#,
        data.display()
    )
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The chatd next to the running executable (`target/release/chatd` for
/// `target/release/chatd-bench`; for a test binary in `deps/`, its parent).
fn default_chatd() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    for cand in [dir.join("chatd"), dir.join("../chatd")] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!(
        "no chatd binary next to {}; build it (cargo build --release --bins) or pass --chatd",
        exe.display()
    )
}

impl Server {
    /// Start (or reach) the server and wait until `/healthz` answers.
    pub async fn start(opts: &ServerOpts) -> anyhow::Result<Server> {
        if let Some(url) = &opts.url {
            let addr = url
                .trim_start_matches("ws://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .trim_end_matches("/ws")
                .to_string();
            if !crate::client::net::healthy(&addr).await {
                bail!("no chatd answers /healthz at {addr}");
            }
            return Ok(Server {
                addr,
                child: None,
                dir: None,
                keep: true,
            });
        }
        let chatd = match &opts.chatd {
            Some(p) => p.clone(),
            None => default_chatd()?,
        };
        let dir = std::env::temp_dir().join(format!("chatd-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data"))?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join("chatd.toml");
        std::fs::write(
            &config,
            bench_config(&addr, &dir.join("data"), opts.default_budget),
        )?;
        let mut server = Server {
            addr,
            child: None,
            dir: Some(dir),
            keep: opts.keep,
        };
        server.spawn(opts, &chatd).await?;
        Ok(server)
    }

    /// Start the chatd process on this server's config and wait for
    /// `/healthz`.
    async fn spawn(&mut self, opts: &ServerOpts, chatd: &std::path::Path) -> anyhow::Result<()> {
        let dir = self.dir.clone().context("not a chatd started here")?;
        let config = dir.join("chatd.toml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("chatd.log"))?;
        let mut cmd = match &opts.chatd_cpu {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(chatd);
                c
            }
            None => Command::new(chatd),
        };
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", chatd.display()))?;
        self.child = Some(child);
        let server = self;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !crate::client::net::healthy(&server.addr).await {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                bail!("chatd exited at start ({status}); see {}", server.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "chatd did not answer /healthz in 15 s; see {}",
                    server.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// chatd's data directory, when started here.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("data"))
    }

    /// Stop the chatd process but keep its data, so that the store can be
    /// written directly; [`Server::resume`] starts it again on it.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Start chatd again after [`Server::pause`].
    pub async fn resume(&mut self, opts: &ServerOpts) -> anyhow::Result<()> {
        let chatd = match &opts.chatd {
            Some(p) => p.clone(),
            None => default_chatd()?,
        };
        self.spawn(opts, &chatd).await
    }

    /// The chatd process id, when started here.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log(&self) -> String {
        self.dir
            .as_ref()
            .map(|d| d.join("chatd.log").display().to_string())
            .unwrap_or_default()
    }

    /// chatd's RSS and peak RSS in KiB (`None` for an external server).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        self.pid().and_then(|p| proc::rss_kib(Some(p)))
    }

    /// A CPU meter on chatd (`None` for an external server).
    pub fn cpu(&self) -> Option<proc::CpuMeter> {
        self.pid().map(|p| proc::CpuMeter::start(Some(p)))
    }

    /// chatd's process figures for a report.
    pub fn figures(&self, cpu: Option<proc::CpuMeter>) -> Value {
        match (self.rss_kib(), cpu) {
            (Some((rss, hwm)), Some(cpu)) => json!({
                "cpu_pct": super::report::r3(cpu.percent()),
                "rss_kib": rss,
                "peak_rss_kib": hwm,
            }),
            (Some((rss, hwm)), None) => json!({"rss_kib": rss, "peak_rss_kib": hwm}),
            _ => Value::Null,
        }
    }

    /// Stop chatd (SIGTERM, then SIGKILL after 5 s) and remove its files.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        if let Some(dir) = self.dir.take() {
            if self.keep {
                eprintln!("chatd-bench: kept {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// SIGTERM, then SIGKILL after 5 s.
fn stop_child(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
