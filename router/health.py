"""Provider health: a sliding window of outcomes and latencies, and the snapshot value.

``HealthTracker`` is a plain object owned by one provider actor. ``HealthSnapshot`` is the
immutable value the actor pushes to the supervisor (and that status output shows).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = ["HealthStatus", "HealthSnapshot", "HealthTracker", "percentile"]


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    CIRCUIT_OPEN = "circuit_open"
    DISABLED = "disabled"


# How much a status is worth when ranking by reliability (the failover strategy).
STATUS_WEIGHT = {
    HealthStatus.HEALTHY: 1.0,
    HealthStatus.DEGRADED: 0.7,
    HealthStatus.UNHEALTHY: 0.3,
    HealthStatus.CIRCUIT_OPEN: 0.0,
    HealthStatus.DISABLED: 0.0,
}


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What one provider looks like right now. Never holds secrets."""

    name: str
    provider_type: str
    status: HealthStatus
    enabled: bool
    disabled_reason: str | None
    priority: int
    circuit_state: str
    circuit_retry_at: float | None  # monotonic time the breaker admits a trial; None if closed
    consecutive_failures: int
    uptime_percentage: float
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    in_flight: int
    max_concurrency: int | None  # None: no cap of the router's own
    requests: int
    successes: int
    failures: int
    input_tokens: int
    output_tokens: int
    cost: float
    last_error: str | None
    rate_limited_until: float | None = None  # monotonic; client-side rpm/tpm or provider 429

    @property
    def health_score(self) -> float:
        """0-100: uptime weighted by status."""
        return self.uptime_percentage * STATUS_WEIGHT[self.status]

    @property
    def load(self) -> float:
        return self.in_flight / max(1, self.max_concurrency or 1)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as status output shows it (``/ai/status``, ``router status --json``)."""
        out = asdict(self)
        out["status"] = self.status.value
        out["health_score"] = self.health_score
        out.pop("circuit_retry_at", None)
        out["rate_limited_until"] = _unix_time(self.rate_limited_until)
        return out


def _unix_time(monotonic_at: float | None) -> float | None:
    """A future ``time.monotonic()`` instant as Unix time; None when absent or passed.

    Kept monotonic inside (clock changes cannot move it), but a monotonic value means nothing
    to another process or host, so status output shows wall-clock time. A passed instant is
    None: the actor clears it only at its next attempt, yet the provider is no longer limited.
    """
    if monotonic_at is None:
        return None
    remaining = monotonic_at - time.monotonic()
    return time.time() + remaining if remaining > 0 else None


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class HealthTracker:
    """Outcome and latency windows plus cumulative counters for one provider."""

    def __init__(self, window: int = 100) -> None:
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._latencies: deque[float] = deque(maxlen=window)
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.last_error: str | None = None
        self._avg_latency = 0.0
        # Snapshots are built after every attempt and outcome (the hot path), so the window
        # aggregates are kept incrementally instead of re-summed / re-sorted each time.
        self._ok = 0  # True entries in _outcomes
        self._percentiles: tuple[float, float] | None = (0.0, 0.0)

    def _append_outcome(self, ok: bool) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self._ok -= 1  # the oldest entry falls out of the window
        outcomes.append(ok)
        if ok:
            self._ok += 1

    def record_success(self, latency_ms: float, input_tokens: int, output_tokens: int, cost: float):
        self.requests += 1
        self.successes += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost += cost
        self._append_outcome(True)
        self._latencies.append(latency_ms)
        self._percentiles = None  # recomputed on the next snapshot
        # EWMA keeps the average responsive without keeping every sample.
        self._avg_latency = (
            latency_ms if self.successes == 1 else 0.8 * self._avg_latency + 0.2 * latency_ms
        )

    def record_failure(self, error: str, *, provider_side: bool = True) -> None:
        """A failed attempt; caller-side errors are counted but do not lower uptime."""
        self.requests += 1
        self.failures += 1
        self.last_error = error
        if provider_side:
            self._append_outcome(False)

    def add_partial_usage(self, input_tokens: int, output_tokens: int, cost: float) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost += cost

    @property
    def uptime_percentage(self) -> float:
        if not self._outcomes:
            return 100.0
        return 100.0 * self._ok / len(self._outcomes)

    def latency_percentiles(self) -> tuple[float, float]:
        if self._percentiles is None:
            ordered = sorted(self._latencies)
            self._percentiles = (percentile(ordered, 0.5), percentile(ordered, 0.95))
        return self._percentiles

    @property
    def avg_latency_ms(self) -> float:
        return self._avg_latency

    def status(self, *, usable: bool, circuit_open: bool, consecutive_failures: int):
        if not usable:
            return HealthStatus.DISABLED
        if circuit_open:
            return HealthStatus.CIRCUIT_OPEN
        uptime = self.uptime_percentage
        if consecutive_failures >= 3 or uptime < 50.0:
            return HealthStatus.UNHEALTHY
        if consecutive_failures >= 1 or uptime < 90.0:
            return HealthStatus.DEGRADED
        return HealthStatus.HEALTHY
