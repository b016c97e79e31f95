//! The client's network task: it owns the WebSocket for the life of the
//! program. It connects and authenticates, answers and sends pings,
//! reconnects with capped exponential backoff and jitter (reset after a
//! healthy period), and reports everything as [`NetEvent`]s on one channel.
//! A refused handshake or a close that ends the session (revoked, logged
//! out, password changed, account deactivated) drops the credentials: the
//! task reports [`NetEvent::AuthFailed`] and waits for new ones.
//! Callers send [`NetCommand`]s and never wait on a reply: each request
//! carries a caller's tag, and its answer comes back as an event.

use super::conn::{ClientError, Conn, Credentials, UPGRADE_WAIT};
use super::link::{Incoming, Link, Transport};
use crate::client::accounts;
use crate::client::view::ConnState;
use crate::proto::{ErrorCode, OkFrame, ProtoError, Request, ServerFrame};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the task reports.
#[derive(Debug, Clone)]
pub enum NetEvent {
    State(ConnState),
    /// Authenticated. `token` is set after a login or registration;
    /// `http`: over the HTTP fallback rather than the WebSocket.
    Ready {
        user: String,
        token: Option<String>,
        http: bool,
    },
    /// The server refused the credentials; the task waits for new ones.
    AuthFailed(ProtoError),
    /// The answer to a tagged request.
    Reply {
        tag: u64,
        result: Result<OkFrame, ProtoError>,
    },
    Push(ServerFrame),
}

/// What callers ask of the task.
#[derive(Debug)]
pub enum NetCommand {
    /// Send a request; its answer comes back as `NetEvent::Reply { tag }`.
    /// While disconnected it fails at once with an `internal` error whose
    /// message says so: the caller keeps what must survive (the outbox).
    Request { tag: u64, req: Request },
    /// Use these credentials (after `AuthFailed`, or to log in anew).
    Credentials(Credentials),
    /// Skip the backoff wait.
    ReconnectNow,
    /// Close and stop.
    Shutdown,
}

/// Settings of the task.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub server: String,
    pub device: String,
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    /// No frame for this long means the connection is dead.
    pub dead_after: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Connected this long resets the backoff.
    pub healthy_after: Duration,
    /// Allow credentials over cleartext `ws://` to another machine.
    pub insecure: bool,
    /// Certificates to trust for `wss://` besides the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// The WebSocket, the HTTP fallback, or the first that works.
    pub transport: Transport,
    /// On the HTTP fallback (in `auto`), how often to see whether the
    /// WebSocket gets through again.
    pub ws_retry: Duration,
}

impl NetConfig {
    pub fn new(server: &str, device: &str) -> NetConfig {
        NetConfig {
            server: server.to_string(),
            device: device.to_string(),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            dead_after: Duration::from_secs(50),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
            insecure: false,
            ca_file: None,
            transport: Transport::Auto,
            ws_retry: Duration::from_secs(300),
        }
    }
}

/// Handle to a running network task.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::Sender<NetCommand>,
}

impl NetHandle {
    /// Queue a command. Never blocks: if the queue is full the command is
    /// refused (`false`), and no reply will come for a refused request.
    pub fn send(&self, cmd: NetCommand) -> bool {
        self.tx.try_send(cmd).is_ok()
    }

    /// A handle with no task behind it: its queue of `capacity` commands
    /// is read by whoever holds the receiver (or fills up, as a stalled
    /// link's does).
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (NetHandle, mpsc::Receiver<NetCommand>) {
        let (tx, rx) = mpsc::channel(capacity);
        (NetHandle { tx }, rx)
    }
}

/// Disconnected requests fail with this message.
pub const NOT_CONNECTED: &str = "not connected";

/// Start the task. Events go to `events` converted with `From`.
pub fn spawn<E: From<NetEvent> + Send + 'static>(
    config: NetConfig,
    creds: Option<Credentials>,
    events: mpsc::Sender<E>,
) -> NetHandle {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(config, creds, rx, events));
    NetHandle { tx }
}

