//! Headless clients: the real network task and engine (through
//! `chat::client::spawn::spawn_on`), with a model the test can poll as the
//! UI would render it, and faults injected between the network task and the
//! engine (dropped, duplicated, reordered pushes).

use super::{CLIENT_WAIT, PASSWORD, wait_until};
use chat::client::credentials::TokenStore;
use chat::client::engine::{Input, Privacy};
use chat::client::net::{Credentials, NetConfig, NetEvent, task};
use chat::client::paths::Paths;
use chat::client::view::{ConnState, MessageRow};
use chat::client::{ClientOptions, Update};
use chat::ui::{Action, Model};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// What happens to pushed events between the network task and the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Drop pushed events whose seq is in the set (any conversation). The
    /// first event forwarded after a drop is followed by a 700 ms pause, so
    /// the gap it reveals stays on screen long enough to be seen.
    DropSeqs(&'static [u64]),
    /// Deliver every pushed event twice.
    Duplicate,
    /// Hold pushed events and release them in reverse order, in groups of
    /// this many (the rest released when nothing else arrives for 300 ms).
    Reverse(usize),
}

/// A headless client: the real network task and engine; the model is what
/// the UI would show.
pub struct Client {
    pub model: Arc<Mutex<Model>>,
    /// Set once any published model showed a gap (a `Missing` row or a
    /// conversation with `has_gap`).
    pub saw_gap: Arc<std::sync::atomic::AtomicBool>,
    pub actions: mpsc::UnboundedSender<Action>,
    /// The engine's updates that are events rather than state (focus
    /// requests, acknowledgements, refusals, syncs, incoming messages), in
    /// order.
    pub log: Arc<Mutex<Vec<Update>>>,
    pub data: PathBuf,
    pub server: String,
    engine: Option<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A quick-reconnecting network configuration.
pub fn net_config(server: &str) -> NetConfig {
    let mut c = NetConfig::new(server, "test");
    c.backoff_min = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(300);
    c.connect_timeout = Duration::from_secs(5);
    c
}

impl Client {
    /// Start a client with its data (cache, token file) in `data`.
    pub fn start(server: &str, data: &Path, creds: Option<Credentials>, fault: Fault) -> Client {
        Self::start_with(
            net_config(server),
            data,
            creds,
            fault,
            None,
            Privacy::default(),
        )
    }

    /// Start a client with the network settings `net`.
    pub fn start_net(net: NetConfig, data: &Path, creds: Option<Credentials>) -> Client {
        Self::start_with(net, data, creds, Fault::None, None, Privacy::default())
    }

    /// Log `user` in with the privacy settings `privacy`.
    pub fn login_private(server: &str, data: &Path, user: &str, privacy: Privacy) -> Client {
        let creds = Credentials::Login {
            username: user.into(),
            password: PASSWORD.into(),
        };
        Self::start_with(
            net_config(server),
            data,
            Some(creds),
            Fault::None,
            None,
            privacy,
        )
    }

