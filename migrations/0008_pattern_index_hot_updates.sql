-- Bridge 1's pattern index, revised: counting an occurrence (occurrence_count, last_seen_at) or
-- generalising a template must touch no indexed column, so it stays a HOT update (hence the
-- fillfactor); candidates come in first_seen_at order, which never changes.
ALTER TABLE failure_patterns SET (fillfactor = 90);
DROP INDEX idx_failure_patterns_candidates;
CREATE INDEX idx_failure_patterns_candidates
    ON failure_patterns (tenant_id, error_type, candidate_key, first_seen_at, id);

-- Two workers creating the same new signature end with one pattern: the alias (primary key) is
-- claimed first and the pattern row follows in the same transaction, hence the deferred key.
ALTER TABLE pattern_signatures ALTER CONSTRAINT pattern_signatures_pattern_id_fkey DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX idx_pattern_signatures_pattern ON pattern_signatures (pattern_id);
