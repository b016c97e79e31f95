//! One client connection: connect, handshake, request/reply, pushes.
//!
//! Used directly by the command line and the load generator, and by the
//! reconnecting [`super::task`] for each of its attempts.

use super::http_link::HttpLink;
use super::link::{Incoming, Link, Transport};
use crate::proto::{
    AuthOk, ErrorCode, OkFrame, PROTOCOL_VERSION, ProtoError, Request, ServerFrame,
};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub type ClientWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Token(String),
    Login {
        username: String,
        password: String,
    },
    Register {
        username: String,
        password: String,
        invite: Option<String>,
    },
}

impl std::fmt::Debug for Credentials {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(…)"),
            Credentials::Login { username, .. } => write!(f, "Login({username})"),
            Credentials::Register { username, .. } => write!(f, "Register({username})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("the server closed the connection{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("{0}")]
    Server(ProtoError),
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
    #[error(
        "refusing to send a password or token in cleartext to {0}: use wss:// (or pass --insecure, or set insecure = true, to allow ws://)"
    )]
    Insecure(String),
    /// The TLS handshake failed: a refused certificate, or a server that
    /// does not speak TLS. Retrying does not help until something changes.
    #[error("cannot connect securely to {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("cannot use the CA file: {0}")]
    CaFile(String),
}

impl ClientError {
    /// Whether the server refused the credentials themselves.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, ClientError::Server(e) if matches!(e.code, ErrorCode::AuthFailed | ErrorCode::UsernameTaken | ErrorCode::InvalidArgument))
    }
}

/// Whether `host` (a URL's host, with or without its port) is this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() > 1 {
        host
    } else {
        host.split(':').next().unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host (with port) of a `ws://` URL, when it is not this machine:
/// credentials sent there would cross a network in cleartext.
pub fn cleartext_remote(url: &str) -> Option<String> {
    let rest = url.strip_prefix("ws://")?;
    let host = rest.split('/').next().unwrap_or(rest);
    (!is_loopback(host)).then(|| host.to_string())
}

/// Why a connection failed, in one line: for an HTTP refusal, with the
/// first line the server gave as the reason (cleaned and cut short).
fn connect_reason(e: &tokio_tungstenite::tungstenite::Error) -> String {
    if let tokio_tungstenite::tungstenite::Error::Http(response) = e
        && let Some(body) = response.body()
        && let Some(line) = String::from_utf8_lossy(body)
            .lines()
            .map(crate::client::text::clean)
            .find(|l| !l.trim().is_empty())
    {
        return format!("{e} ({})", truncate(line.trim()));
    }
    e.to_string()
}

/// The `host:port` of a URL.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Normalize a server address: `host:port`, `http://…` or `ws://…`, with or
/// without the `/ws` path. A bare address is `ws://` on this machine and
/// `wss://` anywhere else.
pub fn ws_url(server: &str) -> String {
    let s = server.trim().trim_end_matches('/');
    let s = if let Some(rest) = s.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = s.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if s.starts_with("ws://") || s.starts_with("wss://") {
        s.to_string()
    } else if is_loopback(s.split('/').next().unwrap_or(s)) {
        format!("ws://{s}")
    } else {
        format!("wss://{s}")
    };
    let after_scheme = s.split_once("://").map(|(_, r)| r).unwrap_or(&s);
    if after_scheme.contains('/') {
        s
    } else {
        format!("{s}/ws")
    }
}

/// How much the client reads from its socket at once. tungstenite zeroes
/// the free part of its read buffer (up to this much) before every read;
/// at the library's default of 128 KiB that was about a tenth of the
/// work of reading a small push. A frame larger than this is read in several
/// chunks into a buffer reserved for its whole length.
pub const READ_CHUNK: usize = 8 * 1024;

/// The URL of a webhook whose path the server gave, on the server this
/// client talks to: `http://` for `ws://`, `https://` for `wss://`.
pub fn hook_url(server: &str, path: &str) -> String {
    let ws = ws_url(server);
    let (scheme, rest) = ws.split_once("://").unwrap_or(("ws", &ws));
    let host = rest.split('/').next().unwrap_or(rest);
    let scheme = if scheme == "wss" { "https" } else { "http" };
    format!("{scheme}://{host}{path}")
}

/// The client's WebSocket settings: frames up to the protocol's hard cap,
/// read in chunks of [`READ_CHUNK`].
pub fn client_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .max_message_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(16 * 1024 * 1024))
}

/// A connected (and possibly authenticated) client.
pub struct Conn {
    link: Link,
    next_id: u64,
    pushes: VecDeque<ServerFrame>,
    timeout: Duration,
}

/// Why a WebSocket could not be opened, and whether the HTTP fallback
/// might get through where it did not.
struct WsFailure {
    error: ClientError,
    /// The upgrade was refused or never answered: something between here
    /// and the server may be stripping it.
    blocked: bool,
}

