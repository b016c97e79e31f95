-- Secret conversations: device keys, per-device inboxes, Megolm sessions
-- and who holds them, and which conversations are secret. The same tables
-- as the embedded store's schema 8. A secret DM's key lives in
-- `conversations.dm_key`, apart from the plain DM's (see `secret_dm_key`).

ALTER TABLE conversations ADD COLUMN encrypted boolean NOT NULL DEFAULT false;

CREATE TABLE identity_keys (
    username text COLLATE "C" PRIMARY KEY,
    ed25519  text NOT NULL
);

-- One per session that uploaded keys: it goes with the session (logout,
-- revocation, expiry, `chatd admin`), and its keys and inbox go with it.
CREATE TABLE devices (
    username    text COLLATE "C" NOT NULL,
    device_id   text COLLATE "C" NOT NULL,
    token_hash  text NOT NULL UNIQUE REFERENCES sessions (token_hash) ON DELETE CASCADE,
    curve25519  text NOT NULL,
    ed25519     text NOT NULL,
    certificate text,
    -- The seq the device's next to-device message takes: a sender takes
    -- it with `UPDATE ... RETURNING`, whose row lock keeps seqs dense.
    inbox_next  bigint NOT NULL DEFAULT 1,
    created_at  bigint NOT NULL,
    PRIMARY KEY (username, device_id)
);

CREATE TABLE one_time_keys (
    username  text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    key_id    text COLLATE "C" NOT NULL,
    key       text NOT NULL,
    signature text NOT NULL,
    PRIMARY KEY (username, device_id, key_id),
    FOREIGN KEY (username, device_id) REFERENCES devices ON DELETE CASCADE
);

CREATE TABLE fallback_keys (
    username  text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    key_id    text COLLATE "C" NOT NULL,
    key       text NOT NULL,
    signature text NOT NULL,
    PRIMARY KEY (username, device_id),
    FOREIGN KEY (username, device_id) REFERENCES devices ON DELETE CASCADE
);

-- Every key id a device uploaded, claimed or not, of its one-time keys
-- and (apart) of its fallback keys: never accepted again.
CREATE TABLE used_key_ids (
    username  text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    fallback  boolean NOT NULL,
    key_id    text COLLATE "C" NOT NULL,
    PRIMARY KEY (username, device_id, fallback, key_id),
    FOREIGN KEY (username, device_id) REFERENCES devices ON DELETE CASCADE
);

CREATE TABLE inbox (
    username      text COLLATE "C" NOT NULL,
    device_id     text COLLATE "C" NOT NULL,
    seq           bigint NOT NULL,
    sender        text COLLATE "C" NOT NULL,
    sender_device text COLLATE "C" NOT NULL,
    body          text NOT NULL,
    PRIMARY KEY (username, device_id, seq),
    FOREIGN KEY (username, device_id) REFERENCES devices ON DELETE CASCADE
);

-- The device that started each Megolm session of a conversation, and the
-- devices it was shared with.
CREATE TABLE megolm_sessions (
    conversation_id text COLLATE "C" NOT NULL,
    session_id      text COLLATE "C" NOT NULL,
    username        text COLLATE "C" NOT NULL,
    device_id       text COLLATE "C" NOT NULL,
    PRIMARY KEY (conversation_id, session_id)
);
CREATE TABLE megolm_holders (
    conversation_id text COLLATE "C" NOT NULL,
    session_id      text COLLATE "C" NOT NULL,
    username        text COLLATE "C" NOT NULL,
    device_id       text COLLATE "C" NOT NULL,
    PRIMARY KEY (conversation_id, session_id, username, device_id)
);

-- Users whose devices went (with their sessions, whoever deleted them:
-- a node, or `chatd admin`), for a node to tell their contacts.
CREATE TABLE device_changes (
    id       bigserial PRIMARY KEY,
    username text COLLATE "C" NOT NULL
);

CREATE FUNCTION note_device_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_changes (username) VALUES (OLD.username);
    RETURN NULL;
END
$$;
CREATE TRIGGER devices_noted AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION note_device_gone();
