-- CostSim (seed 001): provenance of every simulation (deduplicated by input hash), canary reports,
-- and the incidents a breaker trip opens.
CREATE TABLE costsim_provenance (
    id              BIGSERIAL PRIMARY KEY,
    input_hash      TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    plan            JSONB NOT NULL,
    v1_version      TEXT NOT NULL,
    v1_cost_usd     DOUBLE PRECISION NOT NULL,
    v2_version      TEXT,
    v2_cost_usd     DOUBLE PRECISION,
    drift           DOUBLE PRECISION,
    served          TEXT NOT NULL CHECK (served IN ('v1', 'v2')),
    source          TEXT NOT NULL DEFAULT 'live',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_costsim_provenance_input UNIQUE (input_hash)
);
CREATE INDEX idx_costsim_provenance_tenant_time ON costsim_provenance (tenant_id, created_at DESC);
CREATE INDEX idx_costsim_provenance_time ON costsim_provenance (created_at DESC) WHERE drift IS NOT NULL;

CREATE TABLE costsim_canary_reports (
    id              TEXT PRIMARY KEY,
    v1_version      TEXT NOT NULL,
    v2_version      TEXT NOT NULL,
    plans           INTEGER NOT NULL,
    drift_p50       DOUBLE PRECISION NOT NULL,
    drift_p95       DOUBLE PRECISION NOT NULL,
    drift_max       DOUBLE PRECISION NOT NULL,
    passed          BOOLEAN NOT NULL,
    threshold       DOUBLE PRECISION NOT NULL,
    details         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_costsim_canary_time ON costsim_canary_reports (created_at DESC);

CREATE TABLE costsim_incidents (
    id              TEXT PRIMARY KEY,
    breaker_name    TEXT NOT NULL,
    breaker_version INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    drift_p95       DOUBLE PRECISION,
    loop_incident_key TEXT NOT NULL,
    opened_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at     TIMESTAMPTZ,
    CONSTRAINT uq_costsim_incidents_trip UNIQUE (breaker_name, breaker_version)
);
