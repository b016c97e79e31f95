//! chatd's durable stores: the embedded log (SQLite, group commit) and
//! PostgreSQL, shared by several nodes, behind one [`Store`]; and the rules
//! every write obeys whatever the store ([`rules`]). The client's local
//! cache lives with the client, in `crate::client::cache`.

mod backend;
mod keyrows;
pub mod log;
pub mod pg;
pub mod rules;

pub use backend::{Kind, Readers, Store, kind_of, redact};
