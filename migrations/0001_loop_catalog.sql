-- The loop's catalog (seeds 000 and 003): incidents and what each bridge derives from them.
-- Every row a redelivered message could write twice has a unique key, so writers use ON CONFLICT.

CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    incident_key    TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    error_type      TEXT NOT NULL,
    error_message   TEXT NOT NULL,
    skill_id        TEXT,
    severity        TEXT NOT NULL,
    context         JSONB NOT NULL DEFAULT '{}'::jsonb,
    status          TEXT NOT NULL DEFAULT 'open',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_incidents_tenant_key UNIQUE (tenant_id, incident_key)
);
CREATE INDEX idx_incidents_tenant_created ON incidents (tenant_id, created_at DESC);

CREATE TABLE failure_patterns (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    pattern_type        TEXT NOT NULL,
    error_type          TEXT NOT NULL,
    signature           TEXT NOT NULL,
    template            TEXT NOT NULL,
    category            TEXT NOT NULL,
    occurrence_count    INTEGER NOT NULL DEFAULT 0 CHECK (occurrence_count >= 0),
    first_incident_id   TEXT NOT NULL,
    first_seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_failure_patterns_signature UNIQUE (tenant_id, signature)
);
CREATE INDEX idx_failure_patterns_tenant_type ON failure_patterns (tenant_id, error_type);

-- One row per (pattern, incident): the occurrence count is the number of these rows,
-- so a redelivered or concurrent match can never count an incident twice.
CREATE TABLE pattern_occurrences (
    pattern_id      TEXT NOT NULL REFERENCES failure_patterns (id),
    incident_id     TEXT NOT NULL REFERENCES incidents (id),
    match_type      TEXT NOT NULL,
    confidence      DOUBLE PRECISION NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (pattern_id, incident_id),
    CONSTRAINT uq_pattern_occurrences_incident UNIQUE (incident_id)
);

-- Seed 000, issue 6: the columns the recovery bridge writes.
CREATE TABLE recovery_candidates (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL,
    failure_match_id        UUID,
    suggestion              TEXT NOT NULL,
    confidence              DOUBLE PRECISION NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    source_incident_id      TEXT NOT NULL REFERENCES incidents (id),
    source_pattern_id       TEXT NOT NULL REFERENCES failure_patterns (id),
    suggestion_type         TEXT NOT NULL,
    confidence_band         TEXT NOT NULL,
    requires_confirmation   INTEGER NOT NULL DEFAULT 0,
    confirmations_received  INTEGER NOT NULL DEFAULT 0,
    action_type             TEXT NOT NULL,
    action_params           JSONB NOT NULL DEFAULT '{}'::jsonb,
    auto_applicable         BOOLEAN NOT NULL DEFAULT FALSE,
    status                  TEXT NOT NULL,
    rejection_reason        TEXT,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_recovery_candidates_incident UNIQUE (source_incident_id)
);
CREATE INDEX idx_recovery_candidates_pattern ON recovery_candidates (source_pattern_id);

-- Seed 000, issue 8: the columns the policy bridge writes; tenant_id is NOT NULL (issue 9).
CREATE TABLE policy_rules (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL,
    name                    TEXT NOT NULL,
    description             TEXT NOT NULL,
    rule_type               TEXT NOT NULL,
    conditions              JSONB NOT NULL,
    actions                 JSONB NOT NULL,
    source_type             TEXT NOT NULL,
    source_pattern_id       TEXT NOT NULL REFERENCES failure_patterns (id),
    source_recovery_id      TEXT NOT NULL REFERENCES recovery_candidates (id),
    generation_confidence   DOUBLE PRECISION NOT NULL,
    mode                    TEXT NOT NULL,
    is_active               BOOLEAN NOT NULL DEFAULT FALSE,
    priority                INTEGER NOT NULL DEFAULT 100,
    scope_type              TEXT NOT NULL DEFAULT 'tenant',
    scope_id                TEXT,
    confirmations_required  INTEGER NOT NULL DEFAULT 1,
    confirmations_received  INTEGER NOT NULL DEFAULT 0,
    regret_count            INTEGER NOT NULL DEFAULT 0,
    shadow_evaluations      INTEGER NOT NULL DEFAULT 0,
    shadow_would_block      INTEGER NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    activated_at            TIMESTAMPTZ,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_policy_rules_pattern UNIQUE (tenant_id, source_pattern_id)
);
CREATE INDEX idx_policy_rules_tenant_mode ON policy_rules (tenant_id, mode);

