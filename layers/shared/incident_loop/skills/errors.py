"""What a skill raises. Every error has a stable `code` (recorded in the audit) and says whether a retry may help.

    SkillError                    code, retryable; the message is str(error)
    ├── SkillInputError           invalid_input: the caller's arguments; never retried
    │   ├── SizeLimitExceeded     size_limit_exceeded
    │   ├── UnknownSkill          unknown_skill (also a KeyError)
    │   ├── TargetNotAllowed      target_not_allowed: the SSRF guard refused the URL
    │   └── EndpointDisabled      endpoint_disabled: the webhook endpoint answered 410 before
    ├── IdempotencyConflict       idempotency_conflict: same key, different arguments
    ├── IdempotencyInProgress     idempotency_in_progress: the same key is running elsewhere (retryable)
    ├── CircuitOpen               circuit_open: the target's breaker refuses calls (retryable)
    └── ExternalError             http_<status>, timeout, connection_error, ...: retryable per class
"""

from __future__ import annotations


class SkillError(Exception):
    """A skill call failed. `code` names the failure class; `retryable` says whether trying again may help."""

    code: str = "skill_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:  # KeyError (UnknownSkill) would otherwise quote the message
        return self.message

    def to_dict(self) -> dict[str, object]:
        """The error as the audit and the API record it."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class SkillInputError(SkillError):
    """The arguments are wrong (validation, limits, refused targets): the same call will fail again."""

    code = "invalid_input"


class SizeLimitExceeded(SkillInputError):
    """A key, value or text is larger than the skill accepts."""

    code = "size_limit_exceeded"


class UnknownSkill(SkillInputError, KeyError):
    """No skill by that name."""

    code = "unknown_skill"


class TargetNotAllowed(SkillInputError):
    """The URL resolves to a private, loopback, link-local or reserved address that is not allow-listed."""

    code = "target_not_allowed"


class EndpointDisabled(SkillInputError):
    """The webhook endpoint answered 410 Gone once; sends to it are refused until it is re-enabled."""

    code = "endpoint_disabled"


class IdempotencyConflict(SkillError):
    """The idempotency key was used before with different arguments."""

    code = "idempotency_conflict"


class IdempotencyInProgress(SkillError):
    """Another call with the same idempotency key has not finished; retry after it does."""

    code = "idempotency_in_progress"
    retryable = True


class CircuitOpen(SkillError):
    """The target's breaker is open: the call was not made."""

    code = "circuit_open"
    retryable = True

    def __init__(self, message: str, *, target: str, retry_after_s: float | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.target = target
        self.retry_after_s = retry_after_s  # until the cooldown ends, when known
        self.attempts = attempts  # requests this call made before the breaker refused the next one


class ExternalError(SkillError):
    """The external service failed or answered with an error.

    `status` is the HTTP status (None for timeouts and connection errors); `retry_after_s` is the wait the
    service asked for, or the skill's own next attempt time, when a retry should not come sooner;
    `attempts` is how many requests this call made.
    """

    code = "external_error"

    def __init__(self, message: str, *, code: str, retryable: bool, status: int | None = None,
                 retry_after_s: float | None = None, attempts: int = 0) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.status = status
        self.retry_after_s = retry_after_s
        self.attempts = attempts

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.status is not None:
            out["status"] = self.status
        if self.retry_after_s is not None:
            out["retry_after_s"] = round(self.retry_after_s, 3)
        return out
