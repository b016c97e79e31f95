//! The read side of the log: a small pool of read-only connections used from
//! blocking tasks, and the start-up snapshot.

use super::{ConvRecord, Snapshot, StoreError};
use crate::proto::{ByteBudget, ConvKind, Event, EventBody, MemberRole, ReceiptPair};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Read-only connections shared by all sessions.
#[derive(Clone)]
pub struct Readers {
    pool: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(super) fn new(conns: Vec<Connection>) -> Readers {
        let n = conns.len();
        Readers {
            pool: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(n)),
        }
    }

    /// Run `f` on a free read connection in a blocking task.
    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool
                .lock()
                .map_err(|_| StoreError::Closed)?
                .pop()
                .ok_or(StoreError::Closed)?;
            let result = f(&conn);
            if let Ok(mut p) = pool.lock() {
                p.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// One text value by one key (`sql` has a single `?1`), if any.
    async fn lookup(&self, sql: &'static str, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(sql)?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// The password hash of a user, if the user exists.
    pub async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        self.lookup(
            // Bots have no password: their login fails as an unknown
            // user's does, against the decoy hash.
            "SELECT password_hash FROM users WHERE username = ?1 AND kind = 'person'",
            username,
        )
        .await
    }

    /// The ids of the events at these `(conversation, seq)`s, in order
    /// (`None`: no such event, or one written before ids).
    pub async fn event_ids(
        &self,
        at: Vec<(String, u64)>,
    ) -> Result<Vec<Option<String>>, StoreError> {
        self.with(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT eid FROM events WHERE conversation_id = ?1 AND seq = ?2")?;
            at.iter()
                .map(|(conv, seq)| {
                    Ok(stmt
                        .query_row(params![conv, (*seq).min(i64::MAX as u64) as i64], |r| {
                            r.get::<_, Option<String>>(0)
                        })
                        .optional()?
                        .flatten())
                })
                .collect()
        })
        .await
    }

    /// Events of a conversation: the first `limit` after `after`, or the last
    /// `limit` before `before`, ascending by seq.
    ///
    /// A page also stops before its events pass `max_bytes` of JSON (but
    /// holds at least one event), so that a reply of large messages stays a
    /// frame every peer accepts; the client continues from its edge.
    pub async fn history(
        &self,
        conversation_id: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let conv = conversation_id.to_string();
        // Seqs are stored as i64: larger bounds mean "no bound".
        let after = after.map(|a| a.min(i64::MAX as u64));
        let before = before.map(|b| b.min(i64::MAX as u64));
        self.with(move |c| {
            let mut events = Vec::with_capacity(limit.min(1024) as usize);
            let mut budget = ByteBudget::new(max_bytes);
            match before {
                Some(before) => {
                    let lower = after.unwrap_or(0) as i64;
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, ts, sender, client_msg_id, data, eid, bot FROM events
                         WHERE conversation_id = ?1 AND seq < ?2 AND seq > ?3
                         ORDER BY seq DESC LIMIT ?4",
                    )?;
                    let rows = stmt.query_map(params![conv, before as i64, lower, limit], |r| {
                        row(&conv, r)
                    })?;
                    for ev in rows {
                        let ev = ev??;
                        if !budget.admit(json_len(&ev) + 1) {
                            break;
                        }
                        events.push(ev);
                    }
                    events.reverse();
                }
                None => {
                    let mut stmt = c.prepare_cached(
                        "SELECT seq, ts, sender, client_msg_id, data, eid, bot FROM events
                         WHERE conversation_id = ?1 AND seq > ?2
                         ORDER BY seq ASC LIMIT ?3",
                    )?;
                    let rows = stmt
                        .query_map(params![conv, after.unwrap_or(0) as i64, limit], |r| {
                            row(&conv, r)
                        })?;
                    for ev in rows {
                        let ev = ev??;
                        if !budget.admit(json_len(&ev) + 1) {
                            break;
                        }
                        events.push(ev);
                    }
                }
            }
            Ok(events)
        })
        .await
    }

    /// What the server keeps in memory, read again (as at start-up), in
    /// one read transaction so that it is one point of the log.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let snap = load_snapshot(&tx)?;
            tx.finish()?;
            Ok(snap)
        })
        .await
    }

    /// Usernames starting with `prefix`, sorted, at most `limit`.
    pub async fn users(&self, prefix: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT username FROM users WHERE substr(username, 1, length(?1)) = ?1
                 ORDER BY username LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![prefix, limit], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }
}

/// The length of `v` encoded as JSON, without allocating it.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

type RowResult = Result<Event, StoreError>;

fn row(conv: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let seq: i64 = r.get(0)?;
    let data: String = r.get(4)?;
    let body: EventBody = match serde_json::from_str(&data) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Err(StoreError::Open(format!(
                "event {conv}/{seq} is unreadable: {e}"
            ))));
        }
    };
    Ok(Ok(Event {
        conversation_id: conv.to_string(),
        seq: seq as u64,
        ts: r.get(1)?,
        sender: r.get(2)?,
        client_msg_id: r.get(3)?,
        eid: r.get(5)?,
        bot: r.get::<_, Option<bool>>(6)?.unwrap_or(false),
        body,
    }))
}

/// Read what the server keeps in memory: users, conversations, members and
/// their receipts.
pub(super) fn load_snapshot(c: &Connection) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    let mut stmt = c.prepare("SELECT username FROM users ORDER BY username")?;
    for u in stmt.query_map([], |r| r.get::<_, String>(0))? {
        snap.users.push(u?);
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut stmt = c.prepare(&format!(
        "SELECT id, kind, name, {} FROM conversations c",
        super::LAST_SEQ
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (id, kind, name, last_seq) = row?;
        let kind = ConvKind::parse(&kind)
            .ok_or_else(|| StoreError::Open(format!("conversation {id}: bad kind {kind}")))?;
        index.insert(id.clone(), snap.conversations.len());
        snap.conversations.push(ConvRecord {
            id,
            kind,
            name,
            last_seq: last_seq as u64,
            receipts: Default::default(),
            roles: Default::default(),
        });
    }
    let mut stmt =
        c.prepare("SELECT conversation_id, username, delivered_seq, read_seq, role FROM members")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (conv, user, d, rd, role) = row?;
        if let Some(&i) = index.get(&conv) {
            if let Some(role) = MemberRole::parse(&role).filter(|r| r.manages()) {
                snap.conversations[i].roles.insert(user.clone(), role);
            }
            snap.conversations[i].receipts.insert(
                user,
                ReceiptPair {
                    delivered: d as u64,
                    read: rd as u64,
                },
            );
        }
    }
    let mut stmt = c.prepare("SELECT id FROM conversations WHERE encrypted = 1")?;
    for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
        snap.encrypted.push(id?);
    }
    let mut stmt = c.prepare("SELECT username FROM users WHERE kind <> 'person'")?;
    for u in stmt.query_map([], |r| r.get::<_, String>(0))? {
        snap.bots.push(u?);
    }
    let mut stmt = c.prepare("SELECT blocker, blocked FROM blocks")?;
    for b in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        snap.blocks.push(b?);
    }
    Ok(snap)
}
