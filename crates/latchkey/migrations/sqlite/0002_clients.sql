-- Resource-server credentials for introspection and the revocation feed.
-- Secrets are 256-bit random values; only their SHA-256 is stored.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
