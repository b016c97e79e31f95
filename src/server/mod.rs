//! chatd: the server.
//!
//! [`serve`] takes a bound listener, a configuration and a shutdown signal, so
//! that the binary and the tests run it the same way (tests on
//! `127.0.0.1:0`). Each accepted socket gets one task: the transport answers
//! plain HTTP (health, files: [`http`]) or upgrades to a WebSocket, which a [`session`]
//! serves. Shared state is the [`hub::Hub`] (membership, presence, fan-out)
//! and the [`Store`] (the durable log: embedded SQLite, or PostgreSQL). With `[net]
//! metrics_listen` set, a second listener serves `GET /metrics`
//! ([`metrics`]). With `[bus] url` set, a [`bus::Bus`] on Redis joins this
//! node to the others that share its database.

pub mod admin;
pub mod auth;
pub mod budget;
pub mod bus;
pub mod config;
pub mod files;
pub mod health;
pub mod http;
pub mod hub;
mod keycheck;
mod limiter;
pub mod metrics;
pub mod migrate;
mod queue;
mod run;
pub mod session;
mod throttle;
mod validate;
pub mod webhooks;

use crate::net::tls::{self, ServerTls};
use crate::net::transport::{self, Accepted};
use crate::proto::Limits;
use crate::store::log::WriteLimits;
use crate::store::{Readers, Store};
pub use config::Config;
use hub::Hub;
pub use run::{
    Overrides, init_logging, load_config, load_config_with, run_with_args, shutdown_signal,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every connection task shares.
pub struct Shared {
    pub hub: Arc<Hub>,
    pub store: Store,
    pub hasher: auth::Hasher,
    pub throttle: Arc<throttle::Throttle>,
    pub limits: Limits,
    pub accounts: config::AccountRules,
    /// Every user's request budget.
    pub budgets: budget::Budgets,
    pub retention: config::RetentionConfig,
    pub files: files::Files,
    /// Sessions carried over HTTP (server-sent events and `POST`).
    pub streams: session::stream::Streams,
    /// The incoming webhooks that posted lately: their rates.
    pub webhooks: webhooks::Hooks,
    /// Browser origins allowed to open a session (`[net] allowed_origins`).
    pub allowed_origins: Arc<[String]>,
    pub shutdown: CancellationToken,
    pub grace: Duration,
    /// This server's metrics (served when `[net] metrics_listen` is set).
    pub metrics: metrics::Metrics,
    /// What `/healthz` and `/readyz` check.
    pub health: health::Health,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::log::StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}

/// Serve on `listener` until `shutdown` completes; then stop accepting, let
/// in-flight requests finish (up to the grace period), close every
/// connection with "going away", and flush the store. TLS when
/// `[net] tls_cert` and `tls_key` are set.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = ServerTls::configured(
        config.net.tls_cert.as_deref(),
        config.net.tls_key.as_deref(),
    )?;
    serve_tls(listener, config, tls, shutdown).await
}

/// [`serve`] with TLS loaded by the caller, which keeps a handle to reload
/// its certificate.
pub async fn serve_tls(
    listener: TcpListener,
    config: Config,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let metrics_listener = match config.net.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} for metrics: {e}"),
            )
        })?),
        None => None,
    };
    serve_listeners(listener, metrics_listener, config, tls, shutdown).await
}

