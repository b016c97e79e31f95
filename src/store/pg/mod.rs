//! chatd's store on PostgreSQL: the same accounts, conversations, receipts
//! and logs as the embedded SQLite store, in a database that any number of
//! chatd nodes share.
//!
//! [`PgStore`] and [`PgReaders`] offer the methods of `LogStore` and
//! `Readers`, with the same arguments, answers and errors. An account
//! change runs in a transaction of its own; conversation writes queue in
//! lanes and each lane commits what has queued in one transaction
//! ([`batch`], [`bulk`]). Connections come from a pool:
//!
//! - **Sequencing.** An event takes its seq from its conversation's
//!   `last_seq` counter, updated inside the transaction that inserts it;
//!   every change to a conversation first takes that row's
//!   lock, so appenders on every node queue there and a seq is never
//!   skipped or given twice (a transaction that fails gives its seq back
//!   by rolling back).
//! - **Idempotency** is the unique index on `(sender, client_msg_id)`: a
//!   retry finds the original event and gets its seq.
//! - **Durability and order.** A caller hears `ok` only after `COMMIT`.
//!   Committed changes then go to the [`CommitSink`], in commit order for
//!   each conversation on this node: a node-local lock per conversation
//!   (striped) is held from before the row lock until the changes are
//!   published, so the node's own writers of one conversation publish in
//!   seq order. Appends submitted one after another by one task take that
//!   lock in submission order, as `LogStore` sequences them.
//! - **Races** between nodes end in a serialization failure, a deadlock or
//!   a unique key taken first; such a transaction is run again, a bounded
//!   number of times, and then sees what the other one wrote.
//! - **A database that does not answer** costs at most a timeout: waits for
//!   a connection, statements and whole operations are bounded, and the
//!   caller gets [`StoreError::Unavailable`]. The pool makes new
//!   connections when the database is back.

mod accounts;
mod append;
mod batch;
mod bots;
mod bulk;
pub mod copy;
mod db;
mod erase;
mod events;
mod facts;
mod files;
mod keys;
pub mod offline;
mod read;
pub mod retention;
mod schema;
mod search;
mod secret;
#[cfg(test)]
mod tests;

pub use read::PgReaders;
pub use schema::SCHEMA_VERSION;

use crate::proto::{ErrorCode, ProtoError, ReceiptPair};
use crate::store::log::{
    AccountOp, AccountReply, Append, Appended, BotOp, CommitSink, Committed, KeyOp, KeyReply,
    SecretOp, Snapshot, StoreConfig, StoreError, WriteLimits, WriteStats,
};
use db::{Conn, Db, Timeouts, Tx, retryable, within};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};
use tokio_postgres::IsolationLevel;
use tokio_util::task::TaskTracker;

/// Times a transaction that lost a race is run in all.
const ATTEMPTS: u32 = 5;

/// Node-local conversation locks (see the module doc).
const STRIPES: usize = 1024;

pub(crate) fn rejected(code: ErrorCode, msg: impl Into<String>) -> StoreError {
    StoreError::Rejected(ProtoError::new(code, msg))
}

/// Apply the migrations to the database at `url` and nothing else
/// (`chatd migrate`); answers the schema version it is at.
pub async fn migrate(url: &str) -> Result<u32, StoreError> {
    let db = Db::new(url, 1, db::TIMEOUTS)?;
    let mut c = db.client().await?;
    let version = schema::migrate(&mut c).await;
    drop(c);
    db.close();
    version
}

/// A write's open transaction and what it changed so far.
pub(crate) struct W<'a> {
    pub(crate) tx: &'a Conn,
    /// Published after the commit, in this order.
    pub(crate) changes: Vec<Committed>,
    pub(crate) limits: &'a WriteLimits,
}

/// A write request.
#[derive(Clone)]
enum Op {
    Account(AccountOp),
    Append(Append),
    Receipt {
        user: String,
        conversation_id: String,
        delivered: u64,
        read: u64,
    },
    /// Device keys and inboxes.
    Keys(KeyOp),
    /// A write to a secret conversation (answered as an append).
    Secret(SecretOp),
}

enum Reply {
    Account(AccountReply),
    Append(Appended),
    Receipt(Option<ReceiptPair>),
    Keys(KeyReply),
}

/// The advisory lock that orders account changes which check, then act,
/// across rows (the first account becomes admin, the last admin stays).
const ACCOUNTS_LOCK: i64 = 0x6368_6174_6163_6374;

