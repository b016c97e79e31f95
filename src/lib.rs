//! chat: a terminal chat client (`chat`) and the server it pairs with (`chatd`).
//!
//! # Architecture
//!
//! ```text
//!   chat (src/main.rs)                         chatd (src/bin/chatd.rs)
//!   ├─ ui      TUI: App state, keys, render     └─ server  listener → one task per
//!   ├─ client  engine: cache-first state,           connection → shared Hub
//!   │          gaps, outbox, CLI, config           ├─ hub      membership, fan-out,
//!   ├─ net::client  the connection task            │           presence, typing
//!   │          (socket, auth, reconnect)           ├─ session  one connection's requests
//!   └─ store::cache  SQLite cache                  └─ store::log  SQLite log, one
//!                                                       writer, group commit
//!              proto: frames, events, error codes, limits (both sides)
//! ```
//!
//! - [`proto`] is the wire protocol, shared by both sides.
//! - [`server`] is chatd: it accepts WebSockets on one port ([`net::transport`]),
//!   authenticates, and turns requests into appends on the [`store::log`];
//!   committed events are fanned out in seq order by the hub.
//! - [`store`] holds persistence: chatd's durable log and the client's cache.
//! - [`net`] holds both transports: the server's listener/upgrader and the
//!   client's connection task.
//! - [`client`] and [`ui`] are the `chat` program.

pub mod bench;
pub mod client;
pub mod net;
pub mod proto;
pub mod server;
pub mod store;
pub mod ui;
