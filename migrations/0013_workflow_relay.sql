-- The workflow relay: a run is written in its caller's transaction and its message sent after the commit
-- (the announcements of stores/notifications.py, POST /workflows). When SQS refuses that message, the run
-- would stay 'queued' with nothing to start it. The relay (WorkflowRelayFunction, every few minutes) sends
-- a queued run's message again once the run has waited min_age_s untouched, at most max_requeues times.
-- A run still not started give_up_s after it was created (longer than its first message can live on the
-- queue: visibility timeout x receives) is failed as never_started, so GET /workflows/{id} says so.
-- The owner's, like purge_audit (0010): the relay spans every tenant, which RLS hides from the function role.

ALTER TABLE m11_audit.workflow_runs ADD COLUMN requeues integer NOT NULL DEFAULT 0;

-- Waiting queued runs, oldest first: the relay's probe touches only them.
CREATE INDEX idx_workflow_runs_queued ON m11_audit.workflow_runs (updated_at) WHERE status = 'queued';

CREATE FUNCTION m11_audit.claim_stale_runs(min_age_s integer, max_requeues integer, give_up_s integer,
                                           max_runs integer)
    RETURNS TABLE (workflow_run_id text, tenant_id text, requeues integer, abandoned boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(secs => greatest(min_age_s, 1));
    oldest timestamptz := now() - make_interval(secs => greatest(give_up_s, min_age_s, 1));
    n integer := least(greatest(max_runs, 0), 10000);
BEGIN
    -- Given up: requeued max_requeues times, untouched since, and older than any message of it can be.
    RETURN QUERY
    UPDATE m11_audit.workflow_runs r
       SET status = 'failed', error_code = 'never_started',
           error_message = format('not started within %s s; its message was sent again %s times',
                                  greatest(give_up_s, min_age_s, 1), r.requeues),
           updated_at = now(), completed_at = now()
     WHERE r.ctid IN (SELECT s.ctid FROM m11_audit.workflow_runs s
                       WHERE s.status = 'queued' AND s.updated_at < cutoff AND s.requeues >= max_requeues
                         AND s.created_at < oldest
                       ORDER BY s.updated_at LIMIT n FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.tenant_id, r.requeues, true;
    -- Claimed for another message: counted, and untouched for min_age_s again.
    RETURN QUERY
    UPDATE m11_audit.workflow_runs r
       SET requeues = r.requeues + 1, updated_at = now()
     WHERE r.ctid IN (SELECT s.ctid FROM m11_audit.workflow_runs s
                       WHERE s.status = 'queued' AND s.updated_at < cutoff AND s.requeues < max_requeues
                       ORDER BY s.updated_at LIMIT n FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.tenant_id, r.requeues, false;
END
$$;
REVOKE ALL ON FUNCTION m11_audit.claim_stale_runs(integer, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m11_audit.claim_stale_runs(integer, integer, integer, integer) TO incident_loop_app;
