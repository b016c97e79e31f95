//! chatd's durable log (SQLite, group commit), and the rules every write
//! obeys whatever the store ([`rules`]). The client's local cache
//! lives with the client, in `crate::client::cache`.

pub mod log;
pub mod rules;
