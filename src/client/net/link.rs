//! What carries a client's frames: a WebSocket, or the HTTP fallback for
//! networks that refuse the upgrade ([`super::http_link`]). Both move the
//! same JSON frames; the rest of the client cannot tell them apart.

use super::conn::{ClientError, ClientWs};
use super::http_link::HttpLink;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The WebSocket, falling back to HTTP when the upgrade is refused or
    /// never answered (and trying the WebSocket again later).
    #[default]
    Auto,
    Ws,
    Http,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Transport::Auto),
            "ws" | "websocket" => Ok(Transport::Ws),
            "http" | "sse" => Ok(Transport::Http),
            other => Err(format!("unknown transport {other:?}: ws, http or auto")),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Auto => "auto",
            Transport::Ws => "ws",
            Transport::Http => "http",
        })
    }
}

/// What a link received.
#[derive(Debug)]
pub enum Incoming {
    /// One frame.
    Text(String),
    /// A ping, a pong or a heartbeat: the server is there.
    Keepalive,
    /// The server closed the link, perhaps saying why.
    Closed(Option<String>),
    /// The link failed.
    Lost(String),
}

/// An open link to the server.
pub enum Link {
    Ws(Box<ClientWs>),
    Http(Box<HttpLink>),
}

impl Link {
    /// Whether this link is the HTTP fallback.
    pub fn is_http(&self) -> bool {
        matches!(self, Link::Http(_))
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        match self {
            Link::Ws(ws) => ws
                .send(Message::Text(text.into()))
                .await
                .map_err(|e| ClientError::Lost(e.to_string())),
            Link::Http(h) => h.send_text(text).await,
        }
    }

    pub async fn recv(&mut self) -> Incoming {
        match self {
            Link::Ws(ws) => match ws.next().await {
                None => Incoming::Closed(None),
                Some(Err(e)) => Incoming::Lost(e.to_string()),
                Some(Ok(Message::Text(t))) => Incoming::Text(t.to_string()),
                Some(Ok(Message::Close(f))) => {
                    Incoming::Closed(f.map(|f| f.reason.to_string()).filter(|r| !r.is_empty()))
                }
                Some(Ok(_)) => Incoming::Keepalive,
            },
            Link::Http(h) => h.recv().await,
        }
    }

    /// Check the link is alive: a WebSocket ping, an HTTP heartbeat.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        match self {
            Link::Ws(ws) => ws
                .send(Message::Ping(Default::default()))
                .await
                .map_err(|e| ClientError::Lost(e.to_string())),
            Link::Http(h) => h.heartbeat().await,
        }
    }

    /// Close politely (within a second).
    pub async fn close(self) {
        match self {
            Link::Ws(mut ws) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), ClientWs::close(&mut ws, None))
                        .await;
            }
            Link::Http(h) => h.close().await,
        }
    }
}
