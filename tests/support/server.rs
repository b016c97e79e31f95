//! chatd in this process on loopback, over a temp data dir. It runs on a
//! runtime of its own, so that [`Server::kill`] can drop every task of the
//! server at once (nothing flushed or closed gracefully), and so that plain
//! `#[test]`s can run `chat` subprocesses against it. It stops and starts
//! again on the same data dir and address (and on the same database, when
//! the tests run on PostgreSQL: see [`backend`](super::backend)).

use super::raw::Peer;
use super::{CLIENT_WAIT, WAIT, backend};
use chat::net::tls::ServerTls;
use chat::server::{Config, ServeError, serve_listeners};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a graceful stop may take.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// An in-process chatd.
pub struct Server {
    addr: SocketAddr,
    /// Where `GET /metrics` is served, when `[net] metrics_listen` is set.
    metrics_addr: Option<SocketAddr>,
    dir: PathBuf,
    config: Config,
    tls: Option<ServerTls>,
    _temp: Option<tempfile::TempDir>,
    /// Whether dropping this server (with its temp dir) drops the test
    /// database of its data dir.
    owns_store: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    runtime: Option<Runtime>,
}

impl Server {
    /// Start on `127.0.0.1:0` with the test defaults, over a temp dir of its own.
    pub fn start() -> Server {
        Self::start_with(|_| {})
    }

