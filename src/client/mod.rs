//! The `chat` program's engine: cache-first state, sync with no silent gaps,
//! the outbox, configuration, credentials and the command line.

pub mod cli;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod paths;
pub mod start;
pub mod view;
