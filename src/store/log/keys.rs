//! The device key directory and the per-device inbox on SQLite: devices
//! (one per session, deleted with it by a trigger), identity keys,
//! one-time and fallback keys, the key ids a device ever used, and the
//! to-device messages waiting for each device. Signatures are checked by
//! the server before an upload reaches the writer; the writer checks that
//! the keys they were checked against are still the stored ones.

use super::writer::{Writer, rejected};
use super::{Committed, Readers, StoreError};
use crate::proto::keys::{ClaimedKey, DeviceKeys, InboxMessage, KeysUpload, SignedKey, UserKeys};
use crate::proto::{DeviceRef, ErrorCode, ToDeviceMessage, now_millis};
use crate::store::keyrows::{
    DEVICE_COLUMNS, InboxRow, KeyRow, changed_meanwhile, digest_of, last_given, push_of,
    stored_body, target_of,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet};

/// Schema 8: devices and their keys, inboxes, Megolm sessions and who
/// holds them, and secret conversations.
pub(super) const SCHEMA: &str = "
    ALTER TABLE conversations ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;

    CREATE TABLE identity_keys (
        username TEXT PRIMARY KEY,
        ed25519  TEXT NOT NULL
    ) WITHOUT ROWID;

    -- One per session that uploaded keys (the session's token).
    CREATE TABLE devices (
        username    TEXT NOT NULL,
        device_id   TEXT NOT NULL,
        token_hash  TEXT NOT NULL UNIQUE,
        curve25519  TEXT NOT NULL,
        ed25519     TEXT NOT NULL,
        certificate TEXT,
        inbox_next  INTEGER NOT NULL DEFAULT 1,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (username, device_id)
    ) WITHOUT ROWID;

    CREATE TABLE one_time_keys (
        username  TEXT NOT NULL,
        device_id TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        key       TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (username, device_id, key_id)
    ) WITHOUT ROWID;

    CREATE TABLE fallback_keys (
        username  TEXT NOT NULL,
        device_id TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        key       TEXT NOT NULL,
        signature TEXT NOT NULL,
        PRIMARY KEY (username, device_id)
    ) WITHOUT ROWID;

    -- Every key id a device uploaded, claimed or not, of its one-time keys
    -- and (apart: Olm counts them apart) of its fallback keys: never
    -- accepted again.
    CREATE TABLE used_key_ids (
        username  TEXT NOT NULL,
        device_id TEXT NOT NULL,
        fallback  INTEGER NOT NULL,
        key_id    TEXT NOT NULL,
        PRIMARY KEY (username, device_id, fallback, key_id)
    ) WITHOUT ROWID;

    CREATE TABLE inbox (
        username      TEXT NOT NULL,
        device_id     TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        sender        TEXT NOT NULL,
        sender_device TEXT NOT NULL,
        body          TEXT NOT NULL,
        PRIMARY KEY (username, device_id, seq)
    ) WITHOUT ROWID;

    -- The device that started each Megolm session of a conversation, and
    -- the devices it was shared with.
    CREATE TABLE megolm_sessions (
        conversation_id TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        username        TEXT NOT NULL,
        device_id       TEXT NOT NULL,
        PRIMARY KEY (conversation_id, session_id)
    ) WITHOUT ROWID;
    CREATE TABLE megolm_holders (
        conversation_id TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        username        TEXT NOT NULL,
        device_id       TEXT NOT NULL,
        PRIMARY KEY (conversation_id, session_id, username, device_id)
    ) WITHOUT ROWID;

    -- Users whose devices went with their sessions, for the writer to tell
    -- (also when `chatd admin` ended the sessions from another process).
    CREATE TABLE device_changes (
        id       INTEGER PRIMARY KEY,
        username TEXT NOT NULL
    );

    CREATE TRIGGER sessions_take_their_devices AFTER DELETE ON sessions BEGIN
        DELETE FROM devices WHERE token_hash = OLD.token_hash;
    END;
    CREATE TRIGGER devices_take_their_keys AFTER DELETE ON devices BEGIN
        DELETE FROM one_time_keys WHERE username = OLD.username AND device_id = OLD.device_id;
        DELETE FROM fallback_keys WHERE username = OLD.username AND device_id = OLD.device_id;
        DELETE FROM used_key_ids WHERE username = OLD.username AND device_id = OLD.device_id;
        DELETE FROM inbox WHERE username = OLD.username AND device_id = OLD.device_id;
        INSERT INTO device_changes (username) VALUES (OLD.username);
    END;
";

/// Caps on keys and inboxes (from `[limits]`), carried by the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCaps {
    pub devices_per_user: usize,
    pub one_time_keys: usize,
    pub inbox: usize,
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    pub user: String,
    pub device_id: String,
    pub token_hash: String,
    /// The session's device label.
    pub name: String,
    pub keys: DeviceKeys,
    pub certificate: Option<String>,
}

