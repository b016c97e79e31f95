//! chatd: the chat server. Parses arguments, then runs `chat::server` until
//! SIGINT or SIGTERM.

use clap::Parser;
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
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// TOML configuration file; flags override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    print_config: bool,
}

fn main() {
    let args = Args::parse();
    if args.print_config {
        let shown = chat::server::load_config(args.listen, args.data, args.config)
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
    let code = runtime.block_on(chat::server::run_with_args(
        args.listen,
        args.data,
        args.config,
    ));
    std::process::exit(code);
}
