-- The graduation gate "a policy activated" is history, like its two siblings (a loop completed, a prevention
-- recorded): activated_at is cleared when a policy is demoted (regrets, a pattern merge), so the gate read it as
-- "a policy is active now" and a graduated tenant lost it. first_activated_at is written once and never cleared.
ALTER TABLE policy_rules ADD COLUMN first_activated_at TIMESTAMPTZ;
UPDATE policy_rules p SET first_activated_at = least(p.activated_at,
    (SELECT min(r.created_at) FROM prevention_records r WHERE r.policy_id = p.id))  -- a prevention proves an activation
WHERE p.activated_at IS NOT NULL OR EXISTS (SELECT 1 FROM prevention_records r WHERE r.policy_id = p.id);