impl Op {
    /// Every write runs at read committed. Hot, single-row changes, and
    /// changes to conversations (whose row lock orders them) need nothing
    /// more; other account changes check-then-act across rows and take
    /// [`ACCOUNTS_LOCK`] first, which orders them on every node. (At
    /// serializable they would fail and retry under a burst of
    /// registrations or logins instead of waiting their turn.)
    fn serialized(&self) -> bool {
        match self {
            Op::Account(
                AccountOp::UseSession { .. }
                | AccountOp::TouchSession { .. }
                | AccountOp::Erase { .. }
                | AccountOp::Bot(BotOp::Used { .. } | BotOp::CreateWebhook { .. }),
            )
            | Op::Append(_)
            | Op::Receipt { .. }
            | Op::Keys(_)
            | Op::Secret(_) => false,
            Op::Account(_) => true,
        }
    }
}

/// Node-local locks on conversations, striped by id.
struct Gate(Vec<Arc<Mutex<()>>>);

type Held = Vec<OwnedMutexGuard<()>>;

impl Gate {
    fn new() -> Gate {
        Gate((0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect())
    }

    /// The stripe of a conversation (or of any other name).
    fn stripe(name: &str) -> usize {
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Lock the stripes of `convs`, in stripe order (so that two holders
    /// of several never wait for each other).
    async fn lock(&self, convs: &[&str]) -> Held {
        let mut stripes: Vec<usize> = convs.iter().map(|c| Gate::stripe(c)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held = Vec::with_capacity(stripes.len());
        for s in stripes {
            held.push(self.0[s].clone().lock_owned().await);
        }
        held
    }
}

struct Inner {
    db: Db,
    readers: PgReaders,
    sink: Arc<dyn CommitSink>,
    limits: WriteLimits,
    cluster_id: String,
    stats: Arc<WriteStats>,
    gate: Gate,
    /// Account changes that take [`ACCOUNTS_LOCK`] wait their turn here
    /// first, holding no pooled connection: a burst of registrations or
    /// logins then holds one connection of this node's pool, not all of
    /// them, and reads and messages go on meanwhile.
    accounts: tokio::sync::Mutex<()>,
    lanes: batch::Lanes,
    tasks: TaskTracker,
}

/// Handle to the PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl PgStore {
    /// Connect to the database at `url`, migrate it, and return the store
    /// with what the server keeps in memory.
    pub async fn open(
        url: &str,
        config: &StoreConfig,
        limits: WriteLimits,
        sink: Arc<dyn CommitSink>,
    ) -> Result<(PgStore, Snapshot), StoreError> {
        Self::open_with(url, config, limits, sink, db::TIMEOUTS).await
    }

    async fn open_with(
        url: &str,
        config: &StoreConfig,
        limits: WriteLimits,
        sink: Arc<dyn CommitSink>,
        timeouts: Timeouts,
    ) -> Result<(PgStore, Snapshot), StoreError> {
        let db = Db::new(url, config.pool, timeouts)?;
        let mut c = db.client().await?;
        within(timeouts.operation, schema::migrate(&mut c)).await?;
        let cluster_id = schema::cluster_id(&c).await?;
        // One consistent view, however long it takes to read.
        let tx = c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        let snapshot = read::load_snapshot(&tx).await?;
        tx.commit().await?;
        drop(c);
        // Each lane holds one connection while it commits; the rest of the
        // pool is for reads and account changes.
        let writers = config.writers.min(config.pool.saturating_sub(1)).max(1);
        let (lanes, queues, stop) = batch::Lanes::new(writers);
        let store = PgStore {
            inner: Arc::new(Inner {
                readers: PgReaders { db: db.clone() },
                db,
                sink,
                limits,
                cluster_id,
                stats: Arc::new(WriteStats::default()),
                gate: Gate::new(),
                accounts: tokio::sync::Mutex::new(()),
                lanes,
                tasks: TaskTracker::new(),
            }),
        };
        for queue in queues {
            let worker = batch::work(store.clone(), queue, stop.clone());
            store.inner.tasks.spawn(worker);
        }
        Ok((store, snapshot))
    }

    /// Whether the database answers, within a short timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        within(db::PING_TIMEOUT, async {
            let c = self.inner.db.client().await?;
            c.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// The id the database was given when first migrated: the same for
    /// every node that shares it.
    pub fn cluster_id(&self) -> String {
        self.inner.cluster_id.clone()
    }

    /// Apply a change to accounts, sessions or invitations.
    pub async fn account(&self, op: AccountOp) -> Result<AccountReply, StoreError> {
        self.open_for_writes()?;
        let held = match &op {
            AccountOp::Bot(BotOp::CreateWebhook {
                conversation_id, ..
            }) => self.inner.gate.lock(&[conversation_id]).await,
            AccountOp::Erase { username } => {
                let convs = self
                    .inner
                    .db
                    .bounded(async {
                        let c = self.inner.db.client().await?;
                        erase::conversations(&c, username).await
                    })
                    .await?;
                let convs: Vec<&str> = convs.iter().map(String::as_str).collect();
                self.inner.gate.lock(&convs).await
            }
            _ => Vec::new(),
        };
        match self.write(Op::Account(op), held).await? {
            Reply::Account(r) => Ok(r),
            _ => Err(mixed_up()),
        }
    }

    /// Start an append and return a receiver for its durable result.
    ///
    /// Appends submitted one after another from one task are sequenced in
    /// that order (each takes its conversation's node lock before this
    /// returns); awaiting the receivers can then happen concurrently.
    pub async fn submit_append(
        &self,
        op: Append,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        self.open_for_writes()?;
        let conv = self.append_target(&op).await;
        let stripe = match (&conv, &op) {
            (Some(c), _) => Gate::stripe(c),
            (None, Append::Create { user, .. } | Append::Join { user, .. }) => Gate::stripe(user),
            (None, _) => 0,
        };
        self.queue_as(stripe, Op::Append(op), conv, appended).await
    }

    /// Queue a conversation write in its lane ([`batch`]).
    async fn queue(
        &self,
        stripe: usize,
        op: Op,
        conv: Option<String>,
        reply: batch::Answer,
    ) -> Result<(), StoreError> {
        let job = batch::Job { op, conv, reply };
        self.inner.lanes.submit(stripe, job).await
    }

    /// Queue a conversation write in its lane ([`Self::queue`]) and return
    /// a receiver for its answer, which `pick` takes out of its [`Reply`]
    /// (a reply of another kind is an error).
    async fn queue_as<T: Send + 'static>(
        &self,
        stripe: usize,
        op: Op,
        conv: Option<String>,
        pick: fn(Reply) -> Option<T>,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        let answer = move |r: Result<Reply, StoreError>| {
            let _ = tx.send(r.and_then(|r| pick(r).ok_or_else(mixed_up)));
        };
        self.queue(stripe, op, conv, Box::new(answer)).await?;
        Ok(rx)
    }

    /// Apply a change to device keys or inboxes, in a transaction of its
    /// own (the devices' and keys' row locks order it against other
    /// nodes').
    pub async fn keys(&self, op: KeyOp) -> Result<KeyReply, StoreError> {
        self.open_for_writes()?;
        match self.write(Op::Keys(op), Vec::new()).await? {
            Reply::Keys(r) => Ok(r),
            _ => Err(mixed_up()),
        }
    }

    /// Queue a write to a secret conversation in its lane, in order with
    /// appends; the receiver gets its durable result.
    pub async fn submit_secret(
        &self,
        op: SecretOp,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        self.open_for_writes()?;
        let (conv, stripe) = match &op {
            SecretOp::Create { user, .. } => (None, Gate::stripe(user)),
            SecretOp::Event {
                conversation_id, ..
            }
            | SecretOp::Share {
                conversation_id, ..
            } => (Some(conversation_id.clone()), Gate::stripe(conversation_id)),
        };
        self.queue_as(stripe, Op::Secret(op), conv, appended).await
    }

    /// Append and wait until the result is durable.
    pub async fn append(&self, op: Append) -> Result<Appended, StoreError> {
        self.submit_append(op)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Start a receipt update; the receiver yields the new pointers, or
    /// `None` when nothing moved.
    pub async fn submit_receipt(
        &self,
        user: &str,
        conversation_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<oneshot::Receiver<Result<Option<ReceiptPair>, StoreError>>, StoreError> {
        self.open_for_writes()?;
        let op = Op::Receipt {
            user: user.to_string(),
            conversation_id: conversation_id.to_string(),
            delivered,
            read,
        };
        let stripe = Gate::stripe(conversation_id);
        let conv = Some(conversation_id.to_string());
        self.queue_as(stripe, op, conv, |r| match r {
            Reply::Receipt(r) => Some(r),
            _ => None,
        })
        .await
    }

    pub async fn receipt(
        &self,
        user: &str,
        conversation_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<Option<ReceiptPair>, StoreError> {
        self.submit_receipt(user, conversation_id, delivered, read)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// The read side.
    pub fn readers(&self) -> &PgReaders {
        &self.inner.readers
    }

    /// What the store measures of its commits.
    pub fn stats(&self) -> Arc<WriteStats> {
        self.inner.stats.clone()
    }

    /// Stop accepting writes, finish those under way, and close the pool.
    /// Other clones become unusable.
    pub async fn close(self) {
        self.inner.tasks.close();
        self.inner.lanes.stop();
        self.inner.tasks.wait().await;
        self.inner.db.close();
    }

    fn open_for_writes(&self) -> Result<(), StoreError> {
        if self.inner.tasks.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// The existing conversation an append writes to, if known before its
    /// transaction (a channel joined by name is looked up).
    async fn append_target(&self, op: &Append) -> Option<String> {
        match op {
            Append::Event {
                conversation_id, ..
            }
            | Append::Leave {
                conversation_id, ..
            }
            | Append::AddMembers {
                conversation_id, ..
            }
            | Append::RemoveMembers {
                conversation_id, ..
            }
            | Append::SetRole {
                conversation_id, ..
            }
            | Append::Rename {
                conversation_id, ..
            }
            | Append::Join {
                conversation_id: Some(conversation_id),
                ..
            } => Some(conversation_id.clone()),
            Append::Join {
                conversation_id: None,
                name: Some(name),
                ..
            } => {
                // Not found: the transaction answers so.
                let name = name.trim_start_matches('#');
                self.inner
                    .db
                    .bounded(async {
                        let c = self.inner.db.client().await?;
                        append::channel_named(&c, name).await
                    })
                    .await
                    .ok()
                    .flatten()
            }
            Append::Join { .. } | Append::Create { .. } => None,
        }
    }

    /// Run a write in a transaction of its own, again if it lost a race;
    /// publish its changes once committed, then let go of its locks.
    async fn write(&self, op: Op, held: Held) -> Result<Reply, StoreError> {
        let turn = if op.serialized() {
            Some(self.inner.accounts.lock().await)
        } else {
            None
        };
        let started = Instant::now();
        let (reply, changes) = self
            .retrying("running a transaction again", || self.attempt(&op))
            .await?;
        if !changes.is_empty() {
            self.inner.sink.committed(&changes);
        }
        drop(turn);
        drop(held);
        let stats = &self.inner.stats;
        stats.batch_ops.observe(1);
        stats.commit_time.observe_time(started.elapsed());
        Ok(reply)
    }

    /// Run `attempt` (each try bounded by the operation timeout) until it
    /// succeeds, fails for a reason other than a lost race, or has lost
    /// [`ATTEMPTS`] races, pausing a random few milliseconds between tries.
    async fn retrying<T, F>(
        &self,
        again: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let mut tries = 1;
        loop {
            match self.inner.db.bounded(attempt()).await {
                Err(e) if retryable(&e) && tries < ATTEMPTS => {
                    tracing::debug!(attempt = tries, "store: {again}: {e}");
                    let jitter = rand::random::<u64>() % (2 << tries);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    tries += 1;
                }
                done => return done,
            }
        }
    }

    async fn attempt(&self, op: &Op) -> Result<(Reply, Vec<Committed>), StoreError> {
        let tx = Tx::on(self.inner.db.client().await?);
        tx.begin().await?;
        if op.serialized() {
            tx.conn()
                .execute("SELECT pg_advisory_xact_lock($1)", &[&ACCOUNTS_LOCK])
                .await?;
        }
        let mut w = W {
            tx: tx.conn(),
            changes: Vec::new(),
            limits: &self.inner.limits,
        };
        let reply = apply(&mut w, op.clone()).await;
        let changes = std::mem::take(&mut w.changes);
        match reply {
            Ok(reply) => {
                tx.commit().await?;
                Ok((reply, changes))
            }
            Err(e) => {
                // A failed statement has aborted the transaction already;
                // a refusal leaves nothing to undo either way.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

/// Apply a write in the open transaction of `w`.
async fn apply(w: &mut W<'_>, op: Op) -> Result<Reply, StoreError> {
    match op {
        Op::Account(op) => {
            // Sessions ended take their devices along (a foreign key);
            // their users' contacts hear of it, and of those `chatd admin`
            // ended meanwhile.
            let touch = matches!(op, AccountOp::TouchSession { .. });
            let reply = accounts::apply(w, op).await?;
            if !touch {
                keys::devices_gone(w).await?;
            }
            Ok(Reply::Account(reply))
        }
        Op::Keys(op) => keys::apply(w, op).await.map(Reply::Keys),
        Op::Secret(op) => secret::apply(w, op).await.map(Reply::Append),
        Op::Append(op) => append::apply(w, op).await.map(Reply::Append),
        Op::Receipt {
            user,
            conversation_id,
            delivered,
            read,
        } => append::receipt(w, &user, &conversation_id, delivered, read)
            .await
            .map(Reply::Receipt),
    }
}

/// The append in `r`, if it is one.
fn appended(r: Reply) -> Option<Appended> {
    match r {
        Reply::Append(a) => Some(a),
        _ => None,
    }
}

fn mixed_up() -> StoreError {
    StoreError::Write("a write was answered with another's reply".into())
}
