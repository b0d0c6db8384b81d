-- Users, sessions with their refresh-token chain state, revocations, audit
-- events, login throttles and signing keys. Times are Unix seconds.

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL UNIQUE,
    name             TEXT,
    password_hash    TEXT NOT NULL,
    email_verified   INTEGER NOT NULL DEFAULT 0,
    disabled         INTEGER NOT NULL DEFAULT 0,
    not_before       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- A session holds no usable refresh token: only a random salt and the
-- generation counter from which the current token's MAC is derived with a key
-- that lives outside the database.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    salt            BLOB NOT NULL,
    generation      INTEGER NOT NULL,
    rotated_at      INTEGER,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoke_reason   TEXT,
    user_agent      TEXT,
    ip              TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE revocations (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'user')),
    session_id TEXT,
    user_id    TEXT NOT NULL,
    not_before INTEGER,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revocations_by_time ON revocations (revoked_at);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT,
    session_id TEXT,
    kind       TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, id);
CREATE INDEX events_by_time ON events (created_at);

-- Keyed by normalised email, so unknown and known accounts throttle alike.
CREATE TABLE login_throttle (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    private_key BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER,
    expires_at  INTEGER
);