/// [`serve_tls`] with the metrics listener (`[net] metrics_listen`) bound
/// by the caller, as tests do to learn its port.
pub async fn serve_listeners(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let data = config.data_dir()?;
    let hub = Arc::new(Hub::new(config.limits.max_connections_per_user));
    let mut metrics = metrics::Metrics::new();
    let (store, snapshot) = Store::open(
        &data,
        &config.store,
        WriteLimits {
            max_members: config.limits.max_members,
            max_conversations_per_user: config.limits.max_conversations_per_user,
        },
        metrics.commit_sink(hub.clone()),
    )
    .await?;
    hub.load(snapshot);
    let bus = match &config.bus.url {
        Some(url) => Some(bus::Bus::start(
            url,
            &store.cluster_id(),
            Duration::from_secs(config.bus.presence_ttl_secs),
            hub.clone(),
            store.readers().clone(),
        )?),
        None => None,
    };
    let mut health = health::Health::default().with_bus(bus.as_ref().map(|b| b.status()));
    if store.postgres().is_some() {
        let probe = store.clone();
        health = health.with_store(Arc::new(move || {
            let store = probe.clone();
            Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
        }));
    }
    let hasher = auth::Hasher::new(&config.auth)?;
    metrics.sample(hub.clone(), store.stats(), hasher.clone());
    let files = files::Files::open(&data, config.files.clone())
        .map_err(|e| ServeError::Io(std::io::Error::other(format!("file storage: {e}"))))?;
    let token = CancellationToken::new();
    let shared = Arc::new(Shared {
        hub,
        store: store.clone(),
        hasher,
        throttle: throttle::Throttle::new(&config.auth, &config.limits),
        limits: config.limits.clone(),
        accounts: config.auth.rules(),
        budgets: budget::Budgets::new(&config.limits),
        retention: config.retention.clone(),
        files,
        streams: session::stream::Streams::default(),
        webhooks: webhooks::Hooks::default(),
        allowed_origins: config.net.allowed_origins.clone().into(),
        shutdown: token.clone(),
        grace: Duration::from_secs(config.shutdown_grace_secs),
        metrics,
        health,
    });
    tokio::spawn(pinger(
        shared.hub.clone(),
        Duration::from_secs(config.limits.ping_interval_secs.max(1)),
        token.clone(),
    ));
    tokio::spawn(watch_account_changes(
        store.readers().clone(),
        shared.hub.clone(),
        token.clone(),
    ));
    tokio::spawn(files::collect(shared.clone(), token.clone()));
    tokio::spawn(expire_devices(shared.clone(), token.clone()));
    match store.postgres() {
        None => {
            tokio::spawn(crate::store::log::retention::run(
                data.clone(),
                config.retention.clone(),
                RETENTION_SWEEP,
                token.clone(),
            ));
        }
        Some(pg) => {
            tokio::spawn(crate::store::pg::retention::run(
                pg.clone(),
                config.retention.clone(),
                RETENTION_SWEEP,
                token.clone(),
            ));
        }
    }
    let ws_config = transport::ws_config(config.limits.hard_frame_bytes);
    let head_timeout = Duration::from_secs(config.limits.auth_timeout_secs.max(1));
    let origins = shared.allowed_origins.clone();
    let proxies: Arc<[config::IpNet]> = config.net.trusted_proxies.clone().into();
    let tasks = TaskTracker::new();
    tracing::info!(addr = %listener.local_addr()?, data = %data.display(), "chatd listening");
    if let Some(l) = metrics_listener {
        tasks.spawn(metrics::serve(l, shared.clone()));
    }
    if let Some(tls) = &tls {
        tracing::info!(cert = %tls.cert_path().display(), "serving TLS");
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tasks.len() >= config.limits.max_connections {
                    // Full: close at once rather than queue work.
                    tracing::debug!(%peer, "refused: max_connections reached");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let origins = origins.clone();
                let proxies = proxies.clone();
                let tls = tls.clone();
                // The accept phase is boxed and freed once done, so that a
                // connection's task carries only the session's state.
                let accepting = Box::pin(async move {
                    let accepted = match tls::wrap(tls.as_ref(), stream, head_timeout).await {
                        Ok(stream) => {
                            transport::accept(stream, peer.ip(), ws_config, head_timeout, &origins, &proxies)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    accepted.map_err(|e| tracing::debug!(%peer, "rejected: {e}"))
                });
                tasks.spawn(connection(accepting, shared, tasks.clone()));
            }
        }
    }
    tracing::info!("shutting down: closing connections");
    drop(listener);
    token.cancel();
    shared.hub.shutdown_all();
    tasks.close();
    tasks.wait().await;
    // Sessions waiting for their HTTP stream to be resumed hold the
    // shared state: end them before it goes.
    shared.streams.clear();
    drop(shared);
    if let Some(bus) = bus {
        // After the connections: their going offline is published first.
        bus.close().await;
    }
    store.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// One accepted connection's task: the (boxed) accept phase, then, for
/// plain HTTP, its (boxed) request handling. A WebSocket's session runs in
/// a task of its own, spawned here, so that the connections that stay
/// carry only the session's future, not this one's accept state and
/// result beside it (a task's memory is its future rounded up to 128
/// bytes).
async fn connection(
    accepting: Pin<Box<dyn Future<Output = Result<Accepted<tls::ServerStream>, ()>> + Send>>,
    shared: Arc<Shared>,
    tasks: TaskTracker,
) {
    match accepting.await {
        Ok(Accepted::WebSocket(ws, addr)) => {
            tasks.spawn(session::run(ws, shared, addr));
        }
        Ok(Accepted::Http(io, addr)) => Box::pin(http::serve(io, addr, shared)).await,
        Ok(Accepted::Answered) | Err(()) => {}
    }
}

/// Disconnect the users whose accounts `chatd admin` changed beside this
/// server (a reset password, a new admin), within [`ACCOUNT_POLL`].
async fn watch_account_changes(readers: Readers, hub: Arc<Hub>, stop: CancellationToken) {
    let mut seen = match readers.last_account_change().await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!("cannot watch account changes: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(ACCOUNT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match readers.account_changes(seen).await {
            Ok(changes) => {
                for (id, user) in changes {
                    seen = id;
                    tracing::info!(user = %user, "account changed by chatd admin");
                    hub.end_sessions(&user, None, queue::Ended::Revoked);
                }
            }
            Err(e) => tracing::debug!("reading account changes: {e}"),
        }
    }
}

/// How often old message text is looked for when retention is on.
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// How often a running chatd looks for changes made by `chatd admin`.
const ACCOUNT_POLL: Duration = Duration::from_secs(2);

/// Ask every authenticated connection to ping its peer once per `every`,
/// an eighth of them at a time (so that pings do not all go out at once),
/// until `stop`. One timer for the whole server instead of one per
/// connection.
async fn pinger(hub: Arc<Hub>, every: Duration, stop: CancellationToken) {
    const PHASES: u64 = 8;
    let mut tick = tokio::time::interval(every / PHASES as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut phase = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                hub.request_pings(phase, PHASES);
                phase = (phase + 1) % PHASES;
            }
        }
    }
}

/// Hourly, delete the devices of sessions that expired without being
/// presented again (secret conversations). On a shared database every
/// node does: what one deleted, the others find gone.
async fn expire_devices(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let life = shared.accounts.life;
        let op = crate::store::log::KeyOp::Expire { life };
        if let Err(e) = shared.store.keys(op).await {
            tracing::warn!("expiring devices: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, F: Future>(_f: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every WebSocket's task holds its session's future for as long as
    /// the connection lives: it must stay within 512 bytes, so that with
    /// tokio's task header the task fits 640 (the HTTP side's future,
    /// hyper's connection, is boxed and short-lived).
    #[test]
    fn a_sessions_task_stays_small() {
        let task = future_size(|a, (s, t)| connection(a, s, t));
        let session = future_size(|ws, (s, a)| session::run(ws, s, a));
        eprintln!("connection task future: {task} bytes; session: {session}");
        assert!(session <= 512, "{session} bytes");
        assert!(task <= 512, "{task} bytes");
    }
}