/// A change to keys or inboxes, applied by the writer.
#[derive(Debug, Clone)]
pub enum KeyOp {
    /// `keys_upload` from the session `token_hash`, its signatures checked
    /// against `keys` (the device's) and, for a certificate, against the
    /// identity key it names or else `identity_seen`, the identity key
    /// stored when the check was made.
    Upload {
        user: String,
        token_hash: String,
        keys: DeviceKeys,
        upload: Box<KeysUpload>,
        identity_seen: Option<String>,
        caps: KeyCaps,
    },
    /// `keys_sign`: a certificate checked against `identity_seen`.
    Sign {
        user: String,
        device_id: String,
        certificate: String,
        identity_seen: String,
    },
    Claim {
        devices: Vec<DeviceRef>,
    },
    ToDevice {
        user: String,
        token_hash: String,
        messages: Vec<ToDeviceMessage>,
        caps: KeyCaps,
    },
    /// Drop the inbox messages of the session's device up to `upto`.
    Ack {
        token_hash: String,
        upto: u64,
    },
    /// Delete the devices of sessions expired under `life` (an expired
    /// session is deleted when next presented; one never presented again
    /// must not keep a device that others encrypt for).
    Expire {
        life: super::SessionLife,
    },
}

/// What a key change produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReply {
    Done,
    /// Unclaimed one-time keys after an upload.
    Count(u32),
    Claimed(Vec<ClaimedKey>),
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        key_id: r.get(0)?,
        key: r.get(1)?,
        signature: r.get(2)?,
    })
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDevice> {
    Ok(StoredDevice {
        user: r.get(0)?,
        device_id: r.get(1)?,
        token_hash: r.get(2)?,
        name: r.get(3)?,
        keys: DeviceKeys {
            curve25519: r.get(4)?,
            ed25519: r.get(5)?,
        },
        certificate: r.get(6)?,
    })
}

pub(super) fn device_of_session(
    c: &Connection,
    token_hash: &str,
) -> Result<Option<StoredDevice>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.token_hash = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([token_hash], device_row)
        .optional()?)
}

pub(super) fn device(
    c: &Connection,
    user: &str,
    device_id: &str,
) -> Result<Option<StoredDevice>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.username = ?1 AND d.device_id = ?2"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(params![user, device_id], device_row)
        .optional()?)
}

pub(super) fn identity_key(c: &Connection, user: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT ed25519 FROM identity_keys WHERE username = ?1")?
            .query_row([user], |r| r.get(0))
            .optional()?,
    )
}

fn unclaimed(c: &Connection, user: &str, device_id: &str) -> Result<usize, StoreError> {
    let n: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM one_time_keys WHERE username = ?1 AND device_id = ?2",
        )?
        .query_row(params![user, device_id], |r| r.get(0))?;
    Ok(n as usize)
}

