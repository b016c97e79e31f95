//! chat: the terminal chat client. With no command it opens the full-screen
//! client (starting a local chatd when none is configured or running); the
//! commands serve scripts. See `chat --help`.

use chat::client::cli::{Cli, Command};
use chat::client::config::Loaded;
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    // The server keeps the default hook: a panic in one connection's task
    // must not end the process.
    if !matches!(cli.command, Some(Command::Server { .. })) {
        chat::ui::terminal::install_panic_hook(Some(
            chat::client::config::data_dir().join("crash.log"),
        ));
    }
    let mut loaded = match Loaded::load(
        cli.config.as_deref(),
        cli.server.as_deref(),
        cli.user.as_deref(),
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chat: {e}");
            std::process::exit(1);
        }
    };
    if cli.insecure {
        loaded.allow_insecure();
    }
    if let Some(path) = cli.ca_file.clone() {
        loaded.set_ca_file(path);
    }
    if let Some(t) = cli.transport {
        loaded.set_transport(t);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            None => {
                init_file_logging();
                let local_data = chat::server::config::default_data_dir();
                match chat::ui::start::run(loaded, local_data).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("chat: {e}");
                        1
                    }
                }
            }
            Some(Command::Server {
                listen,
                data,
                server_config,
                registration,
            }) => {
                use clap::ValueEnum;
                let registration = registration
                    .and_then(|r| chat::server::config::Registration::from_str(&r, true).ok());
                chat::server::run_with_args(chat::server::Overrides {
                    listen,
                    data,
                    file: server_config,
                    registration,
                    ..Default::default()
                })
                .await
            }
            Some(_) => {
                init_stderr_logging();
                chat::client::cli::run(cli, loaded).await
            }
        }
    });
    std::process::exit(code);
}

/// The TUI owns the terminal: logs go to a file when `RUST_LOG` is set.
fn init_file_logging() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let path = chat::client::config::data_dir().join("chat.log");
    let _ = chat::private::dir(&chat::client::config::data_dir());
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .init();
    }
}

fn init_stderr_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}
