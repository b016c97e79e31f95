//! The device key directory and the per-device inbox on PostgreSQL, as on
//! the embedded store (`log::keys`): devices (one per session, deleted
//! with it by a foreign key), identity keys, one-time and fallback keys,
//! the key ids a device ever used, and the to-device messages waiting for
//! each device.
//!
//! Nodes share these rows, so what one node decides another may be
//! deciding at the same moment:
//!
//! - **Claims.** A one-time key is taken by deleting it, after locking it
//!   with `FOR UPDATE SKIP LOCKED`: two claimers never get the same key,
//!   and one never waits for the other (it takes the next key).
//! - **Inboxes.** A message takes its seq from its device's `inbox_next`
//!   with `UPDATE ... RETURNING`; senders lock the devices they send to
//!   first (in key order, so that two senders never wait for each other),
//!   which also keeps the inbox cap exact. A rollback gives the seqs back:
//!   an inbox's seqs stay dense.
//! - **Uploads** of one user run one after another (the user's row lock),
//!   so the device cap and the identity key check hold.
//! - **Devices gone** with their sessions (logout, revocation, expiry,
//!   `chatd admin` from another process) are noted by a trigger in
//!   `device_changes`, which the next write of a node drains to tell the
//!   users' contacts.

use super::db::{exec, get, one, opt, rows};
use super::{PgReaders, W, rejected};
use crate::proto::keys::{ClaimedKey, DeviceKeys, InboxMessage, KeysUpload, SignedKey, UserKeys};
use crate::proto::{DeviceRef, ErrorCode, ToDeviceMessage, now_millis};
use crate::store::keyrows::{
    DEVICE_COLUMNS, InboxRow, KeyRow, changed_meanwhile, digest_of, last_given, push_of,
    stored_body, target_of,
};
use crate::store::log::{Committed, KeyCaps, KeyOp, KeyReply, StoreError, StoredDevice};
use crate::store::rules;
use deadpool_postgres::GenericClient;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Row;

fn device_row(r: &Row) -> Result<StoredDevice, StoreError> {
    Ok(StoredDevice {
        user: get(r, 0)?,
        device_id: get(r, 1)?,
        token_hash: get(r, 2)?,
        name: get(r, 3)?,
        keys: DeviceKeys {
            curve25519: get(r, 4)?,
            ed25519: get(r, 5)?,
        },
        certificate: get(r, 6)?,
    })
}

pub(super) async fn device_of_session(
    c: &impl GenericClient,
    token_hash: &str,
) -> Result<Option<StoredDevice>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.token_hash = $1");
    opt(c, &sql, &[&token_hash])
        .await?
        .map(|r| device_row(&r))
        .transpose()
}

async fn device(
    c: &impl GenericClient,
    user: &str,
    device_id: &str,
) -> Result<Option<StoredDevice>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.username = $1 AND d.device_id = $2"
    );
    opt(c, &sql, &[&user, &device_id])
        .await?
        .map(|r| device_row(&r))
        .transpose()
}

async fn identity_key(c: &impl GenericClient, user: &str) -> Result<Option<String>, StoreError> {
    opt(
        c,
        "SELECT ed25519 FROM identity_keys WHERE username = $1",
        &[&user],
    )
    .await?
    .map(|r| get(&r, 0))
    .transpose()
}

/// Lock the devices of `to` (those that exist) until the transaction
/// ends, in key order: their inbox lengths and counters hold still for
/// the rules and the delivery.
pub(super) async fn lock_devices(
    c: &impl GenericClient,
    to: &[ToDeviceMessage],
) -> Result<(), StoreError> {
    if to.is_empty() {
        return Ok(());
    }
    let set: BTreeSet<(&str, &str)> = to
        .iter()
        .map(|m| (m.user.as_str(), m.device_id.as_str()))
        .collect();
    let (users, ids): (Vec<&str>, Vec<&str>) = set.into_iter().unzip();
    exec(
        c,
        "SELECT 1 FROM devices d JOIN unnest($1::text[], $2::text[]) AS q(u, i)
           ON d.username = q.u AND d.device_id = q.i
         ORDER BY d.username, d.device_id FOR UPDATE OF d",
        &[&users, &ids],
    )
    .await?;
    Ok(())
}

