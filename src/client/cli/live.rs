//! A command on the engine: the same client the TUI runs (connection task,
//! cache, engine), with a cache in memory and catch-up limited to what the
//! command follows. It rides through lost connections and restarts of the
//! server; only refused credentials end it.

use super::{Exit, Failure};
use crate::client::config::Loaded;
use crate::client::credentials::TokenStore;
use crate::client::engine::{CatchUp, Privacy};
use crate::client::net::{Credentials, NetConfig};
use crate::client::paths::Paths;
use crate::client::spawn::CacheChoice;
use crate::client::view::ConnState;
use crate::client::{Action, ClientHandle, ClientOptions, Update, spawn};
use std::collections::VecDeque;
use std::time::Duration;

/// Longest wait between two connection attempts of a command.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub(super) struct Live {
    client: ClientHandle,
    queue: VecDeque<Update>,
    /// Whether the connection was up at the last state change (for the
    /// "reconnecting" line on standard error).
    was_connected: bool,
}

impl Live {
    /// Start a client as `user` with the stored `token`.
    pub(super) fn start(loaded: &Loaded, user: &str, token: String) -> Live {
        let server = loaded.config.server.clone();
        let mut net = NetConfig::new(&server, &loaded.config.device);
        net.backoff_max = BACKOFF_MAX;
        net.insecure = loaded.config.insecure;
        net.ca_file = loaded.config.ca_file.clone();
        net.transport = loaded.config.transport;
        let client = spawn(ClientOptions {
            net,
            user: Some(user.to_string()),
            credentials: Some(Credentials::Token(token)),
            // A token from the environment is never stored, nor forgotten.
            tokens: match crate::client::credentials::env_token() {
                Some(t) => TokenStore::fixed(t),
                None => TokenStore::new(TokenStore::default_file()),
            },
            paths: Paths::default(),
            cache: CacheChoice::InMemory,
            catch_up: CatchUp::Watched,
            privacy: Privacy {
                typing: loaded.config.privacy.send_typing,
                read_receipts: loaded.config.privacy.send_read_receipts,
            },
            downloads: None,
        });
        Live {
            client,
            queue: VecDeque::new(),
            was_connected: false,
        }
    }

    pub(super) fn act(&self, action: Action) {
        // A closed channel means the engine is gone; `next` reports that.
        let _ = self.client.actions.send(action);
    }

    /// The next update. Connection changes are said on standard error;
    /// refused credentials end the command.
    pub(super) async fn next(&mut self) -> Result<Update, Failure> {
        loop {
            if let Some(u) = self.queue.pop_front() {
                match &u {
                    Update::AuthFailed { message } => {
                        return Err(Failure::new(
                            Exit::Auth,
                            format!(
                                "the server refused the stored session ({message}): run `chat login`"
                            ),
                        ));
                    }
                    Update::Conn(state) => self.on_state(state),
                    _ => {}
                }
                return Ok(u);
            }
            match self.client.updates.recv().await {
                Some(batch) => self.queue.extend(batch),
                None => return Err(Failure::new(Exit::Failure, "the client stopped")),
            }
        }
    }

    fn on_state(&mut self, state: &ConnState) {
        match state {
            ConnState::Connected => {
                if !self.was_connected {
                    tracing::info!("connected");
                }
                self.was_connected = true;
            }
            ConnState::Reconnecting { reason, .. } if self.was_connected => {
                eprintln!("chat: connection lost ({reason}); reconnecting");
                self.was_connected = false;
            }
            _ => {}
        }
    }

    /// The updates already received and not yet taken with
    /// [`Live::next`]: the rest of the batch the last one came in.
    pub(super) fn queued(&self) -> impl Iterator<Item = &Update> {
        self.queue.iter()
    }

    /// Wait until the first sync is applied, at most `timeout`.
    pub(super) async fn synced(&mut self, timeout: Duration) -> Result<(), Failure> {
        let wait = async {
            loop {
                if let Update::Synced = self.next().await? {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Exit::Unreachable,
                format!("no answer from the server within {}s", timeout.as_secs()),
            )),
        }
    }

    /// Stop the engine (bounded).
    pub(super) async fn stop(self) {
        let _ = self.client.actions.send(Action::Quit);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.task).await;
    }
}
