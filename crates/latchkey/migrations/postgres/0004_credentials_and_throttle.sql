-- A user's credential version rises in the same transaction as every
-- user-wide revocation (password change, disable, logout everywhere); a
-- session is inserted only while the version its login verified is still
-- current, so a login racing such a change never outlives it.
ALTER TABLE users ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0;

-- The throttle counts failures, not attempts: attempts in flight hold a
-- lease (pending, until pending_until) that their outcome settles, and a
-- daily ceiling bounds the failures evaluated per key per day.
ALTER TABLE login_throttle ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN pending_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN day_started_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN day_failures BIGINT NOT NULL DEFAULT 0;
