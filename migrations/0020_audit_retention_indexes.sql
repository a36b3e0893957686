-- purge_audit (0018) picks the runs to delete by when they finished (completed and failed runs) or were last
-- touched (queued and running ones, over after 14 days): no index held either, so every nightly batch read the
-- whole of m11_audit.workflow_runs and sorted every expired run, and past a few million runs a batch outran the
-- 5 s statement timeout and retention stopped. One partial index per half of its condition.
CREATE INDEX idx_workflow_runs_finished ON m11_audit.workflow_runs (completed_at)
    WHERE status IN ('completed', 'failed');
CREATE INDEX idx_workflow_runs_unfinished ON m11_audit.workflow_runs (updated_at)
    WHERE status IN ('queued', 'running');
