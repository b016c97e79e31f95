//! The server's transport: one port (TCP, or TLS over it) serving `GET /healthz` as plain HTTP
//! and `GET /ws` as a WebSocket upgrade.
//!
//! The HTTP request head is read here (bounded in size and time) so that both
//! routes share the port without a web framework; the WebSocket handshake
//! answer is computed with tungstenite's own key derivation.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::sockio::SockIo;

/// Largest HTTP request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// What an accepted connection turned out to be.
pub enum Accepted<S> {
    /// An upgraded WebSocket, ready for frames.
    WebSocket(Box<WebSocketStream<SockIo<S>>>),
    /// A plain HTTP request that has been answered.
    Answered,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out reading the request")]
    Timeout,
    #[error("bad request: {0}")]
    Bad(&'static str),
}

/// The WebSocket settings chatd uses, from its frame limit.
pub fn ws_config(hard_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(64)
        .write_buffer_size(0)
        // Data frames bypass tungstenite's writer (see `SockIo::queue_text`);
        // only control frames pass through it.
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(hard_frame_bytes))
        .max_frame_size(Some(hard_frame_bytes))
}

/// Where a request head leads.
enum Route {
    Health,
    /// A valid WebSocket upgrade; the `Sec-WebSocket-Accept` value.
    Upgrade(String),
    BadUpgrade,
    /// An upgrade from a browser page whose origin is not allowed.
    ForbiddenOrigin,
    BadMethod,
    NotFound,
    Unparsable,
}

/// Whether an upgrade with this `Origin` header may proceed: terminal clients
/// send none; a browser page's origin must be listed.
fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(o) => {
            let o = o.trim().trim_end_matches('/');
            allowed
                .iter()
                .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        }
    }
}

/// Parse a complete request head. Synchronous, so that the parser's header
/// array never lives in a connection task's state.
fn route(head: &[u8], allowed_origins: &[String]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Route::Unparsable;
    }
    let path = req.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    match (req.method.unwrap_or(""), path) {
        ("GET", "/healthz") | ("HEAD", "/healthz") => Route::Health,
        ("GET", "/ws") => {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
            };
            let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            let connection = header("connection").is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            });
            let version = header("sec-websocket-version") == Some("13");
            if !origin_allowed(header("origin"), allowed_origins) {
                return Route::ForbiddenOrigin;
            }
            match (upgrade, connection, version, header("sec-websocket-key")) {
                (true, true, true, Some(key)) => Route::Upgrade(derive_accept_key(key.as_bytes())),
                _ => Route::BadUpgrade,
            }
        }
        (_, "/ws") | (_, "/healthz") => Route::BadMethod,
        _ => Route::NotFound,
    }
}

/// Read the request head from `stream` and serve it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    config: WebSocketConfig,
    timeout: Duration,
    allowed_origins: &[String],
) -> Result<Accepted<S>, AcceptError> {
    let mut buf = Vec::with_capacity(512);
    let head_len = tokio::time::timeout(timeout, read_head(&mut stream, &mut buf))
        .await
        .map_err(|_| AcceptError::Timeout)??;
    match route(&buf[..head_len], allowed_origins) {
        Route::Health => {
            respond(&mut stream, "200 OK", "ok").await?;
            Ok(Accepted::Answered)
        }
        Route::Upgrade(accept) => {
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await?;
            let rest = buf[head_len..].to_vec();
            drop(buf);
            let io = SockIo::new(stream, rest);
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            Ok(Accepted::WebSocket(Box::new(ws)))
        }
        Route::BadUpgrade => {
            respond(
                &mut stream,
                "400 Bad Request",
                "expected a WebSocket upgrade (version 13)\n",
            )
            .await?;
            Err(AcceptError::Bad("not a websocket upgrade"))
        }
        Route::ForbiddenOrigin => {
            respond(
                &mut stream,
                "403 Forbidden",
                "this origin may not open a connection (see [net] allowed_origins)\n",
            )
            .await?;
            Err(AcceptError::Bad("browser origin not allowed"))
        }
        Route::Unparsable => {
            respond(&mut stream, "400 Bad Request", "bad request\n").await?;
            Err(AcceptError::Bad("unparsable request head"))
        }
        Route::BadMethod => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "method not allowed\n",
            )
            .await?;
            Ok(Accepted::Answered)
        }
        Route::NotFound => {
            respond(&mut stream, "404 Not Found", "not found\n").await?;
            Ok(Accepted::Answered)
        }
    }
}

/// Read until the end of the request head; returns its length.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, AcceptError> {
    loop {
        let start = buf.len().saturating_sub(3);
        buf.reserve(512);
        let n = stream.read_buf(buf).await?;
        if n == 0 {
            return Err(AcceptError::Bad(
                "connection closed before the request head",
            ));
        }
        // Not HTTP at all (a TLS handshake, a stray protocol): say so now
        // rather than wait for a head that will never come.
        if !buf[0].is_ascii_uppercase() {
            let _ = respond(
                stream,
                "400 Bad Request",
                "expected HTTP (is this a TLS client on a plain port?)\n",
            )
            .await;
            return Err(AcceptError::Bad("not an HTTP request"));
        }
        if let Some(pos) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(start + pos + 4);
        }
        if buf.len() > MAX_HEAD {
            let _ = respond(stream, "431 Request Header Fields Too Large", "too large\n").await;
            return Err(AcceptError::Bad("request head too large"));
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}
