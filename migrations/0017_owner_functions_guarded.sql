-- The owner's functions that span every tenant (the relay's claim and release, retention's purges) refuse a
-- caller scoped to a tenant: code serving one tenant has no business with every tenant's runs. The relay and
-- retention run with no tenant. The relay's floors are the SQL's too (a claim of age 1 s failed every tenant's
-- queued runs at once as never_started), and a release touches only runs a claim just counted.
--
-- Retention takes whole runs: a run replayed since the cutoff keeps its ops with its row (its ops went while
-- the row stayed, and the next replay reported a CRITICAL mismatch where nothing was tampered with), and a run
-- queued or running but untouched for longer than any message of it can live (SQS keeps one 14 days at most)
-- goes whole, where it was kept forever.

CREATE FUNCTION m11_audit.refuse_tenant_scope(what text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NULLIF(current_setting('app.tenant_id', true), '') IS NOT NULL THEN
        RAISE EXCEPTION '% spans every tenant: call it with no tenant scope', what USING ERRCODE = '42501';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION m11_audit.claim_stale_runs(min_age_s integer, max_requeues integer, give_up_s integer,
                                                      max_runs integer)
    RETURNS TABLE (workflow_run_id text, tenant_id text, requeues integer, abandoned boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(secs => greatest(min_age_s, 60));
    oldest timestamptz := now() - make_interval(secs => greatest(give_up_s, min_age_s, 600));
    n integer := least(greatest(max_runs, 0), 10000);
BEGIN
    PERFORM m11_audit.refuse_tenant_scope('claim_stale_runs');
    RETURN QUERY
    UPDATE m11_audit.workflow_runs r
       SET status = 'failed', error_code = 'never_started',
           error_message = format('not started within %s s; its message was sent again %s times',
                                  greatest(give_up_s, min_age_s, 600), r.requeues),
           updated_at = now(), completed_at = now()
     WHERE r.ctid IN (SELECT s.ctid FROM m11_audit.workflow_runs s
                       WHERE s.status = 'queued' AND s.updated_at < cutoff AND s.requeues >= max_requeues
                         AND s.created_at < oldest
                       ORDER BY s.updated_at LIMIT n FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.tenant_id, r.requeues, true;
    RETURN QUERY
    UPDATE m11_audit.workflow_runs r
       SET requeues = r.requeues + 1, updated_at = now()
     WHERE r.ctid IN (SELECT s.ctid FROM m11_audit.workflow_runs s
                       WHERE s.status = 'queued' AND s.updated_at < cutoff AND s.requeues < max_requeues
                       ORDER BY s.updated_at LIMIT n FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.tenant_id, r.requeues, false;
END
$$;

CREATE OR REPLACE FUNCTION m11_audit.release_claims(run_ids text[], min_age_s integer)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    released integer;
BEGIN
    PERFORM m11_audit.refuse_tenant_scope('release_claims');
    -- Claimed moments ago by claim_stale_runs (which set updated_at to now() and counted a requeue).
    UPDATE m11_audit.workflow_runs r
       SET requeues = r.requeues - 1,
           updated_at = now() - make_interval(secs => greatest(min_age_s, 60) + 1)
     WHERE r.id = ANY(run_ids) AND r.status = 'queued' AND r.requeues > 0
       AND r.updated_at > now() - interval '15 minutes';
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN released;
END
$$;

CREATE OR REPLACE FUNCTION m11_audit.purge_audit(max_age_days integer, batch_size integer, OUT ops_deleted integer,
                                                 OUT replays_deleted integer, OUT runs_deleted integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(days => greatest(max_age_days, 1));
    -- An unfinished run is over once no message of it can come back: SQS keeps one 14 days at most.
    stale timestamptz := least(cutoff, now() - interval '14 days');
    n integer := least(greatest(batch_size, 0), 50000);
BEGIN
    PERFORM m11_audit.refuse_tenant_scope('purge_audit');
    ops_deleted := 0; replays_deleted := 0; runs_deleted := 0;
    IF max_age_days < 1 OR n = 0 THEN
        RETURN;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS purge_runs (id text PRIMARY KEY) ON COMMIT DROP;
    TRUNCATE purge_runs;
    -- Whole runs that may go: finished before the cutoff, or unfinished and untouched since `stale`; and not
    -- replayed since the cutoff (a replay reads its ops).
    INSERT INTO purge_runs
    SELECT r.id FROM m11_audit.workflow_runs r
     WHERE ((r.status IN ('completed', 'failed') AND r.completed_at < cutoff)
            OR (r.status IN ('queued', 'running') AND r.updated_at < stale))
       AND NOT EXISTS (SELECT 1 FROM m11_audit.replay_runs p WHERE p.workflow_run_id = r.id
                        AND p.started_at >= cutoff)
     ORDER BY coalesce(r.completed_at, r.updated_at) LIMIT n;
    DELETE FROM m11_audit.ops WHERE ctid IN (
        SELECT o.ctid FROM m11_audit.ops o JOIN purge_runs g ON g.id = o.workflow_run_id
        ORDER BY o.workflow_run_id, o.op_index LIMIT n FOR UPDATE OF o SKIP LOCKED);
    GET DIAGNOSTICS ops_deleted = ROW_COUNT;
    DELETE FROM m11_audit.replay_runs WHERE ctid IN (
        SELECT p.ctid FROM m11_audit.replay_runs p
         WHERE p.started_at < cutoff
           AND (EXISTS (SELECT 1 FROM purge_runs g WHERE g.id = p.workflow_run_id)
                OR EXISTS (SELECT 1 FROM m11_audit.workflow_runs r WHERE r.id = p.workflow_run_id
                            AND EXISTS (SELECT 1 FROM m11_audit.replay_runs q
                                         WHERE q.workflow_run_id = r.id AND q.started_at >= cutoff)))
        ORDER BY p.started_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS replays_deleted = ROW_COUNT;
    DELETE FROM m11_audit.workflow_runs WHERE ctid IN (
        SELECT r.ctid FROM m11_audit.workflow_runs r JOIN purge_runs g ON g.id = r.id
         WHERE NOT EXISTS (SELECT 1 FROM m11_audit.ops o WHERE o.workflow_run_id = r.id)
           AND NOT EXISTS (SELECT 1 FROM m11_audit.replay_runs p WHERE p.workflow_run_id = r.id)
        FOR UPDATE OF r SKIP LOCKED);
    GET DIAGNOSTICS runs_deleted = ROW_COUNT;
END
$$;

CREATE OR REPLACE FUNCTION purge_failure_matches(max_age_days integer, batch_size integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM m11_audit.refuse_tenant_scope('purge_failure_matches');
    WITH doomed AS (
        SELECT id FROM public.failure_matches
        WHERE max_age_days >= 1
          AND created_at < (now() AT TIME ZONE 'utc') - make_interval(days => max_age_days)
        ORDER BY created_at
        LIMIT least(greatest(batch_size, 0), 50000)
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM public.failure_matches f USING doomed WHERE f.id = doomed.id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
