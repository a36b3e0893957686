-- A merge re-points the patterns merged into the ones it absorbs (stores/patterns.py ABSORB_SQL), so that any
-- absorbed pattern is one hop from the pattern its incidents meet now. Those are found by merged_into: few rows
-- (only absorbed patterns), indexed apart from the live ones the candidate probe reads.
CREATE INDEX idx_failure_patterns_merged_into ON failure_patterns (tenant_id, merged_into)
    WHERE merged_into IS NOT NULL;
