-- Revocation cursors in commit order. An identity column hands out cursors
-- at insert, not at commit, so a transaction that commits late can publish a
-- cursor below one a verifier has already read past, and be skipped forever.
-- Instead each insert takes the next position from a one-row counter; the
-- row lock it takes is held until commit, so transactions that write the
-- feed commit in cursor order and a reader only ever sees a gap-free prefix.
-- A rolled-back transaction gives its positions back. (Plain row locks and a
-- PL/pgSQL trigger: no advisory locks, no LISTEN/NOTIFY.)
CREATE TABLE feed_position (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last     BIGINT NOT NULL
);
INSERT INTO feed_position (last)
SELECT GREATEST(
    COALESCE((SELECT MAX(cursor) FROM revocations), 0),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM revocations_cursor_seq));

ALTER TABLE revocations ALTER COLUMN cursor DROP IDENTITY;

-- An explicit cursor (an import keeping verifiers' cursors) is kept and only
-- moves the counter up.
CREATE FUNCTION revocations_take_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cursor IS NULL THEN
        UPDATE feed_position SET last = last + 1 RETURNING last INTO NEW.cursor;
    ELSE
        UPDATE feed_position SET last = GREATEST(last, NEW.cursor);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER revocations_take_position BEFORE INSERT ON revocations
    FOR EACH ROW EXECUTE FUNCTION revocations_take_position();