    /// Like [`Client::start`], with the cache of `me` opened up front, as
    /// the TUI does (cache first, before the network connects).
    fn start_with(
        net_settings: NetConfig,
        data: &Path,
        creds: Option<Credentials>,
        fault: Fault,
        me: Option<&str>,
        privacy: Privacy,
    ) -> Client {
        let server = net_settings.server.clone();
        let tokens = TokenStore::file_only(data.join("credentials.toml"));
        let paths = Paths::new(data.to_path_buf());
        let (engine_tx, engine_rx) = mpsc::channel::<Input>(1024);
        let mut tasks = Vec::new();
        let net = if fault == Fault::None {
            task::spawn(net_settings.clone(), creds.clone(), engine_tx)
        } else {
            let (net_tx, net_rx) = mpsc::channel::<NetEvent>(1024);
            tasks.push(tokio::spawn(inject(fault, net_rx, engine_tx)));
            task::spawn(net_settings.clone(), creds.clone(), net_tx)
        };
        let mut opts =
            ClientOptions::interactive(net_settings, me.map(str::to_string), creds, tokens, paths);
        opts.privacy = privacy;
        opts.downloads = Some(data.join("downloads"));
        let client = chat::client::spawn::spawn_on(opts, net, engine_rx);
        let model = Arc::new(Mutex::new(Model {
            server: server.to_string(),
            ..Model::default()
        }));
        let m = model.clone();
        let saw_gap = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gap = saw_gap.clone();
        let mut updates = client.updates;
        let log: Arc<Mutex<Vec<Update>>> = Arc::default();
        let events = log.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(batch) = updates.recv().await {
                let mut m = m.lock().unwrap();
                for u in batch {
                    if matches!(
                        u,
                        Update::Focus(_)
                            | Update::Acked { .. }
                            | Update::Refused { .. }
                            | Update::Synced
                            | Update::Incoming(_)
                            | Update::Transfer(_)
                            | Update::FileReady { .. }
                            | Update::SearchHits { .. }
                            | Update::SearchEnded { .. }
                            | Update::Devices(_)
                            | Update::Verification(_)
                            | Update::VerificationFailed { .. }
                            | Update::Identity { .. }
                    ) && let Ok(mut log) = events.lock()
                    {
                        log.push(u.clone());
                    }
                    m.apply(u, std::time::Instant::now());
                }
                if m.conversations.iter().any(|c| c.has_gap)
                    || m.messages.values().any(|rows| has_missing(rows))
                {
                    gap.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
        let engine = client.task;
        let action_tx = client.actions;
        Client {
            model,
            saw_gap,
            actions: action_tx,
            log,
            data: data.to_path_buf(),
            server: server.to_string(),
            engine: Some(engine),
            tasks,
        }
    }

    /// Register `user` and start.
    pub fn register(server: &str, data: &Path, user: &str) -> Client {
        let creds = Credentials::Register {
            username: user.into(),
            password: PASSWORD.into(),
            invite: None,
        };
        Self::start(server, data, Some(creds), Fault::None)
    }

    pub fn login(server: &str, data: &Path, user: &str, fault: Fault) -> Client {
        let creds = Credentials::Login {
            username: user.into(),
            password: PASSWORD.into(),
        };
        Self::start(server, data, Some(creds), fault)
    }

    /// Start again with the token stored by an earlier run in the same
    /// dir, the cache opened before connecting (as the TUI starts).
    pub fn resume(server: &str, data: &Path, user: &str) -> Client {
        let tokens = TokenStore::file_only(data.join("credentials.toml"));
        let (token, _) = tokens.load(user, server).expect("a stored token");
        Self::start_with(
            net_config(server),
            data,
            Some(Credentials::Token(token)),
            Fault::None,
            Some(user),
            Privacy::default(),
        )
    }

    pub fn act(&self, a: Action) {
        self.actions.send(a).expect("engine running");
    }

    /// Whether the engine has published an update matching `f`.
    pub fn logged(&self, f: impl Fn(&Update) -> bool) -> bool {
        self.log.lock().unwrap().iter().any(f)
    }

    /// Read the updates logged so far.
    pub fn with_log<T>(&self, f: impl FnOnce(&[Update]) -> T) -> T {
        f(&self.log.lock().unwrap())
    }

    pub fn with<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        f(&self.model.lock().unwrap())
    }

    pub fn connected(&self) -> bool {
        self.with(|m| m.conn == ConnState::Connected && !m.me.is_empty())
    }

    pub async fn wait_connected(&self) {
        assert!(
            wait_until(CLIENT_WAIT, || self.connected()).await,
            "client never connected: {:?}",
            self.with(|m| m.conn.clone())
        );
    }

    /// Wait until `cond` holds on the model; panic with `what` otherwise.
    pub async fn wait(&self, what: &str, cond: impl Fn(&Model) -> bool) {
        let ok = wait_until(CLIENT_WAIT, || self.with(&cond)).await;
        assert!(ok, "timed out waiting for: {what}");
    }

    /// Focus `conv` and wait until its rows satisfy `cond`.
    pub async fn wait_rows(&self, conv: &str, what: &str, cond: impl Fn(&[MessageRow]) -> bool) {
        let ok = wait_until(CLIENT_WAIT, || self.with(|m| cond(m.rows(conv)))).await;
        assert!(
            ok,
            "timed out waiting for rows of {conv}: {what}; rows: {}; model: me={:?} conn={:?} notice={:?} conversations={:?}",
            self.with(|m| describe_rows(m.rows(conv))),
            self.with(|m| m.me.clone()),
            self.with(|m| m.conn.clone()),
            self.with(|m| m.notice.clone()),
            self.with(|m| m
                .conversations
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>()),
        );
    }

    /// Ask the engine to quit and wait for it (bounded).
    pub async fn stop(mut self) {
        let _ = self.actions.send(Action::Quit);
        if let Some(e) = self.engine.take() {
            let _ = tokio::time::timeout(CLIENT_WAIT, e).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.abort();
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// Forward network events to the engine, mangling pushed events per `fault`.
async fn inject(fault: Fault, mut rx: mpsc::Receiver<NetEvent>, tx: mpsc::Sender<Input>) {
    let mut held: Vec<NetEvent> = Vec::new();
    let mut just_dropped = false;
    loop {
        let next = if held.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                Ok(ev) => ev,
                Err(_) => {
                    for ev in held.drain(..).rev() {
                        if tx.send(Input::Net(ev)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            }
        };
        let Some(ev) = next else { return };
        let is_event = matches!(&ev, NetEvent::Push(chat::proto::ServerFrame::Event(_)));
        if !is_event {
            if tx.send(Input::Net(ev)).await.is_err() {
                return;
            }
            continue;
        }
        match fault {
            Fault::None => {
                if tx.send(Input::Net(ev)).await.is_err() {
                    return;
                }
            }
            Fault::DropSeqs(seqs) => {
                if let NetEvent::Push(chat::proto::ServerFrame::Event(e)) = &ev
                    && seqs.contains(&e.seq)
                {
                    just_dropped = true;
                    continue;
                }
                if tx.send(Input::Net(ev)).await.is_err() {
                    return;
                }
                if std::mem::take(&mut just_dropped) {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
            }
            Fault::Duplicate => {
                if tx.send(Input::Net(ev.clone())).await.is_err()
                    || tx.send(Input::Net(ev)).await.is_err()
                {
                    return;
                }
            }
            Fault::Reverse(n) => {
                held.push(ev);
                if held.len() >= n {
                    for ev in held.drain(..).rev() {
                        if tx.send(Input::Net(ev)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Seqs of the rows that are messages or system lines, in display order.
pub fn row_seqs(rows: &[MessageRow]) -> Vec<u64> {
    rows.iter()
        .filter_map(|r| match r {
            MessageRow::Message(m) => m.seq,
            MessageRow::System { seq, .. } => Some(*seq),
            MessageRow::Missing { .. } => None,
        })
        .collect()
}

/// Bodies of the acknowledged message rows, in display order.
pub fn row_bodies(rows: &[MessageRow]) -> Vec<String> {
    rows.iter()
        .filter_map(|r| match r {
            MessageRow::Message(m) if m.seq.is_some() => Some(m.body.clone()),
            _ => None,
        })
        .collect()
}

pub fn has_missing(rows: &[MessageRow]) -> bool {
    rows.iter().any(|r| matches!(r, MessageRow::Missing { .. }))
}

pub fn describe_rows(rows: &[MessageRow]) -> String {
    let parts: Vec<String> = rows
        .iter()
        .map(|r| match r {
            MessageRow::Message(m) => format!("{:?}:{}", m.seq, m.body),
            MessageRow::System {
                seq,
                sender,
                change,
                ..
            } => format!(
                "{seq}:[{}]",
                chat::client::text::system_line(sender, change)
            ),
            MessageRow::Missing { from, to } => format!("<missing {from}..={to}>"),
        })
        .collect();
    let n = parts.len();
    if n > 12 {
        format!(
            "{} rows: {} … {}",
            n,
            parts[..6].join(", "),
            parts[n - 6..].join(", ")
        )
    } else {
        parts.join(", ")
    }
}
