"""The six selection strategies: pure functions that order candidates.

Each strategy takes the candidates that survived filtering, the cached health snapshots and a
mutable ``StrategyState`` (owned by the supervisor actor; only round-robin and load-balanced
tie-breaking touch it) and returns the candidates in the order they should be tried. The
supervisor then tries them one after another (failover).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.health import HealthSnapshot

__all__ = [
    "Candidate",
    "StrategyState",
    "STRATEGIES",
    "order_candidates",
    "cost",
    "priority",
    "capability_based",
    "load_balanced",
    "failover",
    "round_robin",
]

TIER_RANK = {"flagship": 3, "balanced": 2, "fast": 1, "legacy": 0}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to serve a request: a provider instance and the model to ask it for."""

    provider: str  # the configured instance name
    provider_type: str
    model: str
    estimated_cost: float | None  # worst case in USD; None when the model has no known price
    priority: int = 0
    capabilities: frozenset[str] = frozenset()
    tier: str = ""
    info: Any = field(default=None, compare=False, repr=False)  # the catalog's ModelInfo
    # What the request is expected to cost (typical input, one output length for every
    # candidate); the cost strategy ranks by it. None when the model has no known price.
    expected_cost: float | None = None

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass
class StrategyState:
    """Mutable strategy memory; lives in the supervisor actor only.

    ``skipped`` tells whether the supervisor will pass over a candidate right now (disabled,
    circuit open, ...; the supervisor's own rule): round-robin moves its cursor past the
    candidate that is actually served, so a skipped provider's turn is not handed to its
    neighbour on top of the neighbour's own turn.
    """

    round_robin_cursors: dict[tuple[str, ...], int] = field(default_factory=dict)
    skipped: Callable[[Candidate], bool] | None = None


Snapshots = Mapping[str, HealthSnapshot]


def _priority_of(candidate: Candidate, snapshots: Snapshots) -> int:
    snap = snapshots.get(candidate.provider)
    return snap.priority if snap is not None else candidate.priority


def _health_of(candidate: Candidate, snapshots: Snapshots) -> float:
    snap = snapshots.get(candidate.provider)
    return snap.health_score if snap is not None else 100.0


def cost(candidates: Sequence[Candidate], snapshots: Snapshots, state: StrategyState):
    """Cheapest expected cost first; unknown prices last; ties by priority (higher first).

    Ranked by ``expected_cost``: the same output length for every candidate, so a model is
    not ranked dearer because it *may* write more (its larger maximum output only matters to
    the worst case, which budgets and ``max_cost_per_request`` check).
    """

    def expected(c: Candidate) -> float | None:
        return c.expected_cost if c.expected_cost is not None else c.estimated_cost

    return sorted(
        candidates,
        key=lambda c: (
            expected(c) is None,
            expected(c) or 0.0,
            -_priority_of(c, snapshots),
            c.provider,
        ),
    )


def priority(candidates: Sequence[Candidate], snapshots: Snapshots, state: StrategyState):
    """Highest configured priority first (the seed: higher = preferred); ties by name."""
    return sorted(candidates, key=lambda c: (-_priority_of(c, snapshots), c.provider, c.model))


def capability_based(candidates: Sequence[Candidate], snapshots: Snapshots, state: StrategyState):
    """Richest match first: most capabilities, then the stronger tier, then priority.

    Hard requirements were already applied as filters; among the models that meet them this
    prefers the one that can do the most, on the theory that capability was asked for.
    """
    return sorted(
        candidates,
        key=lambda c: (
            -len(c.capabilities),
            -TIER_RANK.get(c.tier, 0),
            -_priority_of(c, snapshots),
            c.provider,
        ),
    )


def load_balanced(candidates: Sequence[Candidate], snapshots: Snapshots, state: StrategyState):
    """Least loaded first (in-flight / pool size); ties rotate so equal load spreads evenly."""
    rotated = round_robin(candidates, snapshots, state)
    position = {c.key: i for i, c in enumerate(rotated)}

    def load(c: Candidate) -> float:
        snap = snapshots.get(c.provider)
        return snap.load if snap is not None else 0.0

    return sorted(rotated, key=lambda c: (load(c), position[c.key]))


def failover(candidates: Sequence[Candidate], snapshots: Snapshots, state: StrategyState):
    """Most reliable first: health score (uptime weighted by status), then priority."""
    return sorted(
        candidates,
        key=lambda c: (-_health_of(c, snapshots), -_priority_of(c, snapshots), c.provider),
    )


def round_robin(candidates: Sequence[Candidate], snapshots: Snapshots, state: StrategyState):
    """Rotate through the candidates; one cursor per distinct candidate set.

    The order starts at the cursor, and the cursor then moves just past the first candidate
    that will be served (the first one ``state.skipped`` does not rule out). So skipped
    candidates lose their turn without giving the next one an extra turn: with one of three
    providers disabled, the other two alternate. Any candidate that stays usable is served at
    least once every ``len(candidates)`` requests, whatever the others do.
    """
    if not candidates:
        return []
    ordered = sorted(candidates, key=lambda c: (c.provider, c.model))
    key = tuple(c.key for c in ordered)
    start = state.round_robin_cursors.get(key, 0) % len(ordered)
    rotated = ordered[start:] + ordered[:start]
    skipped = state.skipped
    served = 0
    if skipped is not None:
        served = next((i for i, c in enumerate(rotated) if not skipped(c)), -1)
    if served >= 0:  # nobody usable: nobody had a turn, the cursor stays
        state.round_robin_cursors[key] = (start + served + 1) % len(ordered)
    return rotated


STRATEGIES: dict[str, Callable[..., list[Candidate]]] = {
    "cost": cost,
    "priority": priority,
    "capability_based": capability_based,
    "load_balanced": load_balanced,
    "failover": failover,
    "round_robin": round_robin,
}


def order_candidates(
    strategy: str,
    candidates: Sequence[Candidate],
    snapshots: Snapshots,
    state: StrategyState,
) -> list[Candidate]:
    """Order ``candidates`` by the named strategy (``ValueError`` for an unknown name)."""
    try:
        function = STRATEGIES[strategy]
    except KeyError:
        known = ", ".join(STRATEGIES)
        raise ValueError(f"unknown strategy '{strategy}' (known: {known})") from None
    return list(function(candidates, snapshots, state))
