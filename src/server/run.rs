//! Running chatd from a command line (the `chatd` binary and `chat server`):
//! configuration from a file and flags, logging, TLS (its certificate
//! reloaded on SIGHUP), the listener, and shutdown on SIGINT or SIGTERM.

use super::{Config, serve_tls};
use crate::net::tls::ServerTls;
use crate::store::log::Registration;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Build the configuration: file (if any), then flags.
pub fn load_config(
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
    file: Option<PathBuf>,
) -> Result<Config, super::config::ConfigError> {
    load_config_with(&Overrides {
        listen,
        data,
        file,
        ..Overrides::default()
    })
}

/// What a command line may set over the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub file: Option<PathBuf>,
    pub registration: Option<Registration>,
    /// `[net] metrics_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[store] url`.
    pub store: Option<String>,
    /// `[bus] url`.
    pub bus: Option<String>,
}

/// Build the configuration: file (if any), then flags; refused if a
/// setting cannot work ([`Config::check`]).
pub fn load_config_with(o: &Overrides) -> Result<Config, super::config::ConfigError> {
    let (listen, data, file) = (o.listen, o.data.clone(), &o.file);
    let mut config = match file {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(data) = data {
        config.data = Some(data);
    }
    if let Some(r) = o.registration {
        config.auth.registration = r;
    }
    if let Some(addr) = o.metrics_listen {
        config.net.metrics_listen = Some(addr);
    }
    if let Some(url) = &o.store {
        config.store.url = Some(url.clone());
    }
    if let Some(url) = &o.bus {
        config.bus.url = Some(url.clone());
    }
    config.check()?;
    Ok(config)
}

/// Log to stderr, `RUST_LOG` deciding (default `info`).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Serve until a signal; returns the process exit code.
pub async fn run_with_args(overrides: Overrides) -> i32 {
    init_logging();
    let config = match load_config_with(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatd: {e}");
            return 2;
        }
    };
    let tls = match ServerTls::configured(
        config.net.tls_cert.as_deref(),
        config.net.tls_key.as_deref(),
    ) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("chatd: {e}");
            return 2;
        }
    };
    if let Some(tls) = &tls {
        reload_on_hangup(tls.clone());
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chatd: cannot listen on {}: {e}", config.listen);
            return 1;
        }
    };
    match serve_tls(listener, config, tls, shutdown_signal()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("chatd: {e}");
            1
        }
    }
}

/// Reread the TLS certificate and key on each SIGHUP. Connections keep the
/// certificate they started with; a reload that fails keeps the current one.
/// The handler is in place when this returns, so an early SIGHUP does not
/// end the process.
fn reload_on_hangup(tls: ServerTls) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no certificate reload on SIGHUP: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let tls = tls.clone();
                match tokio::task::spawn_blocking(move || tls.reload()).await {
                    Ok(Ok(())) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
                    Ok(Err(e)) => {
                        tracing::error!(
                            "SIGHUP: TLS reload failed, keeping the current certificate: {e}"
                        )
                    }
                    Err(e) => tracing::error!("SIGHUP: TLS reload failed: {e}"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
