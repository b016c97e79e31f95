//! The engine: the one owner of the client's durable state (the cache) and
//! of everything the network task says. It turns a front end's actions into
//! cache writes and requests, server events into cache writes, keeps every
//! conversation caught up with no silent gap, drives the outbox, and after
//! each batch of work publishes what changed as typed [`Update`]s.
//!
//! It never blocks a front end: actions arrive on an unbounded channel and
//! updates leave in batches on a bounded one; requests go to the network
//! task tagged, and their answers come back as events.

mod account;
pub mod actions;
mod follow;
pub mod outbox;
mod publish;
mod search;
pub mod secret;
mod sync;
pub mod transfer;

use crate::client::Action;
use crate::client::cache::Cache;
use crate::client::credentials::TokenStore;
use crate::client::net::{NetCommand, NetEvent, NetHandle};
use crate::client::paths::Paths;
use crate::client::text;
use crate::client::update::Update;
use crate::client::view::Incoming;
use crate::proto::{ErrorCode, ProtoError, Request};
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

/// Conversations fetched concurrently while catching up.
const FETCH_CONCURRENCY: usize = 4;
/// Events per history page the engine asks for.
const PAGE: u32 = 500;
/// A conversation seen for the first time is fetched back this far; older
/// history comes on scrollback.
const INITIAL_DEPTH: u64 = 200;
/// Least time between two model updates (about a screen refresh).
const PUBLISH_EVERY: Duration = Duration::from_millis(30);
/// Rows of the focused conversation kept in the model, and the growth step.
const WINDOW: usize = 200;
/// A followed conversation with no news for this long is asked whether it
/// has any (a lost push would otherwise go unnoticed until the next one).
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// What the engine tells others about the user's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privacy {
    /// Send typing notifications.
    pub typing: bool,
    /// Send the read pointer (others see how far I have read; it is also
    /// what keeps unread counts equal across my devices).
    pub read_receipts: bool,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            typing: true,
            read_receipts: true,
        }
    }
}

/// What an engine starts with.
pub(crate) struct Setup {
    pub server: String,
    /// The account whose cache is already open.
    pub me: Option<String>,
    pub cache: Option<Cache>,
    pub tokens: TokenStore,
    pub paths: Paths,
    pub catch_up: CatchUp,
    /// Keep the cache in memory only.
    pub memory_cache: bool,
    pub privacy: Privacy,
    /// The file of a cache opened without its damage check, which the
    /// engine runs after its first update.
    pub unverified: Option<std::path::PathBuf>,
    /// Something to tell the user first (a cache set aside while opening).
    pub notice: Option<String>,
    pub files: transfer::FilesSetup,
}

/// Which conversations the engine catches up by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Every conversation (the TUI: the whole list is shown).
    All,
    /// Only those followed or focused (the command line).
    Watched,
}

/// What an answer from the server belongs to.
#[derive(Debug, Clone)]
enum Pending {
    /// A page of the sync run numbered so.
    Sync {
        run: u64,
    },
    /// Filling a gap or catching up a conversation.
    Fill {
        conv: String,
    },
    /// Scrollback.
    Older {
        conv: String,
    },
    Outbox {
        cmid: String,
        conv: String,
    },
    /// create/join/add_members: the reply carries the conversation.
    Conv {
        focus: bool,
    },
    Leave {
        conv: String,
    },
    Users,
    /// A search the front end numbered so.
    Search {
        id: u64,
    },
    /// A request whose success is told with this notice.
    Done(String),
    /// A request about the account (sessions, password).
    Account(account::AccountRequest),
    /// Keys, inbox and secret sends.
    Secret(secret::SecretReq),
    Ignore,
}

/// Work waiting for the next publish.
#[derive(Default)]
struct Dirty {
    list: bool,
    messages: bool,
    receipts: HashSet<String>,
    /// Conversations whose delivered pointer should be sent.
    delivered: HashSet<String>,
    /// Updates made along the way, published first and in order.
    updates: Vec<Update>,
    /// The user is waiting on this (a conversation just opened): publish
    /// without waiting out the interval.
    now: bool,
    incoming: Vec<Incoming>,
}

