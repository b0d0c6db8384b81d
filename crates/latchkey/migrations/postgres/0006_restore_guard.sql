-- The database's identity and a counter that only rises: every instance
-- raises it now and then and keeps the value it saw in its data directory,
-- so a database put back from a backup (a lower counter, the same identity)
-- is noticed before it serves tokens its backup had already retired.
CREATE TABLE restore_guard (
    only_row    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    database_id TEXT NOT NULL,
    counter     BIGINT NOT NULL
);
INSERT INTO restore_guard (database_id, counter)
VALUES (replace(gen_random_uuid()::text, '-', ''), 0);
