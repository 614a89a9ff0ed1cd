-- One row per recipient: the change-id counter, the unread count and how
-- far the change log was pruned. SQLite has one writer at a time, which
-- orders a recipient's writers.
CREATE TABLE IF NOT EXISTS sse_recipients (
    user_id        TEXT PRIMARY KEY,
    last_event_id  BIGINT NOT NULL DEFAULT 0,
    unread_count   BIGINT NOT NULL DEFAULT 0,
    pruned_through BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS sse_notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    title      TEXT NOT NULL,
    message    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    action_url TEXT,
    read       BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS sse_notifications_by_user ON sse_notifications (user_id, id DESC);
CREATE INDEX IF NOT EXISTS sse_notifications_unread ON sse_notifications (user_id) WHERE NOT read;

CREATE TABLE IF NOT EXISTS sse_changes (
    user_id      TEXT NOT NULL,
    id           BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    unread_count BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    PRIMARY KEY (user_id, id)
);

CREATE INDEX IF NOT EXISTS sse_changes_by_age ON sse_changes (at);
