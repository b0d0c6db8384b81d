-- Second factors. A TOTP secret is sealed under the master key; `last_step`
-- is the highest time step a code was accepted for, so a code is accepted
-- once whichever instance sees it. `confirmed_at` is NULL until a first code
-- proves the authenticator app holds the secret.
CREATE TABLE totp_factors (
    user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER NOT NULL DEFAULT 0
);

-- Single-use recovery codes, kept as SHA-256 digests (they are random).
CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, digest)
);

-- The second step of a sign-in: issued once the password was right, kept as
-- the digest of its token, bound to the device that passed the first step.
CREATE TABLE mfa_challenges (
    digest             TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_version INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    user_agent         TEXT,
    known_device       BOOLEAN NOT NULL
);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (expires_at);
