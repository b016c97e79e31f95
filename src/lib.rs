//! chat: a terminal chat client (`chat`) and the server it pairs with (`chatd`).
//!
//! # Architecture
//!
//! ```text
//!   chat (src/main.rs)                         chatd (src/bin/chatd.rs)
//!   ├─ ui      TUI: App state, keys, render     └─ server  listener → one task per
//!   ├─ client  engine: cache-first state,           connection → shared Hub
//!   │          gaps, outbox, CLI, config           ├─ hub      membership, fan-out,
//!   ├─ client::net  the connection task            │           presence, typing
//!   │          (socket, auth, reconnect)           ├─ session  one connection's requests
//!   └─ client::cache  SQLite cache                 └─ store::log  SQLite log, one
//!                                                       writer, group commit
//!              proto: frames, events, error codes, limits (both sides)
//! ```
//!
//! - [`proto`] is the wire protocol, shared by both sides, with the search
//!   query language both sides parse ([`proto::search`]).
//! - [`server`] is chatd: it accepts WebSockets on one port ([`net::transport`]),
//!   authenticates, and turns requests into appends on the [`store::log`];
//!   committed events are fanned out in seq order by the hub.
//! - [`store`] holds chatd's durable log and its search index; [`net`] its
//!   listener and upgrader.
//! - [`client`] is the engine of the `chat` program (connection task, cache,
//!   outbox, CLI); [`ui`] its full-screen screen.
//! - [`private`] makes the files that hold secrets readable by their owner
//!   only, on both sides.

pub mod bench;
pub mod client;
pub mod net;
pub mod private;
pub mod proto;
pub mod server;
pub mod store;
pub mod ui;
