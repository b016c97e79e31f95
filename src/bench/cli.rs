//! The `chatd-bench` command line: one subcommand per scenario, and the
//! function that runs one and returns its report.

use super::catchup::CatchupArgs;
use super::client_run::{self, ClientArgs};
use super::fanout::FanoutArgs;
use super::idle::IdleArgs;
use super::ingest::IngestArgs;
use super::proc::CpuMeter;
use super::report::Report;
use super::server::{Server, ServerOpts};
use super::storm::StormArgs;
use std::path::PathBuf;

/// A load generator for chatd: real WebSockets, real protocol.
#[derive(clap::Parser, Debug)]
#[command(name = "chatd-bench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub server: ServerOpts,
    /// Print one JSON object per run instead of a readable summary.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Scenario {
    /// One group; members receive what senders send at a fixed rate.
    Fanout(FanoutArgs),
    /// Senders each in their own DM, as fast as acks return (or at --rate).
    Ingest(IngestArgs),
    /// Authenticated idle connections: chatd memory per connection.
    Idle(IdleArgs),
    /// One user reconnects after missing messages: time to catch up.
    Catchup(CatchupArgs),
    /// Many clients drop and reconnect at once: time until all caught up.
    Storm(StormArgs),
    /// Search latency over a large store, and offline over a large cache.
    Search(super::search::SearchArgs),
    /// One user put in many large groups syncs hard: others' latency.
    Noisy(super::noisy::NoisyArgs),
    /// One large file up and down: throughput and chatd's memory meanwhile.
    Files(super::files::FilesArgs),
    /// Client start-up with a large cache: time and RSS at the first frame.
    ClientStart(ClientArgs),
    /// The UI loop's latency while incoming events are applied.
    ClientEvents(ClientArgs),
    /// (internal) one measured client start-up; used by client-start.
    #[command(hide = true)]
    ClientStartChild { cache: PathBuf },
}

impl Scenario {
    /// Whether it needs a chatd.
    pub fn needs_server(&self) -> bool {
        matches!(
            self,
            Scenario::Fanout(_)
                | Scenario::Ingest(_)
                | Scenario::Idle(_)
                | Scenario::Catchup(_)
                | Scenario::Storm(_)
                | Scenario::Noisy(_)
                | Scenario::Files(_)
                | Scenario::Search(_)
        )
    }
}

/// Run one scenario (starting chatd when it needs one); returns its report.
pub async fn run(server: &ServerOpts, scenario: &Scenario) -> anyhow::Result<Report> {
    let self_cpu = CpuMeter::start(None);
    let mut report = match scenario {
        Scenario::ClientStart(a) => {
            let a = a.clone();
            tokio::task::spawn_blocking(move || client_run::start(&a)).await??
        }
        Scenario::ClientEvents(a) => client_run::events(a).await?,
        Scenario::ClientStartChild { cache } => {
            client_run::child(cache).await?;
            Report::new("client-start-child")
        }
        _ => {
            let mut srv = Server::start(server).await?;
            let r = match scenario {
                Scenario::Fanout(a) => super::fanout::run(&srv, a).await,
                Scenario::Ingest(a) => super::ingest::run(&srv, a).await,
                Scenario::Idle(a) => super::idle::run(&mut srv, server, a).await,
                Scenario::Catchup(a) => super::catchup::run(&srv, a).await,
                Scenario::Storm(a) => super::storm::run(&srv, a).await,
                Scenario::Noisy(a) => super::noisy::run(&srv, a).await,
                Scenario::Files(a) => super::files::run(&srv, a).await,
                Scenario::Search(a) => super::search::run(&mut srv, server, a).await,
                _ => unreachable!("client scenarios are handled above"),
            };
            srv.stop();
            let mut r = r?;
            if let Some(cpus) = &server.chatd_cpu {
                r.set("chatd_cpus", cpus.as_str());
            }
            r
        }
    };
    if report.get("generator_cpu_pct").is_none() && scenario.needs_server() {
        report.set("generator_cpu_pct", self_cpu.percent());
    }
    Ok(report)
}
