-- Cookie sessions for apps without their own session store.
CREATE TABLE IF NOT EXISTS sse_sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS sse_sessions_by_user ON sse_sessions (user_id);
