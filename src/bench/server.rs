//! The chatd under test: started here from the release `chatd` next to this
//! executable (on a temp data dir, with a config that makes password hashing
//! cheap and lifts the per-connection request limits), or an existing one at
//! `--url`. With `--store postgres://…` the started chatd keeps its log in a
//! PostgreSQL database made for the run, and with `--nodes N` (and `--bus
//! redis://…`) N chatd nodes share it; clients are spread over the nodes.

use super::proc;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the server comes from.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerOpts {
    /// Use the chatd at this address (`host:port`) instead of starting one,
    /// or the nodes of one cluster separated by commas; its CPU and memory
    /// are then not reported.
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
    /// Give the started chatd its default password hashing (argon2id with
    /// 19 MiB on two threads) instead of a cheap one: registrations then
    /// take chatd's real time and memory.
    #[arg(long, global = true)]
    pub default_hashing: bool,
    /// Keep the log in PostgreSQL: a database of its own is made for the
    /// run on the server this URL reaches (and dropped after it).
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// The Redis server between nodes (with `--nodes` above 1).
    #[arg(long, global = true, value_name = "URL")]
    pub bus: Option<String>,
    /// chatd nodes to start on one `--store` and `--bus`; clients are
    /// spread over them.
    #[arg(long, global = true, default_value_t = 1)]
    pub nodes: usize,
    /// `[store] writers` of each node on `--store` (unset: chatd's default).
    #[arg(long, global = true)]
    pub writers: Option<usize>,
}

/// A started chatd process.
struct Node {
    addr: String,
    child: Option<Child>,
    dir: PathBuf,
}

/// The chatd under test: one node or several (owned or not).
pub struct Server {
    /// `127.0.0.1:port` of the first node.
    pub addr: String,
    /// Every node's address; client `i` uses `addrs[i % addrs.len()]`.
    pub addrs: Vec<String>,
    nodes: Vec<Node>,
    /// The database made for the run.
    database: Option<(String, String)>,
    /// The bus the started nodes share.
    bus: Option<String>,
    keep: bool,
}

/// CPU meters on every node.
pub struct Meters(Vec<proc::CpuMeter>);

impl Meters {
    /// Percent of one core used since the start, all nodes together.
    pub fn percent(&self) -> f64 {
        self.0.iter().map(proc::CpuMeter::percent).sum()
    }
}

/// The `[limits]`/`[auth]` overrides every started chatd gets.
pub fn bench_config(listen: &str, data: &std::path::Path, default_budget: bool) -> String {
    cluster_config(listen, data, default_budget, false, None, None)
}

/// [`bench_config`] on a PostgreSQL store and a bus, when given.
fn cluster_config(
    listen: &str,
    data: &std::path::Path,
    default_budget: bool,
    default_hashing: bool,
    store: Option<(&str, Option<usize>)>,
    bus: Option<&str>,
) -> String {
    let mut extra = String::new();
    if let Some((url, writers)) = store {
        extra.push_str(&format!("\n[store]\nurl = \"{url}\"\npool = 32\n"));
        if let Some(n) = writers {
            extra.push_str(&format!("writers = {n}\n"));
        }
    }
    if let Some(url) = bus {
        extra.push_str(&format!("\n[bus]\nurl = \"{url}\"\n"));
    }
    let budget = if default_budget {
        ""
    } else {
        "requests_per_sec = 1000000\nrequest_burst = 1000000\n"
    };
    let hashing = if default_hashing {
        ""
    } else {
        "argon2_memory_kib = 64\nargon2_iterations = 1\nargon2_parallelism = 1\nmax_concurrent_hashes = 8\n"
    };
    format!(
        r#"listen = "{listen}"
data = "{}"

[auth]
# Benchmarks register thousands of accounts.
registration = "open"
{hashing}# Thousands of accounts register from one address at once.
hash_queue = 4096
hashes_per_address = 64
# A retried registration whose first try went through finds its name
# taken (and logs in): thousands of them must not lock the address out.
address_free_failures = 1000000

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
{extra}"#,
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
    sibling("chatd")
}

/// The binary `name` of this build: beside this executable, or one
/// directory up (where a test's executable sits in `deps/`).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == name) {
        return Ok(exe);
    }
    let dir = exe.parent().context("executable has no directory")?;
    for cand in [dir.join(name), dir.join("..").join(name)] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!(
        "no {name} binary next to {}; build it (cargo build --release --bins)",
        exe.display()
    )
}