impl Writer {
    pub(super) fn keys(&mut self, op: KeyOp) -> Result<KeyReply, StoreError> {
        match op {
            KeyOp::Upload {
                user,
                token_hash,
                keys,
                upload,
                identity_seen,
                caps,
            } => self.upload(&user, &token_hash, keys, *upload, identity_seen, caps),
            KeyOp::Sign {
                user,
                device_id,
                certificate,
                identity_seen,
            } => {
                if identity_key(&self.conn, &user)?.as_deref() != Some(identity_seen.as_str()) {
                    return Err(changed_meanwhile());
                }
                let n = self.conn.execute(
                    "UPDATE devices SET certificate = ?3 WHERE username = ?1 AND device_id = ?2",
                    params![user, device_id, certificate],
                )?;
                if n == 0 {
                    return Err(rejected(
                        ErrorCode::NotFound,
                        format!("you have no device {device_id}"),
                    ));
                }
                self.devices_changed(&user, false);
                Ok(KeyReply::Done)
            }
            KeyOp::Claim { devices } => Ok(KeyReply::Claimed(self.claim(&devices)?)),
            KeyOp::ToDevice {
                user,
                token_hash,
                messages,
                caps,
            } => {
                let me = device_of_session(&self.conn, &token_hash)?.map(|d| d.device_id);
                let to: Vec<DeviceRef> = messages.iter().map(target_of).collect();
                let from =
                    crate::store::rules::decide_now(crate::store::rules::secret::to_device(
                        &mut self.facts(),
                        caps.inbox,
                        &user,
                        me.as_deref(),
                        &to,
                    ))?;
                for m in &messages {
                    self.deliver(&from, m)?;
                }
                Ok(KeyReply::Done)
            }
            KeyOp::Expire { life } => {
                let now = now_millis();
                let max = life.max_ms.map(|m| now.saturating_sub(m));
                self.conn
                    .prepare_cached(
                        "DELETE FROM devices WHERE token_hash IN (
                            SELECT s.token_hash FROM sessions s JOIN users u ON u.username = s.username
                            WHERE u.kind <> 'bot'
                              AND (s.last_seen_at <= ?1 OR (?2 IS NOT NULL AND s.created_at <= ?2)))",
                    )?
                    .execute(params![now.saturating_sub(life.idle_ms), max])?;
                self.sessions_took_devices()?;
                Ok(KeyReply::Done)
            }
            KeyOp::Ack { token_hash, upto } => {
                if let Some(d) = device_of_session(&self.conn, &token_hash)? {
                    self.conn
                        .prepare_cached(
                            "DELETE FROM inbox WHERE username = ?1 AND device_id = ?2 AND seq <= ?3",
                        )?
                        .execute(params![d.user, d.device_id, upto.min(i64::MAX as u64) as i64])?;
                }
                Ok(KeyReply::Done)
            }
        }
    }

    fn upload(
        &mut self,
        user: &str,
        token_hash: &str,
        keys: DeviceKeys,
        upload: KeysUpload,
        identity_seen: Option<String>,
        caps: KeyCaps,
    ) -> Result<KeyReply, StoreError> {
        let c = &self.conn;
        let device_id = upload.device_id.as_str();
        if let Some(mine) = device_of_session(c, token_hash)?
            && mine.device_id != device_id
        {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                format!(
                    "this session's device is {}; a session has one device",
                    mine.device_id
                ),
            ));
        }
        let mut changed = false;
        match device(c, user, device_id)? {
            Some(d) if d.token_hash != token_hash => {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    "another session uses that device_id; choose another",
                ));
            }
            Some(d) if d.keys != keys => {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    "a device's keys do not change; log in again for new ones",
                ));
            }
            Some(_) => {}
            None => {
                let n: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM devices WHERE username = ?1")?
                    .query_row([user], |r| r.get(0))?;
                if n as usize >= caps.devices_per_user {
                    return Err(rejected(
                        ErrorCode::LimitExceeded,
                        format!(
                            "max_devices_per_user: you have {n} devices with keys; log out of one first"
                        ),
                    ));
                }
                c.execute(
                    "INSERT INTO devices (username, device_id, token_hash, curve25519, ed25519, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![user, device_id, token_hash, keys.curve25519, keys.ed25519, now_millis()],
                )?;
                changed = true;
            }
        }
        let current = identity_key(c, user)?;
        if current != identity_seen {
            return Err(changed_meanwhile());
        }
        let mut identity_changed = false;
        if let Some(new) = &upload.identity_key {
            match &current {
                None => {
                    c.execute(
                        "INSERT INTO identity_keys (username, ed25519) VALUES (?1, ?2)",
                        params![user, new],
                    )?;
                    changed = true;
                }
                Some(old) if old == new => {}
                Some(_) if upload.replace_identity => {
                    c.execute(
                        "UPDATE identity_keys SET ed25519 = ?2 WHERE username = ?1",
                        params![user, new],
                    )?;
                    // Every certificate was signed by the old key.
                    c.execute(
                        "UPDATE devices SET certificate = NULL WHERE username = ?1",
                        [user],
                    )?;
                    identity_changed = true;
                }
                Some(_) => {
                    return Err(rejected(
                        ErrorCode::InvalidArgument,
                        "you have an identity key; set replace_identity to replace it",
                    ));
                }
            }
        }
        if let Some(cert) = &upload.certificate {
            c.execute(
                "UPDATE devices SET certificate = ?3 WHERE username = ?1 AND device_id = ?2",
                params![user, device_id, cert],
            )?;
            changed = true;
        }
        let mut seen = BTreeSet::new();
        let one_time = upload.one_time_keys.iter().map(|k| (k, false));
        for (k, fallback) in one_time.chain(upload.fallback_key.iter().map(|k| (k, true))) {
            if !seen.insert((fallback, k.key_id.as_str())) {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    format!("key id {} is given twice", k.key_id),
                ));
            }
            let inserted = c
                .prepare_cached(
                    "INSERT INTO used_key_ids (username, device_id, fallback, key_id)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![user, device_id, fallback, k.key_id])?;
            if inserted == 0 {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    format!("key id {} was used before; ids are never reused", k.key_id),
                ));
            }
        }
        for k in &upload.one_time_keys {
            insert_key(c, "one_time_keys", user, device_id, k)?;
        }
        if let Some(k) = &upload.fallback_key {
            c.execute(
                "DELETE FROM fallback_keys WHERE username = ?1 AND device_id = ?2",
                params![user, device_id],
            )?;
            insert_key(c, "fallback_keys", user, device_id, k)?;
        }
        let count = unclaimed(c, user, device_id)?;
        if count > caps.one_time_keys {
            return Err(rejected(
                ErrorCode::LimitExceeded,
                format!(
                    "max_one_time_keys: a device holds at most {} unclaimed one-time keys",
                    caps.one_time_keys
                ),
            ));
        }
        if changed || identity_changed {
            self.devices_changed(user, identity_changed);
        }
        Ok(KeyReply::Count(count as u32))
    }

    fn claim(&mut self, devices: &[DeviceRef]) -> Result<Vec<ClaimedKey>, StoreError> {
        let c = &self.conn;
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        for d in devices {
            if !done.insert(d) {
                continue;
            }
            let one = c
                .prepare_cached(
                    "SELECT key_id, key, signature FROM one_time_keys
                     WHERE username = ?1 AND device_id = ?2 ORDER BY key_id LIMIT 1",
                )?
                .query_row(params![d.user, d.device_id], key_row)
                .optional()?;
            // Handed out once: gone in this transaction.
            if let Some(k) = &one {
                c.prepare_cached(
                    "DELETE FROM one_time_keys WHERE username = ?1 AND device_id = ?2 AND key_id = ?3",
                )?
                .execute(params![d.user, d.device_id, k.key_id])?;
            }
            let (found, fallback) = match one {
                Some(k) => (Some(k), false),
                None => (
                    c.prepare_cached(
                        "SELECT key_id, key, signature FROM fallback_keys
                         WHERE username = ?1 AND device_id = ?2",
                    )?
                    .query_row(params![d.user, d.device_id], key_row)
                    .optional()?,
                    true,
                ),
            };
            if let Some(k) = found {
                out.push(k.claimed(d, fallback));
            }
        }
        Ok(out)
    }

    /// Put `m` in its device's inbox (the rules checked that it exists
    /// and has room) and push it to that device's connections.
    pub(super) fn deliver(
        &mut self,
        from: &DeviceRef,
        m: &ToDeviceMessage,
    ) -> Result<(), StoreError> {
        let (seq, token): (i64, String) = self
            .conn
            .prepare_cached(
                "UPDATE devices SET inbox_next = inbox_next + 1
                 WHERE username = ?1 AND device_id = ?2
                 RETURNING inbox_next - 1, token_hash",
            )?
            .query_row(params![m.user, m.device_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let body = stored_body(m)?;
        self.conn
            .prepare_cached(
                "INSERT INTO inbox (username, device_id, seq, sender, sender_device, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                m.user,
                m.device_id,
                seq,
                from.user,
                from.device_id,
                body
            ])?;
        self.changes.push(Committed::ToDevice {
            user: m.user.clone(),
            token: digest_of(&token)?,
            push: push_of(from, seq, m),
        });
        Ok(())
    }

    /// Tell `user`'s contacts that their devices changed (once per
    /// commit's worth of changes is enough, but more is harmless).
    pub(super) fn devices_changed(&mut self, user: &str, identity_changed: bool) {
        self.changes.push(Committed::Devices {
            user: user.to_string(),
            identity_changed,
        });
    }

    /// Devices that went with their sessions (see the triggers): tell
    /// their users' contacts.
    pub(super) fn sessions_took_devices(&mut self) -> Result<(), StoreError> {
        let users: BTreeSet<String> = self
            .conn
            .prepare_cached("DELETE FROM device_changes RETURNING username")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for u in users {
            self.devices_changed(&u, false);
        }
        Ok(())
    }
}

