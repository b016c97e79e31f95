//! The crypto state in the client cache: its own tables (a cache
//! migration, [`SCHEMA`]), every vodozemac object pickled under the
//! [`PickleKey`], our identity key sealed with AES-256-GCM under the same
//! key. [`Crypto::save`] writes what changed inside a transaction the
//! caller gives, so a state change commits with the outbox or inbox change
//! it belongs to; [`Crypto::load`] reads it all back.

use super::E2eError;
use super::account::{AccountFlags, DeviceAccount};
use super::crypto::{Crypto, UserState};
use super::files;
use super::identity::UserIdentity;
use super::lock::DeviceLock;
use super::megolm::{EventRef, InboundGroup, KeySender, OutboundGroup};
use super::olm::OlmSession;
use super::pickle_key::PickleKey;
use crate::client::credentials::TokenStore;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use vodozemac::megolm::{
    GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle,
};
use vodozemac::olm::{AccountPickle, Session, SessionPickle};

/// The cache migration adding the crypto tables.
pub const SCHEMA: &str = r#"
-- this device's account: the Olm account pickled, our user's identity key
-- sealed (both under the pickle key kept in the keyring), and flags
CREATE TABLE e2e_account (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    user      TEXT NOT NULL,
    device_id TEXT NOT NULL,
    pickle    TEXT NOT NULL,
    identity  TEXT,
    state     TEXT NOT NULL
);
CREATE TABLE e2e_olm_sessions (
    session_id TEXT PRIMARY KEY,
    peer_curve TEXT NOT NULL,
    created    INTEGER NOT NULL,
    pickle     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE e2e_outbound (
    conversation_id TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    shared_with     TEXT NOT NULL,
    pickle          TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE e2e_inbound (
    session_id      TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    sender          TEXT NOT NULL,
    pickle          TEXT NOT NULL
) WITHOUT ROWID;
-- which event each (session, message index) decrypted as: replays refused
CREATE TABLE e2e_seen (
    session_id      TEXT NOT NULL,
    message_index   INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (session_id, message_index)
) WITHOUT ROWID;
CREATE INDEX e2e_seen_conv ON e2e_seen(conversation_id, seq);
-- per user: the trust record and the checked device list (JSON)
CREATE TABLE e2e_users (
    user  TEXT PRIMARY KEY,
    state TEXT NOT NULL
) WITHOUT ROWID;
"#;

const TABLES: [&str; 6] = [
    "e2e_account",
    "e2e_olm_sessions",
    "e2e_outbound",
    "e2e_inbound",
    "e2e_seen",
    "e2e_users",
];

#[derive(Serialize, Deserialize)]
struct AccountState {
    flags: AccountFlags,
    identity_published: bool,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> E2eError {
    E2eError::Store(format!("{what}: {e}"))
}

fn json<T: Serialize>(v: &T) -> Result<String, E2eError> {
    serde_json::to_string(v).map_err(|e| corrupt("encode", e))
}

/// Whether the cache holds a device account (then its pickle key must be
/// found, not made anew).
pub fn exists(conn: &Connection) -> Result<bool, E2eError> {
    Ok(conn
        .query_row("SELECT 1 FROM e2e_account WHERE id = 1", [], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Remove all crypto state (the device is gone: logout, reset).
pub fn wipe(tx: &Transaction<'_>) -> Result<(), E2eError> {
    for t in TABLES {
        tx.execute(&format!("DELETE FROM {t}"), [])?;
    }
    Ok(())
}

fn seal(key: &PickleKey, plain: &[u8]) -> Result<String, E2eError> {
    let nonce: [u8; 12] = rand::random();
    let mut out = nonce.to_vec();
    out.extend(files::seal(key.as_bytes(), &nonce, plain)?);
    Ok(vodozemac::base64_encode(out))
}

fn unseal(key: &PickleKey, sealed: &str) -> Result<Vec<u8>, E2eError> {
    let bytes = vodozemac::base64_decode(sealed).map_err(|e| corrupt("sealed value", e))?;
    if bytes.len() < 12 {
        return Err(corrupt("sealed value", "too short"));
    }
    let (nonce, body) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|e| corrupt("sealed value", e))?;
    files::open(key.as_bytes(), &nonce, body)
        .map_err(|_| E2eError::Store("a sealed value does not open with this pickle key".into()))
}

impl Crypto {
    /// Open this device's crypto state in the cache at `conn`, as `user` of
    /// `server`: take the lock at `lock_path` (waiting at most `wait`), find
    /// the pickle key in `secrets` (made there for a new device), and load
    /// the state, or start a new device (then [`Crypto::save`] it).
    pub fn open(
        conn: &Connection,
        lock_path: &Path,
        wait: Duration,
        secrets: &TokenStore,
        user: &str,
        server: &str,
    ) -> Result<Crypto, E2eError> {
        let lock = DeviceLock::acquire(lock_path, wait)?;
        let exists = exists(conn)?;
        let (key, _) = PickleKey::load_or_create(secrets, user, server, exists)?;
        if !exists {
            return Ok(Crypto::new(user, key, lock));
        }
        match Crypto::load(conn, key, lock)? {
            Some(c) if c.user() == user => Ok(c),
            Some(c) => Err(E2eError::Store(format!(
                "the cache holds the keys of {}, not of {user}",
                c.user()
            ))),
            None => Err(E2eError::Store("the device account vanished".into())),
        }
    }

    /// Write what changed since the last save inside `tx`. If `tx` is then
    /// rolled back, call [`Crypto::mark_all_dirty`] (the state in memory is
    /// ahead of the cache).
    pub fn save(&mut self, tx: &Transaction<'_>) -> Result<(), E2eError> {
        let k = self.key.as_bytes();
        if self.dirty.account {
            let identity = match &self.identity {
                Some(id) => Some(seal(&self.key, id.to_bytes().as_slice())?),
                None => None,
            };
            let state = json(&AccountState {
                flags: self.me.flags(),
                identity_published: self.identity_published,
            })?;
            tx.execute(
                "INSERT INTO e2e_account(id, user, device_id, pickle, identity, state)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET user = excluded.user,
                   device_id = excluded.device_id, pickle = excluded.pickle,
                   identity = excluded.identity, state = excluded.state",
                params![
                    self.me.user(),
                    self.me.device_id(),
                    self.me.pickle().encrypt(k),
                    identity,
                    state
                ],
            )?;
        }
        for s in self
            .olm
            .all()
            .filter(|s| self.olm.dirty.contains(&s.session_id))
        {
            tx.execute(
                "INSERT OR REPLACE INTO e2e_olm_sessions(session_id, peer_curve, created, pickle)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    s.session_id,
                    s.peer_curve,
                    i64::try_from(s.created).unwrap_or(i64::MAX),
                    s.session.pickle().encrypt(k)
                ],
            )?;
        }
        for id in &self.olm.removed {
            tx.execute("DELETE FROM e2e_olm_sessions WHERE session_id = ?1", [id])?;
        }
        for conv in &self.dirty.outbound {
            let Some(o) = self.outbound.get(conv) else {
                continue;
            };
            tx.execute(
                "INSERT OR REPLACE INTO e2e_outbound(conversation_id, session_id, created_at,
                   shared_with, pickle) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    conv,
                    o.session_id(),
                    i64::try_from(o.created_at).unwrap_or(i64::MAX),
                    json(&o.shared_with)?,
                    o.session.pickle().encrypt(k)
                ],
            )?;
        }
        for conv in &self.dirty.outbound_removed {
            tx.execute(
                "DELETE FROM e2e_outbound WHERE conversation_id = ?1",
                [conv],
            )?;
        }
        for id in &self.dirty.inbound {
            let Some(s) = self.inbound.get(id) else {
                continue;
            };
            tx.execute(
                "INSERT OR REPLACE INTO e2e_inbound(session_id, conversation_id, sender, pickle)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    s.conversation_id,
                    json(&s.sender)?,
                    s.session.pickle().encrypt(k)
                ],
            )?;
        }
        for (conv, seq) in &self.replay.forgotten {
            tx.execute(
                "DELETE FROM e2e_seen WHERE conversation_id = ?1 AND seq >= ?2",
                params![conv, i64::try_from(*seq).unwrap_or(i64::MAX)],
            )?;
        }
        for (sid, index, e) in &self.replay.added {
            tx.execute(
                "INSERT OR REPLACE INTO e2e_seen(session_id, message_index, conversation_id, seq)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    sid,
                    index,
                    e.conversation_id,
                    i64::try_from(e.seq).unwrap_or(i64::MAX)
                ],
            )?;
        }
        for user in &self.dirty.users {
            match self.users.get(user) {
                Some(state) => tx.execute(
                    "INSERT OR REPLACE INTO e2e_users(user, state) VALUES (?1, ?2)",
                    params![user, json(state)?],
                )?,
                None => tx.execute("DELETE FROM e2e_users WHERE user = ?1", [user])?,
            };
        }
        self.dirty = Default::default();
        self.olm.dirty.clear();
        self.olm.removed.clear();
        self.replay.added.clear();
        self.replay.forgotten.clear();
        Ok(())
    }

    /// Read the crypto state back from the cache (`None`: this cache holds
    /// no device account yet).
    pub fn load(
        conn: &Connection,
        key: PickleKey,
        lock: DeviceLock,
    ) -> Result<Option<Crypto>, E2eError> {
        let k = *key.as_bytes();
        let row = conn
            .query_row(
                "SELECT user, device_id, pickle, identity, state FROM e2e_account WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((user, device_id, pickle, identity, state)) = row else {
            return Ok(None);
        };
        let pickle = AccountPickle::from_encrypted(&pickle, &k).map_err(|_| {
            E2eError::Store("the device account does not open with this pickle key".into())
        })?;
        let state: AccountState =
            serde_json::from_str(&state).map_err(|e| corrupt("account state", e))?;
        let me = DeviceAccount::restore(user, device_id, pickle, state.flags);
        let mut c = Crypto::from_parts(me, key, lock);
        c.identity_published = state.identity_published;
        if let Some(sealed) = identity {
            let bytes = unseal(&c.key, &sealed)?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| corrupt("identity key", "wrong length"))?;
            c.identity = Some(UserIdentity::from_bytes(&bytes));
        }
        load_sessions(conn, &mut c, &k)?;
        load_groups(conn, &mut c, &k)?;
        load_users(conn, &mut c)?;
        c.dirty = Default::default();
        Ok(Some(c))
    }
}

