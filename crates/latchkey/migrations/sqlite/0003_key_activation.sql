-- A rotated-in key is published before it signs, so verifiers holding a
-- cached JWKS learn it first. Existing keys signed from their creation.
ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER NOT NULL DEFAULT 0;
UPDATE signing_keys SET activates_at = created_at;