pub struct Engine {
    server: String,
    me: Option<String>,
    cache: Option<Cache>,
    tokens: TokenStore,
    paths: Paths,
    net: NetHandle,
    out: mpsc::Sender<Vec<Update>>,
    catch_up: CatchUp,
    /// Keep the cache in memory only (opened anew for each login).
    memory_cache: bool,
    privacy: Privacy,
    unverified: Option<std::path::PathBuf>,
    /// When the engine started.
    started: Instant,
    connected: bool,
    /// After a failed `sync`: when to try again, and how many have failed.
    sync_retry: Option<(Instant, u32)>,
    /// The sync under way, page by page.
    sync_run: Option<sync::SyncRun>,
    /// Sync runs started, to tell a stale page's answer.
    sync_runs: u64,
    next_tag: u64,
    pending: HashMap<u64, Pending>,
    /// Requests the network's queue refused, answered as failures once the
    /// handler that made them is done ([`Engine::answer_refused`]).
    refused: Vec<Pending>,
    /// Conversation → tag of its gap/catch-up fetch in flight.
    fetching: HashMap<String, u64>,
    /// Conversations waiting to catch up, newest activity first.
    behind: VecDeque<String>,
    /// Conversation → tag of its scrollback fetch in flight.
    older: HashMap<String, u64>,
    focused: Option<String>,
    window: usize,
    outbox_inflight: HashSet<String>,
    delivered_sent: HashMap<String, u64>,
    /// Followed conversations: the last seq published as events, and when
    /// the conversation last had news.
    follows: HashMap<String, follow::Follow>,
    dirty: Dirty,
    quit: bool,
    files: transfer::FilesSetup,
    /// Transfers started (their ids).
    transfers: u64,
    /// Digests of inline images being fetched.
    showing: HashSet<String>,
    transfer_tx: mpsc::UnboundedSender<transfer::TransferEvent>,
    transfer_rx: Option<mpsc::UnboundedReceiver<transfer::TransferEvent>>,
    secret: secret::Secret,
}

/// Inputs of the engine besides UI actions.
pub enum Input {
    Net(NetEvent),
}

impl From<NetEvent> for Input {
    fn from(ev: NetEvent) -> Self {
        Input::Net(ev)
    }
}

impl Engine {
    /// An engine for `setup.server`, reporting on `out`.
    pub(crate) fn new(setup: Setup, net: NetHandle, out: mpsc::Sender<Vec<Update>>) -> Engine {
        let (transfer_tx, transfer_rx) = mpsc::unbounded_channel();
        Engine {
            server: setup.server,
            me: setup.me,
            cache: setup.cache,
            tokens: setup.tokens,
            paths: setup.paths,
            net,
            out,
            catch_up: setup.catch_up,
            memory_cache: setup.memory_cache,
            privacy: setup.privacy,
            unverified: setup.unverified,
            started: Instant::now(),
            connected: false,
            sync_retry: None,
            sync_run: None,
            sync_runs: 0,
            next_tag: 1,
            pending: HashMap::new(),
            refused: Vec::new(),
            fetching: HashMap::new(),
            behind: VecDeque::new(),
            older: HashMap::new(),
            focused: None,
            window: WINDOW,
            outbox_inflight: HashSet::new(),
            delivered_sent: HashMap::new(),
            follows: HashMap::new(),
            dirty: Dirty {
                list: true,
                updates: setup.notice.into_iter().map(Update::Notice).collect(),
                ..Dirty::default()
            },
            quit: false,
            files: setup.files,
            transfers: 0,
            showing: HashSet::new(),
            transfer_tx,
            transfer_rx: Some(transfer_rx),
            secret: secret::Secret::default(),
        }
    }

