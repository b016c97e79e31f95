//! Test harness for the client: an in-process chatd on loopback over a temp
//! dir (restartable on the same dir and port, gracefully or abruptly), raw
//! protocol connections to prepare data and read the server's log, headless
//! clients (network task + engine + a model the test can poll), and bounded
//! waits. Shared by `tests/client.rs`, `tests/cli.rs` and `tests/tui.rs`;
//! each uses a part of it.
#![allow(dead_code)]

use chat::client::credentials::TokenStore;
use chat::client::engine::Input;
use chat::client::net::{Conn, Credentials, NetConfig, NetEvent, task};
use chat::client::paths::Paths;
use chat::client::view::{ConnState, MessageRow};
use chat::client::{ClientOptions, Update};
use chat::proto::{
    ConvKind, Conversation, ConversationOk, ConversationsOk, Event, EventBody, HistoryOk, Request,
};
use chat::server::Config;
use chat::ui::{Action, Model};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);
pub const PASSWORD: &str = "correct horse battery";

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An in-process chatd. It runs on its own runtime (its own threads) so
/// that [`Server::kill`] can drop every task at once, without the graceful
/// path, and so that plain `#[test]`s can run subprocesses against it.
pub struct Server {
    pub addr: SocketAddr,
    pub data: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    done: Option<oneshot::Receiver<()>>,
}

impl Server {
    /// Start on `127.0.0.1:0` over `data`.
    pub fn start(data: &Path) -> Server {
        Self::start_on(data, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Start on `addr` (with SO_REUSEADDR, retrying the bind for a while:
    /// a port just released may still be busy for a moment).
    pub fn start_on(data: &Path, addr: SocketAddr) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("chatd-test")
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = {
            let _enter = runtime.enter();
            let deadline = Instant::now() + WAIT;
            loop {
                let bound = tokio::net::TcpSocket::new_v4().and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.bind(addr)?;
                    s.listen(1024)
                });
                match bound {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("cannot bind {addr}: {e}"),
                }
            }
        };
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        let config = Config::for_tests(data.to_path_buf());
        runtime.spawn(async move {
            let r = chat::server::serve(listener, config, async {
                let _ = rx.await;
            })
            .await;
            if let Err(e) = r {
                eprintln!("chatd stopped with an error: {e}");
            }
            let _ = done_tx.send(());
        });
        Server {
            addr,
            data: data.to_path_buf(),
            shutdown: Some(tx),
            runtime: Some(runtime),
            done: Some(done_rx),
        }
    }

