//! chatd's durable log (SQLite, group commit). The client's local cache
//! lives with the client, in `crate::client::cache`.

pub mod log;
