-- The loop also announces an active policy that stopped acting (regrets, or its pattern merged with siblings):
-- policy_demoted joins the events a tenant may set targets for. Widening only: the code before it never writes it.
ALTER TABLE notification_targets DROP CONSTRAINT notification_targets_event_check;
ALTER TABLE notification_targets ADD CONSTRAINT notification_targets_event_check
    CHECK (event IN ('checkpoint_created', 'policy_activated', 'policy_demoted'));
