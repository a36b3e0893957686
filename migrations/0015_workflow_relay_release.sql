-- A claim the relay did not send (SQS refused it, or the invocation ran out of time) is given back: its
-- requeue is not counted, and it is stale again at once, for the next relay. Counted at the claim, three relays
-- that each met one refusal failed every claimed run as never_started, none of their messages sent again.
-- The owner's, like claim_stale_runs (0013): the relay spans every tenant.

CREATE FUNCTION m11_audit.release_claims(run_ids text[], min_age_s integer)
    RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH released AS (
        UPDATE m11_audit.workflow_runs r
           SET requeues = greatest(r.requeues - 1, 0),
               updated_at = now() - make_interval(secs => greatest(min_age_s, 1) + 1)
         WHERE r.id = ANY(run_ids) AND r.status = 'queued'
        RETURNING 1)
    SELECT count(*)::integer FROM released;
$$;
REVOKE ALL ON FUNCTION m11_audit.release_claims(text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m11_audit.release_claims(text[], integer) TO incident_loop_app;