/// Backoff with full jitter between half and all of the capped exponential.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    let jitter: f64 = 0.5 + rand::random::<f64>() * 0.5;
    exp.mul_f64(jitter)
}

enum Ended {
    Shutdown,
    Lost(String),
    /// The server ended this session (revoked, logged out, password
    /// changed, account deactivated): the token is dead.
    SessionOver(ProtoError),
    /// On the HTTP fallback, the WebSocket gets through again: reconnect
    /// at once.
    Upgrade,
}

/// Whether a handshake error is the server refusing these credentials (as
/// opposed to a connection problem worth retrying). A rate-limited login or
/// registration is not retried either: retrying would only extend the wait.
fn refused(e: &ClientError, creds: &Credentials) -> bool {
    let ClientError::Server(p) = e else {
        return false;
    };
    match p.code {
        ErrorCode::AuthFailed
        | ErrorCode::UsernameTaken
        | ErrorCode::InvalidArgument
        | ErrorCode::AccountDisabled
        | ErrorCode::InviteRequired
        | ErrorCode::InviteInvalid
        | ErrorCode::RegistrationClosed => true,
        ErrorCode::RateLimited => !matches!(creds, Credentials::Token(_)),
        _ => false,
    }
}

async fn run<E: From<NetEvent> + Send + 'static>(
    config: NetConfig,
    mut creds: Option<Credentials>,
    mut rx: mpsc::Receiver<NetCommand>,
    events: mpsc::Sender<E>,
) {
    let emit = |ev: NetEvent| {
        let events = events.clone();
        async move { events.send(E::from(ev)).await.is_ok() }
    };
    let mut attempt: u32 = 0;
    // In `auto`, once the WebSocket did not get through: reconnect over
    // HTTP at once (not after another wait for the upgrade) until it is
    // time to look at the WebSocket again.
    let mut http_until: Option<Instant> = None;
    loop {
        // Without credentials, wait for some.
        let Some(c) = creds.clone() else {
            match offline(&emit, "not logged in".into(), &mut rx).await {
                Some(new) => {
                    creds = Some(new);
                    continue;
                }
                None => return,
            }
        };
        if !emit(NetEvent::State(ConnState::Connecting)).await {
            return;
        }
        let transport = match (config.transport, http_until) {
            (Transport::Auto, Some(until)) if Instant::now() < until => Transport::Http,
            (chosen, _) => chosen,
        };
        let outcome = async {
            let mut conn = Conn::connect_via(
                &config.server,
                config.connect_timeout,
                config.insecure,
                config.ca_file.as_deref(),
                transport,
            )
            .await?;
            let ok =
                tokio::time::timeout(config.connect_timeout, conn.handshake(&c, &config.device))
                    .await
                    .map_err(|_| ClientError::Timeout)??;
            Ok::<_, ClientError>((conn, ok))
        }
        .await;
        let reason = match outcome {
            Ok((conn, ok)) => {
                if let Some(t) = &ok.token {
                    creds = Some(Credentials::Token(t.clone()));
                }
                if !emit(NetEvent::Ready {
                    user: ok.user.clone(),
                    token: ok.token.clone(),
                    http: conn.is_http(),
                })
                .await
                    || !emit(NetEvent::State(ConnState::Connected)).await
                {
                    return;
                }
                // The WebSocket was just tried, and did not get through.
                if transport == Transport::Auto && conn.is_http() {
                    http_until = Some(Instant::now() + config.ws_retry);
                }
                let started = Instant::now();
                let ended = connected(conn, &config, &mut rx, &events, &mut creds).await;
                if started.elapsed() >= config.healthy_after {
                    attempt = 0;
                }
                match ended {
                    Ended::Shutdown => return,
                    Ended::Upgrade => {
                        http_until = None;
                        continue;
                    }
                    Ended::Lost(reason) => reason,
                    Ended::SessionOver(err) => {
                        // Never again with this token: wait for new credentials.
                        creds = None;
                        if !emit(NetEvent::AuthFailed(err)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            Err(e) if refused(&e, &c) => {
                let err = match e {
                    ClientError::Server(p) => p,
                    other => ProtoError::new(ErrorCode::AuthFailed, other.to_string()),
                };
                creds = None;
                if !emit(NetEvent::AuthFailed(err)).await {
                    return;
                }
                continue;
            }
            Err(
                e @ (ClientError::Insecure(_) | ClientError::Tls { .. } | ClientError::CaFile(_)),
            ) => {
                // No retry changes the address, the certificate or the CA
                // file: say why and wait.
                match offline(&emit, e.to_string(), &mut rx).await {
                    Some(new) => {
                        creds = Some(new);
                        continue;
                    }
                    None => return,
                }
            }
            Err(e) => e.to_string(),
        };
        let wait = backoff(attempt, config.backoff_min, config.backoff_max);
        attempt = attempt.saturating_add(1);
        tracing::debug!("disconnected ({reason}); retrying in {wait:?}");
        let until = Instant::now() + wait;
        // Count down in whole seconds so the screen can show it.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let secs = left.as_secs_f64().ceil() as u64;
            if !emit(NetEvent::State(ConnState::Reconnecting {
                in_secs: secs,
                reason: reason.clone(),
            }))
            .await
            {
                return;
            }
            // Sleep until the shown number of seconds changes.
            let frac = Duration::from_nanos((left.as_nanos() % 1_000_000_000) as u64);
            let step = if frac.is_zero() {
                left.min(Duration::from_secs(1))
            } else {
                frac
            };
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                cmd = rx.recv() => match cmd {
                    None | Some(NetCommand::Shutdown) => return,
                    Some(NetCommand::ReconnectNow) => break,
                    Some(NetCommand::Credentials(c)) => { creds = Some(c); break; }
                    Some(NetCommand::Request { tag, .. }) => {
                        if !emit(not_connected(tag)).await { return; }
                    }
                }
            }
        }
    }
}

fn not_connected(tag: u64) -> NetEvent {
    NetEvent::Reply {
        tag,
        result: Err(ProtoError::new(ErrorCode::Internal, NOT_CONNECTED)),
    }
}

/// Wait for credentials while offline, failing requests meanwhile.
/// Say the task is offline for `reason`, then wait for new credentials
/// (`None`: shut down, or nobody listens any more).
async fn offline<F, Fut>(
    emit: &F,
    reason: String,
    rx: &mut mpsc::Receiver<NetCommand>,
) -> Option<Credentials>
where
    F: Fn(NetEvent) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !emit(NetEvent::State(ConnState::Offline { reason })).await {
        return None;
    }
    wait_idle(rx).await
}

async fn wait_idle(rx: &mut mpsc::Receiver<NetCommand>) -> Option<Credentials> {
    loop {
        match rx.recv().await? {
            NetCommand::Credentials(c) => return Some(c),
            NetCommand::Shutdown => return None,
            NetCommand::ReconnectNow | NetCommand::Request { .. } => {}
        }
    }
}

/// Serve one authenticated connection until it ends.
async fn connected<E: From<NetEvent> + Send + 'static>(
    conn: Conn,
    config: &NetConfig,
    rx: &mut mpsc::Receiver<NetCommand>,
    events: &mpsc::Sender<E>,
    creds: &mut Option<Credentials>,
) -> Ended {
    let (mut link, mut next_id): (Link, u64) = conn.into_parts();
    let mut tags: HashMap<u64, u64> = HashMap::new();
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    // On the HTTP fallback in `auto`, look now and then whether the
    // WebSocket gets through again.
    let retry_ws = link.is_http() && config.transport == Transport::Auto;
    let mut ws_check = tokio::time::interval_at(Instant::now() + config.ws_retry, config.ws_retry);
    let mut last_heard = Instant::now();
    let ended = loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None | Some(NetCommand::Shutdown) => break Ended::Shutdown,
                Some(NetCommand::ReconnectNow) => {}
                Some(NetCommand::Credentials(c)) => {
                    *creds = Some(c);
                    break Ended::Lost("switching accounts".into());
                }
                Some(NetCommand::Request { tag, req }) => {
                    let id = next_id;
                    next_id += 1;
                    tags.insert(id, tag);
                    if let Err(e) = link.send_text(req.encode(Some(id))).await {
                        break Ended::Lost(e.to_string());
                    }
                }
            },
            msg = link.recv() => {
                last_heard = Instant::now();
                let text = match msg {
                    Incoming::Text(t) => t,
                    Incoming::Keepalive => continue,
                    Incoming::Lost(e) => break Ended::Lost(e),
                    Incoming::Closed(reason) => {
                        let reason = reason.filter(|r| !r.is_empty());
                        if let Some(err) = reason.as_deref().and_then(accounts::session_ended) {
                            break Ended::SessionOver(err);
                        }
                        break Ended::Lost(reason
                            .unwrap_or_else(|| "the server closed the connection".into()));
                    }
                };
                let frame = match ServerFrame::decode(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!("ignoring an unreadable frame: {e}");
                        continue;
                    }
                };
                let ev = match frame {
                    ServerFrame::Ok(ok) => match tags.remove(&ok.id) {
                        Some(tag) => NetEvent::Reply { tag, result: Ok(ok) },
                        None => continue,
                    },
                    ServerFrame::Error(e) => match e.id.and_then(|id| tags.remove(&id)) {
                        Some(tag) => NetEvent::Reply {
                            tag,
                            result: Err(e.into_proto()),
                        },
                        None => {
                            tracing::warn!("server error: {} {}", e.code, e.message);
                            continue;
                        }
                    },
                    push => NetEvent::Push(push),
                };
                if events.send(E::from(ev)).await.is_err() {
                    break Ended::Shutdown;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > config.dead_after {
                    break Ended::Lost("no answer from the server".into());
                }
                if let Err(e) = link.ping().await {
                    break Ended::Lost(e.to_string());
                }
            }
            _ = ws_check.tick(), if retry_ws => {
                if Conn::websocket_opens(&config.server, UPGRADE_WAIT, config.ca_file.as_deref()).await {
                    tracing::info!("the WebSocket gets through again: moving back to it");
                    break Ended::Upgrade;
                }
            }
        }
    };
    // Requests in flight will not be answered on this connection.
    for (_, tag) in tags {
        let _ = events.send(E::from(not_connected(tag))).await;
    }
    link.close().await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            let cap = min.saturating_mul(1 << attempt.min(16)).min(max);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(20, min, max) <= max);
    }

    #[test]
    fn which_handshake_errors_end_the_attempts() {
        let server = |code| ClientError::Server(ProtoError::new(code, "x"));
        let token = Credentials::Token("t".into());
        let login = Credentials::Login {
            username: "a".into(),
            password: "p".into(),
        };
        for code in [
            ErrorCode::AuthFailed,
            ErrorCode::AccountDisabled,
            ErrorCode::InviteRequired,
            ErrorCode::InviteInvalid,
            ErrorCode::RegistrationClosed,
        ] {
            assert!(refused(&server(code), &token), "{code}");
            assert!(refused(&server(code), &login), "{code}");
        }
        // Too many connections: the token is fine, try again later. Too
        // many failed logins: retrying the password only extends the wait.
        assert!(!refused(&server(ErrorCode::RateLimited), &token));
        assert!(refused(&server(ErrorCode::RateLimited), &login));
        assert!(!refused(&server(ErrorCode::Internal), &login));
        assert!(!refused(&ClientError::Timeout, &login));
    }
}