    /// Like [`Server::start`], with the test defaults changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut config = Config::for_tests(dir.clone());
        backend::apply(&dir, &mut config);
        tweak(&mut config);
        let mut server = Self::launch(dir, config, SocketAddr::from(([127, 0, 0, 1], 0)));
        server._temp = Some(temp);
        server
    }

    /// A node of a cluster: over a temp dir of its own, on the store and bus
    /// `config` names (set by `tweak`), with nothing of the test backend
    /// added; see `support::cluster`.
    pub fn start_node(tweak: impl FnOnce(&mut Config)) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut config = Config::for_tests(dir.clone());
        tweak(&mut config);
        let mut server = Self::launch(dir, config, SocketAddr::from(([127, 0, 0, 1], 0)));
        // The cluster owns the database: dropping a node leaves it.
        server.owns_store = false;
        server._temp = Some(temp);
        server
    }

    /// Like [`Server::start_with`], serving TLS with `tls` (which the test
    /// may reload).
    pub fn start_tls(tls: ServerTls, tweak: impl FnOnce(&mut Config)) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut config = Config::for_tests(dir.clone());
        backend::apply(&dir, &mut config);
        tweak(&mut config);
        let mut server = Self::launch_tls(
            dir,
            config,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(tls),
        );
        server._temp = Some(temp);
        server
    }

    /// Start on `127.0.0.1:0` over `data` (which outlives the server).
    pub fn start_in(data: &Path) -> Server {
        let mut config = Config::for_tests(data.to_path_buf());
        backend::apply(data, &mut config);
        Self::launch(
            data.to_path_buf(),
            config,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
    }

    /// Bind `addr` (with SO_REUSEADDR, retrying for a while: a port just
    /// released may still be busy for a moment) and serve on a new runtime.
    fn launch(dir: PathBuf, config: Config, addr: SocketAddr) -> Server {
        Self::launch_tls(dir, config, addr, None)
    }

    fn launch_tls(
        dir: PathBuf,
        config: Config,
        addr: SocketAddr,
        tls: Option<ServerTls>,
    ) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("chatd-test")
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = {
            let _enter = runtime.enter();
            let deadline = Instant::now() + CLIENT_WAIT;
            loop {
                let bound = tokio::net::TcpSocket::new_v4().and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.bind(addr)?;
                    s.listen(1024)
                });
                match bound {
                    Ok(l) => break l,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("cannot bind {addr}: {e}"),
                }
            }
        };
        let addr = listener.local_addr().expect("local addr");
        let metrics = config.net.metrics_listen.map(|at| {
            let _enter = runtime.enter();
            let l = std::net::TcpListener::bind(at).expect("bind the metrics listener");
            l.set_nonblocking(true).expect("nonblocking");
            tokio::net::TcpListener::from_std(l).expect("metrics listener")
        });
        let metrics_addr = metrics
            .as_ref()
            .map(|l| l.local_addr().expect("metrics addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = serve_listeners(listener, metrics, config.clone(), tls.clone(), async move {
            let _ = stopped.await;
        });
        // A server that stops on its own says why (connections to it are
        // refused from then on).
        let task = runtime.spawn(async move {
            let served = serve.await;
            if let Err(e) = &served {
                eprintln!("chatd at {addr} stopped: {e}");
            }
            served
        });
        let server = Server {
            addr,
            metrics_addr,
            dir,
            config,
            tls,
            _temp: None,
            owns_store: true,
            stop: Some(stop),
            task: Some(task),
            runtime: Some(runtime),
        };
        // On PostgreSQL (and Redis), serve once the database and the bus
        // answer, as a balancer would.
        if server.config.store.url.is_some() {
            server.wait_ready();
        }
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's address (set `[net] metrics_listen` to
    /// `127.0.0.1:0` to have one).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `host:port`, as the client and the `chat` binary take it.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// The WebSocket URL a raw peer connects to.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this server keeps its data in PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.config.store.url.is_some()
    }

    /// How many stored events hold `text` in their body or other data
    /// (read from the database directly).
    pub fn events_containing(&self, text: &str) -> i64 {
        if let Some(url) = &self.config.store.url {
            // Any column of the row: the whole row as text.
            let sql = format!(
                "SELECT count(*) FROM events e WHERE strpos(e::text, '{}') > 0",
                text.replace('\'', "''")
            );
            let rows = backend::run_sql(url, vec![sql]).unwrap_or_else(|e| panic!("{e}"));
            return rows[0][0]
                .as_deref()
                .and_then(|n| n.parse().ok())
                .expect("a count");
        }
        let db = rusqlite::Connection::open(self.dir.join("chatd.db")).expect("open chatd.db");
        db.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        db.query_row(
            "SELECT COUNT(*) FROM events WHERE instr(data, ?1) > 0",
            [text],
            |r| r.get(0),
        )
        .expect("count events")
    }

    /// Wait (at most [`CLIENT_WAIT`]) until `/readyz` answers `200`: the
    /// store and the bus answer. Usable in and out of a runtime.
    pub fn wait_ready(&self) {
        let addr = self.addr;
        let ready = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let deadline = Instant::now() + CLIENT_WAIT;
                loop {
                    let (status, body) = http_request(addr, "GET", "/readyz").await;
                    if status == 200 {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(body);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .join()
        .expect("the readiness probe");
        if let Err(body) = ready {
            panic!("chatd at {addr} not ready within {CLIENT_WAIT:?}: {body}");
        }
    }

    /// Whether the serve task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Graceful stop: close connections, flush the store; `serve` must
    /// return `Ok` within 15 s. The runtime lives on until the server is
    /// dropped or started again, so nothing still closing is cut short.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(STOP_WAIT, task)
                .await
                .expect("serve did not return within 15 s of shutdown")
                .expect("serve task panicked");
            result.expect("serve returned an error");
        }
    }

    /// [`Server::stop`] from a plain (non-async) test.
    pub fn stop_blocking(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to stop the server");
        rt.block_on(self.stop());
    }

    /// Abrupt stop: every task of the server is dropped where it stands;
    /// nothing is flushed or closed gracefully (sockets close as their
    /// owners drop). Committed data must survive this.
    ///
    /// As with a killed process, the server's sockets (its clients', its
    /// database connections) are closed when this returns: the runtime's
    /// tasks are all dropped first. Dropped only in the background, a busy
    /// machine could leave a transaction of the old server open, holding
    /// its locks, while the new one starts.
    pub fn kill(&mut self) {
        self.stop.take();
        self.task.take();
        if let Some(rt) = self.runtime.take() {
            // Blocking work (a read under way) is not waited for long.
            std::thread::spawn(move || rt.shutdown_timeout(Duration::from_millis(500)))
                .join()
                .expect("shut the server's runtime down");
        }
    }

    /// Start again, after a stop or a kill, on the same data dir, address
    /// and configuration.
    pub fn start_again(&mut self) {
        assert!(self.task.is_none(), "the server is still running");
        let next = Self::launch_tls(
            self.dir.clone(),
            self.config.clone(),
            self.addr,
            self.tls.clone(),
        );
        let temp = self._temp.take();
        let owns_store = self.owns_store;
        *self = next;
        self._temp = temp;
        self.owns_store = owns_store;
    }

    /// Stop gracefully, then start again on the same data dir and address.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again();
    }

    /// A connected peer, not yet authenticated.
    pub async fn connect(&self) -> Peer {
        Peer::connect(&self.ws_url()).await
    }

    /// Connect a peer and register a new user on it.
    pub async fn user(&self, name: &str) -> Peer {
        let mut p = self.connect().await;
        p.register(name).await;
        p
    }

    /// Register each of `names`, one peer each.
    pub async fn users<const N: usize>(&self, names: [&str; N]) -> [Peer; N] {
        let mut peers = Vec::with_capacity(N);
        for name in names {
            peers.push(self.user(name).await);
        }
        peers
            .try_into()
            .unwrap_or_else(|_| unreachable!("one peer per name"))
    }

    /// A peer logged in as `name` (registered earlier) with the test password.
    pub async fn login(&self, name: &str) -> Peer {
        let mut p = self.connect().await;
        let r = p.login(name, super::PASSWORD).await;
        assert_eq!(r["type"], "ok", "login {name}: {r}");
        p
    }

    /// Another connection (device) of a registered user.
    pub async fn device(&self, token: &str) -> Peer {
        let mut p = self.connect().await;
        let r = p.auth(token).await;
        assert_eq!(r["type"], "ok", "auth: {r}");
        p
    }

    /// One plain HTTP/1.1 request; returns (status, body).
    pub async fn http(&self, method: &str, path: &str) -> (u16, String) {
        http_request(self.addr, method, path).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        // A server that made its temp dir made its database too; a server
        // being replaced by `start_again` has handed its temp dir on.
        if self._temp.is_some() && self.owns_store {
            backend::release(&self.dir);
        }
    }
}

