-- When the session's user last proved who they are (sign-in or a
-- re-authentication) and how (`amr` values, space-separated): access tokens
-- carry both, and sensitive changes need a recent proof.
ALTER TABLE sessions ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
UPDATE sessions SET auth_time = created_at;
