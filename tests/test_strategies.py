"""Selection strategies are pure functions of (candidates, snapshots, state)."""

from __future__ import annotations

import pytest

from router.health import HealthSnapshot, HealthStatus
from router.strategies import Candidate, StrategyState, order_candidates


def snap(name: str, **overrides) -> HealthSnapshot:
    values = dict(
        name=name,
        provider_type="openai",
        status=HealthStatus.HEALTHY,
        enabled=True,
        disabled_reason=None,
        priority=0,
        circuit_state="closed",
        circuit_retry_at=None,
        consecutive_failures=0,
        uptime_percentage=100.0,
        avg_latency_ms=10.0,
        p50_latency_ms=10.0,
        p95_latency_ms=20.0,
        in_flight=0,
        max_concurrency=10,
        requests=0,
        successes=0,
        failures=0,
        input_tokens=0,
        output_tokens=0,
        cost=0.0,
        last_error=None,
    )
    values.update(overrides)
    return HealthSnapshot(**values)


A = Candidate(
    "a", "openai", "gpt-4o", 0.03, priority=1, capabilities=frozenset({"text"}), tier="flagship"
)
B = Candidate(
    "b",
    "anthropic",
    "claude-3-haiku-20240307",
    0.001,
    priority=3,
    capabilities=frozenset({"text", "tools", "vision"}),
    tier="fast",
)
C = Candidate(
    "c",
    "google",
    "gemini-1.5-flash",
    0.002,
    priority=2,
    capabilities=frozenset({"text", "tools"}),
    tier="balanced",
)
UNPRICED = Candidate("d", "openai_compatible", "local-llama", None, priority=9)


def names(ordered):
    return [c.provider for c in ordered]


def test_cost_orders_cheapest_first_and_unknown_prices_last():
    ordered = order_candidates("cost", [A, UNPRICED, C, B], {}, StrategyState())
    assert names(ordered) == ["b", "c", "a", "d"]


def test_cost_ties_are_broken_by_priority():
    x = Candidate("x", "openai", "m", 0.01, priority=1)
    y = Candidate("y", "openai", "m", 0.01, priority=5)
    assert names(order_candidates("cost", [x, y], {}, StrategyState())) == ["y", "x"]


def test_priority_prefers_higher_numbers_and_reads_live_priority_from_snapshots():
    assert names(order_candidates("priority", [A, B, C], {}, StrategyState())) == ["b", "c", "a"]
    snapshots = {"a": snap("a", priority=10)}
    assert names(order_candidates("priority", [A, B, C], snapshots, StrategyState()))[0] == "a"


def test_capability_based_prefers_the_richest_model():
    assert names(order_candidates("capability_based", [A, C, B], {}, StrategyState())) == [
        "b",
        "c",
        "a",
    ]


def test_load_balanced_prefers_the_least_loaded_provider():
    snapshots = {
        "a": snap("a", in_flight=9),
        "b": snap("b", in_flight=5),
        "c": snap("c", in_flight=0),
    }
    assert names(order_candidates("load_balanced", [A, B, C], snapshots, StrategyState())) == [
        "c",
        "b",
        "a",
    ]


def test_load_balanced_spreads_equal_load_evenly():
    state = StrategyState()
    firsts = [names(order_candidates("load_balanced", [A, B, C], {}, state))[0] for _ in range(6)]
    assert sorted(firsts) == ["a", "a", "b", "b", "c", "c"]


def test_failover_prefers_the_most_reliable_provider():
    snapshots = {
        "a": snap("a", uptime_percentage=99.0),
        "b": snap("b", uptime_percentage=60.0, status=HealthStatus.DEGRADED),
        "c": snap("c", status=HealthStatus.CIRCUIT_OPEN),
    }
    assert names(order_candidates("failover", [B, C, A], snapshots, StrategyState())) == [
        "a",
        "b",
        "c",
    ]


def test_round_robin_cycles_through_every_candidate():
    state = StrategyState()
    firsts = [names(order_candidates("round_robin", [C, A, B], {}, state))[0] for _ in range(4)]
    assert firsts == ["a", "b", "c", "a"]
    # Each ordering still contains every candidate, for failover.
    assert sorted(names(order_candidates("round_robin", [A, B, C], {}, state))) == ["a", "b", "c"]


def test_unknown_strategy_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="unknown strategy 'fastest'.*round_robin"):
        order_candidates("fastest", [A], {}, StrategyState())