-- Which incidents a policy has already been evaluated against (shadow counts stay exact).
CREATE TABLE policy_evaluations (
    policy_id       TEXT NOT NULL REFERENCES policy_rules (id),
    incident_id     TEXT NOT NULL REFERENCES incidents (id),
    mode            TEXT NOT NULL,
    would_block     BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (policy_id, incident_id)
);

CREATE TABLE routing_adjustments (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    agent_id            TEXT NOT NULL,
    capability          TEXT,
    adjustment_type     TEXT NOT NULL,
    magnitude           DOUBLE PRECISION NOT NULL,
    reason              TEXT NOT NULL,
    source_policy_id    TEXT NOT NULL REFERENCES policy_rules (id),
    source_incident_id  TEXT NOT NULL REFERENCES incidents (id),
    max_delta           DOUBLE PRECISION NOT NULL,
    decay_days          INTEGER NOT NULL,
    rollback_threshold  DOUBLE PRECISION NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at          TIMESTAMPTZ,
    is_active           BOOLEAN NOT NULL DEFAULT TRUE,
    was_rolled_back     BOOLEAN NOT NULL DEFAULT FALSE,
    rollback_reason     TEXT,
    kpi_baseline        DOUBLE PRECISION,
    kpi_current         DOUBLE PRECISION,
    CONSTRAINT ck_routing_magnitude CHECK (abs(magnitude) <= max_delta),
    CONSTRAINT uq_routing_adjustments_policy_agent UNIQUE (source_policy_id, agent_id)
);
CREATE INDEX idx_routing_adjustments_agent ON routing_adjustments (tenant_id, agent_id) WHERE is_active;

CREATE TABLE human_checkpoints (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    checkpoint_type     TEXT NOT NULL,
    incident_id         TEXT NOT NULL REFERENCES incidents (id),
    stage               TEXT NOT NULL,
    target_id           TEXT NOT NULL,
    description         TEXT NOT NULL,
    options             JSONB NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at         TIMESTAMPTZ,
    resolved_by         TEXT,
    resolution          TEXT,
    resolution_reason   TEXT,
    CONSTRAINT uq_human_checkpoints_target UNIQUE (incident_id, checkpoint_type, target_id)
);
CREATE INDEX idx_human_checkpoints_pending ON human_checkpoints (tenant_id, created_at) WHERE resolved_at IS NULL;

CREATE TABLE loop_events (
    event_id                TEXT PRIMARY KEY,
    event_key               TEXT NOT NULL,
    incident_id             TEXT NOT NULL REFERENCES incidents (id),
    tenant_id               TEXT NOT NULL,
    stage                   TEXT NOT NULL,
    details                 JSONB NOT NULL DEFAULT '{}'::jsonb,
    failure_state           TEXT,
    confidence_band         TEXT,
    requires_human_review   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_loop_events_key UNIQUE (event_key)
);
CREATE INDEX idx_loop_events_incident ON loop_events (incident_id, created_at);

CREATE TABLE loop_traces (
    loop_id             TEXT PRIMARY KEY,
    incident_id         TEXT NOT NULL UNIQUE REFERENCES incidents (id),
    tenant_id           TEXT NOT NULL,
    current_stage       TEXT NOT NULL,
    stages_completed    JSONB NOT NULL DEFAULT '[]'::jsonb,
    stages_failed       JSONB NOT NULL DEFAULT '[]'::jsonb,
    stage_results       JSONB NOT NULL DEFAULT '{}'::jsonb,
    pending_checkpoints JSONB NOT NULL DEFAULT '[]'::jsonb,
    is_complete         BOOLEAN NOT NULL DEFAULT FALSE,
    is_blocked          BOOLEAN NOT NULL DEFAULT FALSE,
    failure_state       TEXT,
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at        TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_loop_traces_tenant ON loop_traces (tenant_id, started_at DESC);

CREATE TABLE prevention_records (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL,
    policy_id               TEXT NOT NULL REFERENCES policy_rules (id),
    pattern_id              TEXT NOT NULL REFERENCES failure_patterns (id),
    original_incident_id    TEXT NOT NULL REFERENCES incidents (id),
    blocked_incident_id     TEXT NOT NULL UNIQUE REFERENCES incidents (id),
    outcome                 TEXT NOT NULL DEFAULT 'prevented',
    signature_hash          TEXT NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_prevention_records_policy ON prevention_records (policy_id);