fn insert_key(
    c: &Connection,
    table: &str,
    user: &str,
    device_id: &str,
    k: &SignedKey,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO {table} (username, device_id, key_id, key, signature) VALUES (?1, ?2, ?3, ?4, ?5)"
    );
    c.prepare_cached(&sql)?
        .execute(params![user, device_id, k.key_id, k.key, k.signature])?;
    Ok(())
}

impl Readers {
    /// The device of the session `token_hash`, if it uploaded keys.
    pub async fn device_of_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<StoredDevice>, StoreError> {
        let t = token_hash.to_string();
        self.with(move |c| device_of_session(c, &t)).await
    }

    /// One device of `user`.
    pub async fn device(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<StoredDevice>, StoreError> {
        let (u, d) = (user.to_string(), device_id.to_string());
        self.with(move |c| device(c, &u, &d)).await
    }

    /// `user`'s identity key, if they gave one.
    pub async fn identity_key(&self, user: &str) -> Result<Option<String>, StoreError> {
        let u = user.to_string();
        self.with(move |c| identity_key(c, &u)).await
    }

    /// The identity key and devices of each of `users`.
    pub async fn keys_query(
        &self,
        users: Vec<String>,
    ) -> Result<BTreeMap<String, UserKeys>, StoreError> {
        self.with(move |c| {
            let sql = format!(
                "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.username = ?1 ORDER BY d.device_id"
            );
            let mut out = BTreeMap::new();
            for u in users {
                let devices = c
                    .prepare_cached(&sql)?
                    .query_map([&u], device_row)?
                    .map(|d| d.map(StoredDevice::info))
                    .collect::<Result<_, _>>()?;
                let identity_key = identity_key(c, &u)?;
                out.insert(
                    u,
                    UserKeys {
                        identity_key,
                        devices,
                    },
                );
            }
            Ok(out)
        })
        .await
    }

    /// A page of the inbox of the session `token_hash`'s device after
    /// `after`, at most `limit`, and the last seq it gave out.
    pub async fn inbox(
        &self,
        token_hash: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<InboxMessage>, u64), StoreError> {
        let t = token_hash.to_string();
        self.with(move |c| {
            let Some(d) = device_of_session(c, &t)? else {
                return Ok((Vec::new(), 0));
            };
            let next: i64 = c
                .prepare_cached(
                    "SELECT inbox_next FROM devices WHERE username = ?1 AND device_id = ?2",
                )?
                .query_row(params![d.user, d.device_id], |r| r.get(0))?;
            let rows = c
                .prepare_cached(
                    "SELECT seq, sender, sender_device, body FROM inbox
                     WHERE username = ?1 AND device_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
                )?
                .query_map(
                    params![
                        d.user,
                        d.device_id,
                        after.min(i64::MAX as u64) as i64,
                        limit
                    ],
                    |r| {
                        Ok(InboxRow {
                            seq: r.get(0)?,
                            sender: r.get(1)?,
                            sender_device: r.get(2)?,
                            body: r.get(3)?,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let out = rows
                .into_iter()
                .map(InboxRow::message)
                .collect::<Result<_, _>>()?;
            Ok((out, last_given(next)))
        })
        .await
    }
}
