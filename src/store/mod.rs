//! chatd's durable stores: the embedded log (SQLite, group commit) and
//! PostgreSQL, shared by several nodes. The client's local cache
//! lives with the client, in `crate::client::cache`.

pub mod log;
pub mod pg;
