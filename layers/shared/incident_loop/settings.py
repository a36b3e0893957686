"""Settings are a model: the environment is read here and nowhere else."""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Settings(BaseModel):
    """Runtime configuration, from environment variables (the upper-case field names)."""

    model_config = ConfigDict(extra="ignore")

    # PostgreSQL: a full URL locally; in AWS a Secrets Manager secret plus the RDS Proxy endpoint.
    database_url: str | None = None
    db_secret_arn: str | None = None
    db_proxy_endpoint: str | None = None
    db_name: str = "incident_loop"
    db_connect_timeout_s: int = Field(default=5, ge=2)  # libpq: whole seconds, at least 2
    # Bounds on every statement of the container's connection, well under API Gateway's 29 s and the
    # consumers' 30 s function timeout: a request blocked on a lock answers 503, a consumer fails its batch.
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=20_000)
    db_lock_timeout_ms: int = Field(default=2000, ge=100, le=20_000)
    # Also sent as startup options; off behind a pooler that refuses them (PgBouncer without
    # ignore_startup_parameters = options). Every transaction sets both bounds itself either way.
    db_session_options: bool = True
    migrations_dir: str | None = None  # default: the repository's migrations/

    # The deployment's stage: the skills' secrets live under incident-loop/<stage>/, the only ones the functions may
    # read (skills.secrets.tenant_owns refuses another stage's at once). Unset: any stage (a process outside a stack).
    stage: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,128}$")

    # DynamoDB
    idempotency_table: str = "incident-loop-idempotency"
    breakers_table: str = "incident-loop-breakers"
    idempotency_expiry_s: int = 7 * 24 * 3600
    # A skill's effect is remembered longer than a workflow message can live (queue 4 days + its DLQ 14 days, a
    # redrive resumes a pending op): a redriven op never repeats its effect.
    skill_idempotency_expiry_s: int = Field(default=19 * 24 * 3600, ge=3600)

    # SQS: the queue each stage hands its work to
    pattern_queue_url: str | None = None
    recovery_queue_url: str | None = None
    policy_queue_url: str | None = None
    routing_queue_url: str | None = None
    alert_queue_url: str | None = None
    incident_queue_url: str | None = None
    ops_tenant_id: str = "platform"  # the tenant CostSim's own incidents are filed under
    failure_retry_queue_url: str | None = None
    failure_retention_days: int = Field(default=90, ge=1)
    alertmanager_url: str = "http://127.0.0.1:9093"

    # The loop's rules
    # None: grouping.matcher.CONFIG's. A message one word apart from a pattern not yet settled may join
    # CONFIG.one_word_margin under it.
    fuzzy_threshold: float | None = Field(default=None, ge=0, le=1)
    policy_regret_threshold: int = Field(default=3, ge=1)
    policy_confirmations_required: int = Field(default=1, ge=1)
    routing_max_delta: float = Field(default=0.2, gt=0, le=1)
    routing_decay_days: int = Field(default=7, ge=1)
    routing_rollback_threshold: float = Field(default=0.1, gt=0, le=1)

    # Skills (seed 004): the kv_store table, outbound HTTP bounds and the external services' endpoints
    kv_table: str = "incident-loop-kv"
    skill_connect_timeout_s: float = Field(default=3.0, gt=0, le=10)
    skill_read_timeout_s: float = Field(default=10.0, gt=0, le=25)
    skill_max_attempts: int = Field(default=3, ge=1, le=10)
    # Hosts (or IP networks) outbound webhooks may reach although private/loopback/link-local; comma-separated
    webhook_allow_hosts: str = ""
    slack_base_url: str = "https://slack.com/api"
    slack_token_parameter: str | None = None  # SSM parameter or Secrets Manager ARN holding the bot token
    voyage_base_url: str = "https://api.voyageai.com"
    voyage_api_key_parameter: str | None = None  # SSM parameter or Secrets Manager ARN holding the API key
    voyage_model: str = "voyage-3.5"
    # Longest a skill waits inside one call (Retry-After, Slack pacing, webhook schedule); longer waits are
    # handed back to the caller as a retryable error with the time to try again.
    skill_max_wait_s: float = Field(default=10.0, ge=0, le=60)
    webhook_retry_scale: float = Field(default=1.0, gt=0, le=1)  # shrinks the Standard Webhooks schedule (tests)

    # Workflows and their audit (m11_audit)
    workflow_queue_url: str | None = None
    notify_queue_url: str | None = None
    # Past the skills' idempotency records (skill_idempotency_expiry_s, 19 days) and the runner's (7): a run deleted
    # sooner kept its id for a reused Idempotency-Key (derived from it), and the new run got the old results.
    audit_retention_days: int = Field(default=90, ge=20)
    # The relay (workflows.relay): a queued run untouched this long gets its message again, this many times;
    # one not started this long after it was made is failed (longer than a message lives on WorkflowQueue:
    # its visibility timeout, 1800 s, times its 10 receives).
    workflow_relay_min_age_s: int = Field(default=600, ge=60)
    workflow_relay_max_requeues: int = Field(default=3, ge=1, le=100)
    workflow_relay_give_up_s: int = Field(default=6 * 3600, ge=600)

    api_base_path: str = ""

    # Bearer tokens: the Secrets Manager secret holding the signing keys (incident_loop.auth.tokens)
    api_signing_secret_arn: str | None = None

    @model_validator(mode="after")
    def _audit_outlives_idempotency(self) -> Settings:
        if self.audit_retention_days * 86_400 <= self.skill_idempotency_expiry_s:
            raise ValueError("audit_retention_days must outlast skill_idempotency_expiry_s: a run deleted before its "
                             "ops' idempotency records would hand a reused key's new run the old results")
        return self

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        """The fields found in the environment (upper-case names), validated by the model."""
        environ = dict(os.environ if environ is None else environ)
        return cls.model_validate({name: environ[name.upper()] for name in cls.model_fields
                                   if name.upper() in environ})


@cache
def get_settings() -> Settings:
    """The settings of this container, read once."""
    return Settings.from_environment()
