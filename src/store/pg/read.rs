//! The read side on PostgreSQL: history, event ids and user lookups from
//! the pool, and the snapshot the server starts from.

use super::db::{Db, get, opt, rows};
use crate::proto::{ByteBudget, ConvKind, Event, EventBody, MemberRole, ReceiptPair};
use crate::store::log::{ConvRecord, Snapshot, StoreError};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use tokio_postgres::Row;

/// Every read, over the shared pool. Cheap to clone.
#[derive(Clone)]
pub struct PgReaders {
    pub(super) db: Db,
}

/// Seqs are stored as bigint: larger bounds mean "no bound".
fn seq_bound(s: u64) -> i64 {
    s.min(i64::MAX as u64) as i64
}

impl PgReaders {
    /// What the server keeps in memory, read again (as at start-up), in one
    /// repeatable-read transaction so that it is one point of the log.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut c = self.db.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let snapshot = load_snapshot(&tx).await?;
        tx.commit().await?;
        Ok(snapshot)
    }

    /// The password hash of a user, if the user exists.
    pub async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                // Bots have no password: their login fails as an unknown
                // user's does, against the decoy hash.
                let row = opt(
                    &c,
                    "SELECT password_hash FROM users WHERE username = $1 AND kind = 'person'",
                    &[&username],
                )
                .await?;
                row.map(|r| get(&r, 0)).transpose()
            })
            .await
    }

    /// The ids of the events at these `(conversation, seq)`s, in order
    /// (`None`: no such event, or one written before ids).
    pub async fn event_ids(
        &self,
        at: Vec<(String, u64)>,
    ) -> Result<Vec<Option<String>>, StoreError> {
        if at.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let convs: Vec<&str> = at.iter().map(|(c, _)| c.as_str()).collect();
                let seqs: Vec<i64> = at.iter().map(|(_, s)| seq_bound(*s)).collect();
                let found = rows(
                    &c,
                    "SELECT e.conversation_id, e.seq, e.eid FROM events e
                     JOIN unnest($1::text[], $2::bigint[]) AS k(conversation_id, seq)
                       ON e.conversation_id = k.conversation_id AND e.seq = k.seq",
                    &[&convs, &seqs],
                )
                .await?;
                let mut ids: HashMap<(String, i64), Option<String>> = HashMap::new();
                for r in &found {
                    ids.insert((get(r, 0)?, get(r, 1)?), get(r, 2)?);
                }
                Ok(at
                    .iter()
                    .map(|(conv, seq)| ids.get(&(conv.clone(), seq_bound(*seq))).cloned().flatten())
                    .collect())
            })
            .await
    }

    /// Events of a conversation: the first `limit` after `after`, or the last
    /// `limit` before `before`, ascending by seq; a page also stops before
    /// its events pass `max_bytes` of JSON (but holds at least one event).
    pub async fn history(
        &self,
        conversation_id: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let lower = seq_bound(after.unwrap_or(0));
        let limit = i64::from(limit);
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let mut budget = ByteBudget::new(max_bytes);
                let mut events = Vec::new();
                match before {
                    Some(before) => {
                        let found = rows(
                            &c,
                            "SELECT seq, ts, sender, client_msg_id, data, eid, bot FROM events
                             WHERE conversation_id = $1 AND seq < $2 AND seq > $3
                             ORDER BY seq DESC LIMIT $4",
                            &[&conversation_id, &seq_bound(before), &lower, &limit],
                        )
                        .await?;
                        for r in &found {
                            let ev = event(conversation_id, r)?;
                            if !budget.admit(json_len(&ev) + 1) {
                                break;
                            }
                            events.push(ev);
                        }
                        events.reverse();
                    }
                    None => {
                        let found = rows(
                            &c,
                            "SELECT seq, ts, sender, client_msg_id, data, eid, bot FROM events
                             WHERE conversation_id = $1 AND seq > $2
                             ORDER BY seq ASC LIMIT $3",
                            &[&conversation_id, &lower, &limit],
                        )
                        .await?;
                        for r in &found {
                            let ev = event(conversation_id, r)?;
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

    /// Usernames starting with `prefix`, sorted, at most `limit`.
    pub async fn users(&self, prefix: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let found = rows(
                    &c,
                    "SELECT username FROM users WHERE starts_with(username, $1)
                     ORDER BY username LIMIT $2",
                    &[&prefix, &i64::from(limit)],
                )
                .await?;
                found.iter().map(|r| get(r, 0)).collect()
            })
            .await
    }
}

/// An event from a row of (seq, ts, sender, client_msg_id, data, eid, bot).
pub(super) fn event(conv: &str, r: &Row) -> Result<Event, StoreError> {
    let seq: i64 = get(r, 0)?;
    let data: String = get(r, 4)?;
    let body: EventBody = serde_json::from_str(&data)
        .map_err(|e| StoreError::Open(format!("event {conv}/{seq} is unreadable: {e}")))?;
    Ok(Event {
        conversation_id: conv.to_string(),
        seq: seq as u64,
        ts: get(r, 1)?,
        sender: get(r, 2)?,
        client_msg_id: get(r, 3)?,
        eid: get(r, 5)?,
        bot: get::<Option<bool>>(r, 6)?.unwrap_or(false),
        body,
    })
}

/// The length of `v` encoded as JSON, counted without keeping the text.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Counter(0);
    match serde_json::to_writer(&mut n, v) {
        Ok(()) => n.0,
        Err(_) => 0,
    }
}

/// Read what the server keeps in memory: users, bots, conversations with
/// their members, receipts and roles, which of them are secret, and
/// blocks.
pub(super) async fn load_snapshot(c: &impl GenericClient) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    for r in rows(c, "SELECT username FROM users ORDER BY username", &[]).await? {
        snap.users.push(get(&r, 0)?);
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in rows(
        c,
        "SELECT id, kind, name, last_seq, encrypted FROM conversations",
        &[],
    )
    .await?
    {
        let id: String = get(&r, 0)?;
        let kind: String = get(&r, 1)?;
        let kind = ConvKind::parse(&kind)
            .ok_or_else(|| StoreError::Open(format!("conversation {id}: bad kind {kind}")))?;
        let last_seq: i64 = get(&r, 3)?;
        if get::<bool>(&r, 4)? {
            snap.encrypted.push(id.clone());
        }
        index.insert(id.clone(), snap.conversations.len());
        snap.conversations.push(ConvRecord {
            id,
            kind,
            name: get(&r, 2)?,
            last_seq: last_seq as u64,
            receipts: Default::default(),
            roles: Default::default(),
        });
    }
    let members = rows(
        c,
        "SELECT conversation_id, username, delivered_seq, read_seq, role FROM members",
        &[],
    )
    .await?;
    for r in &members {
        let conv: String = get(r, 0)?;
        let user: String = get(r, 1)?;
        let (d, rd): (i64, i64) = (get(r, 2)?, get(r, 3)?);
        let role: String = get(r, 4)?;
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
    for r in rows(c, "SELECT username FROM users WHERE kind <> 'person'", &[]).await? {
        snap.bots.push(get(&r, 0)?);
    }
    for r in rows(c, "SELECT blocker, blocked FROM blocks", &[]).await? {
        snap.blocks.push((get(&r, 0)?, get(&r, 1)?));
    }
    Ok(snap)
}
