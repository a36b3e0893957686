-- Seed 002: the error catalog in the database, and tenant_id enforced on failure_matches (its P1).
CREATE TABLE error_catalog (
    code                TEXT NOT NULL,
    version             INTEGER NOT NULL,
    title               TEXT NOT NULL,
    category            TEXT NOT NULL,
    severity            TEXT NOT NULL,
    is_retryable        BOOLEAN NOT NULL,
    recovery_mode       TEXT NOT NULL,
    recovery_suggestion TEXT NOT NULL,
    patterns            JSONB NOT NULL,
    synced_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (code, version)
);

-- Tenants here are the authorizer's tenant ids (text). Rows written before enforcement have no
-- tenant: they go to 'unassigned', which no tenant's queries ever see.
ALTER TABLE failure_matches ALTER COLUMN tenant_id TYPE TEXT USING tenant_id::text;
UPDATE failure_matches SET tenant_id = 'unassigned' WHERE tenant_id IS NULL;
ALTER TABLE failure_matches ALTER COLUMN tenant_id SET NOT NULL;
