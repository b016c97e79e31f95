//! A deliberately light protocol client for the generator: connect from a
//! chosen source address, JSON requests for set-up, and a tiny parse of the
//! few fields the hot path needs.

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type Ws = WebSocketStream<TcpStream>;

/// How long one set-up request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The password of every generated user.
pub const PASSWORD: &str = "bench-password";

/// The fields of a server frame the hot path reads; everything else is
/// skipped by the parser.
#[derive(Debug, Deserialize)]
pub struct Hot<'a> {
    #[serde(rename = "type", borrow)]
    pub ty: Cow<'a, str>,
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default, borrow)]
    pub body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
}

impl<'a> Hot<'a> {
    pub fn parse(text: &'a str) -> Option<Hot<'a>> {
        serde_json::from_str(text).ok()
    }
}

/// Small buffers: the generator may hold tens of thousands of connections.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite zero-fills this much before every read: keep it near
        // the size of a push.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

/// Source address number `i` of `spread`: 127.0.0.1, 127.0.0.2, … so that
/// many connections do not run out of ephemeral ports on one address.
pub fn source(i: usize, spread: usize) -> IpAddr {
    let n = (i % spread.clamp(1, 250)) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n))
}

/// Source addresses for set-up connections (registration), apart from the
/// measured ones (127.0.1.1…): a port chatd still holds in TIME_WAIT from a
/// closed set-up connection is then never reused by a measured connection
/// (such a SYN can be answered late and cost a one-second retransmit).
pub fn setup_source(i: usize, spread: usize) -> IpAddr {
    let n = (i % spread.clamp(1, 250)) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + n))
}

/// Open a WebSocket to chatd at `addr` from `src`.
pub async fn connect(addr: &str, src: IpAddr) -> anyhow::Result<Ws> {
    connect_with(addr, src, ws_config()).await
}

/// [`connect`] with these WebSocket settings (the client's, for members
/// that read like the client).
pub async fn connect_with(addr: &str, src: IpAddr, config: WebSocketConfig) -> anyhow::Result<Ws> {
    let target: SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {addr}"))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src, 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(15), socket.connect(target))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/ws");
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)),
    )
    .await
    .context("websocket handshake timed out")??;
    Ok(ws)
}

/// A connection used for set-up: requests with ids, replies as JSON.
pub struct Client {
    pub ws: Ws,
    next_id: u64,
}

/// A request refused by the server.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refused {
    pub code: String,
    pub message: String,
}

impl Client {
    pub fn new(ws: Ws) -> Client {
        Client { ws, next_id: 1 }
    }

    /// The id the next [`Client::send`] will use.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Send `req` with the next id; returns the id.
    pub async fn send(&mut self, mut req: Value) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        self.ws.send(Message::Text(req.to_string().into())).await?;
        Ok(id)
    }

    /// Send `req` and wait for its reply, skipping pushes.
    pub async fn call(&mut self, req: Value) -> anyhow::Result<Value> {
        let id = self.send(req).await?;
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("request timed out")?;
            let text = match msg {
                None => bail!("connection closed"),
                Some(Err(e)) => bail!("connection lost: {e}"),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
                Some(Ok(_)) => continue,
            };
            let Some(hot) = Hot::parse(text.as_str()) else {
                continue;
            };
            if hot.id != Some(id) {
                continue;
            }
            let v: Value = serde_json::from_str(text.as_str())?;
            if hot.ty == "ok" {
                return Ok(v);
            }
            return Err(Refused {
                code: v["code"].as_str().unwrap_or("?").to_string(),
                message: v["message"].as_str().unwrap_or("").to_string(),
            }
            .into());
        }
    }
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub token: String,
}

/// Register `name`; returns the authenticated connection and the user.
pub async fn register(addr: &str, src: IpAddr, name: &str) -> anyhow::Result<(Client, User)> {
    register_with(addr, src, name, ws_config()).await
}

