//! The client side of the transport: a single connection ([`conn`]), the
//! certificates it trusts ([`tls`]), the long-lived reconnecting task
//! ([`task`]) every engine runs on, and a health probe.

pub mod conn;
pub mod files;
mod http_link;
pub mod link;
pub mod task;
pub mod tls;

pub use conn::{ClientError, Conn, Credentials, hook_url, ws_url};
pub use link::Transport;
pub use task::{NetCommand, NetConfig, NetEvent, NetHandle};

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether a chatd answers `/healthz` at `addr` (`host:port`).
pub async fn healthy(addr: &str) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        // The embedded server says `ok`; a node on PostgreSQL reports its
        // store and bus, with a status of `ok` when it can serve.
        Some(
            text.starts_with("HTTP/1.1 200")
                && (text.ends_with("ok") || text.contains(r#""status":"ok""#)),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(true))
    )
}
