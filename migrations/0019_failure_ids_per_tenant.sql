-- A producer may name its failure (failure_id): two tenants naming one the same must each keep theirs. Keyed by
-- id alone, the second tenant's write did nothing (ON CONFLICT (id) DO NOTHING) and was still reported stored.
-- Every read of a failure names its tenant already, so the key is (tenant_id, id).
ALTER TABLE failure_matches DROP CONSTRAINT failure_matches_pkey;
ALTER TABLE failure_matches ADD PRIMARY KEY (tenant_id, id);

-- Retention deletes the rows it picked (by their place), not every row sharing their id.
CREATE OR REPLACE FUNCTION purge_failure_matches(max_age_days integer, batch_size integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM m11_audit.refuse_tenant_scope('purge_failure_matches');
    WITH doomed AS (
        SELECT ctid AS row_at FROM public.failure_matches
        WHERE max_age_days >= 1
          AND created_at < (now() AT TIME ZONE 'utc') - make_interval(days => max_age_days)
        ORDER BY created_at
        LIMIT least(greatest(batch_size, 0), 50000)
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM public.failure_matches f USING doomed WHERE f.ctid = doomed.row_at;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
