//! The `chat` program's client side, which knows no screen: the connection
//! task ([`net`]), the local cache ([`cache`]), end-to-end encryption of
//! secret conversations ([`e2e`]), the engine that keeps the
//! cache equal to the server's log and publishes typed [`Update`]s
//! ([`engine`]), the view model and its text ([`view`], [`text`],
//! [`clock`]), accounts in words ([`accounts`]), configuration,
//! credentials and the command line ([`cli`]).
//!
//! [`spawn`] is the one composition root: the TUI, the command line, the
//! tests and the benchmarks all start an engine through it.

pub mod accounts;
pub mod action;
pub mod attach;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod e2e;
pub mod engine;
pub mod net;
pub mod paths;
pub mod spawn;
pub mod text;
pub mod update;
pub mod view;

pub use action::Action;
pub use spawn::{ClientHandle, ClientOptions, spawn};
pub use update::{HitSource, Update};
