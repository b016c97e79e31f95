//! Retention: message text older than `[retention] days` is cleared from
//! the log (and files shared before then stop being shared) (seqs, senders and times stay, so history has no holes), a small
//! batch at a time on a connection of its own, so that the writer never
//! waits more than one short batch. Clients learn the cutoff from `sync`
//! and clear their copies too.

use super::{StoreError, db_path};
use crate::proto::{Millis, now_millis};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// `[retention]` in chatd's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Message text older than this many days is cleared; 0 keeps it all.
    pub days: u32,
}

impl RetentionConfig {
    /// The time before which text is gone, if retention is on.
    pub fn cutoff(&self, now: Millis) -> Option<Millis> {
        (self.days > 0).then(|| now - i64::from(self.days) * 24 * 3600 * 1000)
    }
}

/// Events cleared per transaction.
const BATCH: i64 = 500;

/// Pause between batches: the writer gets the database in between.
const PAUSE: Duration = Duration::from_millis(20);

/// Clear the text of messages and edits older than `cutoff` in the
/// database of `dir`, a batch at a time, until none is left or `stop()`
/// says so. Returns how many events were cleared.
pub fn sweep(dir: &Path, cutoff: Millis, stop: impl Fn() -> bool) -> Result<u64, StoreError> {
    let conn = Connection::open(db_path(dir))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let convs: Vec<String> = conn
        .prepare("SELECT id FROM conversations")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut cleared = 0u64;
    for conv in convs {
        let mut from = 0i64;
        loop {
            if stop() {
                return Ok(cleared);
            }
            // Seqs of one conversation grow with time: walk them in order
            // and stop at the first event young enough to keep.
            type Row = (i64, Millis, String, bool, Option<i64>, bool);
            let rows: Vec<Row> = conn
                .prepare_cached(
                    "SELECT seq, ts, kind, coalesce(json_extract(data, '$.body'), '') <> '',
                            target_seq,
                            kind = 'file' AND (
                                EXISTS (SELECT 1 FROM file_refs f
                                        WHERE f.conversation_id = events.conversation_id
                                          AND f.seq = events.seq)
                                OR json_type(data, '$.caption') IS NOT NULL
                                OR json_type(data, '$.file.preview') IS NOT NULL)
                     FROM events WHERE conversation_id = ?1 AND seq > ?2
                     ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![conv, from, BATCH], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let old: Vec<&Row> = rows.iter().take_while(|r| r.1 < cutoff).collect();
            let clearing: Vec<&Row> = old
                .iter()
                .filter(|r| r.3 && (r.2 == "message" || r.2 == "edit"))
                .copied()
                .collect();
            let targets: Vec<i64> = clearing.iter().map(|r| r.0).collect();
            // The messages whose searchable text this changes.
            let mut messages: Vec<i64> = clearing.iter().map(|r| r.4.unwrap_or(r.0)).collect();
            messages.sort_unstable();
            messages.dedup();
            // Shared files stop being shared (collection then removes
            // their bytes) and lose their caption and preview.
            let files: Vec<i64> = old.iter().filter(|r| r.5).map(|r| r.0).collect();
            if !targets.is_empty() || !files.is_empty() {
                let tx = conn.unchecked_transaction()?;
                {
                    let mut clear = tx.prepare_cached(
                        "UPDATE events SET data = json_set(data, '$.body', '')
                         WHERE conversation_id = ?1 AND seq = ?2",
                    )?;
                    for seq in &targets {
                        clear.execute(params![conv, seq])?;
                    }
                    let mut unshare = tx.prepare_cached(
                        "DELETE FROM file_refs WHERE conversation_id = ?1 AND seq = ?2",
                    )?;
                    let mut strip = tx.prepare_cached(
                        "UPDATE events SET data = json_remove(data, '$.caption', '$.file.preview')
                         WHERE conversation_id = ?1 AND seq = ?2",
                    )?;
                    for seq in &files {
                        unshare.execute(params![conv, seq])?;
                        strip.execute(params![conv, seq])?;
                    }
                }
                for seq in messages.iter().chain(&files) {
                    super::search::reindex(&tx, &conv, *seq)?;
                }
                tx.commit()?;
                cleared += (targets.len() + files.len()) as u64;
                std::thread::sleep(PAUSE);
            }
            match old.last() {
                Some(last) if old.len() == rows.len() && rows.len() as i64 == BATCH => {
                    from = last.0;
                }
                _ => break,
            }
        }
    }
    Ok(cleared)
}

/// Sweep now and then every `every` until `stop` is cancelled.
pub async fn run(
    dir: std::path::PathBuf,
    config: RetentionConfig,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    if config.days == 0 {
        return;
    }
    loop {
        let Some(cutoff) = config.cutoff(now_millis()) else {
            return;
        };
        let (d, s) = (dir.clone(), stop.clone());
        match tokio::task::spawn_blocking(move || sweep(&d, cutoff, || s.is_cancelled())).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(cleared = n, "retention: cleared old message text")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("retention: {e}"),
            Err(e) => tracing::warn!("retention: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
