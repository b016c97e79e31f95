-- The idempotency index ordered by the client's id first. Clients make
-- time-ordered ids (UUIDv7), so new messages from every sender land at the
-- end of the index instead of in one page per sender.
DROP INDEX events_idempotency;
CREATE UNIQUE INDEX events_idempotency ON events (client_msg_id, sender)
    WHERE client_msg_id IS NOT NULL;
