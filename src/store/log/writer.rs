//! The single writer: group commit, sequencing and write-side validation.
//!
//! The writer keeps a mirror of what validation needs (conversation kinds,
//! last seqs, members, channel names, DM keys, usernames) so that a request is
//! checked and sequenced without extra reads. The mirror changes only as
//! operations succeed inside the open transaction; if a commit fails the
//! mirror is reloaded from the database and every request of the batch fails.

use super::{Append, Appended, Committed, StoreError, WriteLimits, WriteOp};
use crate::proto::{ConvKind, ErrorCode, Event, EventBody, ProtoError, ReceiptPair, now_millis};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

/// Receives committed changes in commit order, on the writer thread. It must
/// not block: it is called between a commit and the replies to its callers.
pub trait CommitSink: Send + Sync + 'static {
    fn committed(&self, changes: &[Committed]);
}

pub(super) struct WriterThread {
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl WriterThread {
    pub(super) fn start(
        conn: Connection,
        rx: mpsc::Receiver<WriteOp>,
        batch_max: usize,
        limits: WriteLimits,
        sink: Arc<dyn CommitSink>,
    ) -> Result<WriterThread, StoreError> {
        let mirror = Mirror::load(&conn)?;
        let mut writer = Writer {
            conn,
            mirror,
            limits,
            changes: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("chatd-writer".into())
            .spawn(move || writer.run(rx, batch_max, sink))
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(WriterThread {
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Wait for the writer to finish (after every sender is gone).
    pub(super) fn join(&self) {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[derive(Debug)]
struct ConvMirror {
    kind: ConvKind,
    last_seq: u64,
    members: HashSet<String>,
}

#[derive(Debug, Default)]
struct Mirror {
    convs: HashMap<String, ConvMirror>,
    channels: HashMap<String, String>,
    dms: HashMap<String, String>,
    users: HashSet<String>,
}

impl Mirror {
    fn load(conn: &Connection) -> Result<Mirror, StoreError> {
        let mut m = Mirror::default();
        let mut stmt = conn.prepare("SELECT username FROM users")?;
        for u in stmt.query_map([], |r| r.get::<_, String>(0))? {
            m.users.insert(u?);
        }
        let mut stmt =
            conn.prepare("SELECT id, kind, name, dm_key, last_seq FROM conversations")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (id, kind, name, dm_key, last_seq) = row?;
            let kind = ConvKind::parse(&kind)
                .ok_or_else(|| StoreError::Open(format!("conversation {id}: bad kind {kind}")))?;
            if kind == ConvKind::Channel
                && let Some(name) = &name
            {
                m.channels.insert(name.clone(), id.clone());
            }
            if let Some(key) = dm_key {
                m.dms.insert(key, id.clone());
            }
            m.convs.insert(
                id,
                ConvMirror {
                    kind,
                    last_seq: last_seq as u64,
                    members: HashSet::new(),
                },
            );
        }
        let mut stmt = conn.prepare("SELECT conversation_id, username FROM members")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (conv, user) = row?;
            if let Some(c) = m.convs.get_mut(&conv) {
                c.members.insert(user);
            }
        }
        Ok(m)
    }
}

struct Writer {
    conn: Connection,
    mirror: Mirror,
    limits: WriteLimits,
    /// Changes of the open transaction, published after it commits.
    changes: Vec<Committed>,
}

/// A reply waiting for its batch to commit.
enum Pending {
    Unit(
        tokio::sync::oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Append(
        tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
        Result<Appended, StoreError>,
    ),
    Receipt(
        tokio::sync::oneshot::Sender<Result<Option<ReceiptPair>, StoreError>>,
        Result<Option<ReceiptPair>, StoreError>,
    ),
}

impl Pending {
    fn fail(self) -> Pending {
        let err = || StoreError::Open("commit failed".into());
        match self {
            Pending::Unit(tx, _) => Pending::Unit(tx, Err(err())),
            Pending::Append(tx, _) => Pending::Append(tx, Err(err())),
            Pending::Receipt(tx, _) => Pending::Receipt(tx, Err(err())),
        }
    }
    fn send(self) {
        match self {
            Pending::Unit(tx, r) => drop(tx.send(r)),
            Pending::Append(tx, r) => drop(tx.send(r)),
            Pending::Receipt(tx, r) => drop(tx.send(r)),
        }
    }
}

fn rejected(code: ErrorCode, msg: impl Into<String>) -> StoreError {
    StoreError::Rejected(ProtoError::new(code, msg))
}

impl Writer {
    fn run(
        &mut self,
        mut rx: mpsc::Receiver<WriteOp>,
        batch_max: usize,
        sink: Arc<dyn CommitSink>,
    ) {
        let mut batch = Vec::with_capacity(batch_max);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < batch_max {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let pending = self.commit_batch(&mut batch);
            if !self.changes.is_empty() {
                sink.committed(&self.changes);
                self.changes.clear();
            }
            for p in pending {
                p.send();
            }
        }
        tracing::debug!("writer: queue closed, exiting");
    }

    fn commit_batch(&mut self, batch: &mut Vec<WriteOp>) -> Vec<Pending> {
        let mut pending = Vec::with_capacity(batch.len());
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!("writer: cannot begin a transaction: {e}");
            for op in batch.drain(..) {
                pending.push(self.refuse(op));
            }
            return pending.into_iter().map(Pending::fail).collect();
        }
        for op in batch.drain(..) {
            pending.push(self.apply(op));
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            tracing::error!("writer: commit failed: {e}");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.changes.clear();
            match Mirror::load(&self.conn) {
                Ok(m) => self.mirror = m,
                Err(e) => tracing::error!("writer: cannot reload state: {e}"),
            }
            return pending.into_iter().map(Pending::fail).collect();
        }
        pending
    }

    fn refuse(&mut self, op: WriteOp) -> Pending {
        match op {
            WriteOp::Register { reply, .. }
            | WriteOp::CreateSession { reply, .. }
            | WriteOp::RevokeSession { reply, .. } => Pending::Unit(reply, Err(StoreError::Closed)),
            WriteOp::Append { reply, .. } => Pending::Append(reply, Err(StoreError::Closed)),
            WriteOp::Receipt { reply, .. } => Pending::Receipt(reply, Err(StoreError::Closed)),
        }
    }

    /// Apply one operation inside a savepoint, so that a failure undoes
    /// only its own writes.
    fn apply(&mut self, op: WriteOp) -> Pending {
        let mark = self.changes.len();
        if let Err(e) = self.conn.execute_batch("SAVEPOINT op") {
            return self.refuse_with(op, e.into());
        }
        let result = match op {
            WriteOp::Register {
                username,
                password_hash,
                reply,
            } => Pending::Unit(reply, self.register(username, password_hash)),
            WriteOp::CreateSession {
                username,
                token_hash,
                device,
                reply,
            } => Pending::Unit(reply, self.create_session(&username, &token_hash, &device)),
            WriteOp::RevokeSession { token_hash, reply } => Pending::Unit(
                reply,
                self.conn
                    .execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
                    .map(|_| ())
                    .map_err(Into::into),
            ),
            WriteOp::Append { op, reply } => Pending::Append(reply, self.append(op)),
            WriteOp::Receipt {
                user,
                conversation_id,
                delivered,
                read,
                reply,
            } => Pending::Receipt(
                reply,
                self.receipt(&user, &conversation_id, delivered, read),
            ),
        };
        let (failed, db_error) = match &result {
            Pending::Unit(_, r) => (r.is_err(), matches!(r, Err(StoreError::Db(_)))),
            Pending::Append(_, r) => (r.is_err(), matches!(r, Err(StoreError::Db(_)))),
            Pending::Receipt(_, r) => (r.is_err(), matches!(r, Err(StoreError::Db(_)))),
        };
        let end = if failed {
            self.changes.truncate(mark);
            "ROLLBACK TO op; RELEASE op"
        } else {
            "RELEASE op"
        };
        if let Err(e) = self.conn.execute_batch(end) {
            tracing::error!("writer: savepoint failed: {e}");
        }
        if db_error {
            // The mirror may hold part of the undone operation: rebuild it
            // from the transaction as it stands after the rollback.
            match Mirror::load(&self.conn) {
                Ok(m) => self.mirror = m,
                Err(e) => tracing::error!("writer: cannot reload state: {e}"),
            }
        }
        result
    }

    fn refuse_with(&mut self, op: WriteOp, e: StoreError) -> Pending {
        tracing::error!("writer: {e}");
        self.refuse(op)
    }

    fn register(&mut self, username: String, password_hash: String) -> Result<(), StoreError> {
        if self.mirror.users.contains(&username) {
            return Err(rejected(ErrorCode::UsernameTaken, "that username is taken"));
        }
        self.conn.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
            params![username, password_hash, now_millis()],
        )?;
        self.mirror.users.insert(username.clone());
        self.changes.push(Committed::User(username));
        Ok(())
    }

    fn create_session(
        &mut self,
        user: &str,
        token_hash: &str,
        device: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sessions (token_hash, username, device, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, user, device, now_millis()],
        )?;
        Ok(())
    }

    fn conv(&self, id: &str) -> Result<&ConvMirror, StoreError> {
        self.mirror
            .convs
            .get(id)
            .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))
    }

    fn member_conv(&self, user: &str, id: &str) -> Result<&ConvMirror, StoreError> {
        let conv = self.conv(id)?;
        if !conv.members.contains(user) {
            return Err(rejected(
                ErrorCode::Forbidden,
                "you are not a member of this conversation",
            ));
        }
        Ok(conv)
    }

    fn append(&mut self, op: Append) -> Result<Appended, StoreError> {
        match op {
            Append::Event {
                user,
                conversation_id,
                client_msg_id,
                body,
            } => self.append_event(&user, &conversation_id, Some(client_msg_id), body),
            Append::Create {
                user,
                kind,
                name,
                members,
            } => self.create(&user, kind, name, members),
            Append::Join {
                user,
                conversation_id,
                name,
            } => self.join(&user, conversation_id, name),
            Append::Leave {
                user,
                conversation_id,
            } => {
                let conv = self.member_conv(&user, &conversation_id)?;
                if conv.kind == ConvKind::Dm {
                    return Err(rejected(
                        ErrorCode::InvalidArgument,
                        "you cannot leave a DM",
                    ));
                }
                let ev = self.write_event(
                    &user,
                    &conversation_id,
                    None,
                    EventBody::Leave {
                        members: vec![user.clone()],
                    },
                )?;
                self.conn.execute(
                    "DELETE FROM members WHERE conversation_id = ?1 AND username = ?2",
                    params![conversation_id, user],
                )?;
                if let Some(c) = self.mirror.convs.get_mut(&conversation_id) {
                    c.members.remove(&user);
                }
                Ok(ev)
            }
            Append::AddMembers {
                user,
                conversation_id,
                members,
            } => {
                let conv = self.member_conv(&user, &conversation_id)?;
                if conv.kind == ConvKind::Dm {
                    return Err(rejected(
                        ErrorCode::InvalidArgument,
                        "a DM has exactly two members; create a group instead",
                    ));
                }
                let mut new: Vec<String> = Vec::new();
                for m in members {
                    self.check_user(&m)?;
                    if !conv.members.contains(&m) && !new.contains(&m) {
                        new.push(m);
                    }
                }
                if new.is_empty() {
                    return Ok(Appended {
                        conversation_id,
                        seq: None,
                    });
                }
                if conv.members.len() + new.len() > self.limits.max_members {
                    return Err(rejected(ErrorCode::TooLarge, "too many members"));
                }
                new.sort();
                self.add_members(&conversation_id, &new)?;
                self.write_event(
                    &user,
                    &conversation_id,
                    None,
                    EventBody::Join { members: new },
                )
            }
            Append::Rename {
                user,
                conversation_id,
                client_msg_id,
                name,
            } => {
                let conv = self.member_conv(&user, &conversation_id)?;
                let kind = conv.kind;
                if let Some(done) =
                    self.prior(&user, client_msg_id.as_deref(), &conversation_id, "rename")?
                {
                    return Ok(done);
                }
                match kind {
                    ConvKind::Dm => {
                        return Err(rejected(ErrorCode::InvalidArgument, "a DM has no name"));
                    }
                    ConvKind::Channel => {
                        if self
                            .mirror
                            .channels
                            .get(&name)
                            .is_some_and(|other| *other != conversation_id)
                        {
                            return Err(rejected(
                                ErrorCode::Conflict,
                                "a channel with that name exists",
                            ));
                        }
                    }
                    ConvKind::Group => {}
                }
                self.conn.execute(
                    "UPDATE conversations SET name = ?1 WHERE id = ?2",
                    params![name, conversation_id],
                )?;
                if kind == ConvKind::Channel {
                    self.mirror.channels.retain(|_, id| *id != conversation_id);
                    self.mirror
                        .channels
                        .insert(name.clone(), conversation_id.clone());
                }
                self.write_event(
                    &user,
                    &conversation_id,
                    client_msg_id,
                    EventBody::Rename { name },
                )
            }
        }
    }

    fn check_user(&self, name: &str) -> Result<(), StoreError> {
        if self.mirror.users.contains(name) {
            Ok(())
        } else {
            Err(rejected(
                ErrorCode::NotFound,
                format!("no user named {name}"),
            ))
        }
    }

    fn add_members(&mut self, conv: &str, users: &[String]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO members (conversation_id, username) VALUES (?1, ?2)")?;
        for u in users {
            stmt.execute(params![conv, u])?;
        }
        if let Some(c) = self.mirror.convs.get_mut(conv) {
            c.members.extend(users.iter().cloned());
        }
        Ok(())
    }

    fn create(
        &mut self,
        user: &str,
        kind: ConvKind,
        name: Option<String>,
        members: Vec<String>,
    ) -> Result<Appended, StoreError> {
        let mut everyone: Vec<String> = vec![user.to_string()];
        for m in members {
            self.check_user(&m)?;
            if !everyone.contains(&m) {
                everyone.push(m);
            }
        }
        everyone.sort();
        if everyone.len() > self.limits.max_members {
            return Err(rejected(ErrorCode::TooLarge, "too many members"));
        }
        let mut dm_key = None;
        let name = match kind {
            ConvKind::Dm => {
                if everyone.len() != 2 {
                    return Err(rejected(
                        ErrorCode::InvalidArgument,
                        "a DM is with exactly one other user",
                    ));
                }
                let key = everyone.join("\n");
                if let Some(id) = self.mirror.dms.get(&key) {
                    return Ok(Appended {
                        conversation_id: id.clone(),
                        seq: None,
                    });
                }
                dm_key = Some(key);
                None
            }
            ConvKind::Group | ConvKind::Channel => {
                let name = name.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                    rejected(
                        ErrorCode::InvalidArgument,
                        "a group or channel needs a name",
                    )
                })?;
                if kind == ConvKind::Channel && self.mirror.channels.contains_key(&name) {
                    return Err(rejected(
                        ErrorCode::Conflict,
                        format!("a channel named {name} exists; join it instead"),
                    ));
                }
                Some(name)
            }
        };
        let id = super::new_conversation_id();
        self.conn.execute(
            "INSERT INTO conversations (id, kind, name, dm_key, last_seq, created_at)
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            params![id, kind.as_str(), name, dm_key, now_millis()],
        )?;
        self.mirror.convs.insert(
            id.clone(),
            ConvMirror {
                kind,
                last_seq: 0,
                members: HashSet::new(),
            },
        );
        if let Some(key) = dm_key {
            self.mirror.dms.insert(key, id.clone());
        }
        if kind == ConvKind::Channel
            && let Some(n) = &name
        {
            self.mirror.channels.insert(n.clone(), id.clone());
        }
        self.changes.push(Committed::Created {
            id: id.clone(),
            kind,
            name: name.clone(),
        });
        self.add_members(&id, &everyone)?;
        self.write_event(
            user,
            &id,
            None,
            EventBody::Create {
                name,
                members: everyone,
            },
        )
    }

    fn join(
        &mut self,
        user: &str,
        id: Option<String>,
        name: Option<String>,
    ) -> Result<Appended, StoreError> {
        let id = match (id, name) {
            (Some(id), _) => id,
            (None, Some(name)) => {
                let name = name.trim_start_matches('#');
                self.mirror.channels.get(name).cloned().ok_or_else(|| {
                    rejected(ErrorCode::NotFound, format!("no channel named #{name}"))
                })?
            }
            (None, None) => {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    "join needs a conversation_id or a name",
                ));
            }
        };
        let conv = self.conv(&id)?;
        if conv.kind != ConvKind::Channel {
            // Do not reveal private conversations to non-members.
            if !conv.members.contains(user) {
                return Err(rejected(
                    ErrorCode::Forbidden,
                    "only channels can be joined",
                ));
            }
        }
        if conv.members.contains(user) {
            return Ok(Appended {
                conversation_id: id,
                seq: None,
            });
        }
        if conv.members.len() >= self.limits.max_members {
            return Err(rejected(ErrorCode::TooLarge, "this channel is full"));
        }
        self.add_members(&id, &[user.to_string()])?;
        self.write_event(
            user,
            &id,
            None,
            EventBody::Join {
                members: vec![user.to_string()],
            },
        )
    }

    /// Validate and write a message, edit, deletion, reaction or rename.
    fn append_event(
        &mut self,
        user: &str,
        conv_id: &str,
        client_msg_id: Option<String>,
        body: EventBody,
    ) -> Result<Appended, StoreError> {
        self.member_conv(user, conv_id)?;
        if let Some(done) = self.prior(user, client_msg_id.as_deref(), conv_id, body.kind())? {
            return Ok(done);
        }
        match &body {
            EventBody::Message {
                reply_to: Some(target),
                ..
            } => {
                self.target(conv_id, *target)?;
            }
            EventBody::Edit { target_seq, .. } | EventBody::Delete { target_seq } => {
                let (author, deleted) = self.target(conv_id, *target_seq)?;
                if author != user {
                    return Err(rejected(
                        ErrorCode::Forbidden,
                        "only the author can edit or delete a message",
                    ));
                }
                if deleted {
                    return Err(rejected(ErrorCode::NotFound, "that message was deleted"));
                }
            }
            EventBody::Reaction { target_seq, .. } => {
                let (_, deleted) = self.target(conv_id, *target_seq)?;
                if deleted {
                    return Err(rejected(ErrorCode::NotFound, "that message was deleted"));
                }
            }
            _ => {}
        }
        self.write_event(user, conv_id, client_msg_id, body)
    }

    /// The original result of a retried request (same sender and
    /// client_msg_id), or `None` for a new one.
    fn prior(
        &self,
        user: &str,
        client_msg_id: Option<&str>,
        conv_id: &str,
        kind: &str,
    ) -> Result<Option<Appended>, StoreError> {
        let Some(cmid) = client_msg_id else {
            return Ok(None);
        };
        let prior: Option<(String, i64, i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT conversation_id, seq, ts, kind FROM events
                 WHERE sender = ?1 AND client_msg_id = ?2",
            )?
            .query_row(params![user, cmid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        match prior {
            None => Ok(None),
            Some((conv, seq, ts, k)) if conv == conv_id && k == kind => Ok(Some(Appended {
                conversation_id: conv,
                seq: Some((seq as u64, ts)),
            })),
            Some(_) => Err(rejected(
                ErrorCode::Conflict,
                "client_msg_id already used for a different request",
            )),
        }
    }

    /// The author of message `seq` and whether it has been deleted.
    fn target(&self, conv: &str, seq: u64) -> Result<(String, bool), StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT sender, kind FROM events WHERE conversation_id = ?1 AND seq = ?2",
            )?
            .query_row(params![conv, seq as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((sender, kind)) if kind == "message" => {
                let deleted: bool = self
                    .conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM events
                         WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 'delete')",
                    )?
                    .query_row(params![conv, seq as i64], |r| r.get(0))?;
                Ok((sender, deleted))
            }
            Some(_) => Err(rejected(
                ErrorCode::InvalidArgument,
                format!("event {seq} is not a message"),
            )),
            None => Err(rejected(
                ErrorCode::NotFound,
                format!("no message with seq {seq}"),
            )),
        }
    }

    /// Assign the next seq and write the event.
    fn write_event(
        &mut self,
        user: &str,
        conv_id: &str,
        client_msg_id: Option<String>,
        body: EventBody,
    ) -> Result<Appended, StoreError> {
        let conv = self
            .mirror
            .convs
            .get_mut(conv_id)
            .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?;
        let seq = conv.last_seq + 1;
        let ts = now_millis();
        let target = match &body {
            EventBody::Edit { target_seq, .. }
            | EventBody::Delete { target_seq }
            | EventBody::Reaction { target_seq, .. } => Some(*target_seq as i64),
            _ => None,
        };
        let data = serde_json::to_string(&body)
            .map_err(|e| StoreError::Open(format!("encoding an event: {e}")))?;
        self.conn
            .prepare_cached(
                "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![conv_id, seq as i64, ts, user, body.kind(), client_msg_id, target, data])?;
        self.conn
            .prepare_cached("UPDATE conversations SET last_seq = ?1 WHERE id = ?2")?
            .execute(params![seq as i64, conv_id])?;
        conv.last_seq = seq;
        self.changes.push(Committed::Event(Arc::new(Event {
            conversation_id: conv_id.to_string(),
            seq,
            ts,
            sender: user.to_string(),
            client_msg_id,
            body,
        })));
        Ok(Appended {
            conversation_id: conv_id.to_string(),
            seq: Some((seq, ts)),
        })
    }

    fn receipt(
        &mut self,
        user: &str,
        conv_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<Option<ReceiptPair>, StoreError> {
        let conv = self.member_conv(user, conv_id)?;
        let read = read.min(conv.last_seq);
        let delivered = delivered.max(read).min(conv.last_seq);
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached(
                "UPDATE members SET delivered_seq = max(delivered_seq, ?1), read_seq = max(read_seq, ?2)
                 WHERE conversation_id = ?3 AND username = ?4
                   AND (delivered_seq < ?1 OR read_seq < ?2)
                 RETURNING delivered_seq, read_seq",
            )?
            .query_row(params![delivered as i64, read as i64, conv_id, user], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(row.map(|(d, r)| {
            let receipt = ReceiptPair {
                delivered: d as u64,
                read: r as u64,
            };
            self.changes.push(Committed::Receipt {
                conversation_id: conv_id.to_string(),
                user: user.to_string(),
                receipt,
            });
            receipt
        }))
    }
}