/// Open a WebSocket to `url`.
async fn open_ws(
    url: &str,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<ClientWs, WsFailure> {
    let connector = if url.starts_with("wss://") {
        let config = super::tls::client_config(ca_file).map_err(|e| WsFailure {
            error: ClientError::CaFile(e),
            blocked: false,
        })?;
        Some(Connector::Rustls(config))
    } else {
        None
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(client_ws_config()),
        true,
        connector,
    );
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(WsFailure {
            error: ClientError::Connect {
                url: url.to_string(),
                reason: "timed out".into(),
            },
            blocked: true,
        }),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => {
            use tokio_tungstenite::tungstenite::Error as E;
            if let Some(reason) = super::tls::handshake_failure(&e) {
                return Err(WsFailure {
                    error: ClientError::Tls {
                        host: url_host(url).to_string(),
                        reason,
                    },
                    blocked: false,
                });
            }
            // An HTTP answer that is not the upgrade, or an upgrade the
            // handshake could not complete: a proxy in the way.
            let blocked = matches!(e, E::Http(_) | E::Protocol(_));
            Err(WsFailure {
                error: ClientError::Connect {
                    url: url.to_string(),
                    reason: connect_reason(&e),
                },
                blocked,
            })
        }
    }
}

/// How long the WebSocket's upgrade may take, in `auto`, before the HTTP
/// fallback is tried.
pub const UPGRADE_WAIT: Duration = Duration::from_secs(5);

impl Conn {
    /// Open a WebSocket to `server` (see [`ws_url`]). A cleartext `ws://`
    /// URL to another machine is refused unless `insecure`.
    pub async fn connect(
        server: &str,
        timeout: Duration,
        insecure: bool,
    ) -> Result<Conn, ClientError> {
        Conn::connect_with_ca(server, timeout, insecure, None).await
    }

    /// [`Conn::connect`], trusting for `wss://` the certificates in
    /// `ca_file` besides the platform's roots.
    pub async fn connect_with_ca(
        server: &str,
        timeout: Duration,
        insecure: bool,
        ca_file: Option<&Path>,
    ) -> Result<Conn, ClientError> {
        Conn::connect_via(server, timeout, insecure, ca_file, Transport::Ws).await
    }

    /// Connect over `transport`: in `auto`, the WebSocket, and the HTTP
    /// fallback if the upgrade is refused or not answered within
    /// [`UPGRADE_WAIT`].
    pub async fn connect_via(
        server: &str,
        timeout: Duration,
        insecure: bool,
        ca_file: Option<&Path>,
        transport: Transport,
    ) -> Result<Conn, ClientError> {
        let url = ws_url(server);
        if let Some(host) = cleartext_remote(&url)
            && !insecure
        {
            return Err(ClientError::Insecure(host));
        }
        let link = match transport {
            Transport::Ws => Link::Ws(Box::new(
                open_ws(&url, timeout, ca_file).await.map_err(|f| f.error)?,
            )),
            Transport::Http => Link::Http(Box::new(
                HttpLink::connect(&url, timeout, insecure, ca_file).await?,
            )),
            Transport::Auto => match open_ws(&url, timeout.min(UPGRADE_WAIT), ca_file).await {
                Ok(ws) => Link::Ws(Box::new(ws)),
                Err(f) if f.blocked => {
                    tracing::info!("WebSocket refused ({}); trying HTTP", f.error);
                    Link::Http(Box::new(
                        HttpLink::connect(&url, timeout, insecure, ca_file).await?,
                    ))
                }
                Err(f) => return Err(f.error),
            },
        };
        Ok(Conn {
            link,
            next_id: 1,
            pushes: VecDeque::new(),
            timeout,
        })
    }

