-- Sessions keyed by the SHA-256 of their credential, with an unrelated
-- random session id: whoever reads this table (or a hub's channel list, or
-- the logs) learns nothing that logs in. The table of migration 2 kept
-- credentials in plain text; its sessions end here and their holders log
-- in again.
DROP TABLE IF EXISTS sse_sessions;

CREATE TABLE sse_sessions (
    credential_hash TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL,
    -- The principal's groups and topics, as JSON arrays of strings.
    groups          TEXT NOT NULL DEFAULT '[]',
    topics          TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);

CREATE INDEX sse_sessions_by_user ON sse_sessions (user_id);
CREATE INDEX sse_sessions_by_expiry ON sse_sessions (expires_at);
