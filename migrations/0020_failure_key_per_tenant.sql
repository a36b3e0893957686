-- Step two of 0019: the code deployed since then names (tenant_id, id) only, so the id-only primary key goes and
-- (tenant_id, id) becomes the key. Two tenants naming a failure alike now each keep theirs.
ALTER TABLE failure_matches DROP CONSTRAINT failure_matches_pkey;
ALTER TABLE failure_matches ADD CONSTRAINT failure_matches_pkey PRIMARY KEY USING INDEX uq_failure_matches_tenant_id;
