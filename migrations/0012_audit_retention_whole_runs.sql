-- Retention takes whole finished runs: an op goes only when its run completed or failed before the cutoff,
-- so a run still running (a message redriven late) keeps every op it will resume from, and a run's ops do
-- not go one night apart from its own row. Replays go by their own age, as before.
CREATE OR REPLACE FUNCTION m11_audit.purge_audit(max_age_days integer, batch_size integer, OUT ops_deleted integer,
                                                 OUT replays_deleted integer, OUT runs_deleted integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(days => greatest(max_age_days, 1));
    n integer := least(greatest(batch_size, 0), 50000);
BEGIN
    ops_deleted := 0; replays_deleted := 0; runs_deleted := 0;
    IF max_age_days < 1 OR n = 0 THEN
        RETURN;
    END IF;
    DELETE FROM m11_audit.ops WHERE ctid IN (
        SELECT o.ctid FROM m11_audit.ops o
        JOIN m11_audit.workflow_runs r ON r.id = o.workflow_run_id
        WHERE r.status IN ('completed', 'failed') AND r.completed_at < cutoff
        ORDER BY r.completed_at, o.workflow_run_id, o.op_index LIMIT n FOR UPDATE OF o SKIP LOCKED);
    GET DIAGNOSTICS ops_deleted = ROW_COUNT;
    DELETE FROM m11_audit.replay_runs WHERE ctid IN (
        SELECT ctid FROM m11_audit.replay_runs WHERE started_at < cutoff
        ORDER BY started_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS replays_deleted = ROW_COUNT;
    DELETE FROM m11_audit.workflow_runs WHERE ctid IN (
        SELECT r.ctid FROM m11_audit.workflow_runs r
        WHERE r.status IN ('completed', 'failed') AND r.completed_at < cutoff
          AND NOT EXISTS (SELECT 1 FROM m11_audit.ops o WHERE o.workflow_run_id = r.id)
          AND NOT EXISTS (SELECT 1 FROM m11_audit.replay_runs p WHERE p.workflow_run_id = r.id)
        ORDER BY r.completed_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS runs_deleted = ROW_COUNT;
END
$$;
