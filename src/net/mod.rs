//! Transports: the server's listener-side HTTP/WebSocket acceptor and the
//! client's connection task.

pub mod transport;