/// Put each message in its device's inbox (the rules checked that every
/// device exists and has room; the caller locked them) and queue its push
/// for that device's connections.
pub(super) async fn deliver(
    w: &mut W<'_>,
    from: &DeviceRef,
    messages: &[ToDeviceMessage],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for m in messages {
        *counts
            .entry((m.user.as_str(), m.device_id.as_str()))
            .or_default() += 1;
    }
    let users: Vec<&str> = counts.keys().map(|(u, _)| *u).collect();
    let ids: Vec<&str> = counts.keys().map(|(_, d)| *d).collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    let taken = rows(
        w.tx,
        "UPDATE devices d SET inbox_next = d.inbox_next + q.n
         FROM unnest($1::text[], $2::text[], $3::int8[]) AS q(u, i, n)
         WHERE d.username = q.u AND d.device_id = q.i
         RETURNING d.username, d.device_id, d.inbox_next - q.n, d.token_hash",
        &[&users, &ids, &ns],
    )
    .await?;
    // The next seq of each device, and its session's token digest.
    let mut next: BTreeMap<(String, String), (i64, [u8; 32])> = BTreeMap::new();
    for r in &taken {
        let token: String = get(r, 3)?;
        next.insert((get(r, 0)?, get(r, 1)?), (get(r, 2)?, digest_of(&token)?));
    }
    let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pushes = Vec::with_capacity(messages.len());
    for m in messages {
        let Some((seq, token)) = next.get_mut(&(m.user.clone(), m.device_id.clone())) else {
            return Err(StoreError::Write(format!(
                "{}'s device {} went before its message was delivered",
                m.user, m.device_id
            )));
        };
        let body = stored_body(m)?;
        cols.0.push(m.user.as_str());
        cols.1.push(m.device_id.as_str());
        cols.2.push(*seq);
        cols.3.push(body);
        pushes.push(Committed::ToDevice {
            user: m.user.clone(),
            token: *token,
            push: push_of(from, *seq, m),
        });
        *seq += 1;
    }
    exec(
        w.tx,
        "INSERT INTO inbox (username, device_id, seq, sender, sender_device, body)
         SELECT q.u, q.i, q.s, $5, $6, q.b
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) AS q(u, i, s, b)",
        &[
            &cols.0,
            &cols.1,
            &cols.2,
            &cols.3,
            &from.user,
            &from.device_id,
        ],
    )
    .await?;
    w.changes.extend(pushes);
    Ok(())
}

/// Tell the contacts of users whose devices went with their sessions
/// (see `device_changes`), here or in another process.
pub(super) async fn devices_gone(w: &mut W<'_>) -> Result<(), StoreError> {
    let gone = rows(w.tx, "DELETE FROM device_changes RETURNING username", &[]).await?;
    let users: BTreeSet<String> = gone.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
    for user in users {
        w.changes.push(Committed::Devices {
            user,
            identity_changed: false,
        });
    }
    Ok(())
}

