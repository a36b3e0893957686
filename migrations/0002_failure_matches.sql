-- Seed 002 (M9 failure catalog): failure_matches with its 23 columns and 12 indexes, as listed.
-- tenant_id stays nullable here exactly as the seed shipped it; enforcement is a later migration.

CREATE TABLE failure_matches (
    id                  UUID PRIMARY KEY,
    run_id              VARCHAR NOT NULL,
    tenant_id           UUID,
    error_code          VARCHAR(255) NOT NULL,
    error_message       TEXT,
    catalog_entry_id    VARCHAR(100),
    match_type          VARCHAR(20),
    match_confidence    FLOAT,
    category            VARCHAR(50),
    severity            VARCHAR(20),
    is_retryable        BOOLEAN DEFAULT FALSE,
    recovery_mode       VARCHAR(50),
    recovery_suggestion TEXT,
    recovery_attempted  BOOLEAN DEFAULT FALSE,
    recovery_succeeded  BOOLEAN DEFAULT FALSE,
    recovered_at        TIMESTAMP,
    recovered_by        VARCHAR(100),
    recovery_notes      TEXT,
    skill_id            VARCHAR(100),
    step_index          INTEGER,
    context_json        JSONB,
    created_at          TIMESTAMP DEFAULT NOW(),
    updated_at          TIMESTAMP DEFAULT NOW()
);

CREATE INDEX idx_fm_run_id ON failure_matches (run_id);
CREATE INDEX idx_fm_tenant_id ON failure_matches (tenant_id);
CREATE INDEX idx_fm_error_code ON failure_matches (error_code);
CREATE INDEX idx_fm_catalog_entry_id ON failure_matches (catalog_entry_id);
CREATE INDEX idx_fm_created_at ON failure_matches (created_at);
CREATE INDEX idx_fm_category ON failure_matches (category);
CREATE INDEX idx_fm_severity ON failure_matches (severity);
CREATE INDEX idx_fm_recovery_mode ON failure_matches (recovery_mode);
CREATE INDEX idx_fm_tenant_error ON failure_matches (tenant_id, error_code);
CREATE INDEX idx_fm_tenant_time ON failure_matches (tenant_id, created_at);
-- Partial indexes: no now() in the predicate (seed 002: the time filter belongs to the query).
CREATE INDEX idx_fm_recovery_pending ON failure_matches (created_at) WHERE recovery_succeeded = FALSE;
CREATE INDEX idx_fm_recent_misses ON failure_matches (created_at) WHERE catalog_entry_id IS NULL;
