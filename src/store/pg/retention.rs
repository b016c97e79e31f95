//! Retention on PostgreSQL: message text older than `[retention] days` is
//! cleared from the log, and files shared before then stop being shared,
//! exactly as on the embedded store (seqs, senders and times stay). A small
//! batch per transaction; one node at a time sweeps (an advisory lock), so
//! several nodes do not repeat each other's work.

use super::PgStore;
use super::db::{exec, get, rows};
use super::search;
use crate::proto::{Millis, now_millis};
use crate::store::log::StoreError;
use crate::store::log::retention::{Aged, BATCH, PAUSE, RetentionConfig, plan};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The advisory lock a sweeping node holds.
const SWEEP_LOCK: i64 = 0x6368_6174_7265_7400;

/// Clear the text of messages and edits older than `cutoff`, a batch at a
/// time, until none is left or `stop` is cancelled; nothing when another
/// node is sweeping. Returns how many events were cleared.
pub async fn sweep(
    store: &PgStore,
    cutoff: Millis,
    stop: &CancellationToken,
) -> Result<u64, StoreError> {
    let db = &store.inner.db;
    let c = db.client().await?;
    let locked: bool = get(
        &c.query_one("SELECT pg_try_advisory_lock($1)", &[&SWEEP_LOCK])
            .await?,
        0,
    )?;
    if !locked {
        return Ok(0);
    }
    let result = sweep_locked(store, cutoff, stop).await;
    let _ = c
        .execute("SELECT pg_advisory_unlock($1)", &[&SWEEP_LOCK])
        .await;
    result
}

async fn sweep_locked(
    store: &PgStore,
    cutoff: Millis,
    stop: &CancellationToken,
) -> Result<u64, StoreError> {
    let db = &store.inner.db;
    let convs: Vec<String> = {
        let c = db.client().await?;
        rows(&c, "SELECT id FROM conversations ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect::<Result<_, _>>()?
    };
    let mut cleared = 0u64;
    for conv in convs {
        let mut from = 0i64;
        loop {
            if stop.is_cancelled() {
                return Ok(cleared);
            }
            let mut c = db.client().await?;
            // Seqs of one conversation grow with time: walk them in order
            // and stop at the first event young enough to keep.
            let batch = rows(
                &c,
                "SELECT seq, ts, kind, COALESCE(data::jsonb ->> 'body', '') <> '', target_seq,
                        kind = 'file' AND (
                            EXISTS (SELECT 1 FROM file_refs f
                                    WHERE f.conversation_id = events.conversation_id
                                      AND f.seq = events.seq)
                            OR data::jsonb ? 'caption'
                            OR COALESCE(data::jsonb -> 'file' ? 'preview', false))
                 FROM events WHERE conversation_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&conv, &from, &BATCH],
            )
            .await?;
            let mut events: Vec<Aged> = Vec::with_capacity(batch.len());
            for r in &batch {
                events.push(Aged {
                    seq: get(r, 0)?,
                    ts: get(r, 1)?,
                    kind: get(r, 2)?,
                    has_text: get(r, 3)?,
                    target_seq: get(r, 4)?,
                    shared_file: get(r, 5)?,
                });
            }
            let plan = plan(&events, cutoff, BATCH);
            if !plan.clear.is_empty() || !plan.unshare.is_empty() {
                let tx = c.transaction().await?;
                for seq in &plan.clear {
                    exec(
                        &tx,
                        "UPDATE events SET data = jsonb_set(data::jsonb, '{body}', '\"\"')::text
                         WHERE conversation_id = $1 AND seq = $2",
                        &[&conv, seq],
                    )
                    .await?;
                }
                for seq in &plan.unshare {
                    exec(
                        &tx,
                        "DELETE FROM file_refs WHERE conversation_id = $1 AND seq = $2",
                        &[&conv, seq],
                    )
                    .await?;
                    exec(
                        &tx,
                        "UPDATE events SET data = (data::jsonb - 'caption' #- '{file,preview}')::text
                         WHERE conversation_id = $1 AND seq = $2",
                        &[&conv, seq],
                    )
                    .await?;
                }
                for seq in plan.reindex.iter().chain(&plan.unshare) {
                    search::reindex(&tx, &conv, *seq).await?;
                }
                tx.commit().await?;
                cleared += (plan.clear.len() + plan.unshare.len()) as u64;
                tokio::time::sleep(PAUSE).await;
            }
            match plan.next {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    Ok(cleared)
}

/// Sweep now and then every `every` until `stop` is cancelled.
pub async fn run(
    store: PgStore,
    config: RetentionConfig,
    every: Duration,
    stop: CancellationToken,
) {
    if config.days == 0 {
        return;
    }
    loop {
        let Some(cutoff) = config.cutoff(now_millis()) else {
            return;
        };
        match sweep(&store, cutoff, &stop).await {
            Ok(n) if n > 0 => tracing::info!(cleared = n, "retention: cleared old message text"),
            Ok(_) => {}
            Err(e) => tracing::warn!("retention: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
