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
    // 3: roles in groups and channels, removals, and blocking.
    "
    ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'member'
        CHECK (role IN ('owner','admin','member'));
    -- The creator of a group or channel owns it, if still a member...
    UPDATE members SET role = 'owner'
        WHERE username = (SELECT sender FROM events e
                          WHERE e.conversation_id = members.conversation_id AND e.seq = 1)
          AND (SELECT kind FROM conversations c WHERE c.id = members.conversation_id) <> 'dm';
    -- ...else its first member by name does.
    UPDATE members SET role = 'owner'
        WHERE (SELECT kind FROM conversations c WHERE c.id = members.conversation_id) <> 'dm'
          AND NOT EXISTS (SELECT 1 FROM members o WHERE o.conversation_id = members.conversation_id
                          AND o.role = 'owner')
          AND username = (SELECT MIN(username) FROM members f
                          WHERE f.conversation_id = members.conversation_id);

    -- Removed from a channel: they may not join again until an admin adds them.
    CREATE TABLE removed (
        conversation_id TEXT NOT NULL,
        username        TEXT NOT NULL,
        removed_by      TEXT NOT NULL,
        at              INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, username)
    ) WITHOUT ROWID;

    CREATE TABLE blocks (
        blocker    TEXT NOT NULL,
        blocked    TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (blocker, blocked)
    ) WITHOUT ROWID;
    ",
    // 4: event ids, which let a client prove the event it holds at a seq is
    // the one the server holds; events already written get one too.
    "
    ALTER TABLE events ADD COLUMN eid TEXT;
    UPDATE events SET eid = lower(hex(randomblob(8)));
    ",
    // 5: files. What each user uploaded (their quota, and proof they hold
    // the bytes they share), and which events share which file (who may
    // download it, and what may be collected).
    "
    CREATE TABLE uploads (
        username TEXT NOT NULL,
        digest   TEXT NOT NULL,
        size     INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (username, digest)
    ) WITHOUT ROWID;
    CREATE INDEX uploads_digest ON uploads(digest);

    CREATE TABLE file_refs (
        digest          TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        sender          TEXT NOT NULL,
        PRIMARY KEY (digest, conversation_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX file_refs_event ON file_refs(conversation_id, seq);
    ",
    // 6: the search index (see `search`), filled from the log by
    // `search::fill` in the same transaction.
    super::search::SCHEMA,
    // 7: bots and incoming webhooks. An account's kind (a person, a bot
    // with a token, or the account a webhook posts as), events marked when
    // a bot sent them, and the webhooks (their secret only as a SHA-256).
    "
    ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person'
        CHECK (kind IN ('person','bot','webhook'));
    ALTER TABLE events ADD COLUMN bot INTEGER;

    CREATE TABLE webhooks (
        id              TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        username        TEXT NOT NULL UNIQUE,
        secret_sha256   TEXT NOT NULL,
        created_by      TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        last_used_at    INTEGER,
        revoked_at      INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX webhooks_conversation ON webhooks(conversation_id);
    ",
    // 8: secret conversations: device keys, inboxes, Megolm sessions (see
    // `keys`).
    super::keys::SCHEMA,
    // 9: the idempotency index ordered by the client's id first. Clients
    // make time-ordered ids (UUIDv7), so new messages from every sender
    // land at the end of the index instead of in one page per sender.
    "
    DROP INDEX events_idempotency;
    CREATE UNIQUE INDEX events_idempotency ON events(client_msg_id, sender)
        WHERE client_msg_id IS NOT NULL;
    ",
    // 10: the log in a rowid table. Clustered by (conversation, seq), each
    // new event went into the middle of the table, to the page holding its
    // conversation's tail, and the inner pages above it carried whole rows
    // (about 16 to a page), so one commit of 35 messages to 35
    // conversations wrote some 80 pages. Now rows are appended at the end
    // of the table and (conversation, seq) is a narrow index of its own:
    // the same commit writes about a third fewer pages. Existing events are
    // copied in conversation order, so old history stays together on disk.
    "
    CREATE TABLE events_log (
        conversation_id TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        ts              INTEGER NOT NULL,
        sender          TEXT NOT NULL,
        kind            TEXT NOT NULL,
        client_msg_id   TEXT,
        target_seq      INTEGER,
        data            TEXT NOT NULL,
        eid             TEXT,
        doc             INTEGER,
        bot             INTEGER,
        PRIMARY KEY (conversation_id, seq)
    );
    INSERT INTO events_log
            (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq, data, eid, doc, bot)
        SELECT conversation_id, seq, ts, sender, kind, client_msg_id, target_seq, data, eid, doc, bot
        FROM events ORDER BY conversation_id, seq;
    DROP TABLE events;
    ALTER TABLE events_log RENAME TO events;
    CREATE UNIQUE INDEX events_idempotency ON events(client_msg_id, sender)
        WHERE client_msg_id IS NOT NULL;
    CREATE INDEX events_targets ON events(conversation_id, target_seq)
        WHERE target_seq IS NOT NULL;
    ",
];

/// The schema version that brought the search index.
const SEARCH_VERSION: usize = 6;

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
        if i + 1 == SEARCH_VERSION {
            super::search::fill(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database as a server of schema `version` left it.
    fn at_version(version: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        conn
    }

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

    /// The idempotency index leads with the client's id, so that
    /// time-ordered ids append at its end; a server from before keeps its
    /// messages and still refuses a reused id.
    #[test]
    fn idempotency_index_leads_with_the_client_id() {
        let mut conn = at_version(8);
        conn.execute_batch(
            "INSERT INTO conversations (id, kind, last_seq, created_at) VALUES ('c', 'group', 1, 0);
             INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, data)
                 VALUES ('c', 1, 0, 'ann', 'message', 'm1', '{}');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_info('events_idempotency') ORDER BY seqno")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns, ["client_msg_id", "sender"]);
        let again = conn
            .execute(
                "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, data)
                 VALUES ('c', 2, 0, 'ann', 'message', 'm1', '{}')
                 ON CONFLICT (client_msg_id, sender) WHERE client_msg_id IS NOT NULL DO NOTHING",
                [],
            )
            .unwrap();
        assert_eq!(again, 0);
    }

    /// A server whose log was clustered by (conversation, seq) keeps every
    /// event as it was, now in a rowid table, with (conversation, seq) still
    /// unique and still the way history is read.
    #[test]
    fn the_log_moves_to_a_rowid_table_unchanged() {
        let mut conn = at_version(9);
        conn.execute_batch(
            "INSERT INTO conversations (id, kind, last_seq, created_at) VALUES
                 ('a', 'group', 2, 0), ('b', 'group', 1, 0);
             INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id,
                                 target_seq, data, eid, doc, bot) VALUES
                 ('b', 1, 5, 'bob', 'message', 'm2', NULL, '{\"body\":\"hi\"}', 'e3', 2, 1),
                 ('a', 2, 4, 'ann', 'edit', 'm3', 1, '{\"body\":\"yo\"}', 'e2', NULL, NULL),
                 ('a', 1, 3, 'ann', 'message', 'm1', NULL, '{\"body\":\"hey\"}', 'e1', 1, NULL);",
        )
        .unwrap();
        let all = |c: &Connection| -> Vec<Vec<rusqlite::types::Value>> {
            c.prepare("SELECT * FROM events ORDER BY conversation_id, seq")
                .unwrap()
                .query_map([], |r| (0..11).map(|i| r.get(i)).collect())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = all(&conn);
        migrate(&mut conn).unwrap();
        assert_eq!(all(&conn), before);
        // Copied in conversation order; new events append at the end.
        conn.execute(
            "INSERT INTO events (conversation_id, seq, ts, sender, kind, data)
             VALUES ('a', 3, 6, 'ann', 'message', '{}')",
            [],
        )
        .unwrap();
        let order: Vec<(String, i64)> = conn
            .prepare("SELECT conversation_id, seq FROM events ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            order,
            [
                ("a".into(), 1),
                ("a".into(), 2),
                ("b".into(), 1),
                ("a".into(), 3)
            ]
        );
        let taken = conn.execute(
            "INSERT INTO events (conversation_id, seq, ts, sender, kind, data)
             VALUES ('a', 3, 7, 'bob', 'message', '{}')",
            [],
        );
        assert!(taken.is_err(), "a seq is taken once");
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT data FROM events
                 WHERE conversation_id = 'a' AND seq > 1 ORDER BY seq",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("sqlite_autoindex_events"), "{plan}");
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM pragma_index_list('events') WHERE origin = 'c' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["events_idempotency", "events_targets"]);
    }

    /// A server from before roles: each group's creator owns it, or its
    /// first member by name when the creator has left; DMs have no owner.
    #[test]
    fn roles_come_to_existing_groups() {
        let mut conn = at_version(2);
        conn.execute_batch(
            "INSERT INTO users (username, password_hash, created_at) VALUES
                 ('alice','h',1), ('bob','h',2), ('carol','h',3);
             INSERT INTO conversations (id, kind, name, created_at) VALUES
                 ('g1','group','a',1), ('g2','group','b',1), ('d1','dm',NULL,1);
             INSERT INTO members (conversation_id, username) VALUES
                 ('g1','alice'), ('g1','bob'), ('g2','carol'), ('g2','bob'),
                 ('d1','alice'), ('d1','bob');
             INSERT INTO events (conversation_id, seq, ts, sender, kind, data) VALUES
                 ('g1',1,1,'alice','create','{}'), ('g2',1,1,'alice','create','{}'),
                 ('d1',1,1,'alice','create','{}');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let owners: Vec<(String, String)> = conn
            .prepare(
                "SELECT conversation_id, username FROM members WHERE role = 'owner' ORDER BY 1",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            owners,
            [("g1".into(), "alice".into()), ("g2".into(), "bob".into())]
        );
        let without_eid: i64 = conn
            .query_row("SELECT COUNT(*) FROM events WHERE eid IS NULL", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(without_eid, 0, "events written before ids get one");
    }

    /// A server from before search: the index comes with the upgrade,
    /// holding each message's current text (its latest edit), and neither
    /// deleted messages nor text cleared by retention.
    #[test]
    fn search_index_is_filled_on_upgrade() {
        let mut conn = at_version(4);
        conn.execute_batch(
            r#"INSERT INTO events (conversation_id, seq, ts, sender, kind, target_seq, data) VALUES
                 ('c',1,10,'alice','create',NULL,'{"name":null,"members":["alice","bob"]}'),
                 ('c',2,20,'alice','message',NULL,'{"body":"old deploy key","reply_to":null}'),
                 ('c',3,30,'bob','message',NULL,'{"body":"launch codes","reply_to":null}'),
                 ('c',4,40,'alice','edit',2,'{"target_seq":2,"body":"first edit"}'),
                 ('c',5,50,'alice','edit',2,'{"target_seq":2,"body":"rotated token"}'),
                 ('c',6,60,'bob','delete',3,'{"target_seq":3}'),
                 ('c',7,70,'bob','message',NULL,'{"body":"","reply_to":null}'),
                 ('d',1,15,'carol','message',NULL,'{"body":"token elsewhere","reply_to":null}');"#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let hits = |q: &str| -> Vec<(String, i64)> {
            conn.prepare(
                "SELECT d.conversation_id, d.seq FROM search_text
                 JOIN search_docs d ON d.id = search_text.rowid
                 WHERE search_text MATCH ?1 ORDER BY search_text.rowid",
            )
            .unwrap()
            .query_map([q], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        assert_eq!(hits("token"), [("d".into(), 1), ("c".into(), 2)]);
        assert!(hits("deploy").is_empty());
        assert!(hits("edit").is_empty());
        assert!(hits("launch").is_empty());
        // Every message has its doc, in the order of time; new ones follow.
        let docs: Vec<(i64, Option<i64>)> = conn
            .prepare("SELECT ts, doc FROM events WHERE kind = 'message' ORDER BY ts")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            docs,
            [(15, Some(1)), (20, Some(2)), (30, Some(3)), (70, Some(4))]
        );
        assert_eq!(super::super::search::next_doc(&conn).unwrap(), 5);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(migrate(&mut conn).is_err());
    }
}
