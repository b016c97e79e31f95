-- chatd on PostgreSQL: the same tables as the embedded SQLite store after
-- all of its migrations. Times are milliseconds since the epoch (bigint),
-- as there. Names and ids sort by code point (COLLATE "C"), as in SQLite.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE users (
    username       text COLLATE "C" PRIMARY KEY,
    password_hash  text NOT NULL,
    created_at     bigint NOT NULL,
    role           text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    deactivated_at bigint,
    kind           text NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'bot', 'webhook'))
);

CREATE TABLE sessions (
    token_hash   text PRIMARY KEY,
    id           text NOT NULL UNIQUE,
    username     text COLLATE "C" NOT NULL REFERENCES users (username),
    device       text NOT NULL,
    created_at   bigint NOT NULL,
    last_seen_at bigint NOT NULL DEFAULT 0,
    last_address text
);
CREATE INDEX sessions_user ON sessions (username);

CREATE TABLE invites (
    code       text COLLATE "C" PRIMARY KEY,
    created_by text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint,
    max_uses   bigint NOT NULL,
    revoked    boolean NOT NULL DEFAULT false
);
CREATE INDEX invites_creator ON invites (created_by);

CREATE TABLE invite_uses (
    code     text COLLATE "C" NOT NULL REFERENCES invites (code),
    username text COLLATE "C" NOT NULL,
    used_at  bigint NOT NULL,
    PRIMARY KEY (code, username)
);

-- Changes made beside the running servers (`chatd admin`), which they
-- poll to disconnect what a change ends.
CREATE TABLE account_changes (
    id       bigserial PRIMARY KEY,
    username text COLLATE "C" NOT NULL,
    at       bigint NOT NULL
);

-- `last_seq` is the conversation's sequence counter: an append takes the
-- next one with `UPDATE ... SET last_seq = last_seq + 1 RETURNING`, whose
-- row lock orders the appenders of every node.
CREATE TABLE conversations (
    id         text COLLATE "C" PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('dm', 'group', 'channel')),
    name       text COLLATE "C",
    dm_key     text COLLATE "C" UNIQUE,
    last_seq   bigint NOT NULL DEFAULT 0,
    created_at bigint NOT NULL
);
CREATE UNIQUE INDEX channel_names ON conversations (name) WHERE kind = 'channel';

CREATE TABLE members (
    conversation_id text COLLATE "C" NOT NULL REFERENCES conversations (id),
    username        text COLLATE "C" NOT NULL REFERENCES users (username),
    delivered_seq   bigint NOT NULL DEFAULT 0,
    read_seq        bigint NOT NULL DEFAULT 0,
    role            text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    PRIMARY KEY (conversation_id, username)
);
CREATE INDEX members_user ON members (username);

-- Removed from a channel: they may not join again until an admin adds them.
CREATE TABLE removed (
    conversation_id text COLLATE "C" NOT NULL,
    username        text COLLATE "C" NOT NULL,
    removed_by      text COLLATE "C" NOT NULL,
    at              bigint NOT NULL,
    PRIMARY KEY (conversation_id, username)
);

CREATE TABLE blocks (
    blocker    text COLLATE "C" NOT NULL,
    blocked    text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (blocker, blocked)
);

-- The log. `data` is the event's body as JSON text, kept exactly as
-- written: push frames and history are made from it.
CREATE TABLE events (
    conversation_id text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL,
    ts              bigint NOT NULL,
    sender          text COLLATE "C" NOT NULL,
    kind            text NOT NULL,
    client_msg_id   text COLLATE "C",
    target_seq      bigint,
    data            text NOT NULL,
    eid             text,
    doc             bigint,
    bot             boolean,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX events_idempotency ON events (sender, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX events_targets ON events (conversation_id, target_seq)
    WHERE target_seq IS NOT NULL;

-- Files: what each user uploaded, and which events share which bytes.
CREATE TABLE uploads (
    username text COLLATE "C" NOT NULL,
    digest   text COLLATE "C" NOT NULL,
    size     bigint NOT NULL,
    at       bigint NOT NULL,
    PRIMARY KEY (username, digest)
);
CREATE INDEX uploads_digest ON uploads (digest);

CREATE TABLE file_refs (
    digest          text COLLATE "C" NOT NULL,
    conversation_id text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL,
    sender          text COLLATE "C" NOT NULL,
    PRIMARY KEY (digest, conversation_id, seq)
);
CREATE INDEX file_refs_event ON file_refs (conversation_id, seq);

CREATE TABLE webhooks (
    id              text COLLATE "C" PRIMARY KEY,
    conversation_id text COLLATE "C" NOT NULL,
    username        text COLLATE "C" NOT NULL UNIQUE,
    secret_sha256   text NOT NULL,
    created_by      text COLLATE "C" NOT NULL,
    created_at      bigint NOT NULL,
    last_used_at    bigint,
    revoked_at      bigint
);
CREATE INDEX webhooks_conversation ON webhooks (conversation_id);

-- The search index: each message's current words, under its doc number
-- (also in `events.doc`). Doc numbers grow with time, so "newest first"
-- is the index's own order.
CREATE SEQUENCE search_doc_numbers;
CREATE TABLE search_docs (
    id              bigint PRIMARY KEY,
    conversation_id text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL,
    ts              bigint NOT NULL,
    sender          text COLLATE "C" NOT NULL,
    words           tsvector NOT NULL
);
CREATE INDEX search_words ON search_docs USING gin (words);
