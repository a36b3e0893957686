"""The breaker component on moto in-process (no network): rules, transitions, cache, fail modes, history."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from fakes.clock import Clock
from moto import mock_aws

from incident_loop.breaker import (
    Breaker,
    BreakerConfig,
    BreakerRecord,
    BreakerState,
    ConsecutiveFailures,
    Drift,
    DynamoBreakerStore,
    FailMode,
    MemoryHistory,
    Transition,
    config_for,
    ensure_table,
    p95,
)
from incident_loop.observability import metrics

TABLE = "breakers-unit"
CLOSED, OPEN, HALF_OPEN, DISABLED = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN,
                                     BreakerState.DISABLED)
DRIFT_ONLY = Drift(p95_threshold=0.2, window=20, min_samples=10, sample_threshold=0.2, consecutive=None)


class Unreachable:
    """A DynamoDB client whose every call fails the way a missing network does."""

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

        return call


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_table(dynamodb, TABLE)
        yield dynamodb


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history() -> MemoryHistory:
    return MemoryHistory()


@pytest.fixture
def make(client: Any, clock: Clock, history: MemoryHistory) -> Any:
    """Breakers on the same item, as separate containers would hold them."""

    def build(config: BreakerConfig | None = None, name: str = "skill:unit", **kwargs: Any) -> Breaker:
        config = config or BreakerConfig(rule=ConsecutiveFailures(5, 60.0), cooldown_s=60.0)
        return Breaker(name, config, store=DynamoBreakerStore(TABLE, client), history=history, clock=clock,
                       **kwargs)

    return build


def _trip(breaker: Breaker, failures: int = 5) -> None:
    for _ in range(failures):
        breaker.record_failure("boom")


# ------------------------------------------------------------------ trip rules


def test_consecutive_failures_trip_at_the_threshold_and_not_before(make: Any) -> None:
    breaker = make()
    _trip(breaker, 4)
    assert breaker.allow() and breaker.status().state is CLOSED
    breaker.record_failure("fifth")
    assert not breaker.allow()
    status = breaker.status()
    assert status.state is OPEN and status.reason.startswith("5 consecutive failures")


def test_a_success_resets_the_consecutive_failures(make: Any) -> None:
    breaker = make()
    _trip(breaker, 4)
    breaker.record_success()
    _trip(breaker, 4)
    assert breaker.status().state is CLOSED
    breaker.record_failure("fifth in a row")
    assert breaker.status().state is OPEN


def test_drift_trips_when_p95_over_the_window_is_above_the_threshold(make: Any) -> None:
    breaker = make(BreakerConfig(rule=DRIFT_ONLY))
    for value in [0.05] * 19 + [0.5]:
        breaker.report_drift(value)
    assert breaker.status().state is CLOSED  # 20 samples, one high: it lies above the 95th percentile
    breaker.report_drift(0.5)  # the window's last 20: 18 low, 2 high, so p95 is 0.5
    status = breaker.status()
    assert status.state is OPEN and "drift p95 0.500 > 0.2" in (status.reason or "")


def test_drift_below_the_threshold_keeps_it_closed_and_the_window_bounded(make: Any) -> None:
    breaker = make(BreakerConfig(rule=DRIFT_ONLY))
    for i in range(60):
        breaker.report_drift(0.5 if i % 20 == 19 else 0.1)  # one high sample in every 20
    status = breaker.status()
    assert status.state is CLOSED and status.drift_samples == 20 and status.drift_p95 == pytest.approx(0.1)


@pytest.mark.parametrize("n", [10, 15, 19, 20, 30, 50])
def test_one_drifting_plan_does_not_trip_costsim_v2_however_few_the_samples(n: int) -> None:
    """Over 10 to 19 samples the nearest-rank p95 is the largest sample: a p95 rule read there trips on one plan."""
    samples = (0.01,) * (n - 1) + (0.5,)
    assert (p95(samples) == 0.5) is (n < 20)
    record = BreakerRecord(name="costsim-v2", drift_samples=samples, consecutive_drift_failures=1)
    assert config_for("costsim-v2").rule.should_trip(record) is None


def test_consecutive_drift_failures_trip(make: Any) -> None:
    breaker = make(BreakerConfig(rule=Drift(p95_threshold=None, consecutive=3, sample_threshold=0.2)))
    for value in (0.3, 0.3, 0.1, 0.3, 0.3):
        breaker.report_drift(value)
    assert breaker.status().state is CLOSED
    breaker.report_drift(0.25)
    assert breaker.status().state is OPEN


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) == 0.0
    assert p95([0.1] * 19 + [0.9]) == 0.1
    assert p95([0.1] * 18 + [0.9, 0.9]) == 0.9


# ------------------------------------------------------------------ cooldown and half-open


def test_open_moves_to_half_open_after_the_cooldown(make: Any, clock: Clock) -> None:
    breaker = make()
    _trip(breaker)
    clock.advance(59.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.allow()  # the first caller after the cooldown is the probe
    assert breaker.status().state is HALF_OPEN


def test_half_open_admits_one_probe_and_refuses_the_next_caller(make: Any, clock: Clock) -> None:
    first, second = make(), make()
    _trip(first)
    clock.advance(61)
    assert first.allow()
    assert not second.allow()  # the probe is still out
    assert not first.allow()


def test_half_open_admits_up_to_its_probe_limit(make: Any, clock: Clock) -> None:
    config = BreakerConfig(rule=ConsecutiveFailures(5, 60.0), half_open_probes=2)
    a, b, c = make(config), make(config), make(config)
    _trip(a)
    clock.advance(61)
    assert [a.allow(), b.allow(), c.allow()] == [True, True, False]
    a.record_success()
    assert a.status().state is HALF_OPEN  # one of two probes back
    b.record_success()
    assert a.status().state is CLOSED


def test_a_probe_success_closes_with_fresh_counters(make: Any, clock: Clock) -> None:
    breaker = make()
    _trip(breaker)
    clock.advance(61)
    assert breaker.allow()
    breaker.record_success()
    status = breaker.status()
    assert status.state is CLOSED and status.consecutive_failures == 0 and status.reason == "probe succeeded"
    assert breaker.allow()


def test_a_probe_failure_reopens_with_a_new_cooldown(make: Any, clock: Clock) -> None:
    breaker = make()
    _trip(breaker)
    clock.advance(61)
    assert breaker.allow()
    breaker.record_failure("still down")
    status = breaker.status()
    assert status.state is OPEN and status.reason == "probe failed: still down"
    assert status.cooldown_until == datetime.fromtimestamp(clock.now + 60, UTC)
    assert not breaker.allow()


def test_outcomes_of_callers_that_hold_no_probe_are_ignored_in_half_open(make: Any, clock: Clock) -> None:
    prober, bystander = make(), make()
    _trip(prober)
    clock.advance(61)
    assert prober.allow()
    bystander.record_failure("late failure from before the trip")
    assert bystander.status().state is HALF_OPEN


def test_a_lost_probe_is_replaced_after_the_probe_timeout(make: Any, clock: Clock) -> None:
    lost, next_caller = make(), make()
    _trip(lost)
    clock.advance(61)
    assert lost.allow()  # ... and never reports
    assert not next_caller.allow()
    clock.advance(31)
    assert next_caller.allow()
    next_caller.record_success()
    assert next_caller.status().state is CLOSED


def test_the_loser_of_a_race_sees_the_winners_state(make: Any, client: Any) -> None:
    winner, loser = make(), make()
    _trip(winner, 4)
    loser.refresh()  # both hold version 0 with four failures
    winner.record_failure("fifth")
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    loser.record_failure("sixth")  # its ADD fails on the version and returns the OPEN item
    assert calls == ["UpdateItem"]
    assert loser.cached().state is OPEN and not loser.allow()
    assert calls == ["UpdateItem"]


# ------------------------------------------------------------------ manual disable and enable


def test_manual_disable_holds_until_its_expiry(make: Any, clock: Clock, history: MemoryHistory) -> None:
    breaker = make()
    until = datetime.fromtimestamp(clock.now + 100, UTC)
    status = breaker.disable("V2 misbehaving", by="oncall@example.com", until=until)
    assert status.state is DISABLED and status.reason == "V2 misbehaving" and status.disabled_until == until
    assert not breaker.allow()
    clock.advance(101)
    assert breaker.status(fresh=False).state is CLOSED  # expired: reads as enabled
    assert breaker.allow()
    assert [(r["from_state"], r["to_state"], r["reason"]) for r in history.of("skill:unit")] == [
        ("CLOSED", "DISABLED", "V2 misbehaving"), ("DISABLED", "CLOSED", "disable expired")]


def test_enable_clears_a_disable(make: Any) -> None:
    breaker = make()
    breaker.disable("maintenance", by="ops")
    assert not breaker.allow()
    status = breaker.enable(by="ops", reason="done")
    assert status.state is CLOSED and status.changed_by == "ops" and status.disabled_until is None
    assert breaker.allow()


# ------------------------------------------------------------------ the store unreachable


@pytest.mark.parametrize(("mode", "allowed"), [(FailMode.OPEN, True), (FailMode.CLOSED, False)])
def test_an_unreachable_store_answers_with_the_fail_mode_and_is_counted(mode: FailMode, allowed: bool,
                                                                     history: MemoryHistory) -> None:
    breaker = Breaker("costsim-v2", BreakerConfig(fail_mode=mode), history=history,
                      store=DynamoBreakerStore(TABLE, Unreachable()))
    metrics.clear_metrics()
    assert breaker.allow() is allowed
    breaker.record_failure("boom")  # does not raise
    assert metrics.metric_set["BreakerStoreUnavailable"]["Value"] == [1.0]  # then backs off for cache_ttl_s
    assert history.rows == []
    metrics.clear_metrics()


# ------------------------------------------------------------------ the read cache


def test_allow_reads_once_per_cache_ttl(make: Any, client: Any, clock: Clock) -> None:
    breaker = make()
    breaker.allow()  # creates the item
    gets: list[str] = []
    client.meta.events.register("before-call.dynamodb.GetItem", lambda **_: gets.append("GetItem"))
    clock.advance(2)
    assert breaker.allow() and breaker.allow()
    assert len(gets) == 1
    clock.advance(1.0)
    assert breaker.allow() and breaker.allow()
    assert len(gets) == 2


# ------------------------------------------------------------------ history and callbacks


def test_every_transition_writes_one_history_row_and_calls_on_transition(make: Any, clock: Clock,
                                                                        history: MemoryHistory) -> None:
    seen: list[Transition] = []
    breaker = make(on_transition=[seen.append])
    _trip(breaker)
    clock.advance(61)
    breaker.allow()
    breaker.record_success()
    breaker.disable("test", by="ops")
    breaker.enable(by="ops")
    steps = [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED"), ("CLOSED", "DISABLED"),
             ("DISABLED", "CLOSED")]
    assert [(t.from_state.value, t.to_state.value) for t in seen] == steps
    assert [(r["from_state"], r["to_state"]) for r in history.of("skill:unit")] == steps
    assert [r["version"] for r in history.of("skill:unit")] == [1, 2, 3, 4, 5]
    assert history.rows[0]["details"]["consecutive_failures"] == 5


def test_a_failing_history_or_callback_does_not_undo_the_transition(client: Any, clock: Clock) -> None:
    class Broken:
        def write(self, transition: Transition) -> None:
            raise RuntimeError("database down")

    def bad_hook(transition: Transition) -> None:
        raise ValueError("bug in a hook")

    seen: list[Transition] = []
    breaker = Breaker("skill:unit", BreakerConfig(), store=DynamoBreakerStore(TABLE, client), history=Broken(),
                      on_transition=[bad_hook, seen.append], clock=clock)
    _trip(breaker)
    assert breaker.status().state is OPEN and [t.to_state for t in seen] == [OPEN]


def test_the_record_round_trips_through_a_dynamodb_item() -> None:
    record = BreakerRecord(name="costsim-v2", state=HALF_OPEN, version=7, consecutive_failures=2,
                           drift_samples=(0.125, 0.3), drift_seq=9, cooldown_until=1_800_000_000.25,
                           reason="cooldown elapsed", probes_admitted=1)
    assert BreakerRecord.from_item(record.to_item()) == record


def test_an_expired_disable_renewed_meanwhile_stays_disabled(make: Any, clock: Clock) -> None:
    stale, operator = make(BreakerConfig(cache_ttl_s=60)), make()
    stale.disable("first", by="ops", until=datetime.fromtimestamp(clock.now + 10, UTC))
    clock.advance(11)
    operator.disable("again", by="ops")  # stale still holds the expired disable in its cache
    assert not stale.allow()
    assert stale.status().reason == "again"


def test_the_containers_breakers_hand_every_transition_to_the_alert_and_incident_hook(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """breakers.on_transition loads breaker_alerts at the first transition: that import and the hand-over
    are proved here, not left to the first outage."""
    from incident_loop import breaker_alerts, breakers

    seen: list[Transition] = []
    monkeypatch.setattr(breaker_alerts, "on_transition", seen.append)
    t = Transition(breaker="costsim-v2", from_state=CLOSED, to_state=OPEN,
                   reason="drift", changed_by="test", at=datetime.now(UTC), version=1)
    assert breakers.HOOKS == (breakers.on_transition,)
    breakers.on_transition(t)
    assert seen == [t]


@pytest.mark.parametrize("build", [
    lambda: BreakerConfig(cooldown_s=math.inf),  # DynamoDB refused 'inf': every trip write failed, never OPEN
    lambda: BreakerConfig(cooldown_s=0),
    lambda: BreakerConfig(probe_timeout_s=math.nan),
    lambda: BreakerConfig(half_open_probes=0),
    lambda: BreakerConfig(cache_ttl_s=-1),
    lambda: ConsecutiveFailures(0),
    lambda: ConsecutiveFailures(5, math.inf),
    lambda: Drift(window=5),  # min_samples 20 > window: the p95 check could never trip
    lambda: Drift(p95_threshold=math.nan),
    lambda: Drift(consecutive=0),
])
def test_a_configuration_that_could_never_work_is_refused_where_it_is_written(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def test_a_disable_until_a_time_already_past_is_refused(make: Any, clock: Clock, history: MemoryHistory) -> None:
    """It paged (and for CostSim filed an incident), then read as CLOSED at once."""
    breaker = make(name="skill:past")
    with pytest.raises(ValueError, match="has passed"):
        breaker.disable("typo", by="ops", until=datetime.fromtimestamp(clock.now - 3600, UTC))
    assert breaker.status().state is BreakerState.CLOSED and history.rows == []


def test_the_disable_request_refuses_an_until_already_past_and_reads_a_naive_one_as_utc() -> None:
    from pydantic import ValidationError

    from incident_loop.schemas.costsim import DisableRequest

    with pytest.raises(ValidationError, match="has passed"):
        DisableRequest(reason="r", by="ops", until=datetime(2020, 1, 1, tzinfo=UTC))
    ahead = DisableRequest(reason="r", by="ops", until=datetime(2999, 1, 1))
    assert ahead.until == datetime(2999, 1, 1, tzinfo=UTC)


def test_the_standing_alerts_are_the_breakers_not_closed_and_the_resolutions_of_the_lately_closed() -> None:
    from incident_loop.breaker_alerts import RESOLVED_FOR_S, stale, standing

    now = 1_800_000_000.0
    records = [
        BreakerRecord(name="skill:open", state=BreakerState.OPEN, opened_at=now - 600, changed_at=now - 600,
                      reason="5 consecutive failures"),
        BreakerRecord(name="skill:probing", state=BreakerState.HALF_OPEN, opened_at=now - 900, changed_at=now - 5),
        BreakerRecord(name="costsim-v2", state=BreakerState.DISABLED, changed_at=now - 60, disabled_until=now + 60),
        BreakerRecord(name="skill:expired", state=BreakerState.DISABLED, changed_at=now - 7200,
                      disabled_until=now - 60),
        BreakerRecord(name="skill:closed-lately", state=BreakerState.CLOSED, changed_at=now - 120),
        BreakerRecord(name="skill:closed-long-ago", state=BreakerState.CLOSED, changed_at=now - RESOLVED_FOR_S - 1),
    ]
    alerts = {a.labels["breaker"]: a for a in standing(records, now)}
    assert sorted(alerts) == ["costsim-v2", "skill:closed-lately", "skill:expired", "skill:open", "skill:probing"]
    assert [n for n, a in alerts.items() if a.ends_at is None] == ["skill:open", "skill:probing", "costsim-v2"]
    assert alerts["skill:open"].starts_at == datetime.fromtimestamp(now - 600, UTC)
    assert alerts["costsim-v2"].name == "CostSimV2CircuitBreakerOpen"
    assert alerts["skill:expired"].ends_at == datetime.fromtimestamp(now - 60, UTC)  # the end of its disable

    firing = alerts["skill:open"]
    closed = BreakerRecord(name="skill:open", state=BreakerState.CLOSED, changed_at=now + 30)
    assert stale(firing, closed, now + 60) and not stale(firing, records[0], now + 60)
    assert not stale(firing.resolved(), closed, now + 60) and not stale(firing, None, now)


def test_a_tenants_own_target_breaker_raises_a_p3_with_the_tenant_and_a_shared_one_pages() -> None:
    """One tenant's failing webhook endpoint or Slack channel is theirs to fix: a P3 that names the tenant and the
    target, resolved by the same labels; a shared target's breaker (and catalog-persist) stays a P1 page."""
    from incident_loop.breaker.config import skill_target, split_skill_target
    from incident_loop.breaker_alerts import standing

    now = 1_800_000_000.0
    own = f"skill:{skill_target('webhook:hooks.example.com:443', 'acme')}"
    assert own == "skill:acme/webhook:hooks.example.com:443"
    assert split_skill_target("acme/webhook:hooks.example.com:443") == ("webhook:hooks.example.com:443", "acme")
    assert split_skill_target("voyage") == ("voyage", None) and skill_target("voyage") == "voyage"
    assert split_skill_target(skill_target("slack", "acme/eu")) == ("slack", "acme/eu")  # a legacy id with "/"
    records = [BreakerRecord(name=own, state=BreakerState.OPEN, opened_at=now - 60, changed_at=now - 60),
               BreakerRecord(name="skill:voyage", state=BreakerState.OPEN, opened_at=now - 60, changed_at=now - 60),
               BreakerRecord(name="catalog-persist", state=BreakerState.CLOSED, changed_at=now - 30)]
    alerts = {a.labels["breaker"]: a for a in standing(records, now)}
    tenant = alerts[own]
    assert (tenant.name, tenant.severity) == ("TenantTargetBreakerOpen", "P3")
    assert tenant.labels == {"breaker": own, "tenant": "acme", "target": "webhook:hooks.example.com:443"}
    assert (alerts["skill:voyage"].name, alerts["skill:voyage"].severity) == ("CircuitBreakerOpen", "P1")
    closed = alerts["catalog-persist"]
    assert (closed.name, closed.severity) == ("CircuitBreakerOpen", "P1") and closed.ends_at is not None