    /// Run until the front end quits (or its channels close).
    pub async fn run(
        mut self,
        mut actions: mpsc::UnboundedReceiver<Action>,
        mut net: mpsc::Receiver<Input>,
    ) {
        let mut transfers = self
            .transfer_rx
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish().await;
        let mut last_publish = Instant::now();
        // Work done but not yet published waits at most this long, so that
        // a burst of events becomes a few screen updates, not one each.
        let mut due: Option<Instant> = None;
        while !self.quit {
            let deadline = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                a = actions.recv() => match a {
                    Some(a) => self.on_action(a),
                    None => break,
                },
                ev = net.recv() => match ev {
                    Some(Input::Net(ev)) => self.on_net(ev),
                    None => break,
                },
                Some(t) = transfers.recv() => self.on_transfer(t),
                _ = tick.tick() => self.on_tick(),
                _ = tokio::time::sleep_until(deadline), if due.is_some() => {}
            }
            // Take whatever else is ready before publishing once.
            for _ in 0..256 {
                if let Ok(a) = actions.try_recv() {
                    self.on_action(a);
                } else if let Ok(Input::Net(ev)) = net.try_recv() {
                    self.on_net(ev);
                } else if let Ok(t) = transfers.try_recv() {
                    self.on_transfer(t);
                } else {
                    break;
                }
            }
            self.answer_refused();
            let now = Instant::now();
            if now >= last_publish + PUBLISH_EVERY || self.quit || self.dirty.now {
                self.publish().await;
                last_publish = now;
                due = None;
            } else if due.is_none() {
                due = Some(last_publish + PUBLISH_EVERY);
            }
        }
        self.net.send(NetCommand::Shutdown);
    }

    /// Send `req`; its answer goes to `pending`'s handler. If the
    /// network's queue is full (the link has stalled), the request is not
    /// sent and fails as "unavailable" once the caller is done, so whatever
    /// waits for its answer (a spinner, a sync, an outbox entry) is let go.
    fn request(&mut self, req: Request, pending: Pending) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.pending.insert(tag, pending);
        if !self.net.send(NetCommand::Request { tag, req })
            && let Some(p) = self.pending.remove(&tag)
        {
            self.refused.push(p);
        }
        tag
    }

    /// Fail the requests the network's queue refused. A handler may ask
    /// again and be refused again: a few rounds, then the rest wait for
    /// the next turn of the loop.
    fn answer_refused(&mut self) {
        for _ in 0..4 {
            if self.refused.is_empty() {
                return;
            }
            for pending in std::mem::take(&mut self.refused) {
                let e = ProtoError::new(ErrorCode::Unavailable, text::SEND_QUEUE_FULL);
                self.on_reply(pending, Err(e));
            }
        }
    }

    fn notice(&mut self, text: impl Into<String>) {
        self.dirty.updates.push(Update::Notice(text.into()));
    }

    /// Report a cache failure once, quietly, and keep going.
    fn cache_error(&mut self, e: crate::client::cache::CacheError) {
        tracing::error!("cache: {e}");
        self.notice(format!("local cache error: {e}"));
    }

    fn on_tick(&mut self) {
        // The damage check reads the whole file: it waits until the first
        // screens are drawn (the first tick comes at once, the next 2 s on).
        if self.unverified.is_some() && self.started.elapsed() >= Duration::from_secs(1) {
            self.verify_cache();
        }
        if self.connected {
            self.send_outbox();
            self.probe_follows();
            if self.sync_retry.is_some_and(|(at, _)| Instant::now() >= at) {
                self.sync();
            }
        }
    }

    /// Whether the engine keeps `conv` caught up by itself.
    fn watches(&self, conv: &str) -> bool {
        self.catch_up == CatchUp::All
            || self.focused.as_deref() == Some(conv)
            || self.follows.contains_key(conv)
    }

    /// Check a cache opened without its damage check (on the first tick a
    /// second after start); a damaged one is set aside and started afresh
    /// (the server has everything it held but the outbox).
    fn verify_cache(&mut self) {
        let (Some(path), Some(cache)) = (self.unverified.take(), self.cache.as_ref()) else {
            return;
        };
        match cache.verify() {
            Ok(()) => {}
            Err(e) if e.is_corruption() => {
                self.cache = None;
                if let Some(me) = self.me.clone() {
                    self.open_cache_at(&me, &path);
                }
                if self.connected {
                    self.sync();
                }
            }
            Err(e) => self.cache_error(e),
        }
    }

    /// Open (or switch to) the cache of `user` on this server.
    fn open_cache(&mut self, user: &str) {
        if self.me.as_deref() == Some(user) && self.cache.is_some() {
            return;
        }
        let path = self.paths.cache_path(&self.server, user);
        self.open_cache_at(user, &path);
    }

    /// Open the cache of `user` at `path` (in memory for the command line),
    /// setting a damaged file aside, and start its bookkeeping afresh.
    fn open_cache_at(&mut self, user: &str, path: &std::path::Path) {
        let opened = if self.memory_cache {
            Cache::open_in_memory().map(|c| (c, None))
        } else {
            Cache::open_or_recover(path)
        };
        match opened {
            Ok((mut cache, moved)) => {
                if let Some(moved) = moved {
                    self.notice(text::cache_set_aside(&moved));
                }
                if let Err(e) = cache.set_me(user) {
                    self.cache_error(e);
                }
                self.cache = Some(cache);
            }
            Err(e) => {
                self.notice(text::cache_unopenable(path, &e));
                self.cache = Cache::open_in_memory()
                    .and_then(|mut c| c.set_me(user).map(|()| c))
                    .ok();
            }
        }
        self.me = Some(user.to_string());
        self.fetching.clear();
        self.behind.clear();
        self.older.clear();
        self.delivered_sent.clear();
        self.outbox_inflight.clear();
        self.dirty.list = true;
        self.dirty.messages = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn engine_on(net: NetHandle, dir: &std::path::Path) -> Engine {
        let mut cache = Cache::open_in_memory().unwrap();
        cache.set_me("ann").unwrap();
        let setup = Setup {
            server: "ws://127.0.0.1:9".into(),
            me: Some("ann".into()),
            cache: Some(cache),
            tokens: TokenStore::new(dir.join("credentials")),
            paths: Paths {
                data: dir.to_path_buf(),
            },
            catch_up: CatchUp::All,
            memory_cache: true,
            privacy: Privacy::default(),
            unverified: None,
            notice: None,
            files: transfer::FilesSetup {
                insecure: false,
                ca_file: None,
                downloads: Some(dir.to_path_buf()),
            },
        };
        let (out, _) = mpsc::channel(16);
        Engine::new(setup, net, out)
    }

    #[tokio::test]
    async fn a_request_the_network_queue_refuses_lets_go_of_what_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        // A stalled link: the queue's one place is taken and nobody reads.
        let (net, _queue) = NetHandle::detached(1);
        assert!(net.send(NetCommand::ReconnectNow));
        let mut e = engine_on(net, dir.path());
        e.connected = true;
        let older = |conv: &str| Action::LoadOlder {
            conv: conv.into(),
            before_seq: 50,
        };
        e.on_action(older("c"));
        e.answer_refused();
        assert!(
            !e.older.contains_key("c"),
            "a refused request no longer blocks loading older messages"
        );
        assert!(
            e.dirty
                .updates
                .iter()
                .any(|u| matches!(u, Update::LoadingOlder(false))),
            "the spinner stops: {:?}",
            e.dirty.updates
        );
        // A refused sync says so and is tried again later, instead of
        // waiting for an answer that never comes.
        e.sync();
        e.answer_refused();
        assert!(e.sync_retry.is_some(), "a retry is scheduled");
        // A message typed meanwhile stays in the outbox, not in flight.
        e.on_action(Action::Send {
            conv: "c".into(),
            body: "hello".into(),
            reply_to: None,
        });
        e.answer_refused();
        assert!(e.outbox_inflight.is_empty());
        let pending = e.cache.as_ref().unwrap().outbox_pending().unwrap();
        assert_eq!(pending.len(), 1);
    }
}
