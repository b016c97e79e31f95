//! The connection pool and what every statement shares: the timeouts that
//! turn a database that does not answer into [`StoreError::Unavailable`],
//! the mapping of PostgreSQL's errors onto store errors, and small helpers
//! that run a statement through the connection's statement cache.

use crate::store::log::StoreError;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// How long the store waits for the database.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// For a connection from the pool (when all are busy), and for a new
    /// one to be made.
    pub(super) connect: Duration,
    /// For one statement, on the server (`statement_timeout`).
    pub(super) statement: Duration,
    /// For a whole read or write transaction, on this side.
    pub(super) operation: Duration,
}

pub(super) const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(3),
    statement: Duration::from_secs(10),
    operation: Duration::from_secs(15),
};

/// How long a health check waits.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Parameters of a statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A pool of connections to one database.
#[derive(Clone)]
pub(super) struct Db {
    pool: Pool,
    pub(super) timeouts: Timeouts,
}

/// The connection settings of `url`, with the store's timeouts added.
pub(super) fn pg_config(url: &str, t: Timeouts) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Open(format!("bad PostgreSQL URL: {e}")))?;
    let ours = format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        t.statement.as_millis(),
        t.operation.as_millis() * 2
    );
    let options = match config.get_options() {
        Some(theirs) if !theirs.is_empty() => format!("{theirs} {ours}"),
        _ => ours,
    };
    config
        .options(options)
        .connect_timeout(t.connect)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .tcp_user_timeout(t.operation);
    if config.get_application_name().is_none() {
        config.application_name("chatd");
    }
    Ok(config)
}

impl Db {
    pub(super) fn new(url: &str, size: usize, timeouts: Timeouts) -> Result<Db, StoreError> {
        let config = pg_config(url, timeouts)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            // The connection returned last goes out first: writes keep to
            // the connections they need, with their statements prepared
            // and their backends' caches warm. Handed out in turn, every
            // pooled connection took its share, each prepared and planned
            // everything anew, and PostgreSQL's processor went up by half.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeouts.connect))
            .create_timeout(Some(timeouts.connect))
            .recycle_timeout(Some(timeouts.connect))
            .build()
            .map_err(|e| StoreError::Open(format!("cannot make the connection pool: {e}")))?;
        Ok(Db { pool, timeouts })
    }

    /// A connection from the pool, or `Unavailable` within the connect
    /// timeout.
    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            use deadpool_postgres::PoolError;
            match e {
                PoolError::Backend(e) => unavailable(&e),
                PoolError::Closed => StoreError::Closed,
                e => StoreError::Unavailable(e.to_string()),
            }
        })
    }

    /// Run `op`, or answer `Unavailable` once it has taken the operation
    /// timeout.
    pub(super) async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        within(self.timeouts.operation, op).await
    }

    pub(super) fn close(&self) {
        self.pool.close();
    }
}

/// The connection a write's statements run on, inside its transaction.
pub(crate) type Conn = Object;

/// A write's transaction, opened by hand on a pooled connection so that
/// `BEGIN` can go out in one pipeline with the statements after it, and
/// `COMMIT` with those before it (`tokio_postgres::Transaction` sends each
/// on its own and waits for the answer).
///
/// Dropped while open (its task cancelled, or an end that did not finish),
/// it takes the connection out of the pool and closes it, which rolls the
/// transaction back on the server; a connection inside a transaction is
/// never handed to another write.
pub(super) struct Tx {
    /// Present until dropped.
    conn: Option<Object>,
    /// From `BEGIN` sent until the transaction is known to have ended.
    open: AtomicBool,
}

/// Begins every write's transaction.
pub(super) const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

impl Tx {
    /// A transaction on `conn`, not yet begun: [`Tx::begin`] or
    /// [`Tx::begin_with`] sends its `BEGIN`.
    pub(super) fn on(conn: Object) -> Tx {
        Tx {
            conn: Some(conn),
            open: AtomicBool::new(false),
        }
    }

    /// The connection, for the transaction's statements.
    pub(super) fn conn(&self) -> &Conn {
        match &self.conn {
            Some(c) => c,
            None => unreachable!("a transaction's connection is taken only when it is dropped"),
        }
    }

    /// Begin, alone.
    pub(super) async fn begin(&self) -> Result<(), StoreError> {
        self.open.store(true, Ordering::Relaxed);
        Ok(self.conn().batch_execute(BEGIN).await?)
    }

    /// Mark the transaction begun by a `BEGIN` its caller sends in a
    /// pipeline: from here on it is open until ended.
    pub(super) fn begun(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// Mark the transaction ended by a `COMMIT` sent in a pipeline and
    /// answered (committed, or rolled back because a statement before it
    /// failed: the statements' answers say which).
    pub(super) fn ended(&self) {
        self.open.store(false, Ordering::Relaxed);
    }

    /// Whether the transaction is open (begun and not known to be ended).
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        let r = self.conn().batch_execute("COMMIT").await;
        // Answered either way: a failed COMMIT ends the transaction too.
        // A lost connection is closed already.
        self.open.store(false, Ordering::Relaxed);
        Ok(r?)
    }

    pub(super) async fn rollback(self) -> Result<(), StoreError> {
        self.conn().batch_execute("ROLLBACK").await?;
        self.open.store(false, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.open.load(Ordering::Relaxed)
        {
            drop(Object::take(conn));
        }
    }
}

/// `op`, or `Unavailable` after `limit`.
pub(super) async fn within<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, op).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from the database within {} ms",
            limit.as_millis()
        ))),
    }
}

fn unavailable(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    })
}

/// Whether `code` says the server cannot serve us now, rather than that
/// the statement was wrong.
fn down(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("57P")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::CANNOT_CONNECT_NOW
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        match e.code() {
            _ if e.is_closed() || io => unavailable(&e),
            None => StoreError::Postgres(e.to_string()),
            Some(code) if down(code) => unavailable(&e),
            // The SQLSTATE first: [`retryable`] reads it.
            Some(code) => StoreError::Postgres(match e.as_db_error() {
                Some(db) => format!("{} {db}", code.code()),
                None => format!("{} {e}", code.code()),
            }),
        }
    }
}

/// Whether a failed transaction may simply be run again: it lost a race
/// with another one (a serialization failure, a deadlock, or a unique key
/// another transaction took first, which the retry then sees).
pub(super) fn retryable(e: &StoreError) -> bool {
    let StoreError::Postgres(msg) = e else {
        return false;
    };
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::UNIQUE_VIOLATION,
    ]
    .iter()
    .any(|s| msg.starts_with(s.code()))
}

/// Rows of a statement (prepared once per connection).
pub(super) async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, params).await?)
}

/// The row of a statement, if any.
pub(super) async fn opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, params).await?)
}

/// The one row of a statement.
pub(super) async fn one(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Row, StoreError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_one(&st, params).await?)
}

/// Run a statement; the number of rows it changed.
pub(super) async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, params).await?)
}

/// A row's column, or a database error naming it (a column of an
/// unexpected type is a bug, not a panic).
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::Postgres(format!("column {i}: {e}")))
}