def test_an_open_breaker_nobody_calls_any_more_stops_paging_once_idle_past_its_cooldown() -> None:
    """An OPEN breaker moves on only when called: one whose target is no longer used (an endpoint a tenant dropped,
    the host-wide skill breakers before they became the tenants') was re-sent as a firing page every minute for
    ever. An hour after its cooldown ended its alert is resolved, once (for RESOLVED_FOR_S), then nothing."""
    from incident_loop.breaker_alerts import IDLE_AFTER_S, RESOLVED_FOR_S, standing

    now = 1_800_000_000.0

    def opened(name: str, ago: float) -> BreakerRecord:
        return BreakerRecord(name=name, state=BreakerState.OPEN, opened_at=now - ago, changed_at=now - ago,
                             cooldown_until=now - ago + 60, reason="5 consecutive failures")

    records = [opened("skill:fresh", 600), opened("skill:lately-idle", IDLE_AFTER_S + 60 + 300),
               opened("skill:long-idle", IDLE_AFTER_S + 60 + RESOLVED_FOR_S + 60),
               BreakerRecord(name="skill:probing", state=BreakerState.HALF_OPEN, changed_at=now - 30,
                             probe_deadline=now + 30)]
    alerts = {a.labels["breaker"]: a for a in standing(records, now)}
    assert sorted(alerts) == ["skill:fresh", "skill:lately-idle", "skill:probing"]
    assert alerts["skill:fresh"].ends_at is None and alerts["skill:probing"].ends_at is None
    idle = alerts["skill:lately-idle"]
    assert idle.ends_at == datetime.fromtimestamp(now - 300, UTC) and idle.severity == "P1"