fn load_sessions(conn: &Connection, c: &mut Crypto, k: &[u8; 32]) -> Result<(), E2eError> {
    let mut stmt =
        conn.prepare("SELECT session_id, peer_curve, created, pickle FROM e2e_olm_sessions")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (session_id, peer_curve, created, pickle) = row?;
        let pickle =
            SessionPickle::from_encrypted(&pickle, k).map_err(|e| corrupt("Olm session", e))?;
        c.olm.restore(OlmSession {
            session: Session::from_pickle(pickle),
            session_id,
            peer_curve,
            created: u64::try_from(created).unwrap_or(0),
        });
    }
    Ok(())
}

fn load_groups(conn: &Connection, c: &mut Crypto, k: &[u8; 32]) -> Result<(), E2eError> {
    let mut stmt =
        conn.prepare("SELECT conversation_id, created_at, shared_with, pickle FROM e2e_outbound")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (conv, created_at, shared_with, pickle) = row?;
        let pickle = GroupSessionPickle::from_encrypted(&pickle, k)
            .map_err(|e| corrupt("outbound session", e))?;
        let out = OutboundGroup {
            conversation_id: conv.clone(),
            session: GroupSession::from_pickle(pickle),
            created_at: u64::try_from(created_at).unwrap_or(0),
            shared_with: serde_json::from_str(&shared_with)
                .map_err(|e| corrupt("shared_with", e))?,
        };
        c.outbound.insert(conv, out);
    }
    let mut stmt =
        conn.prepare("SELECT session_id, conversation_id, sender, pickle FROM e2e_inbound")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (session_id, conversation_id, sender, pickle) = row?;
        let pickle = InboundGroupSessionPickle::from_encrypted(&pickle, k)
            .map_err(|e| corrupt("inbound session", e))?;
        let sender: KeySender =
            serde_json::from_str(&sender).map_err(|e| corrupt("key sender", e))?;
        c.inbound.insert(
            session_id.clone(),
            InboundGroup {
                session: InboundGroupSession::from_pickle(pickle),
                session_id,
                conversation_id,
                sender,
            },
        );
    }
    let mut stmt =
        conn.prepare("SELECT session_id, message_index, conversation_id, seq FROM e2e_seen")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (sid, index, conversation_id, seq) = row?;
        let seq = u64::try_from(seq).unwrap_or(0);
        c.replay.restore(
            sid,
            index,
            EventRef {
                conversation_id,
                seq,
            },
        );
    }
    Ok(())
}

