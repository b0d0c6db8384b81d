-- The database's identity and a counter that only rises: every instance
-- raises it now and then and keeps the value it saw in its data directory,
-- so a database put back from a backup (a lower counter, the same identity)
-- is noticed before it serves tokens its backup had already retired.
CREATE TABLE restore_guard (
    only_row    INTEGER PRIMARY KEY CHECK (only_row = 1),
    database_id TEXT NOT NULL,
    counter     INTEGER NOT NULL
);
INSERT INTO restore_guard (only_row, database_id, counter)
VALUES (1, lower(hex(randomblob(16))), 0);