/// Apply a change to keys or inboxes in `w`'s transaction.
pub(super) async fn apply(w: &mut W<'_>, op: KeyOp) -> Result<KeyReply, StoreError> {
    match op {
        KeyOp::Upload {
            user,
            token_hash,
            keys,
            upload,
            identity_seen,
            caps,
        } => upload_keys(w, &user, &token_hash, keys, *upload, identity_seen, caps).await,
        KeyOp::Sign {
            user,
            device_id,
            certificate,
            identity_seen,
        } => {
            lock_user(w.tx, &user).await?;
            if identity_key(w.tx, &user).await?.as_deref() != Some(identity_seen.as_str()) {
                return Err(changed_meanwhile());
            }
            let n = exec(
                w.tx,
                "UPDATE devices SET certificate = $3 WHERE username = $1 AND device_id = $2",
                &[&user, &device_id, &certificate],
            )
            .await?;
            if n == 0 {
                return Err(rejected(
                    ErrorCode::NotFound,
                    format!("you have no device {device_id}"),
                ));
            }
            w.changes.push(Committed::Devices {
                user,
                identity_changed: false,
            });
            Ok(KeyReply::Done)
        }
        KeyOp::Claim { devices } => Ok(KeyReply::Claimed(claim(w.tx, &devices).await?)),
        KeyOp::ToDevice {
            user,
            token_hash,
            messages,
            caps,
        } => {
            let me = device_of_session(w.tx, &token_hash)
                .await?
                .map(|d| d.device_id);
            let to: Vec<DeviceRef> = messages.iter().map(target_of).collect();
            // The rules refuse more than a request may carry before any
            // device is looked at; lock only what they could accept.
            if messages.len() <= rules::secret::MAX_MESSAGES_PER_REQUEST && me.is_some() {
                lock_devices(w.tx, &messages).await?;
            }
            let mut f = super::facts::PgFacts::locking(w.tx);
            let from =
                rules::secret::to_device(&mut f, caps.inbox, &user, me.as_deref(), &to).await?;
            deliver(w, &from, &messages).await?;
            Ok(KeyReply::Done)
        }
        KeyOp::Ack { token_hash, upto } => {
            if let Some(d) = device_of_session(w.tx, &token_hash).await? {
                let upto = upto.min(i64::MAX as u64) as i64;
                exec(
                    w.tx,
                    "DELETE FROM inbox WHERE username = $1 AND device_id = $2 AND seq <= $3",
                    &[&d.user, &d.device_id, &upto],
                )
                .await?;
            }
            Ok(KeyReply::Done)
        }
        KeyOp::Expire { life } => {
            let now = now_millis();
            let idle = now.saturating_sub(life.idle_ms);
            let max = life.max_ms.map(|m| now.saturating_sub(m));
            exec(
                w.tx,
                "DELETE FROM devices WHERE token_hash IN (
                     SELECT s.token_hash FROM sessions s JOIN users u ON u.username = s.username
                     WHERE u.kind <> 'bot'
                       AND (s.last_seen_at <= $1 OR ($2::int8 IS NOT NULL AND s.created_at <= $2)))",
                &[&idle, &max],
            )
            .await?;
            devices_gone(w).await?;
            Ok(KeyReply::Done)
        }
    }
}

/// Lock `user`'s row: their key changes run one after another on every
/// node. `not_found` when there is no such user.
async fn lock_user(c: &impl GenericClient, user: &str) -> Result<(), StoreError> {
    opt(
        c,
        "SELECT 1 FROM users WHERE username = $1 FOR NO KEY UPDATE",
        &[&user],
    )
    .await?
    .ok_or_else(|| rejected(ErrorCode::NotFound, "no such user"))?;
    Ok(())
}

