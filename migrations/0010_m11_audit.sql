-- Seed 004's skill audit (schema m11_audit): every op of every workflow run, replay verifications, a
-- per-run summary, and the runs themselves (definition and status). Where it departs from the seed:
-- * op_index is the step's index in the run's definition, unique per (workflow_run_id, op_index). The
--   seed's next_op_index() (SELECT MAX(op_index) + 1) let two writers take the same index; there is no
--   such function here, and a redelivered step finds its row instead of adding one.
-- * No circuit_breaker_state table: breaker state is the shared DynamoDB breakers table (one item per
--   skill:<target>, conditional writes on a version). No skill_metrics table: metrics are CloudWatch EMF.
-- * workflow_summary is a view over ops, so it can never disagree with them.
-- * Every table carries tenant_id, with row-level security as in 0009; the function role may insert and
--   update, never delete (retention is the owner's narrow purge_audit below), and may not rewrite an op
--   once it is completed or failed (the trigger below).
-- Requires PostgreSQL 15 (security_invoker views); Aurora PostgreSQL 15+.

CREATE SCHEMA m11_audit;

CREATE TABLE m11_audit.workflow_runs (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    name            TEXT,
    definition      JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    error_code      TEXT,
    error_message   TEXT,
    -- One worker at a time: a redelivered or continued message waits while another holds the lease.
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ,
    CONSTRAINT uq_workflow_runs_tenant UNIQUE (id, tenant_id)
);
CREATE INDEX idx_workflow_runs_tenant_time ON m11_audit.workflow_runs (tenant_id, created_at DESC);
CREATE INDEX idx_workflow_runs_updated ON m11_audit.workflow_runs (updated_at);

-- The seed's columns, in the seed's order; tenant_id has no 'default' here (row-level security needs a real one).
CREATE TABLE m11_audit.ops (
    op_id           TEXT PRIMARY KEY,
    workflow_run_id TEXT NOT NULL,
    op_index        INTEGER NOT NULL CHECK (op_index >= 0),
    op_type         TEXT NOT NULL,
    skill_version   TEXT,
    args            JSONB NOT NULL,
    args_hash       TEXT NOT NULL,
    result          JSONB,
    result_hash     TEXT,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
    error_code      TEXT,
    error_message   TEXT,
    duration_ms     INTEGER,
    transient       BOOLEAN NOT NULL DEFAULT FALSE,
    idempotency_key TEXT,
    tenant_id       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ,
    CONSTRAINT uq_ops_run_index UNIQUE (workflow_run_id, op_index),
    -- An op belongs to a run of its own tenant.
    CONSTRAINT fk_ops_run FOREIGN KEY (workflow_run_id, tenant_id)
        REFERENCES m11_audit.workflow_runs (id, tenant_id)
);
CREATE INDEX idx_ops_tenant_time ON m11_audit.ops (tenant_id, created_at DESC);
CREATE INDEX idx_ops_created_at ON m11_audit.ops (created_at);

CREATE TABLE m11_audit.replay_runs (
    replay_id               TEXT PRIMARY KEY,
    workflow_run_id         TEXT NOT NULL,
    mode                    TEXT NOT NULL,
    status                  TEXT NOT NULL DEFAULT 'running'
                            CHECK (status IN ('running', 'verified', 'mismatch')),
    ops_total               INTEGER,
    ops_verified            INTEGER,
    ops_failed              INTEGER,
    ops_skipped             INTEGER,
    first_mismatch_op_index INTEGER,
    mismatch_diff           JSONB,
    error_message           TEXT,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at            TIMESTAMPTZ,
    tenant_id               TEXT NOT NULL,
    CONSTRAINT fk_replay_runs_run FOREIGN KEY (workflow_run_id, tenant_id)
        REFERENCES m11_audit.workflow_runs (id, tenant_id)
);
CREATE INDEX idx_replay_runs_run ON m11_audit.replay_runs (workflow_run_id, started_at DESC);
CREATE INDEX idx_replay_runs_started_at ON m11_audit.replay_runs (started_at);

-- security_invoker: the view reads ops with the caller's rights, so row-level security applies to it
-- (a plain view would read them as its owner and show every tenant's rows).
CREATE VIEW m11_audit.workflow_summary WITH (security_invoker = true) AS
SELECT workflow_run_id,
       tenant_id,
       count(*)::integer                                      AS total_ops,
       (count(*) FILTER (WHERE status = 'completed'))::integer AS completed_ops,
       (count(*) FILTER (WHERE status = 'failed'))::integer    AS failed_ops,
       min(created_at)                                        AS first_op_at,
       max(coalesce(completed_at, created_at))                AS last_op_at,
       coalesce(sum(duration_ms), 0)::integer                 AS total_duration_ms
FROM m11_audit.ops
GROUP BY workflow_run_id, tenant_id;

-- Tenant isolation, as 0009: only the transaction's tenant's rows, and only its rows go in.
ALTER TABLE m11_audit.workflow_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON m11_audit.workflow_runs
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
ALTER TABLE m11_audit.ops ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON m11_audit.ops
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
ALTER TABLE m11_audit.replay_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON m11_audit.replay_runs
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));

