-- A conversation's count of member changes. What a plain message is
-- decided on (who is a member, with what role) changes only with it: every
-- insert or delete of a member row, and every change of a role, counts it
-- up in the same transaction. A message decided over the facts read at
-- one count is written only while the count is the same; otherwise it is
-- decided again under the conversation's lock.
ALTER TABLE conversations ADD COLUMN member_changes bigint NOT NULL DEFAULT 0;

CREATE FUNCTION count_member_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET member_changes = member_changes + 1
    WHERE id IN (SELECT DISTINCT conversation_id FROM changed);
    RETURN NULL;
END
$$;

CREATE FUNCTION count_role_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET member_changes = member_changes + 1
    WHERE id = NEW.conversation_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER members_added AFTER INSERT ON members
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION count_member_changes();
CREATE TRIGGER members_removed AFTER DELETE ON members
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION count_member_changes();
CREATE TRIGGER members_role AFTER UPDATE OF role ON members
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION count_role_change();
