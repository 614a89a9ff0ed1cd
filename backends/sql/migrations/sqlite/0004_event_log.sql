-- The event log: every durable event of every audience (user, group,
-- topic, everyone) in one dense, commit-ordered sequence of positions. Its
-- frames are the encoded events, their position (cursor) as `id:`.
CREATE TABLE sse_log (
    pos      BIGINT PRIMARY KEY,
    audience TEXT NOT NULL,
    at       BIGINT NOT NULL,
    frame    TEXT NOT NULL
);

-- A replay reads a principal's audiences after a position.
CREATE INDEX sse_log_by_audience ON sse_log (audience, pos);
-- Retention by age.
CREATE INDEX sse_log_by_age ON sse_log (at);

-- One row: the log's history name, its newest position and how far it was
-- pruned. Appenders take positions by updating it, which holds its lock
-- until they commit: appends commit one after another, in position order.
CREATE TABLE sse_log_head (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    epoch          TEXT NOT NULL,
    pos            BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL
);

-- Notifications carry the application's JSON data.
ALTER TABLE sse_notifications ADD COLUMN data TEXT;

-- The per-recipient change log and counters of migration 1 are replaced by
-- the event log; the migration moves their rows into it (in code, after
-- this script) and then drops the table. `sse_recipients` keeps only the
-- unread count in use.
