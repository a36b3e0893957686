-- Tenant isolation in the database (DESIGN.md, "Tenancy and trust"). The functions log in as a
-- member of incident_loop_app, a role that owns nothing and cannot bypass row-level security;
-- every transaction sets app.tenant_id (set_config(..., true)), and every tenant table shows and
-- accepts only that tenant's rows. No tenant set: no rows, and every insert refused.
-- Migrations run as the owner, whom RLS does not restrict. FORCE ROW LEVEL SECURITY is left off
-- on purpose: the two SECURITY DEFINER functions below run as the owner and rely on that.

-- Roles are cluster-wide, shared by every database of the cluster (stages, test databases): made
-- once, and a concurrent migration of another database creating it first is not an error.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'incident_loop_app') THEN
        BEGIN
            CREATE ROLE incident_loop_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO incident_loop_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO incident_loop_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO incident_loop_app;
-- Tables and sequences later migrations create (as this same owner) are granted too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO incident_loop_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO incident_loop_app;
-- The migration ledger is the owner's to write.
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM incident_loop_app;

-- Every table with a tenant_id column: incidents, failure_patterns, pattern_signatures,
-- recovery_candidates, policy_rules, routing_adjustments, human_checkpoints, loop_events,
-- loop_traces, prevention_records, failure_matches, agent_kpis, costsim_provenance.
-- NULLIF: once a session has set app.tenant_id locally, the unset value reads '' rather than NULL.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind = 'r'
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %s'
            ' USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), ''''))'
            ' WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), ''''))', t);
    END LOOP;
END
$$;

-- Two tenant tables carry no tenant_id of their own: a row belongs to its incident's tenant.
ALTER TABLE pattern_occurrences ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pattern_occurrences
    USING (EXISTS (SELECT 1 FROM incidents i WHERE i.id = pattern_occurrences.incident_id))
    WITH CHECK (EXISTS (SELECT 1 FROM incidents i WHERE i.id = pattern_occurrences.incident_id));
ALTER TABLE policy_evaluations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policy_evaluations
    USING (EXISTS (SELECT 1 FROM incidents i WHERE i.id = policy_evaluations.incident_id))
    WITH CHECK (EXISTS (SELECT 1 FROM incidents i WHERE i.id = policy_evaluations.incident_id));
-- Global, tenant-free tables stay without RLS: breaker_history, costsim_canary_reports,
-- costsim_incidents (CostSim's loop incidents are filed under the ops tenant), error_catalog.

-- CostSim provenance is per tenant: a global key on the input hash told one tenant whether
-- another had simulated the same plan (provenance_recorded). (input_hash) unique implies
-- (tenant_id, input_hash) unique, so the existing rows satisfy the new key.
ALTER TABLE costsim_provenance DROP CONSTRAINT uq_costsim_provenance_input;
ALTER TABLE costsim_provenance ADD CONSTRAINT uq_costsim_provenance_tenant_input UNIQUE (tenant_id, input_hash);

-- Maintenance that legitimately spans tenants, as narrow owner's functions the app role may call
-- (it gets no way around RLS otherwise). search_path is pinned and every name qualified.

-- Retention: delete one batch of failures older than max_age_days (>= 1), of every tenant.
CREATE FUNCTION purge_failure_matches(max_age_days integer, batch_size integer) RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH doomed AS (
        SELECT id FROM public.failure_matches
        WHERE max_age_days >= 1
          AND created_at < (now() AT TIME ZONE 'utc') - make_interval(days => max_age_days)
        ORDER BY created_at
        LIMIT least(greatest(batch_size, 0), 50000)
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM public.failure_matches f USING doomed WHERE f.id = doomed.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
REVOKE ALL ON FUNCTION purge_failure_matches(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_failure_matches(integer, integer) TO incident_loop_app;

-- CostSim status: the drift p95 and count of the last hour's simulations, all tenants together
-- (the V2 breaker they feed is global); an aggregate only, never a row.
CREATE FUNCTION costsim_drift_last_hour(OUT p95 double precision, OUT n bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY drift), count(*)
    FROM public.costsim_provenance
    WHERE drift IS NOT NULL AND created_at > now() - interval '1 hour'
$$;
REVOKE ALL ON FUNCTION costsim_drift_last_hour() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION costsim_drift_last_hour() TO incident_loop_app;
