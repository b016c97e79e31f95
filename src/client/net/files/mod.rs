//! Files over HTTP on chatd's port: `POST /files` up, `GET /files/{digest}`
//! down (see PROTOCOL.md, "Files").
//!
//! The connection is made the way the WebSocket's is: the same host and
//! port, cleartext for `ws://` (and refused to another machine unless
//! insecure), TLS for `wss://` with exactly the WebSocket's trust settings.
//! One request per connection, through hyper's HTTP/1 client.
//!
//! Both directions stream in constant memory: an upload reads its file in
//! chunks into the request body; a download writes each chunk to a partial
//! file beside its target, which is synced, checked against the digest and
//! only then renamed into place. A partial file left by an interrupted
//! download is resumed with `Range` from its size. A transfer that makes no
//! progress for [`IDLE`] (by default) ends with a timeout.

use super::conn::{cleartext_remote, ws_url};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

mod download;
#[cfg(test)]
mod tests;

pub use download::{Downloaded, Resume, content_range_start, partial_path, range_header};

/// Bytes read from a file (or written to one) at a time.
const CHUNK: usize = 64 * 1024;
/// A transfer that moves no byte for this long is given up.
pub const IDLE: Duration = Duration::from_secs(30);
/// Connecting (TCP and TLS) may take this long.
const CONNECT: Duration = Duration::from_secs(15);
/// How long a server may take to refuse an upload from its head.
const PROBE: Duration = Duration::from_secs(3);
/// Largest error or answer body read.
const MAX_REPLY: usize = 4096;

/// Why a transfer failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the server refused the session token (401): log in again (`chat login`)")]
    Unauthorized,
    #[error("the server refused: the account is deactivated (403)")]
    Forbidden,
    #[error(
        "no such file here (404): it was deleted, or it is not shared in a conversation you belong to"
    )]
    NotFound,
    #[error("the file is larger than this server accepts (413)")]
    TooLarge,
    #[error(
        "over your storage quota on this server (507): delete files you shared, or ask an admin"
    )]
    Quota,
    #[error("too many uploads in progress for this account (429): wait for one to finish")]
    Busy,
    #[error("the server refused the transfer ({status}){}", if .message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused { status: u16, message: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("cannot connect securely to {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error(
        "refusing to send the session token in cleartext to {0}: use wss:// (or pass --insecure)"
    )]
    Insecure(String),
    #[error("cannot use the CA file: {0}")]
    CaFile(String),
    #[error("the connection was lost during the transfer ({0}); run it again to resume")]
    Lost(String),
    #[error("timed out: the server sent or took nothing for {} s", .0.as_secs_f32())]
    Timeout(Duration),
    #[error("the downloaded bytes do not match the file's digest; they were removed")]
    DigestMismatch,
    #[error("unexpected answer from the server: {0}")]
    BadReply(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl TransferError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TransferError + '_ {
        move |source| TransferError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether trying again later could help (the network, a busy server).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransferError::Connect { .. }
                | TransferError::Lost(_)
                | TransferError::Timeout(_)
                | TransferError::Busy
        )
    }
}

/// What the server answered to an upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Uploaded {
    pub digest: String,
    pub size: u64,
}

/// A stream to the server, cleartext or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Body = BoxBody<Bytes, std::io::Error>;

/// Where files go and come from: chatd's HTTP side, with a session token.
#[derive(Clone)]
pub struct FileClient {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    authority: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    token: String,
    /// A transfer that moves nothing for this long is given up.
    idle: Duration,
}

impl std::fmt::Debug for FileClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl FileClient {
    /// A client for `server` (as the WebSocket takes it), authenticating
    /// with `token`.
    pub fn new(
        server: &str,
        token: String,
        insecure: bool,
        ca_file: Option<&Path>,
    ) -> Result<FileClient, TransferError> {
        let url = ws_url(server);
        if let Some(host) = cleartext_remote(&url)
            && !insecure
        {
            return Err(TransferError::Insecure(host));
        }
        let secure = url.starts_with("wss://");
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest).to_string();
        let (host, port) = split_host_port(&authority, if secure { 443 } else { 80 });
        let tls = if secure {
            let config = super::tls::client_config(ca_file).map_err(TransferError::CaFile)?;
            let name = ServerName::try_from(host.clone()).map_err(|e| TransferError::Tls {
                host: host.clone(),
                reason: e.to_string(),
            })?;
            Some((config, name))
        } else {
            None
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(FileClient {
            addr,
            authority,
            tls,
            token,
            idle: IDLE,
        })
    }

    /// The `Host` header's value.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// The same client, giving up after `idle` without progress.
    pub fn with_idle(self, idle: Duration) -> FileClient {
        FileClient { idle, ..self }
    }