fn load_users(conn: &Connection, c: &mut Crypto) -> Result<(), E2eError> {
    let mut stmt = conn.prepare("SELECT user, state FROM e2e_users")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (user, state) = row?;
        let state: UserState =
            serde_json::from_str(&state).map_err(|e| corrupt("user state", e))?;
        c.users.insert(user, state);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::cache::Cache;

    #[test]
    fn open_makes_a_device_then_finds_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let lock_path = super::super::lock::lock_path_for(&path);
        let secrets = TokenStore::file_only(dir.path().join("credentials.toml"));
        let mut cache = Cache::open(&path).unwrap();
        let wait = Duration::from_millis(50);
        let mut c = Crypto::open(
            cache.connection(),
            &lock_path,
            wait,
            &secrets,
            "alice",
            "h:1",
        )
        .unwrap();
        let device_id = c.device_id().to_string();
        // While held, a second opener is refused.
        let second = Crypto::open(
            cache.connection(),
            &lock_path,
            wait,
            &secrets,
            "alice",
            "h:1",
        );
        assert!(matches!(second, Err(E2eError::Locked(_))));
        let tx = cache.transaction().unwrap();
        c.save(&tx).unwrap();
        tx.commit().unwrap();
        drop(c);
        let c = Crypto::open(
            cache.connection(),
            &lock_path,
            wait,
            &secrets,
            "alice",
            "h:1",
        )
        .unwrap();
        assert_eq!(c.device_id(), device_id);
        drop(c);
        // Another user's state is not passed off as ours.
        let e = Crypto::open(cache.connection(), &lock_path, wait, &secrets, "bob", "h:1");
        assert!(e.is_err());
        // Without its key the state cannot be opened, and no new key is made.
        PickleKey::remove(&secrets, "alice", "h:1").unwrap();
        assert!(
            Crypto::open(
                cache.connection(),
                &lock_path,
                wait,
                &secrets,
                "alice",
                "h:1"
            )
            .is_err()
        );
        assert!(
            secrets
                .load_secret(super::super::pickle_key::SECRET_NAME, "alice", "h:1")
                .is_none()
        );
        // Wiping leaves nothing behind.
        let tx = cache.transaction().unwrap();
        wipe(&tx).unwrap();
        tx.commit().unwrap();
        assert!(!exists(cache.connection()).unwrap());
    }

    #[test]
    fn a_rolled_back_save_is_written_again_after_mark_all_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let mut cache = Cache::open(&path).unwrap();
        let lock = DeviceLock::acquire(&dir.path().join("l"), Duration::ZERO).unwrap();
        let key = PickleKey::random();
        let mut c = Crypto::new("alice", key.clone(), lock);
        c.create_identity();
        {
            let tx = cache.transaction().unwrap();
            c.save(&tx).unwrap();
            // dropped: rolled back
        }
        assert!(!exists(cache.connection()).unwrap());
        c.mark_all_dirty();
        let tx = cache.transaction().unwrap();
        c.save(&tx).unwrap();
        tx.commit().unwrap();
        drop(c);
        let lock = DeviceLock::acquire(&dir.path().join("l"), Duration::ZERO).unwrap();
        let c = Crypto::load(cache.connection(), key, lock)
            .unwrap()
            .unwrap();
        assert!(c.identity_key().is_some());
        assert!(c.trust("alice").unwrap().is_verified());
    }

    #[test]
    fn sealed_values_need_their_key() {
        let (k1, k2) = (PickleKey::random(), PickleKey::random());
        let sealed = seal(&k1, b"identity").unwrap();
        assert_eq!(unseal(&k1, &sealed).unwrap(), b"identity");
        assert!(unseal(&k2, &sealed).is_err());
        assert!(unseal(&k1, "AAAA").is_err());
        assert!(unseal(&k1, "!!").is_err());
    }
}
