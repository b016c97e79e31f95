//! The writer's operations on conversations, membership and the log itself
//! (sequencing, idempotency), each run inside the writer's open transaction
//! once [`crate::store::rules`] has decided what to write.

use super::facts::Mirrored;
use super::mirror::ConvMirror;
use super::writer::{Writer, rejected};
use super::{Append, Appended, Committed, StoreError};
use crate::proto::{
    ConvKind, ErrorCode, Event, EventBody, MemberRole, ReceiptPair, encode_event_with_body,
    now_millis,
};
use crate::store::rules::{self, Decision, decide_now};
use rusqlite::{OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

impl Writer {
    /// The rules' view of this writer.
    pub(super) fn facts(&self) -> Mirrored<'_> {
        Mirrored(self)
    }

    pub(super) fn append(&mut self, op: Append) -> Result<Appended, StoreError> {
        let limits = self.limits.clone();
        match op {
            Append::Event {
                user,
                conversation_id,
                client_msg_id,
                body,
            } => {
                let cmid = Some(client_msg_id);
                let decided = decide_now(rules::event(
                    &mut self.facts(),
                    &user,
                    &conversation_id,
                    cmid.as_deref(),
                    &body,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(()) => self.write_event(&user, &conversation_id, cmid, body),
                }
            }
            Append::Create {
                user,
                kind,
                name,
                members,
            } => {
                let decided = decide_now(rules::create(
                    &mut self.facts(),
                    &limits,
                    &user,
                    kind,
                    name,
                    members,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(new) => self.create(&user, kind, new, false),
                }
            }
            Append::Join {
                user,
                conversation_id,
                name,
            } => {
                let decided = decide_now(rules::join(
                    &mut self.facts(),
                    &limits,
                    &user,
                    conversation_id,
                    name,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(id) => {
                        let me = [user.clone()];
                        self.add_members(&id, &me)?;
                        self.write_event(
                            &user,
                            &id,
                            None,
                            EventBody::Join {
                                members: me.to_vec(),
                            },
                        )
                    }
                }
            }
            Append::Leave {
                user,
                conversation_id,
            } => {
                let heir = decide_now(rules::leave(&mut self.facts(), &user, &conversation_id))?;
                self.leave(&user, &conversation_id, heir)
            }
            Append::RemoveMembers {
                user,
                conversation_id,
                members,
            } => {
                let decided = decide_now(rules::remove_members(
                    &mut self.facts(),
                    &user,
                    &conversation_id,
                    members,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(gone) => self.remove_members(&user, &conversation_id, gone),
                }
            }
            Append::SetRole {
                user,
                conversation_id,
                target,
                role,
            } => {
                let decided = decide_now(rules::set_role(
                    &mut self.facts(),
                    &user,
                    &conversation_id,
                    &target,
                    role,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(change) => {
                        if change.hand_over {
                            self.store_role(&conversation_id, &user, MemberRole::Admin)?;
                        }
                        self.store_role(&conversation_id, &target, role)?;
                        self.write_event(
                            &user,
                            &conversation_id,
                            None,
                            EventBody::Role { user: target, role },
                        )
                    }
                }
            }
            Append::AddMembers {
                user,
                conversation_id,
                members,
            } => {
                let decided = decide_now(rules::add_members(
                    &mut self.facts(),
                    &limits,
                    &user,
                    &conversation_id,
                    members,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(new) => {
                        self.add_members(&conversation_id, &new)?;
                        self.forget_removals(&conversation_id, &new)?;
                        self.write_event(
                            &user,
                            &conversation_id,
                            None,
                            EventBody::Join { members: new },
                        )
                    }
                }
            }
            Append::Rename {
                user,
                conversation_id,
                client_msg_id,
                name,
            } => {
                let decided = decide_now(rules::rename(
                    &mut self.facts(),
                    &user,
                    &conversation_id,
                    client_msg_id.as_deref(),
                    &name,
                ))?;
                let kind = match decided {
                    Decision::Done(done) => return Ok(done),
                    Decision::Write(kind) => kind,
                };
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

    /// Put `users` in `conv` (the rules have checked who and how many).
    pub(super) fn add_members(&mut self, conv: &str, users: &[String]) -> Result<(), StoreError> {
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

    /// Write a conversation the rules accepted (a secret one when
    /// `encrypted`), its members, its owner and its `create` event.
    pub(super) fn create(
        &mut self,
        user: &str,
        kind: ConvKind,
        new: rules::NewConversation,
        encrypted: bool,
    ) -> Result<Appended, StoreError> {
        let rules::NewConversation {
            members: everyone,
            name,
            dm_key,
        } = new;
        let id = super::new_conversation_id();
        self.conn.execute(
            "INSERT INTO conversations (id, kind, name, dm_key, last_seq, created_at, encrypted)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            params![id, kind.as_str(), name, dm_key, now_millis(), encrypted],
        )?;
        self.mirror.convs.insert(
            id.clone(),
            ConvMirror {
                kind,
                last_seq: 0,
                members: HashSet::new(),
                roles: HashMap::new(),
                encrypted,
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
        if encrypted {
            self.changes.push(Committed::Encrypted(id.clone()));
        }
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
        let target = body.target_seq().map(|t| t as i64);
        let data = serde_json::to_string(&body)
            .map_err(|e| StoreError::Open(format!("encoding an event: {e}")))?;
        let id = super::new_event_id();
        let doc = self.doc_for(&body);
        let bot = self.mirror.bots.contains(user);
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq, data, eid, doc, bot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (client_msg_id, sender) WHERE client_msg_id IS NOT NULL DO NOTHING",
            )?
            .execute(params![conv_id, seq as i64, ts, user, body.kind(), client_msg_id, target, data, id, doc, bot.then_some(1)])?;
        if inserted == 0 {
            // A retry: (sender, client_msg_id) is taken. Its original
            // answer, or a conflict if it was used for something else.
            return decide_now(rules::prior(
                &mut self.facts(),
                user,
                client_msg_id.as_deref(),
                conv_id,
                body.kind(),
            ))?
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
        decide_now(rules::member(&mut self.facts(), user, conv_id))?;
        let last_seq = self.mirror.convs.get(conv_id).map_or(0, |c| c.last_seq);
        let (delivered, read) = rules::receipt_bounds(last_seq, delivered, read);
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
