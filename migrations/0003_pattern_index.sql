-- Bridge 1's index: fuzzy candidates are found by (tenant, error type, candidate key) through an
-- index, never a scan, and without pg_trgm (seed 000, issue 4). Every signature a pattern has
-- absorbed is an alias, so the next message with that template is an exact hit.
ALTER TABLE failure_patterns ADD COLUMN candidate_key TEXT NOT NULL DEFAULT '';
ALTER TABLE failure_patterns ALTER COLUMN candidate_key DROP DEFAULT;
CREATE INDEX idx_failure_patterns_candidates
    ON failure_patterns (tenant_id, error_type, candidate_key, occurrence_count DESC);

CREATE TABLE pattern_signatures (
    tenant_id   TEXT NOT NULL,
    signature   TEXT NOT NULL,
    pattern_id  TEXT NOT NULL REFERENCES failure_patterns (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, signature)
);