async fn upload_keys(
    w: &mut W<'_>,
    user: &str,
    token_hash: &str,
    keys: DeviceKeys,
    upload: KeysUpload,
    identity_seen: Option<String>,
    caps: KeyCaps,
) -> Result<KeyReply, StoreError> {
    let c = w.tx;
    lock_user(c, user).await?;
    // The session holds still too: a device never outlives it.
    if opt(
        c,
        "SELECT 1 FROM sessions WHERE token_hash = $1 AND username = $2 FOR KEY SHARE",
        &[&token_hash, &user],
    )
    .await?
    .is_none()
    {
        return Err(rejected(ErrorCode::AuthFailed, "this session has ended"));
    }
    let device_id = upload.device_id.as_str();
    if let Some(mine) = device_of_session(c, token_hash).await?
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
    match device(c, user, device_id).await? {
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
            let n: i64 = get(
                &one(
                    c,
                    "SELECT COUNT(*) FROM devices WHERE username = $1",
                    &[&user],
                )
                .await?,
                0,
            )?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= caps.devices_per_user {
                return Err(rejected(
                    ErrorCode::LimitExceeded,
                    format!(
                        "max_devices_per_user: you have {n} devices with keys; log out of one first"
                    ),
                ));
            }
            exec(
                c,
                "INSERT INTO devices (username, device_id, token_hash, curve25519, ed25519, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &user,
                    &device_id,
                    &token_hash,
                    &keys.curve25519,
                    &keys.ed25519,
                    &now_millis(),
                ],
            )
            .await?;
            changed = true;
        }
    }
    let current = identity_key(c, user).await?;
    if current != identity_seen {
        return Err(changed_meanwhile());
    }
    let mut identity_changed = false;
    if let Some(new) = &upload.identity_key {
        match &current {
            None => {
                exec(
                    c,
                    "INSERT INTO identity_keys (username, ed25519) VALUES ($1, $2)",
                    &[&user, new],
                )
                .await?;
                changed = true;
            }
            Some(old) if old == new => {}
            Some(_) if upload.replace_identity => {
                exec(
                    c,
                    "UPDATE identity_keys SET ed25519 = $2 WHERE username = $1",
                    &[&user, new],
                )
                .await?;
                // Every certificate was signed by the old key.
                exec(
                    c,
                    "UPDATE devices SET certificate = NULL WHERE username = $1",
                    &[&user],
                )
                .await?;
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
        exec(
            c,
            "UPDATE devices SET certificate = $3 WHERE username = $1 AND device_id = $2",
            &[&user, &device_id, cert],
        )
        .await?;
        changed = true;
    }
    let mut seen = BTreeSet::new();
    let one_time = upload.one_time_keys.iter().map(|k| (k, false));
    let mut ids: (Vec<bool>, Vec<&str>) = (Vec::new(), Vec::new());
    for (k, fallback) in one_time.chain(upload.fallback_key.iter().map(|k| (k, true))) {
        if !seen.insert((fallback, k.key_id.as_str())) {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                format!("key id {} is given twice", k.key_id),
            ));
        }
        ids.0.push(fallback);
        ids.1.push(k.key_id.as_str());
    }
    if !ids.1.is_empty() {
        let used = rows(
            c,
            "SELECT key_id FROM used_key_ids u
             JOIN unnest($3::bool[], $4::text[]) AS q(f, k) ON u.fallback = q.f AND u.key_id = q.k
             WHERE u.username = $1 AND u.device_id = $2 LIMIT 1",
            &[&user, &device_id, &ids.0, &ids.1],
        )
        .await?;
        if let Some(r) = used.first() {
            let id: String = get(r, 0)?;
            return Err(rejected(
                ErrorCode::InvalidArgument,
                format!("key id {id} was used before; ids are never reused"),
            ));
        }
        exec(
            c,
            "INSERT INTO used_key_ids (username, device_id, fallback, key_id)
             SELECT $1, $2, q.f, q.k FROM unnest($3::bool[], $4::text[]) AS q(f, k)",
            &[&user, &device_id, &ids.0, &ids.1],
        )
        .await?;
    }
    insert_keys(c, "one_time_keys", user, device_id, &upload.one_time_keys).await?;
    if let Some(k) = &upload.fallback_key {
        exec(
            c,
            "DELETE FROM fallback_keys WHERE username = $1 AND device_id = $2",
            &[&user, &device_id],
        )
        .await?;
        insert_keys(c, "fallback_keys", user, device_id, std::slice::from_ref(k)).await?;
    }
    let count: i64 = get(
        &one(
            c,
            "SELECT COUNT(*) FROM one_time_keys WHERE username = $1 AND device_id = $2",
            &[&user, &device_id],
        )
        .await?,
        0,
    )?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
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
        w.changes.push(Committed::Devices {
            user: user.to_string(),
            identity_changed,
        });
    }
    Ok(KeyReply::Count(u32::try_from(count).unwrap_or(u32::MAX)))
}

async fn insert_keys(
    c: &impl GenericClient,
    table: &str,
    user: &str,
    device_id: &str,
    keys: &[SignedKey],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    let values: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    let sigs: Vec<&str> = keys.iter().map(|k| k.signature.as_str()).collect();
    let sql = format!(
        "INSERT INTO {table} (username, device_id, key_id, key, signature)
         SELECT $1, $2, q.i, q.k, q.s FROM unnest($3::text[], $4::text[], $5::text[]) AS q(i, k, s)"
    );
    exec(c, &sql, &[&user, &device_id, &ids, &values, &sigs]).await?;
    Ok(())
}

