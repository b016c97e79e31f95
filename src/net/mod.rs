//! Transports: the server's HTTP/WebSocket acceptor ([`transport`]) and the
//! client's connections ([`client`]).

pub mod client;
pub mod sockio;
pub mod transport;
