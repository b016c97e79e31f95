//! chatd: the chat server. Parses arguments, then runs `chat::server` until
//! SIGINT or SIGTERM, or runs one `chatd admin` command.

use chat::server::admin::AdminCommand;
use chat::server::config::Registration;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The chat server: WebSocket + JSON on one port, an embedded durable store.
#[derive(Parser, Debug)]
#[command(name = "chatd", version, about, long_about = None)]
struct Args {
    /// Address to listen on [default: 127.0.0.1:7878]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory (the database lives here) [default: the platform data dir]
    #[arg(long, value_name = "DIR", global = true)]
    data: Option<PathBuf>,
    /// TOML configuration file; flags override it
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Who may register [default: the config's, else invite]
    #[arg(long, value_name = "POLICY")]
    registration: Option<Registration>,
    /// Serve Prometheus metrics on GET /metrics at this address (keep it
    /// private) [default: the config's, else off]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Keep the log in this PostgreSQL database (postgres://USER@HOST/DB)
    /// instead of the embedded SQLite file [default: the config's, else
    /// embedded]
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
    /// Share events, typing and presence with other nodes through this
    /// Redis server (redis://HOST) [default: the config's, else none]
    #[arg(long, value_name = "URL")]
    bus: Option<String>,
    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Account bootstrap on the server host (works while chatd runs)
    Admin {
        #[command(subcommand)]
        what: AdminCommand,
    },
    /// Bring a PostgreSQL database to this chatd's schema; with --from,
    /// copy an embedded server's data directory into it (empty) and verify
    /// the copy
    Migrate {
        /// The data directory of an embedded (SQLite) chatd to copy
        #[arg(long, value_name = "DATA_DIR")]
        from: Option<PathBuf>,
        /// The database: postgres://USER@HOST/DB [default: --store, else
        /// the config's [store] url]
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
}

fn main() {
    let args = Args::parse();
    let overrides = chat::server::Overrides {
        listen: args.listen,
        data: args.data,
        file: args.config,
        registration: args.registration,
        metrics_listen: args.metrics_listen,
        store: args.store,
        bus: args.bus,
    };
    if args.print_config {
        let shown = chat::server::load_config_with(&overrides)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                c.data = Some(c.data_dir().map_err(|e| e.to_string())?);
                toml::to_string(&c).map_err(|e| e.to_string())
            });
        match shown {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("chatd: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match args.command {
        Some(Command::Admin { what }) => match chat::server::load_config_with(&overrides) {
            Ok(config) => runtime.block_on(chat::server::admin::run(&config, what)),
            Err(e) => {
                eprintln!("chatd: {e}");
                2
            }
        },
        Some(Command::Migrate { from, to }) => match chat::server::load_config_with(&overrides) {
            Ok(config) => runtime.block_on(chat::server::migrate::run(&config, from, to)),
            Err(e) => {
                eprintln!("chatd: {e}");
                2
            }
        },
        None => runtime.block_on(chat::server::run_with_args(overrides)),
    };
    std::process::exit(code);
}

/// jemalloc rather than the C library's allocator: a burst (thousands of
/// registrations, a fan-out storm) leaves freed memory spread over the
/// heap, and glibc keeps most of it; jemalloc's background thread hands
/// pages unused for a second back to the system (see OPERATIONS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): purge dirty pages after a second,
/// from a background thread rather than on the serving threads.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);
