//! Persistence: the client's local cache and chatd's durable log.
pub mod cache;
