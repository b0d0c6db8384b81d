-- Clients allowed to call the admin API, and who did what: the events an
-- operator's action records name the acting client ('cli' from the shell).
ALTER TABLE clients ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE events ADD COLUMN actor TEXT;
CREATE INDEX events_by_kind ON events (kind, id);
