"""Errors of the workflows; the API maps them to HTTP in one place (incident_loop.http.error_map)."""

from __future__ import annotations


class InvalidDefinition(ValueError):
    """The definition names a skill that does not exist, or literal arguments its skill refuses: 422.

    `errors` are {"field", "reason"} pairs, the one error body's shape.
    """

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors


class RunBusy(RuntimeError):
    """Another worker holds the run's lease: the message is retried later (SQS redelivers it)."""


class RunNotStored(RuntimeError):
    """A message names a run its tenant does not have (another tenant's, or gone): retried, then dead-lettered."""


class TargetsUnverifiable(RuntimeError):
    """Notification targets that cannot be checked now (the Slack grants could not be read): 503, retry."""
