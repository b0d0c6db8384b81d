-- The revocation feed also carries withdrawn signing keys (kind 'key', with
-- the kid; user_id is empty for them). SQLite cannot alter a CHECK
-- constraint, so the table is rebuilt, keeping every cursor and the
-- AUTOINCREMENT high-water mark (cursors verifiers hold must never repeat).
CREATE TABLE revocations_next (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'user', 'key')),
    session_id TEXT,
    user_id    TEXT NOT NULL,
    not_before INTEGER,
    revoked_at INTEGER NOT NULL,
    kid        TEXT
);
INSERT INTO revocations_next (cursor, kind, session_id, user_id, not_before, revoked_at)
SELECT cursor, kind, session_id, user_id, not_before, revoked_at FROM revocations;
DELETE FROM sqlite_sequence WHERE name = 'revocations_next';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'revocations_next', seq FROM sqlite_sequence WHERE name = 'revocations';
DROP TABLE revocations;
ALTER TABLE revocations_next RENAME TO revocations;
CREATE INDEX revocations_by_time ON revocations (revoked_at);
-- What the per-request check of an access token's key looks up.
CREATE INDEX revocations_by_kid ON revocations (kid) WHERE kid IS NOT NULL;
