-- Passkeys (WebAuthn credentials). `id` is the credential id (base64url);
-- `credential` is the verified credential as the WebAuthn library keeps it
-- (public key, signature counter, backup flags), JSON; `counter` mirrors its
-- signature counter so that it only ever moves forward, whichever instance
-- writes.
CREATE TABLE passkeys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    credential      TEXT NOT NULL,
    counter         BIGINT NOT NULL DEFAULT 0,
    backup_eligible BOOLEAN NOT NULL DEFAULT FALSE,
    backup_state    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);

-- A WebAuthn ceremony under way: the state the library needs to finish it,
-- kept as the digest of the token the client holds, taken once.
CREATE TABLE passkey_ceremonies (
    digest     TEXT PRIMARY KEY,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX passkey_ceremonies_by_expiry ON passkey_ceremonies (expires_at);