impl Server {
    /// Start (or reach) the server and wait until `/healthz` answers.
    pub async fn start(opts: &ServerOpts) -> anyhow::Result<Server> {
        if let Some(url) = &opts.url {
            let mut addrs = Vec::new();
            for one in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                let addr = one
                    .trim_start_matches("ws://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .trim_end_matches("/ws")
                    .to_string();
                if !crate::client::net::healthy(&addr).await {
                    bail!("no chatd answers /healthz at {addr}");
                }
                addrs.push(addr);
            }
            let addr = addrs.first().cloned().context("--url names no address")?;
            return Ok(Server {
                addr,
                addrs,
                nodes: Vec::new(),
                database: None,
                bus: None,
                keep: true,
            });
        }
        let chatd = match &opts.chatd {
            Some(p) => p.clone(),
            None => default_chatd()?,
        };
        if opts.nodes > 1 && (opts.store.is_none() || opts.bus.is_none()) {
            bail!("--nodes above 1 needs --store postgres://… and --bus redis://…");
        }
        let database = match &opts.store {
            Some(base) => Some(make_database(base).await?),
            None => None,
        };
        let mut server = Server {
            addr: String::new(),
            addrs: Vec::new(),
            nodes: Vec::new(),
            database,
            bus: opts.bus.clone(),
            keep: opts.keep,
        };
        let store = server.database.as_ref().map(|(_, url)| url.clone());
        for _ in 0..opts.nodes.max(1) {
            let dir = std::env::temp_dir().join(format!("chatd-bench-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(dir.join("data"))?;
            let addr = format!("127.0.0.1:{}", free_port()?);
            std::fs::write(
                dir.join("chatd.toml"),
                cluster_config(
                    &addr,
                    &dir.join("data"),
                    opts.default_budget,
                    opts.default_hashing,
                    store.as_deref().map(|s| (s, opts.writers)),
                    opts.bus.as_deref(),
                ),
            )?;
            server.addrs.push(addr.clone());
            server.nodes.push(Node {
                addr,
                child: None,
                dir,
            });
        }
        server.addr = server.addrs[0].clone();
        server.spawn(opts, &chatd).await?;
        Ok(server)
    }

    /// The address client `i` uses: the nodes in turn.
    pub fn addr_for(&self, i: usize) -> &str {
        &self.addrs[i % self.addrs.len()]
    }

    /// Start every node on its config and wait for `/healthz`.
    async fn spawn(&mut self, opts: &ServerOpts, chatd: &std::path::Path) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            let config = node.dir.join("chatd.toml");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(node.dir.join("chatd.log"))?;
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
            node.child = Some(child);
            let log = node.dir.join("chatd.log").display().to_string();
            let deadline = Instant::now() + Duration::from_secs(15);
            while !crate::client::net::healthy(&node.addr).await {
                if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                    bail!("chatd exited at start ({status}); see {log}");
                }
                if Instant::now() > deadline {
                    bail!("chatd did not answer /healthz in 15 s; see {log}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// The first node's data directory, when started here.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.nodes.first().map(|n| n.dir.join("data"))
    }

    /// Stop the chatd processes but keep their data, so that the store can
    /// be written directly; [`Server::resume`] starts them again on it.
    pub fn pause(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                stop_child(&mut child);
            }
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

    /// The first node's process id, when started here.
    pub fn pid(&self) -> Option<u32> {
        self.pids().first().copied()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// chatd's RSS and peak RSS in KiB, all nodes together (`None` for an
    /// external server).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let pids = self.pids();
        if pids.is_empty() {
            return None;
        }
        let mut sum = (0, 0);
        for p in pids {
            let (rss, hwm) = proc::rss_kib(Some(p))?;
            sum = (sum.0 + rss, sum.1 + hwm);
        }
        Some(sum)
    }

    /// Connections the started nodes hold to PostgreSQL (to the run's
    /// database) and clients connected to Redis, where there are those.
    pub async fn backend_connections(&self) -> (Option<u64>, Option<u64>) {
        let pg = match &self.database {
            Some((base, url)) => {
                let name = url.rsplit('/').next().unwrap_or_default().to_string();
                count_pg(base, &name).await
            }
            None => None,
        };
        let redis = match &self.bus {
            Some(url) => count_redis(url).await,
            None => None,
        };
        (pg, redis)
    }

    /// CPU meters on chatd (`None` for an external server).
    pub fn cpu(&self) -> Option<Meters> {
        let pids = self.pids();
        (!pids.is_empty()).then(|| {
            Meters(
                pids.into_iter()
                    .map(|p| proc::CpuMeter::start(Some(p)))
                    .collect(),
            )
        })
    }

    /// chatd's process figures for a report (all nodes together).
    pub fn figures(&self, cpu: Option<Meters>) -> Value {
        let mut v = match (self.rss_kib(), cpu) {
            (Some((rss, hwm)), Some(cpu)) => json!({
                "cpu_pct": super::report::r3(cpu.percent()),
                "rss_kib": rss,
                "peak_rss_kib": hwm,
            }),
            (Some((rss, hwm)), None) => json!({"rss_kib": rss, "peak_rss_kib": hwm}),
            _ => return Value::Null,
        };
        if self.nodes.len() > 1 {
            v["nodes"] = self.nodes.len().into();
        }
        if self.database.is_some() {
            v["store"] = "postgres".into();
        }
        v
    }

    /// Stop chatd (SIGTERM, then SIGKILL after 5 s) and remove its files.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                stop_child(&mut child);
            }
        }
        for node in self.nodes.drain(..) {
            if self.keep {
                eprintln!("chatd-bench: kept {}", node.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(node.dir);
            }
        }
        if let Some((base, url)) = self.database.take() {
            if self.keep {
                eprintln!(
                    "chatd-bench: kept the database {}",
                    crate::store::redact(&url)
                );
            } else {
                drop_database(base, url);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The name of the database in a PostgreSQL URL replaced by `name`.
fn with_database(base: &str, name: &str) -> anyhow::Result<String> {
    let scheme = base.find("://").context("a PostgreSQL URL has a scheme")? + 3;
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (base, ""),
    };
    let host_end = head[scheme..].find('/').map_or(head.len(), |i| scheme + i);
    Ok(format!("{}/{name}{query}", &head[..host_end]))
}

async fn run_sql(url: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot reach {}", crate::store::redact(url)))?;
    let driver = tokio::spawn(conn);
    let r = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    Ok(r?)
}

/// A new database on the server `base` reaches: (base, its URL).
async fn make_database(base: &str) -> anyhow::Result<(String, String)> {
    let name = format!("chatd_bench_{}", uuid::Uuid::new_v4().simple());
    run_sql(base, &format!("CREATE DATABASE {name}")).await?;
    Ok((base.to_string(), with_database(base, &name)?))
}

/// Drop the run's database, on a thread of its own (this runs from `Drop`).
fn drop_database(base: String, url: String) {
    let Some(name) = url
        .rsplit('/')
        .next()
        .map(|n| n.split('?').next().unwrap_or(n).to_string())
    else {
        return;
    };
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(run_sql(
            &base,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ))
        .ok()
    })
    .join();
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

/// Backends connected to database `name` (less the one asking).
async fn count_pg(base: &str, name: &str) -> Option<u64> {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .ok()?;
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .await
        .ok();
    drop(client);
    let _ = task.await;
    row.and_then(|r| r.try_get::<_, i64>(0).ok())
        .map(|n| n as u64)
}

/// `connected_clients` of the Redis server (less the one asking).
async fn count_redis(url: &str) -> Option<u64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|n| n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_replaces_the_one_in_the_url() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x").unwrap(),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "x").unwrap(),
            "postgres://h/x?sslmode=disable"
        );
    }
}