    /// A new connection to the server (TCP, and TLS for `wss://`).
    pub(crate) async fn connect(&self) -> Result<Box<dyn Io>, TransferError> {
        let connect_err = |reason: String| TransferError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(CONNECT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some((config, name)) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tls = tokio::time::timeout(CONNECT, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| connect_err("timed out during the TLS handshake".into()))?
            .map_err(|e| TransferError::Tls {
                host: self.authority.clone(),
                reason: super::tls::io_failure(&e).unwrap_or_else(|| e.to_string()),
            })?;
        Ok(Box::new(tls))
    }

    /// Send one request on a connection of its own.
    async fn exchange(&self, req: Request<Body>) -> Result<Response<Incoming>, TransferError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| TransferError::Lost(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("file transfer connection: {e}");
            }
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| TransferError::Lost(lost_reason(&e)))
    }

    fn request(&self, method: hyper::Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(
                header::USER_AGENT,
                concat!("chat/", env!("CARGO_PKG_VERSION")),
            )
    }

    /// Upload the `size` bytes of `path`, whose SHA-256 is `digest` (hex).
    /// `progress` counts the bytes sent.
    pub async fn upload(
        &self,
        path: &Path,
        digest: &str,
        size: u64,
        progress: &watch::Sender<u64>,
    ) -> Result<Uploaded, TransferError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(TransferError::io(path))?;
        let counter = progress.clone();
        let chunks = futures_util::stream::unfold((file, 0u64), move |(mut file, sent)| {
            let counter = counter.clone();
            async move {
                let mut buf = vec![0u8; CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        let sent = sent + n as u64;
                        counter.send_replace(sent);
                        Some((Ok(Frame::data(Bytes::from(buf))), (file, sent)))
                    }
                    Err(e) => Some((Err(e), (file, sent))),
                }
            }
        });
        let req = self
            .request(hyper::Method::POST, "/files")
            .header(header::CONTENT_LENGTH, size)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("x-content-sha256", digest)
            .body(StreamBody::new(chunks).boxed())
            .map_err(|e| TransferError::BadReply(e.to_string()))?;
        let resp = match stall_guard(self.idle, progress.subscribe(), self.exchange(req)).await {
            Ok(resp) => resp,
            // A server that refuses an upload from its head (too large,
            // over quota, busy) answers before reading the body and closes;
            // the body still being written, the answer is lost on the way.
            // Asking again with the head alone hears it.
            Err(TransferError::Lost(why)) => {
                return Err(self
                    .refusal_of_head(digest, size)
                    .await
                    .unwrap_or(TransferError::Lost(why)));
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        let body = read_small(resp.into_body()).await?;
        if status != StatusCode::CREATED && status != StatusCode::OK {
            return Err(refusal(status, &body));
        }
        let up: Uploaded = serde_json::from_slice(&body)
            .map_err(|e| TransferError::BadReply(format!("upload answer: {e}")))?;
        if !up.digest.eq_ignore_ascii_case(digest) || up.size != size {
            return Err(TransferError::BadReply(format!(
                "the server stored {} bytes as {}, not {size} bytes as {digest}",
                up.size, up.digest
            )));
        }
        Ok(up)
    }

    /// The refusal an upload of `size` bytes gets from its head alone: the
    /// request is sent without its body, and an answer that does not come
    /// within [`PROBE`] means the head was accepted.
    async fn refusal_of_head(&self, digest: &str, size: u64) -> Option<TransferError> {
        let never = futures_util::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
        let req = self
            .request(hyper::Method::POST, "/files")
            .header(header::CONTENT_LENGTH, size)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("x-content-sha256", digest)
            .body(StreamBody::new(never).boxed())
            .ok()?;
        let resp = tokio::time::timeout(PROBE, self.exchange(req))
            .await
            .ok()?
            .ok()?;
        let status = resp.status();
        if status.is_success() {
            return None;
        }
        let body = read_small(resp.into_body()).await.unwrap_or_default();
        Some(refusal(status, &body))
    }
}

/// Run `work` while `progress` keeps moving; a pause of `idle` ends it.
async fn stall_guard<T>(
    idle: Duration,
    mut progress: watch::Receiver<u64>,
    work: impl Future<Output = Result<T, TransferError>>,
) -> Result<T, TransferError> {
    let watchdog = async move {
        loop {
            match tokio::time::timeout(idle, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => std::future::pending::<()>().await,
                Err(_) => return,
            }
        }
    };
    tokio::select! {
        r = work => r,
        () = watchdog => Err(TransferError::Timeout(idle)),
    }
}

/// At most [`MAX_REPLY`] bytes of a small answer.
async fn read_small(mut body: Incoming) -> Result<Vec<u8>, TransferError> {
    let idle = IDLE;
    let mut out = Vec::new();
    while out.len() < MAX_REPLY {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| TransferError::Timeout(idle))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| TransferError::Lost(lost_reason(&e)))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data[..data.len().min(MAX_REPLY - out.len())]);
        }
    }
    Ok(out)
}

/// The error for a refusing status, with the server's first line.
fn refusal(status: StatusCode, body: &[u8]) -> TransferError {
    match status {
        StatusCode::UNAUTHORIZED => TransferError::Unauthorized,
        StatusCode::FORBIDDEN => TransferError::Forbidden,
        StatusCode::NOT_FOUND => TransferError::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => TransferError::TooLarge,
        StatusCode::INSUFFICIENT_STORAGE => TransferError::Quota,
        StatusCode::TOO_MANY_REQUESTS => TransferError::Busy,
        _ => {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().map(str::trim).find(|l| !l.is_empty());
            let line = crate::client::text::clean(line.unwrap_or(""));
            TransferError::Refused {
                status: status.as_u16(),
                message: line.chars().take(200).collect(),
            }
        }
    }
}

fn lost_reason(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "the server closed the connection mid-transfer".into()
    } else {
        e.to_string()
    }
}

/// Whether `s` is 64 hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `host` and port of an authority (`[::1]:7878`, `example.org`).
fn split_host_port(authority: &str, default_port: u16) -> (String, u16) {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return (host.to_string(), port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            (host.to_string(), port.parse().unwrap_or(default_port))
        }
        _ => (authority.to_string(), default_port),
    }
}