def test_a_transition_whose_put_response_was_lost_and_retried_is_still_won(
        client: Any, clock: Clock, history: MemoryHistory) -> None:
    """The SDK retries a PutItem whose response was lost; the retry fails its condition on the first attempt's
    own write. That write is this transition's: announced (history, hooks) and its probe held, not lost."""

    class RetriedPut(DynamoBreakerStore):
        def replace(self, record: BreakerRecord, expected_version: int) -> Any:
            super().replace(record, expected_version)  # applied, but its response never came back
            return super().replace(record, expected_version)  # the retry: ConditionalCheckFailed

    clock.now += 0.1234567  # as time.time() gives it: DynamoDB keeps the microseconds only
    seen: list[Transition] = []
    breaker = Breaker("skill:retried", BreakerConfig(rule=ConsecutiveFailures(1, 60.0), cooldown_s=60.0),
                      store=RetriedPut(TABLE, client), history=history, clock=clock, on_transition=[seen.append])
    breaker.record_failure("timeout")
    assert breaker.status().state is BreakerState.OPEN
    assert [(t.from_state, t.to_state) for t in seen] == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert len(history.rows) == 1

    clock.now += 61
    assert breaker.allow()  # the first caller after the cooldown: HALF_OPEN, and it holds the probe
    breaker.record_success()
    assert breaker.status().state is BreakerState.CLOSED and len(seen) == 3
