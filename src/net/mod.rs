//! The server's transport: TLS when configured ([`tls`]), the
//! HTTP/WebSocket acceptor ([`transport`]) and the socket wrapper under
//! tungstenite ([`sockio`]). The client's connections live in
//! `crate::client::net`.

pub mod sockio;
pub mod tls;
pub mod transport;
