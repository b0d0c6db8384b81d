-- Webhooks: the operator's endpoints (each secret sealed under the master
-- key) and one delivery row per event and endpoint, written in the
-- transaction of the change the event reports.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    -- Space-separated event types, or '*' for all.
    events      TEXT NOT NULL,
    secret      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    disabled_at INTEGER
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- The event's id, the same for every endpoint (the webhook-id header).
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    user_id         TEXT,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    last_latency_ms INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, id);
-- Deliveries to one endpoint about one user go out in order.
CREATE INDEX webhook_deliveries_by_user ON webhook_deliveries (webhook_id, user_id, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (created_at);
