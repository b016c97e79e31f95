//! The PostgreSQL schema and its versioned migrations.
//!
//! Each migration is a SQL file embedded in the binary. They are applied
//! in one transaction that first takes a transaction-level advisory lock,
//! so that nodes starting together migrate once, one after another; each
//! applied version is recorded in `schema_migrations`. A database newer
//! than this build is refused. The first migration also gives the database
//! its cluster id (in `meta`), which every node sharing it reads.

use super::db::{get, one, opt};
use crate::store::log::StoreError;
use deadpool_postgres::{GenericClient, Object};

/// Ordered migrations; index + 1 is the version each produces.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_secret.sql"),
    include_str!("migrations/0003_idempotency_order.sql"),
    include_str!("migrations/0004_member_changes.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock key migrations hold ("chatd" in ASCII).
const LOCK_KEY: i64 = 0x0063_6861_7464;

/// Bring the database up to [`SCHEMA_VERSION`]; answers the version.
pub(super) async fn migrate(c: &mut Object) -> Result<u32, StoreError> {
    let tx = c.transaction().await?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"))
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at bigint NOT NULL
         )",
    )
    .await?;
    let row = one(
        &tx,
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        &[],
    )
    .await?;
    let version: i32 = get(&row, 0)?;
    let version = version.max(0) as u32;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Open(format!(
            "database schema version {version} is newer than this chatd supports ({SCHEMA_VERSION})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await?;
        let v = (i + 1) as i32;
        let now = crate::proto::now_millis();
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&v, &now],
        )
        .await?;
        if i == 0 {
            let id = hex::encode(rand::random::<[u8; 16]>());
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('cluster_id', $1)",
                &[&id],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}

/// The random id this database was given when it was first migrated.
pub(super) async fn cluster_id(c: &impl GenericClient) -> Result<String, StoreError> {
    let row = opt(c, "SELECT value FROM meta WHERE key = 'cluster_id'", &[])
        .await?
        .ok_or_else(|| StoreError::Open("the database has no cluster id".into()))?;
    get(&row, 0)
}
