//! chatd through a real WebSocket: every invariant of the design, one module
//! per area. chatd runs in process on `127.0.0.1:0` (see `support`).

mod support;

#[path = "server/handshake.rs"]
mod handshake;

#[path = "server/conversations.rs"]
mod conversations;

#[path = "server/log.rs"]
mod log;

#[path = "server/catchup.rs"]
mod catchup;

#[path = "server/ephemeral.rs"]
mod ephemeral;

#[path = "server/authz.rs"]
mod authz;

#[path = "server/bad_input.rs"]
mod bad_input;

#[path = "server/robustness.rs"]
mod robustness;

#[path = "server/docs.rs"]
mod docs;

#[path = "server/accounts.rs"]
mod accounts;

#[path = "server/private_files.rs"]
mod private_files;

#[path = "server/hostile.rs"]
mod hostile;

#[path = "server/roles.rs"]
mod roles;

#[path = "server/retention.rs"]
mod retention;

#[path = "server/throttle.rs"]
mod throttle;

#[path = "server/paging.rs"]
mod paging;

#[path = "server/bots.rs"]
mod bots;
#[path = "server/files.rs"]
mod files;
#[path = "server/metrics.rs"]
mod metrics;
#[path = "server/search.rs"]
mod search;

#[path = "server/e2e.rs"]
mod e2e;
#[path = "server/http_stream.rs"]
mod http_stream;
#[path = "server/webhooks.rs"]
mod webhooks;
