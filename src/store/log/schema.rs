//! chatd's database schema and its migrations.
//!
//! Migrations are applied in order inside one transaction each and recorded
//! in `PRAGMA user_version`; a database newer than this build is refused.

use rusqlite::Connection;

/// Ordered migrations; index + 1 is the schema version each produces.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, sessions, conversations, members and receipts, the log.
    "
    CREATE TABLE users (
        username      TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        username   TEXT NOT NULL REFERENCES users(username),
        device     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions(username);

    CREATE TABLE conversations (
        id         TEXT PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('dm','group','channel')),
        name       TEXT,
        dm_key     TEXT UNIQUE,
        last_seq   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX channel_names ON conversations(name) WHERE kind = 'channel';

    CREATE TABLE members (
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        username        TEXT NOT NULL REFERENCES users(username),
        delivered_seq   INTEGER NOT NULL DEFAULT 0,
        read_seq        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation_id, username)
    ) WITHOUT ROWID;
    CREATE INDEX members_user ON members(username);

    CREATE TABLE events (
        conversation_id TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        ts              INTEGER NOT NULL,
        sender          TEXT NOT NULL,
        kind            TEXT NOT NULL,
        client_msg_id   TEXT,
        target_seq      INTEGER,
        data            TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX events_idempotency ON events(sender, client_msg_id)
        WHERE client_msg_id IS NOT NULL;
    CREATE INDEX events_targets ON events(conversation_id, target_seq)
        WHERE target_seq IS NOT NULL;
    ",
    // 2: roles and deactivation, sessions that expire and can be listed,
    // invitations, and the account changes made from outside the server.
    "
    ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
        CHECK (role IN ('admin','member'));
    ALTER TABLE users ADD COLUMN deactivated_at INTEGER;
    -- A server that had accounts before roles: its oldest account is admin.
    UPDATE users SET role = 'admin'
        WHERE username = (SELECT username FROM users ORDER BY created_at, username LIMIT 1);

    ALTER TABLE sessions ADD COLUMN id TEXT;
    ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN last_address TEXT;
    UPDATE sessions SET id = lower(hex(randomblob(8))), last_seen_at = created_at;
    CREATE UNIQUE INDEX sessions_id ON sessions(id);

    CREATE TABLE invites (
        code       TEXT PRIMARY KEY,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        max_uses   INTEGER NOT NULL,
        revoked    INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX invites_creator ON invites(created_by);

    CREATE TABLE invite_uses (
        code     TEXT NOT NULL REFERENCES invites(code),
        username TEXT NOT NULL,
        used_at  INTEGER NOT NULL,
        PRIMARY KEY (code, username)
    ) WITHOUT ROWID;

    -- Written by `chatd admin` beside a running server, which polls it and
    -- disconnects what the change ends.
    CREATE TABLE account_changes (
        id       INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        at       INTEGER NOT NULL
    );
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Bring the database up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), super::StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(super::StoreError::Open(format!(
            "database schema version {version} is newer than this chatd supports ({SCHEMA_VERSION})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(migrate(&mut conn).is_err());
    }
}
