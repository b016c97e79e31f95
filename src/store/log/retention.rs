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
pub const BATCH: i64 = 500;

/// Pause between batches: writers get the database in between.
pub const PAUSE: Duration = Duration::from_millis(20);

/// One event of a batch, as retention sees it.
#[derive(Debug, Clone)]
pub struct Aged {
    pub seq: i64,
    pub ts: Millis,
    pub kind: String,
    /// Whether it still has a body.
    pub has_text: bool,
    pub target_seq: Option<i64>,
    /// A file event still shared, or with a caption or preview.
    pub shared_file: bool,
}

/// What to do with one batch of a conversation's events (in seq order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Messages and edits whose text is cleared.
    pub clear: Vec<i64>,
    /// Files that stop being shared and lose caption and preview.
    pub unshare: Vec<i64>,
    /// Messages whose searchable text this changes, sorted.
    pub reindex: Vec<i64>,
    /// Where the next batch starts, when this one was all old and full.
    pub next: Option<i64>,
}

/// Plan a batch of at most `batch` events: seqs of one conversation grow
/// with time, so everything up to the first event young enough to keep.
pub fn plan(events: &[Aged], cutoff: Millis, batch: i64) -> Plan {
    let old: Vec<&Aged> = events.iter().take_while(|e| e.ts < cutoff).collect();
    let clearing: Vec<&Aged> = old
        .iter()
        .filter(|e| e.has_text && (e.kind == "message" || e.kind == "edit"))
        .copied()
        .collect();
    let mut reindex: Vec<i64> = clearing
        .iter()
        .map(|e| e.target_seq.unwrap_or(e.seq))
        .collect();
    reindex.sort_unstable();
    reindex.dedup();
    let full = old.len() == events.len() && events.len() as i64 == batch;
    Plan {
        clear: clearing.iter().map(|e| e.seq).collect(),
        unshare: old
            .iter()
            .filter(|e| e.shared_file)
            .map(|e| e.seq)
            .collect(),
        reindex,
        next: old.last().filter(|_| full).map(|e| e.seq),
    }
}

/// Clear the text of messages and edits older than `cutoff` in the
/// database of `dir`, a batch at a time, until none is left or `stop()`
/// says so. Returns how many events were cleared.
pub fn sweep(dir: &Path, cutoff: Millis, stop: impl Fn() -> bool) -> Result<u64, StoreError> {
    let conn = Connection::open(db_path(dir))?;
    super::tune(&conn)?;
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
            let rows: Vec<Aged> = conn
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
                    Ok(Aged {
                        seq: r.get(0)?,
                        ts: r.get(1)?,
                        kind: r.get(2)?,
                        has_text: r.get(3)?,
                        target_seq: r.get(4)?,
                        shared_file: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let plan = plan(&rows, cutoff, BATCH);
            if !plan.clear.is_empty() || !plan.unshare.is_empty() {
                let tx = conn.unchecked_transaction()?;
                {
                    let mut clear = tx.prepare_cached(
                        "UPDATE events SET data = json_set(data, '$.body', '')
                         WHERE conversation_id = ?1 AND seq = ?2",
                    )?;
                    for seq in &plan.clear {
                        clear.execute(params![conv, seq])?;
                    }
                    let mut unshare = tx.prepare_cached(
                        "DELETE FROM file_refs WHERE conversation_id = ?1 AND seq = ?2",
                    )?;
                    let mut strip = tx.prepare_cached(
                        "UPDATE events SET data = json_remove(data, '$.caption', '$.file.preview')
                         WHERE conversation_id = ?1 AND seq = ?2",
                    )?;
                    for seq in &plan.unshare {
                        unshare.execute(params![conv, seq])?;
                        strip.execute(params![conv, seq])?;
                    }
                }
                for seq in plan.reindex.iter().chain(&plan.unshare) {
                    super::search::reindex(&tx, &conv, *seq)?;
                }
                tx.commit()?;
                cleared += (plan.clear.len() + plan.unshare.len()) as u64;
                std::thread::sleep(PAUSE);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn aged(seq: i64, ts: Millis, kind: &str, target_seq: Option<i64>) -> Aged {
        Aged {
            seq,
            ts,
            kind: kind.into(),
            has_text: true,
            target_seq,
            shared_file: kind == "file",
        }
    }

    #[test]
    fn a_batch_is_planned_up_to_the_first_young_event() {
        let events = [
            aged(1, 10, "message", None),
            aged(2, 11, "edit", Some(1)),
            aged(3, 12, "file", None),
            aged(4, 99, "message", None),
        ];
        let p = plan(&events, 50, 4);
        assert_eq!(p.clear, vec![1, 2]);
        assert_eq!(p.reindex, vec![1]);
        assert_eq!(p.unshare, vec![3]);
        assert_eq!(p.next, None, "a young event ends the conversation's sweep");
        let all_old = plan(&events[..3], 50, 3);
        assert_eq!(all_old.next, Some(3), "a full batch of old events goes on");
    }
}