/// [`register`] over a WebSocket with these settings.
pub async fn register_with(
    addr: &str,
    src: IpAddr,
    name: &str,
    config: WebSocketConfig,
) -> anyhow::Result<(Client, User)> {
    let mut c = Client::new(connect_with(addr, src, config).await?);
    let request =
        json!({"type": "register", "username": name, "password": PASSWORD, "device": "bench"});
    // As a client does: a server whose database is busy past its timeouts
    // answers `unavailable`, and the request is made again a little later.
    // An `unavailable` answer can come after the commit, when the database
    // was slow to confirm it: a retry that finds the name taken logs in.
    let (retried, registered) = retrying(&mut c, &request).await;
    let ok = match registered {
        Err(e) if retried && format!("{e:#}").contains("username_taken") => {
            let login =
                json!({"type": "login", "username": name, "password": PASSWORD, "device": "bench"});
            retrying(&mut c, &login)
                .await
                .1
                .with_context(|| format!("log in as {name} after a retried registration"))?
        }
        r => r.with_context(|| format!("register {name}"))?,
    };
    let token = ok["token"].as_str().context("no token")?.to_string();
    Ok((
        c,
        User {
            name: name.to_string(),
            token,
        },
    ))
}

/// `request` on `c`, made again (up to 8 times, backing off) while the
/// answer is `unavailable`; and whether it was made more than once.
async fn retrying(c: &mut Client, request: &Value) -> (bool, anyhow::Result<Value>) {
    let mut attempt = 0;
    loop {
        match c.call(request.clone()).await {
            Err(e) if attempt < 8 && format!("{e:#}").contains("unavailable") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            r => return (attempt > 0, r),
        }
    }
}

/// Connect and authenticate with a token.
pub async fn auth(addr: &str, src: IpAddr, token: &str) -> anyhow::Result<Client> {
    let mut c = Client::new(connect(addr, src).await?);
    c.call(json!({"type": "auth", "token": token})).await?;
    Ok(c)
}

/// Register `names` with up to `concurrency` at once, user `i` on node
/// `addrs[i % addrs.len()]`; keeps each connection
/// when `keep`, else closes it. Returns users (and connections) in order.
pub async fn register_many(
    addrs: &[String],
    names: Vec<String>,
    concurrency: usize,
    spread: usize,
    keep: bool,
) -> anyhow::Result<Vec<(Option<Client>, User)>> {
    register_many_with(addrs, names, concurrency, spread, keep, ws_config()).await
}

/// [`register_many`] over WebSockets with these settings.
pub async fn register_many_with(
    addrs: &[String],
    names: Vec<String>,
    concurrency: usize,
    spread: usize,
    keep: bool,
    config: WebSocketConfig,
) -> anyhow::Result<Vec<(Option<Client>, User)>> {
    let t0 = Instant::now();
    let n = names.len();
    let results: Vec<anyhow::Result<(Option<Client>, User)>> =
        stream::iter(names.into_iter().enumerate())
            .map(|(i, name)| async move {
                let addr = &addrs[i % addrs.len()];
                let (c, u) = register_with(addr, setup_source(i, spread), &name, config).await?;
                if keep {
                    Ok((Some(c), u))
                } else {
                    let mut ws = c.ws;
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    Ok((None, u))
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
    tracing::debug!("registered {n} users in {:?}", t0.elapsed());
    results.into_iter().collect()
}

/// Authenticate every token, up to `concurrency` at once, in order, spread
/// over the nodes as [`register_many`] does.
pub async fn auth_many(
    addrs: &[String],
    tokens: &[String],
    concurrency: usize,
    spread: usize,
) -> anyhow::Result<Vec<Client>> {
    let results: Vec<anyhow::Result<Client>> = stream::iter(tokens.iter().enumerate())
        .map(|(i, t)| async move { auth(&addrs[i % addrs.len()], source(i, spread), t).await })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Microseconds since `epoch`.
pub fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}
