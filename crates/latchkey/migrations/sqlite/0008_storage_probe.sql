-- A scratch table for the readiness probe after a storage failure: a write
-- of real size (a row of 256 KiB, deleted in the same transaction) succeeds
-- only when the disk has room again. It never holds a row between probes.
CREATE TABLE storage_probe (
    id INTEGER PRIMARY KEY,
    filler BLOB NOT NULL
);
