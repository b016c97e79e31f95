//! The server's transport: one port (TCP, or TLS over it) serving `GET /ws`
//! as a WebSocket upgrade and every other path as plain HTTP.
//!
//! The first request head is read here (bounded in size and time). An
//! upgrade stays on a lean path: the handshake answer is computed with
//! tungstenite's own key derivation and the socket becomes a WebSocket. Any
//! other request is handed, with the bytes already read put back in front
//! ([`Rewind`]), to the HTTP server (hyper) that serves files and health. The client's
//! address is the socket's, or, behind a trusted reverse proxy, the one its
//! `X-Forwarded-For` (or `X-Real-IP`) header names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
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
    /// An upgraded WebSocket, ready for frames, and the client's address.
    WebSocket(Box<WebSocketStream<SockIo<S>>>, IpAddr),
    /// A plain HTTP request, not read yet (its head is in front of the
    /// stream again), and the client's address.
    Http(Rewind<S>, IpAddr),
    /// A plain HTTP request that has been answered.
    Answered,
}

/// A stream with bytes already read from it put back in front.
pub struct Rewind<S> {
    front: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(front: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind {
            front,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.front.len() {
            let n = buf.remaining().min(this.front.len() - this.pos);
            buf.put_slice(&this.front[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.front.len() {
                this.front = Vec::new();
                this.pos = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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
    /// Plain HTTP, for the HTTP server, and the client's address.
    Http(IpAddr),
    /// A valid WebSocket upgrade: the `Sec-WebSocket-Accept` value and the
    /// client's address.
    Upgrade(String, IpAddr),
    BadUpgrade,
    /// An upgrade from a browser page whose origin is not allowed.
    ForbiddenOrigin,
    BadMethod,
    Unparsable,
}

/// Whether an upgrade (or a request of the HTTP fallback) with this `Origin`
/// header may proceed: terminal clients send none; a browser page's origin
/// must be listed.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
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
fn route(head: &[u8], peer: IpAddr, allowed_origins: &[String], proxies: &[IpNet]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Route::Unparsable;
    }
    let path = req.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let client = || {
        let forwarded = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .filter_map(|h| std::str::from_utf8(h.value).ok());
        client_addr(peer, proxies, forwarded, header("x-real-ip"))
    };
    match (req.method.unwrap_or(""), path) {
        ("GET", "/ws") => {
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
                (true, true, true, Some(key)) => {
                    Route::Upgrade(derive_accept_key(key.as_bytes()), client())
                }
                _ => Route::BadUpgrade,
            }
        }
        (_, "/ws") => Route::BadMethod,
        _ => Route::Http(client()),
    }
}

/// Read the request head from `stream` (whose peer is `peer`) and serve it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: IpAddr,
    config: WebSocketConfig,
    timeout: Duration,
    allowed_origins: &[String],
    trusted_proxies: &[IpNet],
) -> Result<Accepted<S>, AcceptError> {
    let mut buf = Vec::with_capacity(512);
    let head_len = tokio::time::timeout(timeout, read_head(&mut stream, &mut buf))
        .await
        .map_err(|_| AcceptError::Timeout)??;
    match route(&buf[..head_len], peer, allowed_origins, trusted_proxies) {
        Route::Http(client) => Ok(Accepted::Http(Rewind::new(buf, stream), client)),
        Route::Upgrade(accept, client) => {
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await?;
            let rest = buf[head_len..].to_vec();
            drop(buf);
            let io = SockIo::new(stream, rest);
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            Ok(Accepted::WebSocket(Box::new(ws), client))
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

/// The client's address. From a peer in `proxies`, the right-most entry of
/// `X-Forwarded-For` (all such headers, in order) that is not itself a
/// trusted proxy, else `X-Real-IP`; from any other peer, the peer. An entry
/// that does not parse ends the walk at the last address known good.
pub fn client_addr<'a>(
    peer: IpAddr,
    proxies: &[IpNet],
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    real_ip: Option<&str>,
) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: IpAddr| proxies.iter().any(|n| n.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let mut hops = forwarded_for
        .rev()
        .flat_map(|h| h.rsplit(',').map(str::trim))
        .filter(|h| !h.is_empty())
        .peekable();
    if hops.peek().is_none() {
        return real_ip.and_then(parse_hop).unwrap_or(peer);
    }
    let mut client = peer;
    for hop in hops {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`) or one address, as
/// `[net] trusted_proxies` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this block (IPv4-mapped IPv6 addresses count as
    /// IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR block (like 10.0.0.0/8)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(s: String) -> Result<IpNet, String> {
        s.parse()
    }
}

impl From<IpNet> for String {
    fn from(n: IpNet) -> String {
        n.to_string()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "x", "::/129", "10.0.0.0/"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        assert_eq!(n.to_string(), "10.1.0.0/16");
        assert_eq!(one.to_string(), "127.0.0.1");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let from = |peer: &str, xff: &[&str], real: Option<&str>| {
            client_addr(ip(peer), &proxies, xff.iter().copied(), real)
        };
        // An untrusted peer: its headers mean nothing.
        assert_eq!(
            from("198.51.100.9", &["1.2.3.4"], Some("5.6.7.8")),
            ip("198.51.100.9")
        );
        // The right-most entry that is not a trusted proxy.
        assert_eq!(from("127.0.0.1", &["1.2.3.4"], None), ip("1.2.3.4"));
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6, 1.2.3.4, 10.0.0.5"], None),
            ip("1.2.3.4"),
            "a client cannot choose its address by sending the header itself"
        );
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6", "1.2.3.4,10.0.0.5"], None),
            ip("1.2.3.4"),
            "several headers are one list"
        );
        assert_eq!(
            from("127.0.0.1", &["10.0.0.7, 10.0.0.5"], None),
            ip("10.0.0.7")
        );
        assert_eq!(
            from("127.0.0.1", &["[2001:db8::1]:443"], None),
            ip("2001:db8::1")
        );
        assert_eq!(from("127.0.0.1", &["1.2.3.4:5678"], None), ip("1.2.3.4"));
        // Garbage ends the walk at the last good hop.
        assert_eq!(from("127.0.0.1", &["1.2.3.4, junk"], None), ip("127.0.0.1"));
        assert_eq!(from("127.0.0.1", &["junk, 10.0.0.5"], None), ip("10.0.0.5"));
        // X-Real-IP when there is no X-Forwarded-For.
        assert_eq!(from("127.0.0.1", &[], Some("9.9.9.9")), ip("9.9.9.9"));
        assert_eq!(from("127.0.0.1", &[], Some("nonsense")), ip("127.0.0.1"));
        assert_eq!(from("127.0.0.1", &[], None), ip("127.0.0.1"));
        assert_eq!(from("::ffff:127.0.0.1", &["1.2.3.4"], None), ip("1.2.3.4"));
    }

    #[test]
    fn the_upgrade_route_carries_the_client_address() {
        let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
        let trusted = nets(&["127.0.0.1"]);
        let Route::Upgrade(_, client) = route(head, ip("127.0.0.1"), &[], &trusted) else {
            panic!("not an upgrade")
        };
        assert_eq!(client, ip("1.2.3.4"));
        let Route::Upgrade(_, client) = route(head, ip("127.0.0.1"), &[], &[]) else {
            panic!("not an upgrade")
        };
        assert_eq!(
            client,
            ip("127.0.0.1"),
            "no trusted proxies: the socket's address"
        );
    }
}