-- The function role writes the audit but never deletes it (0009's default privileges cover public only).
GRANT USAGE ON SCHEMA m11_audit TO incident_loop_app;
GRANT SELECT, INSERT, UPDATE ON m11_audit.workflow_runs, m11_audit.ops, m11_audit.replay_runs TO incident_loop_app;
GRANT SELECT ON m11_audit.workflow_summary TO incident_loop_app;

-- An op is written twice by the functions: inserted pending, then completed or failed (a retryable
-- error may note itself on the pending row in between). What it was asked (index, skill, args, key)
-- never changes, and once it has an outcome it is history. The owner is not held back, so an operator
-- can still correct a row, and the replay verifier is what notices.
CREATE FUNCTION m11_audit.ops_append_only() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The owner (and a superuser) may; everyone else, the function role first, may not.
    IF pg_catalog.pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID),
                              'USAGE') THEN
        RETURN NEW;
    END IF;
    IF OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'm11_audit.ops % (% #%) is %: an audited op is not rewritten',
            OLD.op_id, OLD.workflow_run_id, OLD.op_index, OLD.status USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.op_id, NEW.workflow_run_id, NEW.op_index, NEW.op_type, NEW.args, NEW.args_hash, NEW.transient,
        NEW.idempotency_key, NEW.tenant_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.op_id, OLD.workflow_run_id, OLD.op_index, OLD.op_type, OLD.args, OLD.args_hash, OLD.transient,
        OLD.idempotency_key, OLD.tenant_id, OLD.created_at) THEN
        RAISE EXCEPTION 'm11_audit.ops %: what an op was asked does not change', OLD.op_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ops_append_only BEFORE UPDATE ON m11_audit.ops
    FOR EACH ROW EXECUTE FUNCTION m11_audit.ops_append_only();

-- Retention (seed 004's next steps): one batch of every tenant's audit older than max_age_days (>= 1).
-- Each DELETE takes at most batch_size rows by ctid, skipping rows another transaction holds. A run goes
-- once its ops and replays have gone. The owner's, like purge_failure_matches (0009): RLS would hide
-- other tenants' rows from the function role.
CREATE FUNCTION m11_audit.purge_audit(max_age_days integer, batch_size integer, OUT ops_deleted integer,
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
        SELECT ctid FROM m11_audit.ops WHERE created_at < cutoff
        ORDER BY created_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS ops_deleted = ROW_COUNT;
    DELETE FROM m11_audit.replay_runs WHERE ctid IN (
        SELECT ctid FROM m11_audit.replay_runs WHERE started_at < cutoff
        ORDER BY started_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS replays_deleted = ROW_COUNT;
    DELETE FROM m11_audit.workflow_runs WHERE ctid IN (
        SELECT r.ctid FROM m11_audit.workflow_runs r
        WHERE r.updated_at < cutoff
          AND NOT EXISTS (SELECT 1 FROM m11_audit.ops o WHERE o.workflow_run_id = r.id)
          AND NOT EXISTS (SELECT 1 FROM m11_audit.replay_runs p WHERE p.workflow_run_id = r.id)
        ORDER BY r.updated_at LIMIT n FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS runs_deleted = ROW_COUNT;
END
$$;
REVOKE ALL ON FUNCTION m11_audit.purge_audit(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m11_audit.purge_audit(integer, integer) TO incident_loop_app;
