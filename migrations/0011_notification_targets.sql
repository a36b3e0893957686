-- Where the loop announces what needs a person or what changed (seed 004's skills used by the loop):
-- per tenant and event, the Slack route and the signed webhook to use. No row: nothing is sent.
-- Targets hold references to secrets (SSM parameter names or Secrets Manager ARNs), never the secrets.
-- Each announcement is a workflow run (m11_audit.workflow_runs) with a deterministic id, so it is
-- audited and replayable like any run, and announced once however often the loop retries.

CREATE TABLE notification_targets (
    tenant_id   TEXT NOT NULL,
    event       TEXT NOT NULL CHECK (event IN ('checkpoint_created', 'policy_activated')),
    targets     JSONB NOT NULL,
    updated_by  TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event)
);

-- Tenant isolation, as 0009 (0009's default privileges already grant the function role the table).
ALTER TABLE notification_targets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_targets
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
