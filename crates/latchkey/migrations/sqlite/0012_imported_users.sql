-- Users brought from another system by `latchkey import`: where from, and
-- the password hash as imported, so that importing again updates only the
-- users who have not signed in to Latchkey since.
CREATE TABLE imported_users (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    source_id     TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    last_login_at INTEGER,
    imported_at   INTEGER NOT NULL
);
