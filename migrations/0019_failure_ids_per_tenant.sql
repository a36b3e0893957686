-- A producer may name its failure (failure_id): two tenants naming one the same must each keep theirs. Keyed by
-- id alone, the second tenant's write did nothing (ON CONFLICT (id) DO NOTHING) and was still reported stored.
--
-- Step one of two: the key (tenant_id, id) is added beside the id-only primary key, which the code deployed
-- before this migration still names (ON CONFLICT (id)); the code of this release names (tenant_id, id), so a
-- second tenant's failure of the same id is now refused loudly (parked, then dead-lettered with the reason),
-- never reported stored. Step two, in the next release once no code names (id): make (tenant_id, id) the
-- primary key and drop the id-only one; then both tenants keep theirs.
CREATE UNIQUE INDEX uq_failure_matches_tenant_id ON failure_matches (tenant_id, id);

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
