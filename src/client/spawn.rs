//! The composition root: one function that wires a connection task, a cache
//! and an engine together and hands back the two ends a front end needs —
//! actions in, batches of [`Update`]s out. The TUI, the command line, the
//! tests and the benchmarks all start a client here.

use crate::client::Action;
use crate::client::cache::Cache;
use crate::client::credentials::TokenStore;
use crate::client::engine::{CatchUp, Engine, Input, Privacy, Setup};
use crate::client::net::{Credentials, NetConfig, NetHandle};
use crate::client::paths::Paths;
use crate::client::text;
use crate::client::update::Update;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches of updates buffered towards a slow front end; past that the
/// engine waits (its work is in the cache, nothing is lost).
const UPDATE_QUEUE: usize = 256;
/// Events from the connection task buffered towards the engine.
const NET_QUEUE: usize = 1024;

/// Where the engine keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChoice {
    /// The account's cache file in the data dir (the TUI: cache first, and
    /// the outbox survives a restart).
    OnDisk,
    /// A cache in memory for this run only (the command line: a one-shot
    /// command must not leave work behind for a later run to send).
    InMemory,
    /// This cache file (benchmarks of the start-up path).
    At(std::path::PathBuf),
}

/// How to start a client.
#[derive(Debug)]
pub struct ClientOptions {
    pub net: NetConfig,
    /// The account whose cache opens before the network connects.
    pub user: Option<String>,
    pub credentials: Option<Credentials>,
    pub tokens: TokenStore,
    pub paths: Paths,
    pub cache: CacheChoice,
    pub catch_up: CatchUp,
    pub privacy: Privacy,
    /// Where saved files go [default: the user's downloads directory].
    pub downloads: Option<std::path::PathBuf>,
}

impl ClientOptions {
    /// The TUI's way: the on-disk cache, every conversation kept caught up.
    pub fn interactive(
        net: NetConfig,
        user: Option<String>,
        credentials: Option<Credentials>,
        tokens: TokenStore,
        paths: Paths,
    ) -> ClientOptions {
        ClientOptions {
            net,
            user,
            credentials,
            tokens,
            paths,
            cache: CacheChoice::OnDisk,
            catch_up: CatchUp::All,
            privacy: Privacy::default(),
            downloads: None,
        }
    }
}

/// A running client.
pub struct ClientHandle {
    pub actions: mpsc::UnboundedSender<Action>,
    pub updates: mpsc::Receiver<Vec<Update>>,
    /// The engine; it ends after [`Action::Quit`] or when `updates` is
    /// dropped.
    pub task: JoinHandle<()>,
}

/// Start a connection task and an engine on the current runtime.
pub fn spawn(opts: ClientOptions) -> ClientHandle {
    let (net_tx, net_rx) = mpsc::channel::<Input>(NET_QUEUE);
    let net = crate::client::net::task::spawn(opts.net.clone(), opts.credentials.clone(), net_tx);
    spawn_on(opts, net, net_rx)
}

/// Like [`spawn`], with a connection task started by the caller, whose
/// events reach the engine through `events` (tests put faults in between).
pub fn spawn_on(
    opts: ClientOptions,
    net: NetHandle,
    events: mpsc::Receiver<Input>,
) -> ClientHandle {
    let server = opts.net.server.clone();
    let mut notice = None;
    let mut checked = false;
    let cache_path = match (&opts.user, &opts.cache) {
        (_, CacheChoice::At(path)) => Some(path.clone()),
        (Some(user), CacheChoice::OnDisk) => Some(opts.paths.cache_path(&server, user)),
        _ => None,
    };
    let cache = match (&opts.user, &cache_path) {
        (Some(_), Some(path)) => {
            // Opened without the full check, so the screen is drawn at
            // once; the engine checks the file a moment later. A file that
            // cannot even be opened is checked (and set aside) now.
            let opened = match Cache::open(path) {
                Ok(c) => Ok((c, None)),
                Err(_) => {
                    checked = true;
                    Cache::open_or_recover(path)
                }
            };
            match opened {
                Ok((c, moved)) => {
                    notice = moved.as_deref().map(text::cache_set_aside);
                    Some(c)
                }
                Err(e) => {
                    notice = Some(text::cache_unopenable(path, &e));
                    None
                }
            }
        }
        (Some(_), None) => Cache::open_in_memory().ok(),
        (None, _) => None,
    };
    let cache = match (cache, &opts.user) {
        (Some(mut c), Some(user)) => match c.set_me(user) {
            Ok(()) => Some(c),
            Err(e) => {
                notice = Some(format!("local cache: {e}"));
                None
            }
        },
        _ => None,
    };
    let (out_tx, out_rx) = mpsc::channel(UPDATE_QUEUE);
    let (action_tx, action_rx) = mpsc::unbounded_channel();
    let unverified = cache_path.filter(|_| cache.is_some() && !checked);
    let setup = Setup {
        server,
        me: opts.user.filter(|_| cache.is_some()),
        cache,
        tokens: opts.tokens,
        paths: opts.paths,
        catch_up: opts.catch_up,
        memory_cache: matches!(opts.cache, CacheChoice::InMemory),
        unverified,
        notice,
        privacy: opts.privacy,
        files: crate::client::engine::transfer::FilesSetup {
            insecure: opts.net.insecure,
            ca_file: opts.net.ca_file.clone(),
            downloads: opts.downloads.clone(),
        },
    };
    let engine = Engine::new(setup, net, out_tx);
    let task = tokio::spawn(engine.run(action_rx, events));
    ClientHandle {
        actions: action_tx,
        updates: out_rx,
        task,
    }
}
