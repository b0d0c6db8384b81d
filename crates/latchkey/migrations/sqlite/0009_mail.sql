-- Mail: the language a user's mail is written in, the single-use tokens
-- that mails carry (stored as SHA-256 digests only), and the outbox of
-- messages to send, written in the transaction of the change that causes
-- them. A message's content is sealed under the master key (it can hold a
-- token) and erased once sent.
ALTER TABLE users ADD COLUMN locale TEXT;

CREATE TABLE email_tokens (
    digest     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    -- The address the token proves or moves to; for a cancellation, the
    -- address to restore.
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_by_expiry ON email_tokens (expires_at);

CREATE TABLE mail_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    sealed          BLOB,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    sent_at         INTEGER,
    failed_at       INTEGER,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX mail_outbox_by_time ON mail_outbox (created_at);