    /// `host:port` for clients.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// Graceful stop: close connections, flush the store (bounded).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(WAIT, done).await;
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Graceful stop from a plain (non-async) test.
    pub fn stop_blocking(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let (Some(done), Some(rt)) = (self.done.take(), self.runtime.as_ref()) {
            let _ = rt.block_on(async { tokio::time::timeout(WAIT, done).await });
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Abrupt stop: every task of the server is dropped where it stands;
    /// nothing is flushed or closed gracefully (sockets close as their
    /// owners drop). Committed data must survive this.
    pub fn kill(mut self) {
        self.shutdown.take();
        self.done.take();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A raw protocol connection for preparing data and reading the log.
pub struct Raw {
    pub user: String,
    pub token: String,
    pub conn: Conn,
}

impl Raw {
    pub async fn register(server: &str, user: &str) -> Raw {
        Self::auth(
            server,
            Credentials::Register {
                username: user.into(),
                password: PASSWORD.into(),
            },
        )
        .await
    }

    pub async fn login(server: &str, user: &str) -> Raw {
        Self::auth(
            server,
            Credentials::Login {
                username: user.into(),
                password: PASSWORD.into(),
            },
        )
        .await
    }

    async fn auth(server: &str, creds: Credentials) -> Raw {
        let go = async {
            let mut conn = Conn::connect(server, Duration::from_secs(5)).await?;
            let ok = conn.handshake(&creds, "raw").await?;
            Ok::<_, chat::client::net::ClientError>((conn, ok))
        };
        let (conn, ok) = tokio::time::timeout(WAIT, go)
            .await
            .expect("auth timed out")
            .expect("auth failed");
        Raw {
            user: ok.user,
            token: ok.token.unwrap_or_default(),
            conn,
        }
    }

    pub async fn request(&mut self, req: Request) -> chat::proto::OkFrame {
        tokio::time::timeout(WAIT, self.conn.request(&req))
            .await
            .expect("request timed out")
            .unwrap_or_else(|e| panic!("{} failed: {e}", req.type_name()))
    }

    pub async fn create(&mut self, kind: ConvKind, name: Option<&str>, members: &[&str]) -> String {
        let ok: ConversationOk = self
            .request(Request::Create {
                kind,
                name: name.map(str::to_string),
                members: members.iter().map(|m| m.to_string()).collect(),
            })
            .await
            .parse()
            .expect("conversation reply");
        ok.conversation.id
    }

    pub async fn send(&mut self, conv: &str, body: &str) -> u64 {
        let ok: chat::proto::AppendOk = self
            .request(Request::Send {
                conversation_id: conv.into(),
                client_msg_id: uuid_like(),
                body: body.into(),
                reply_to: None,
            })
            .await
            .parse()
            .expect("append reply");
        ok.seq
    }

    pub async fn conversations(&mut self) -> Vec<Conversation> {
        let ok: ConversationsOk = self
            .request(Request::Conversations {})
            .await
            .parse()
            .expect("conversations reply");
        ok.conversations
    }

    /// The whole log of `conv`, paged, as the server has it.
    pub async fn history(&mut self, conv: &str) -> Vec<Event> {
        let mut all: Vec<Event> = Vec::new();
        loop {
            let after = all.last().map(|e| e.seq).unwrap_or(0);
            let h: HistoryOk = self
                .request(Request::History {
                    conversation_id: conv.into(),
                    after: Some(after),
                    before: None,
                    limit: Some(500),
                })
                .await
                .parse()
                .expect("history reply");
            if h.events.is_empty() {
                return all;
            }
            all.extend(h.events);
        }
    }

    /// Poll the message bodies of `conv` until `cond` holds or `timeout`
    /// passes; returns the last bodies seen and whether `cond` held.
    pub async fn wait_bodies(
        &mut self,
        conv: &str,
        timeout: Duration,
        cond: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let bodies = self.bodies(conv).await;
            if cond(&bodies) {
                return (bodies, true);
            }
            if Instant::now() >= deadline {
                return (bodies, false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Bodies of the messages in `conv`'s log, in seq order.
    pub async fn bodies(&mut self, conv: &str) -> Vec<String> {
        message_bodies(&self.history(conv).await)
    }
}

pub fn message_bodies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "raw-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

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
        Self::start_with(server, data, creds, fault, None)
    }

    /// Like [`Client::start`], with the cache of `me` opened up front, as
    /// the TUI does (cache first, before the network connects).
    fn start_with(
        server: &str,
        data: &Path,
        creds: Option<Credentials>,
        fault: Fault,
        me: Option<&str>,
    ) -> Client {
        let tokens = TokenStore::file_only(data.join("credentials.toml"));
        let paths = Paths::new(data.to_path_buf());
        let (engine_tx, engine_rx) = mpsc::channel::<Input>(1024);
        let mut tasks = Vec::new();
        let net = if fault == Fault::None {
            task::spawn(net_config(server), creds.clone(), engine_tx)
        } else {
            let (net_tx, net_rx) = mpsc::channel::<NetEvent>(1024);
            tasks.push(tokio::spawn(inject(fault, net_rx, engine_tx)));
            task::spawn(net_config(server), creds.clone(), net_tx)
        };
        let opts = ClientOptions::interactive(
            net_config(server),
            me.map(str::to_string),
            creds,
            tokens,
            paths,
        );
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
            server,
            data,
            Some(Credentials::Token(token)),
            Fault::None,
            Some(user),
        )
    }

    pub fn act(&self, a: Action) {
        self.actions.send(a).expect("engine running");
    }

    /// Whether the engine has published an update matching `f`.
    pub fn logged(&self, f: impl Fn(&Update) -> bool) -> bool {
        self.log.lock().unwrap().iter().any(f)
    }

    pub fn with<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        f(&self.model.lock().unwrap())
    }

    pub fn connected(&self) -> bool {
        self.with(|m| m.conn == ConnState::Connected && !m.me.is_empty())
    }

    pub async fn wait_connected(&self) {
        assert!(
            wait_until(WAIT, || self.connected()).await,
            "client never connected: {:?}",
            self.with(|m| m.conn.clone())
        );
    }

    /// Wait until `cond` holds on the model; panic with `what` otherwise.
    pub async fn wait(&self, what: &str, cond: impl Fn(&Model) -> bool) {
        let ok = wait_until(WAIT, || self.with(&cond)).await;
        assert!(ok, "timed out waiting for: {what}");
    }

    /// Focus `conv` and wait until its rows satisfy `cond`.
    pub async fn wait_rows(&self, conv: &str, what: &str, cond: impl Fn(&[MessageRow]) -> bool) {
        let ok = wait_until(WAIT, || self.with(|m| cond(m.rows(conv)))).await;
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
            let _ = tokio::time::timeout(WAIT, e).await;
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

/// A home for one user of the `chat` binary: XDG config/data dirs and HOME
/// in a temp dir, the keyring disabled.
pub struct Home {
    pub root: PathBuf,
    pub server: String,
}

/// What a `chat` subprocess did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// How long one `chat` command may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

impl Home {
    pub fn new(root: PathBuf, server: &str) -> Home {
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        Home {
            root,
            server: server.to_string(),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The token file the client falls back to without a keyring.
    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir().join("chat").join("credentials.toml")
    }

    /// The environment a `chat` process of this home runs with.
    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            (
                "XDG_CONFIG_HOME".into(),
                self.config_dir().display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                self.data_dir().display().to_string(),
            ),
            ("HOME".into(), self.root.display().to_string()),
            ("CHAT_NO_KEYRING".into(), "1".into()),
        ]
    }

    /// A `chat` command for this home, not started.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chat"));
        cmd.arg("--server").arg(&self.server).args(args);
        cmd.env_remove("CHAT_SERVER")
            .env_remove("CHAT_USER")
            .env_remove("RUST_LOG")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR");
        for (k, v) in self.envs() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run `chat --server S ARGS` with `stdin`, bounded by [`CLI_TIMEOUT`].
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            let _ = input.write_all(text.as_bytes());
        }
        drop(input);
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(CLI_TIMEOUT) {
            Ok(out) => out.expect("wait for chat"),
            Err(_) => {
                // SAFETY: kill(2) on the pid of our own child.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                panic!("chat {args:?} did not finish within {CLI_TIMEOUT:?}");
            }
        };
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and insist on exit code 0.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let r = self.run(args, stdin);
        assert_eq!(r.code, 0, "chat {args:?} failed: {r:?}");
        r
    }

    /// `register USER --password-stdin`.
    pub fn register(&self, user: &str) -> Ran {
        self.ok(
            &["register", user, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
    }
}
