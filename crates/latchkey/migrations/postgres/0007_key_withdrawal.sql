-- The revocation feed also carries withdrawn signing keys (kind 'key', with
-- the kid; user_id is empty for them).
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('session', 'user', 'key'));
ALTER TABLE revocations ADD COLUMN kid TEXT;
-- What the per-request check of an access token's key looks up.
CREATE INDEX revocations_by_kid ON revocations (kid) WHERE kid IS NOT NULL;
