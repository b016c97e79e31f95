//! The client side of the transport: a single connection ([`conn`]) and the
//! long-lived reconnecting task ([`task`]) the TUI runs on.

pub mod conn;
pub mod task;

pub use conn::{ClientError, Conn, Credentials, ws_url};
pub use task::{NetCommand, NetConfig, NetEvent, NetHandle};
