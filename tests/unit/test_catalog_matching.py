"""The error catalog: exact code, then pattern, then a recorded miss."""

from __future__ import annotations

import pytest

from incident_loop.catalog.lookup import Catalog

CATALOG = Catalog.from_file()


def test_exact_code_wins_over_patterns() -> None:
    match = CATALOG.match("RATE_LIMITED", "Skill web_search timed out after 30s")
    assert (match.match_type, match.confidence, match.catalog_entry_id) == ("exact", 1.0, "RATE_LIMITED@v1")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Skill web_search timed out after 30s", "SKILL_TIMEOUT"),
        ("429 Too Many Requests", "RATE_LIMITED"),
        ("HTTP 503 Service Unavailable from upstream", "UPSTREAM_5XX"),
        ("Connection refused by 10.0.0.5:5432", "CONNECTION_FAILED"),
        ("401 Unauthorized: invalid API key", "AUTH_FAILED"),
        ("Output failed schema validation: field 'x' is not a number", "SCHEMA_VIOLATION"),
        ("This model's maximum context length is 8192 tokens", "CONTEXT_OVERFLOW"),
    ],
)
def test_message_patterns_match_their_entry(message: str, code: str) -> None:
    match = CATALOG.match("E_UNKNOWN", message)
    assert (match.match_type, match.confidence, match.entry.code if match.entry else None) == ("pattern", 0.8, code)


def test_unmatched_failure_is_a_miss() -> None:
    match = CATALOG.match("E_WEIRD", "the flux capacitor wobbled")
    assert (match.match_type, match.confidence, match.catalog_entry_id, match.is_hit) == ("miss", 0.0, None, False)


def test_catalog_entries_are_complete_and_unique() -> None:
    codes = [e.code for e in CATALOG.entries]
    assert len(codes) == len(set(codes)) >= 10
    assert all(e.patterns and e.recovery_suggestion and e.severity in {"low", "medium", "high", "critical"}
               for e in CATALOG.entries)
