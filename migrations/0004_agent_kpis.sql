-- The KPI each agent reports (success rate, 0..1): the baseline a routing adjustment is judged by.
CREATE TABLE agent_kpis (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    kpi         DOUBLE PRECISION NOT NULL CHECK (kpi BETWEEN 0 AND 1),
    reported_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_agent_kpis_latest ON agent_kpis (tenant_id, agent_id, reported_at DESC);
