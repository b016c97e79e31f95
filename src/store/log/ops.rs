//! The writer's operations: accounts, conversations and membership, and the
//! log itself (validation, idempotency, sequencing), each run inside the
//! writer's open transaction.

use super::mirror::ConvMirror;
use super::writer::{Writer, rejected};
use super::{Append, Appended, Committed, StoreError};
use crate::proto::{
    ConvKind, ErrorCode, Event, EventBody, MemberRole, ReceiptPair, encode_event_with_body,
    now_millis,
};
use rusqlite::{OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

impl Writer {
    pub(super) fn conv(&self, id: &str) -> Result<&ConvMirror, StoreError> {
        self.mirror
            .convs
            .get(id)
            .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))
    }

    pub(super) fn member_conv(&self, user: &str, id: &str) -> Result<&ConvMirror, StoreError> {
        let conv = self.conv(id)?;
        if !conv.members.contains(user) {
            return Err(rejected(
                ErrorCode::Forbidden,
                "you are not a member of this conversation",
            ));
        }
        Ok(conv)
    }

    pub(super) fn append(&mut self, op: Append) -> Result<Appended, StoreError> {
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
            } => self.leave(&user, &conversation_id),
            Append::RemoveMembers {
                user,
                conversation_id,
                members,
            } => self.remove_members(&user, &conversation_id, members),
            Append::SetRole {
                user,
                conversation_id,
                target,
                role,
            } => self.set_role(&user, &conversation_id, &target, role),
            Append::AddMembers {
                user,
                conversation_id,
                members,
            } => {
                let conv = self.managed_conv(
                    &user,
                    &conversation_id,
                    "a DM has exactly two members; create a group instead",
                    "only an admin of this conversation may add members",
                )?;
                let mut new: Vec<String> = Vec::new();
                for m in members {
                    self.check_user(&m)?;
                    self.check_not_blocked_by(&m, &user)?;
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
                self.forget_removals(&conversation_id, &new)?;
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
                if let Some(done) =
                    self.prior(&user, client_msg_id.as_deref(), &conversation_id, "rename")?
                {
                    return Ok(done);
                }
                let conv = self.managed_conv(
                    &user,
                    &conversation_id,
                    "a DM has no name",
                    "only an admin of this conversation may rename it",
                )?;
                let kind = conv.kind;
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

    pub(super) fn check_user(&self, name: &str) -> Result<(), StoreError> {
        // An account made beside the running server (`chatd admin`) is in
        // the database before the mirror.
        if self.mirror.users.contains(name) || super::accounts::exists(&self.conn, name)? {
            Ok(())
        } else {
            Err(rejected(
                ErrorCode::NotFound,
                format!("no user named {name}"),
            ))
        }
    }

    /// Refuse when one of `users` is in as many conversations as allowed.
    pub(super) fn check_room(&self, users: &[String]) -> Result<(), StoreError> {
        let max = self.limits.max_conversations_per_user;
        match users
            .iter()
            .find(|u| self.mirror.memberships.get(*u).copied().unwrap_or(0) >= max)
        {
            Some(full) => Err(rejected(
                ErrorCode::LimitExceeded,
                format!("max_conversations_per_user: {full} is in {max} conversations already"),
            )),
            None => Ok(()),
        }
    }

    pub(super) fn add_members(&mut self, conv: &str, users: &[String]) -> Result<(), StoreError> {
        self.check_room(users)?;
        for u in users {
            *self.mirror.memberships.entry(u.clone()).or_default() += 1;
        }
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

    pub(super) fn create(
        &mut self,
        user: &str,
        kind: ConvKind,
        name: Option<String>,
        members: Vec<String>,
    ) -> Result<Appended, StoreError> {
        let mut everyone: Vec<String> = vec![user.to_string()];
        for m in members {
            self.check_user(&m)?;
            self.check_not_blocked_by(&m, user)?;
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
                let key = super::mirror::dm_key(&everyone);
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
        self.check_room(&everyone)?;
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
                roles: HashMap::new(),
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
        if kind != ConvKind::Dm {
            self.store_role(&id, user, MemberRole::Owner)?;
        }
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

    pub(super) fn join(
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
        self.check_not_removed(&id, user)?;
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
    pub(super) fn append_event(
        &mut self,
        user: &str,
        conv_id: &str,
        client_msg_id: Option<String>,
        body: EventBody,
    ) -> Result<Appended, StoreError> {
        let conv = self.member_conv(user, conv_id)?;
        let moderator = conv.role(user).manages();
        if conv.kind == ConvKind::Dm
            && let Some(other) = conv.members.iter().find(|m| *m != user)
            && self.mirror.blocks.blocks(other, user)
        {
            return Err(rejected(
                ErrorCode::Forbidden,
                "you cannot write in this conversation",
            ));
        }
        // A retry must get its original answer even if what it refers to
        // has changed since, so requests that check a target look for a
        // prior copy first. A plain message leaves that to the insert
        // (`write_event`), which finds a prior copy through the same index.
        let checks_target = !matches!(
            body,
            EventBody::Message { reply_to: None, .. } | EventBody::File { reply_to: None, .. }
        );
        if checks_target
            && let Some(done) = self.prior(user, client_msg_id.as_deref(), conv_id, body.kind())?
        {
            return Ok(done);
        }
        match &body {
            EventBody::Message {
                reply_to: Some(target),
                ..
            }
            | EventBody::File {
                reply_to: Some(target),
                ..
            } => {
                self.target(conv_id, *target)?;
            }
            EventBody::Edit { target_seq, .. } | EventBody::Delete { target_seq } => {
                let (author, deleted, file) = self.target(conv_id, *target_seq)?;
                if file && matches!(body, EventBody::Edit { .. }) {
                    return Err(rejected(
                        ErrorCode::InvalidArgument,
                        "a shared file cannot be edited; delete it and share it again",
                    ));
                }
                // Admins of the conversation and of the server may delete
                // any message; only its author edits it.
                let may = author == user
                    || (matches!(body, EventBody::Delete { .. })
                        && (moderator || self.server_admin(user)?));
                if !may {
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
                let (_, deleted, _) = self.target(conv_id, *target_seq)?;
                if deleted {
                    return Err(rejected(ErrorCode::NotFound, "that message was deleted"));
                }
            }
            EventBody::File { .. } => {}
            _ => {}
        }
        self.check_file(user, &body)?;
        self.write_event(user, conv_id, client_msg_id, body)
    }

    /// The original result of a retried request (same sender and
    /// client_msg_id), or `None` for a new one.
    pub(super) fn prior(
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

    /// The author of message (or shared file) `seq`, whether it has been
    /// deleted, and whether it is a file.
    pub(super) fn target(&self, conv: &str, seq: u64) -> Result<(String, bool, bool), StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT sender, kind FROM events WHERE conversation_id = ?1 AND seq = ?2",
            )?
            .query_row(params![conv, seq as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((sender, kind)) if kind == "message" || kind == "file" => {
                let deleted: bool = self
                    .conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM events
                         WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 'delete')",
                    )?
                    .query_row(params![conv, seq as i64], |r| r.get(0))?;
                Ok((sender, deleted, kind == "file"))
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
    pub(super) fn write_event(
        &mut self,
        user: &str,
        conv_id: &str,
        client_msg_id: Option<String>,
        body: EventBody,
    ) -> Result<Appended, StoreError> {
        let seq = self
            .mirror
            .convs
            .get(conv_id)
            .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?
            .last_seq
            + 1;
        let ts = now_millis();
        let target = match &body {
            EventBody::Edit { target_seq, .. }
            | EventBody::Delete { target_seq }
            | EventBody::Reaction { target_seq, .. } => Some(*target_seq as i64),
            _ => None,
        };
        let data = serde_json::to_string(&body)
            .map_err(|e| StoreError::Open(format!("encoding an event: {e}")))?;
        let id = new_event_id();
        let doc = self.doc_for(&body);
        let bot = self.mirror.bots.contains(user);
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq, data, eid, doc, bot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (sender, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING",
            )?
            .execute(params![conv_id, seq as i64, ts, user, body.kind(), client_msg_id, target, data, id, doc, bot.then_some(1)])?;
        if inserted == 0 {
            // A retry: (sender, client_msg_id) is taken. Its original
            // answer, or a conflict if it was used for something else.
            return self
                .prior(user, client_msg_id.as_deref(), conv_id, body.kind())?
                .ok_or_else(|| StoreError::Open("idempotency index out of step".into()));
        }
        self.track_file(user, conv_id, seq, &body)?;
        self.index_event(conv_id, seq, ts, user, &body)?;
        let conv = self
            .mirror
            .convs
            .get_mut(conv_id)
            .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?;
        conv.last_seq = seq;
        let event = Event {
            conversation_id: conv_id.to_string(),
            seq,
            ts,
            sender: user.to_string(),
            client_msg_id,
            eid: Some(id),
            bot,
            body,
        };
        let push = encode_event_with_body(&event, &data);
        self.changes.push(Committed::Event(Arc::new(event), push));
        Ok(Appended {
            conversation_id: conv_id.to_string(),
            seq: Some((seq, ts)),
        })
    }

    pub(super) fn receipt(
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

/// A new event id: 64 random bits in hex. Unique enough to tell two events
/// at one seq apart, which is all it is for.
fn new_event_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}
