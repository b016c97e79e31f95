//! Persistence: chatd's durable log and the client's local cache.

pub mod cache;
pub mod log;
