-- How far the security events of each kind have been summarised for the
-- webhooks: attempts refused by the login throttle go out as one summary a
-- minute per account, not one event each. Moved in the transaction that
-- writes the summaries, so each event is counted once, across instances.
CREATE TABLE event_tallies (
    kind          TEXT PRIMARY KEY,
    tallied_until BIGINT NOT NULL
);