/// A raw HTTP/1.1 request over TCP; returns (status, body).
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read response");
        let text = String::from_utf8_lossy(&buf).to_string();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("HTTP request timed out")
}

/// An HTTP response as a test reads it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One HTTP/1.1 request with `headers` and `body` (sent with its
/// `Content-Length`), the connection closed after it; the whole response.
pub async fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            && (method == "POST" || !body.is_empty())
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.expect("write head");
        // The server may answer and close before taking all of a body it
        // refuses: that is not the test's failure.
        let _ = s.write_all(body).await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        parse_http(&buf)
    };
    tokio::time::timeout(CLIENT_WAIT, fut)
        .await
        .expect("HTTP exchange timed out")
}

/// Parse a whole HTTP/1.1 response (a body by `Content-Length`, or to the
/// end).
pub fn parse_http(buf: &[u8]) -> HttpReply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    HttpReply {
        status,
        headers,
        body,
    }
}

/// The files stored under a data dir's `files/`, by digest (uploads in
/// progress not counted).
pub fn stored_blobs(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("files"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "tmp")
        .flat_map(|shard| {
            std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|b| b.file_name().to_string_lossy().to_string())
        .collect()
}

/// The sizes of the uploads in progress (temporary files) under a data dir.
pub fn upload_temps(data: &Path) -> Vec<u64> {
    std::fs::read_dir(data.join("files").join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .collect()
}
