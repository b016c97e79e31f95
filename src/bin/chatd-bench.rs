//! chatd-bench: the load generator. Parses arguments, runs one scenario
//! from `chat::bench`, prints its report (JSON with `--json`).

use chat::bench::cli::{Cli, Scenario};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    if let Scenario::ClientStartChild { cache } = &cli.scenario {
        // Measured start-up: the runtime `chat` builds, then the client's
        // path and nothing else.
        let started = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(chat::bench::client_run::child(cache)));
        if let Err(e) = started {
            eprintln!("chatd-bench: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    chat::bench::raise_fd_limit();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatd-bench: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(chat::bench::cli::run(&cli.server, &cli.scenario)) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
        }
        Err(e) => {
            eprintln!("chatd-bench: {e:#}");
            std::process::exit(1);
        }
    }
}
