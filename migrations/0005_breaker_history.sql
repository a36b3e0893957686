-- Every circuit-breaker transition, once (a retried history write is idempotent on the version).
CREATE TABLE breaker_history (
    id              BIGSERIAL PRIMARY KEY,
    breaker_name    TEXT NOT NULL,
    from_state      TEXT NOT NULL,
    to_state        TEXT NOT NULL,
    version         INTEGER NOT NULL,
    reason          TEXT,
    changed_by      TEXT,
    details         JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_breaker_history_version UNIQUE (breaker_name, version)
);
CREATE INDEX idx_breaker_history_recent ON breaker_history (breaker_name, created_at DESC);
