//! Writes of secret conversations on SQLite: creating one, a message (or
//! edit, reaction, file) with the shares of its Megolm session, and
//! `keys_share`. [`crate::store::rules::secret`] decides; the event, the
//! shares it records and the inbox messages they become are written in the
//! one savepoint of the request, so a refusal keeps none of them.

use super::facts::Mirrored;
use super::keys::{KeyCaps, device_of_session};
use super::writer::Writer;
use super::{Appended, StoreError};
use crate::proto::{ConvKind, DeviceRef, EventBody, ToDeviceMessage};
use crate::store::keyrows::target_of;
use crate::store::rules::secret::{self, SecretFacts, SecretWrite};
use crate::store::rules::{Decision, decide_now};
use rusqlite::{OptionalExtension, params};
use std::future::{Future, ready};

/// A write to a secret conversation. The `user` is the caller and
/// `token_hash` their session's (whose device sends).
#[derive(Debug, Clone)]
pub enum SecretOp {
    Create {
        user: String,
        kind: ConvKind,
        name: Option<String>,
        members: Vec<String>,
    },
    /// A message, edit, reaction or file carrying its ciphertext, and
    /// shares of its session.
    Event {
        user: String,
        token_hash: String,
        conversation_id: String,
        client_msg_id: String,
        body: EventBody,
        shares: Vec<ToDeviceMessage>,
        caps: KeyCaps,
    },
    /// `keys_share`.
    Share {
        user: String,
        token_hash: String,
        conversation_id: String,
        session_id: String,
        shares: Vec<ToDeviceMessage>,
        caps: KeyCaps,
    },
}

impl Writer {
    pub(super) fn secret(&mut self, op: SecretOp) -> Result<Appended, StoreError> {
        match op {
            SecretOp::Create {
                user,
                kind,
                name,
                members,
            } => {
                let limits = self.limits.clone();
                let decided = decide_now(secret::create(
                    &mut self.facts(),
                    &limits,
                    &user,
                    kind,
                    name,
                    members,
                ))?;
                match decided {
                    Decision::Done(done) => Ok(done),
                    Decision::Write(new) => self.create(&user, kind, new, true),
                }
            }
            SecretOp::Event {
                user,
                token_hash,
                conversation_id: conv,
                client_msg_id,
                body,
                shares,
                caps,
            } => {
                let device = device_of_session(&self.conn, &token_hash)?.map(|d| d.device_id);
                let to: Vec<DeviceRef> = shares.iter().map(target_of).collect();
                let cmid = Some(client_msg_id);
                let decided = decide_now(secret::event(
                    &mut self.facts(),
                    caps.inbox,
                    &user,
                    device.as_deref(),
                    &conv,
                    cmid.as_deref(),
                    &body,
                    &to,
                ))?;
                let write = match decided {
                    Decision::Done(done) => return Ok(done),
                    Decision::Write(w) => w,
                };
                let done = self.write_event(&user, &conv, cmid, body)?;
                self.record_shares(&write, &shares)?;
                Ok(done)
            }
            SecretOp::Share {
                user,
                token_hash,
                conversation_id: conv,
                session_id,
                shares,
                caps,
            } => {
                let device = device_of_session(&self.conn, &token_hash)?.map(|d| d.device_id);
                let to: Vec<DeviceRef> = shares.iter().map(target_of).collect();
                let write = decide_now(secret::share(
                    &mut self.facts(),
                    caps.inbox,
                    &user,
                    device.as_deref(),
                    &conv,
                    &session_id,
                    &to,
                ))?;
                self.record_shares(&write, &shares)?;
                Ok(Appended {
                    conversation_id: conv,
                    seq: None,
                })
            }
        }
    }

    /// Carry out `write`: record the session's owner (when new) and its
    /// holders, and deliver each share to its device's inbox.
    fn record_shares(
        &mut self,
        write: &SecretWrite,
        shares: &[ToDeviceMessage],
    ) -> Result<(), StoreError> {
        let (conv, session) = (&write.conversation_id, &write.session);
        if let Some(owner) = write.owner() {
            self.conn
                .prepare_cached(
                    "INSERT INTO megolm_sessions (conversation_id, session_id, username, device_id)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![conv, session, owner.user, owner.device_id])?;
            // The device's earlier sessions here are rotated out: who holds
            // them need not be kept (a send with one again would only be
            // asked to share it anew).
            self.conn
                .prepare_cached(
                    "DELETE FROM megolm_holders WHERE conversation_id = ?1 AND session_id IN
                       (SELECT session_id FROM megolm_sessions
                        WHERE conversation_id = ?1 AND username = ?3 AND device_id = ?4
                          AND session_id <> ?2)",
                )?
                .execute(params![conv, session, owner.user, owner.device_id])?;
        }
        for h in &write.holders {
            self.conn
                .prepare_cached(
                    "INSERT INTO megolm_holders (conversation_id, session_id, username, device_id)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![conv, session, h.user, h.device_id])?;
        }
        for s in shares {
            self.deliver(&write.device, s)?;
        }
        Ok(())
    }
}

impl Mirrored<'_> {
    fn device_ids(&self, user: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached("SELECT device_id FROM devices WHERE username = ?1 ORDER BY device_id")?
            .query_map([user], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn session_owner(&self, conv: &str, session: &str) -> Result<Option<DeviceRef>, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached(
                "SELECT username, device_id FROM megolm_sessions
                 WHERE conversation_id = ?1 AND session_id = ?2",
            )?
            .query_row(params![conv, session], |r| {
                Ok(DeviceRef {
                    user: r.get(0)?,
                    device_id: r.get(1)?,
                })
            })
            .optional()?)
    }

    fn holders(&self, conv: &str, session: &str) -> Result<Vec<DeviceRef>, StoreError> {
        Ok(self
            .0
            .conn
            .prepare_cached(
                "SELECT username, device_id FROM megolm_holders
                 WHERE conversation_id = ?1 AND session_id = ?2",
            )?
            .query_map(params![conv, session], |r| {
                Ok(DeviceRef {
                    user: r.get(0)?,
                    device_id: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    fn inbox_len(&self, d: &DeviceRef) -> Result<Option<usize>, StoreError> {
        let exists = self
            .0
            .conn
            .prepare_cached("SELECT 1 FROM devices WHERE username = ?1 AND device_id = ?2")?
            .query_row(params![d.user, d.device_id], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let n: i64 = self
            .0
            .conn
            .prepare_cached("SELECT COUNT(*) FROM inbox WHERE username = ?1 AND device_id = ?2")?
            .query_row(params![d.user, d.device_id], |r| r.get(0))?;
        Ok(Some(n as usize))
    }
}

impl SecretFacts for Mirrored<'_> {
    fn devices(
        &mut self,
        user: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        ready(self.device_ids(user))
    }

    fn session_owner(
        &mut self,
        conv: &str,
        session: &str,
    ) -> impl Future<Output = Result<Option<DeviceRef>, StoreError>> + Send {
        ready(Mirrored::session_owner(self, conv, session))
    }

    fn holders(
        &mut self,
        conv: &str,
        session: &str,
    ) -> impl Future<Output = Result<Vec<DeviceRef>, StoreError>> + Send {
        ready(Mirrored::holders(self, conv, session))
    }

    fn inbox_len(
        &mut self,
        device: &DeviceRef,
    ) -> impl Future<Output = Result<Option<usize>, StoreError>> + Send {
        ready(Mirrored::inbox_len(self, device))
    }
}