    /// Whether a WebSocket to `server` opens now (and closes it again): for
    /// a client on the HTTP fallback, to learn when to move back.
    pub async fn websocket_opens(server: &str, timeout: Duration, ca_file: Option<&Path>) -> bool {
        match open_ws(&ws_url(server), timeout, ca_file).await {
            Ok(mut ws) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                true
            }
            Err(_) => false,
        }
    }

    /// Whether this connection is the HTTP fallback.
    pub fn is_http(&self) -> bool {
        self.link.is_http()
    }

    /// Authenticate; returns who we are and (for login/register) the token.
    pub async fn handshake(
        &mut self,
        creds: &Credentials,
        device: &str,
    ) -> Result<AuthOk, ClientError> {
        let req = match creds {
            Credentials::Token(token) => Request::Auth {
                token: token.clone(),
            },
            Credentials::Login { username, password } => Request::Login {
                username: username.clone(),
                password: password.clone(),
                device: Some(device.to_string()),
            },
            Credentials::Register {
                username,
                password,
                invite,
            } => Request::Register {
                username: username.clone(),
                password: password.clone(),
                device: Some(device.to_string()),
                invite: invite.clone(),
            },
        };
        let ok: AuthOk = self
            .request(&req)
            .await?
            .parse()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if ok.protocol != PROTOCOL_VERSION {
            tracing::warn!(
                "server speaks protocol {}, this client {}",
                ok.protocol,
                PROTOCOL_VERSION
            );
        }
        Ok(ok)
    }

    /// Send a request and wait for its reply; pushes that arrive meanwhile
    /// are kept for [`Conn::next_push`].
    pub async fn request(&mut self, req: &Request) -> Result<OkFrame, ClientError> {
        let id = self.send(req).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.read_frame())
                .await
                .map_err(|_| ClientError::Timeout)??;
            match frame {
                ServerFrame::Ok(ok) if ok.id == id => return Ok(ok),
                ServerFrame::Error(e) if e.id == Some(id) || e.id.is_none() => {
                    return Err(ClientError::Server(e.into_proto()));
                }
                ServerFrame::Ok(_) | ServerFrame::Error(_) => {}
                push => {
                    if self.pushes.len() < 100_000 {
                        self.pushes.push_back(push);
                    }
                }
            }
        }
    }

    /// Send a request without waiting; returns its id.
    pub async fn send(&mut self, req: &Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.link.send_text(req.encode(Some(id))).await?;
        Ok(id)
    }

    /// The next push (or reply to a request sent with [`Conn::send`]).
    pub async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        if let Some(p) = self.pushes.pop_front() {
            return Ok(p);
        }
        self.read_frame().await
    }

    /// The next server push, skipping replies.
    pub async fn next_push(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.next_frame().await? {
                ServerFrame::Ok(_) | ServerFrame::Error(_) => continue,
                push => return Ok(push),
            }
        }
    }

    async fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            match self.link.recv().await {
                Incoming::Closed(reason) => return Err(ClientError::Closed(reason)),
                Incoming::Lost(e) => return Err(ClientError::Lost(e)),
                Incoming::Text(text) => {
                    return ServerFrame::decode(&text)
                        .map_err(|e| ClientError::Protocol(format!("{e}: {}", truncate(&text))));
                }
                Incoming::Keepalive => continue,
            }
        }
    }

    /// Close politely.
    pub async fn close(self) {
        self.link.close().await;
    }

    /// The link, for the reconnecting task.
    pub(super) fn into_parts(self) -> (Link, u64) {
        (self.link, self.next_id)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_remote_addresses_use_tls_and_cleartext_is_only_for_this_machine() {
        assert_eq!(ws_url("chat.example.org"), "wss://chat.example.org/ws");
        assert_eq!(ws_url("10.0.0.5:7878"), "wss://10.0.0.5:7878/ws");
        assert_eq!(ws_url("localhost:7878"), "ws://localhost:7878/ws");
        assert_eq!(ws_url("[::1]:7878"), "ws://[::1]:7878/ws");
        assert_eq!(
            cleartext_remote("ws://chat.example.org:7878/ws").as_deref(),
            Some("chat.example.org:7878")
        );
        assert_eq!(cleartext_remote("ws://127.0.0.1:7878/ws"), None);
        assert_eq!(cleartext_remote("ws://127.8.9.1/ws"), None);
        assert_eq!(cleartext_remote("ws://[::1]:1/ws"), None);
        assert_eq!(cleartext_remote("wss://chat.example.org/ws"), None);
    }

    #[tokio::test]
    async fn credentials_never_go_to_a_remote_host_in_cleartext() {
        // Refused before any connection is attempted (the address is never
        // dialled: nothing leaves this machine).
        let r = Conn::connect(
            "ws://chat.example.invalid:7878",
            Duration::from_secs(1),
            false,
        )
        .await;
        assert!(matches!(r, Err(ClientError::Insecure(_))), "{:?}", r.err());
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(ws_url("127.0.0.1:7878"), "ws://127.0.0.1:7878/ws");
        assert_eq!(ws_url("http://h:1/"), "ws://h:1/ws");
        assert_eq!(
            hook_url("127.0.0.1:7000", "/hooks/a/b"),
            "http://127.0.0.1:7000/hooks/a/b"
        );
        assert_eq!(
            hook_url("ws://h:1/ws", "/hooks/a/b"),
            "http://h:1/hooks/a/b"
        );
        assert_eq!(
            hook_url("chat.example.org:443", "/hooks/a/b"),
            "https://chat.example.org:443/hooks/a/b"
        );
        assert_eq!(hook_url("wss://h/ws", "/hooks/a/b"), "https://h/hooks/a/b");
        assert_eq!(
            ws_url("https://chat.example.org"),
            "wss://chat.example.org/ws"
        );
        assert_eq!(ws_url("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(ws_url("wss://h/custom/ws"), "wss://h/custom/ws");
    }

    #[test]
    fn credentials_never_print_secrets() {
        let c = Credentials::Login {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Token("sekrit".into())).contains("sekrit"));
    }
}