/// One key of each device: a one-time key (taken, whichever node asks at
/// the same time), else its fallback key (kept).
async fn claim(
    c: &impl GenericClient,
    devices: &[DeviceRef],
) -> Result<Vec<ClaimedKey>, StoreError> {
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for d in devices {
        if !done.insert(d) {
            continue;
        }
        let one_time = opt(
            c,
            "DELETE FROM one_time_keys k USING (
                 SELECT username, device_id, key_id FROM one_time_keys
                 WHERE username = $1 AND device_id = $2
                 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) AS t
             WHERE k.username = t.username AND k.device_id = t.device_id AND k.key_id = t.key_id
             RETURNING k.key_id, k.key, k.signature",
            &[&d.user, &d.device_id],
        )
        .await?;
        let (found, fallback) = match one_time {
            Some(r) => (Some(r), false),
            None => (
                opt(
                    c,
                    "SELECT key_id, key, signature FROM fallback_keys
                     WHERE username = $1 AND device_id = $2",
                    &[&d.user, &d.device_id],
                )
                .await?,
                true,
            ),
        };
        if let Some(r) = found {
            let k = KeyRow {
                key_id: get(&r, 0)?,
                key: get(&r, 1)?,
                signature: get(&r, 2)?,
            };
            out.push(k.claimed(d, fallback));
        }
    }
    Ok(out)
}

impl PgReaders {
    /// The device of the session `token_hash`, if it uploaded keys.
    pub async fn device_of_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<StoredDevice>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                device_of_session(&c, token_hash).await
            })
            .await
    }

    /// One device of `user`.
    pub async fn device(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<StoredDevice>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                device(&c, user, device_id).await
            })
            .await
    }

    /// `user`'s identity key, if they gave one.
    pub async fn identity_key(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                identity_key(&c, user).await
            })
            .await
    }

    /// The identity key and devices of each of `users`.
    pub async fn keys_query(
        &self,
        users: Vec<String>,
    ) -> Result<BTreeMap<String, UserKeys>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.username = ANY($1)
                     ORDER BY d.username, d.device_id"
                );
                let mut out: BTreeMap<String, UserKeys> = users
                    .iter()
                    .map(|u| (u.clone(), UserKeys::default()))
                    .collect();
                for r in rows(&c, &sql, &[&users]).await? {
                    let d = device_row(&r)?;
                    if let Some(k) = out.get_mut(&d.user) {
                        k.devices.push(d.info());
                    }
                }
                for r in rows(
                    &c,
                    "SELECT username, ed25519 FROM identity_keys WHERE username = ANY($1)",
                    &[&users],
                )
                .await?
                {
                    let u: String = get(&r, 0)?;
                    if let Some(k) = out.get_mut(&u) {
                        k.identity_key = Some(get(&r, 1)?);
                    }
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
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                // One statement, one snapshot: the page and the last seq
                // given out agree.
                let found = rows(
                    &c,
                    "SELECT d.inbox_next, i.seq, i.sender, i.sender_device, i.body
                     FROM devices d LEFT JOIN LATERAL (
                         SELECT seq, sender, sender_device, body FROM inbox
                         WHERE username = d.username AND device_id = d.device_id AND seq > $2
                         ORDER BY seq LIMIT $3) AS i ON true
                     WHERE d.token_hash = $1",
                    &[
                        &token_hash,
                        &(after.min(i64::MAX as u64) as i64),
                        &i64::from(limit),
                    ],
                )
                .await?;
                let Some(first) = found.first() else {
                    return Ok((Vec::new(), 0));
                };
                let next: i64 = get(first, 0)?;
                let mut out = Vec::with_capacity(found.len());
                for r in &found {
                    let Some(seq) = get::<Option<i64>>(r, 1)? else {
                        continue;
                    };
                    let row = InboxRow {
                        seq,
                        sender: get(r, 2)?,
                        sender_device: get(r, 3)?,
                        body: get(r, 4)?,
                    };
                    out.push(row.message()?);
                }
                Ok((out, last_given(next)))
            })
            .await
    }
}
