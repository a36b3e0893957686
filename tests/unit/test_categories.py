"""The failure-category table: both spellings, the classifier's order, and what each stage reads from a row."""

from __future__ import annotations

import pytest

from incident_loop import categories
from incident_loop.catalog.lookup import Catalog
from incident_loop.categories import ADJUSTMENTS, CATEGORIES, UNKNOWN, from_catalog
from incident_loop.grouping.matcher import classify
from incident_loop.loop.recovery_templates import plan_for


def test_every_category_of_the_shipped_catalog_has_a_row() -> None:
    catalog = Catalog.from_file()
    assert {e.category for e in catalog.entries} <= {c.catalog for c in CATEGORIES}
    assert all(e.failure_category is not UNKNOWN for e in catalog.entries)


@pytest.mark.parametrize("loop, catalog", [("timeout", "TIMEOUT"), ("rate_limit", "RATE_LIMIT"),
                                           ("http_error", "NETWORK"), ("auth", "PERMISSION"),
                                           ("validation", "VALIDATION"), ("resource", "RESOURCE"),
                                           ("policy", "POLICY")])
def test_the_two_spellings_name_the_same_row(loop: str, catalog: str) -> None:
    assert categories.category(loop) is from_catalog(catalog)
    assert categories.category(loop).catalog == catalog


def test_names_no_row_has_are_unknown() -> None:
    assert categories.category("nonsense") is UNKNOWN and from_catalog("NONSENSE") is UNKNOWN
    assert UNKNOWN.recovery is None and UNKNOWN.policy == categories.DEFAULT_POLICY


def test_the_classifier_gives_only_rows_with_signals_and_tries_the_error_type_first() -> None:
    # "policy" is tried before "timeout", but the error type is read before the message.
    assert classify("TimeoutError", "blocked by policy") == ("timeout", "timeout")
    assert classify("Error", "blocked by policy; timed out") == ("policy_violation", "policy")
    assert classify("Error", "budget exceeded") == ("error", "unknown")  # BUDGET is the catalog's alone


def test_every_policy_a_row_writes_has_a_routing_adjustment() -> None:
    actions = {c.policy[0] for c in (*CATEGORIES, UNKNOWN)}
    assert actions <= set(ADJUSTMENTS)


def test_a_category_without_a_template_gets_a_generated_plan() -> None:
    kind, plan = plan_for("configuration", "ToolNotFound", "search")
    assert kind == "generated" and plan.action_type == "retry_then_escalate"
    assert plan_for("timeout", "TimeoutError", None) == ("template", categories.category("timeout").recovery)
