-- purge_audit (0017) kept the runs it takes in a temp table: a SECURITY DEFINER function that creates or uses a
-- temp table by name may use the caller's, and a trigger on the caller's table then runs as the owner. The
-- runs are held in an array now. A batch takes whole runs (at most batch_size of them, every op and replay of
-- each), so retention never leaves a run with part of its ops between two batches.

CREATE OR REPLACE FUNCTION m11_audit.purge_audit(max_age_days integer, batch_size integer, OUT ops_deleted integer,
                                                 OUT replays_deleted integer, OUT runs_deleted integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(days => greatest(max_age_days, 1));
    -- An unfinished run is over once no message of it can come back: SQS keeps one 14 days at most.
    stale timestamptz := least(cutoff, now() - interval '14 days');
    n integer := least(greatest(batch_size, 0), 50000);
    doomed text[];
BEGIN
    PERFORM m11_audit.refuse_tenant_scope('purge_audit');
    ops_deleted := 0; replays_deleted := 0; runs_deleted := 0;
    IF max_age_days < 1 OR n = 0 THEN
        RETURN;
    END IF;
    -- Whole runs that may go: finished before the cutoff, or unfinished and untouched since `stale`; and not
    -- replayed since the cutoff (a replay reads its ops). Locked: a run a concurrent purge took is skipped.
    SELECT coalesce(array_agg(id), '{}') INTO doomed FROM (
        SELECT r.id FROM m11_audit.workflow_runs r
         WHERE ((r.status IN ('completed', 'failed') AND r.completed_at < cutoff)
                OR (r.status IN ('queued', 'running') AND r.updated_at < stale))
           AND NOT EXISTS (SELECT 1 FROM m11_audit.replay_runs p WHERE p.workflow_run_id = r.id
                            AND p.started_at >= cutoff)
         ORDER BY coalesce(r.completed_at, r.updated_at) LIMIT n FOR UPDATE SKIP LOCKED) taken;
    DELETE FROM m11_audit.ops WHERE workflow_run_id = ANY(doomed);
    GET DIAGNOSTICS ops_deleted = ROW_COUNT;
    -- Replays go with their run, and by their own age where their run stays (replayed again since).
    DELETE FROM m11_audit.replay_runs WHERE workflow_run_id = ANY(doomed);
    GET DIAGNOSTICS replays_deleted = ROW_COUNT;
    DELETE FROM m11_audit.replay_runs WHERE ctid IN (
        SELECT p.ctid FROM m11_audit.replay_runs p
         WHERE p.started_at < cutoff AND NOT p.workflow_run_id = ANY(doomed)
         ORDER BY p.started_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS runs_deleted = ROW_COUNT;  -- (borrowed for the count of the older replays)
    replays_deleted := replays_deleted + runs_deleted;
    DELETE FROM m11_audit.workflow_runs r
     WHERE r.id = ANY(doomed)
       AND NOT EXISTS (SELECT 1 FROM m11_audit.replay_runs p WHERE p.workflow_run_id = r.id);
    GET DIAGNOSTICS runs_deleted = ROW_COUNT;
END
$$;
