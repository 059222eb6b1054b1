"""Prometheus metrics for one bridge app.

Each app owns its own ``CollectorRegistry`` (two apps in one process never collide, and the
global registry is left alone). Counters and histograms move as the bridge answers requests;
provider and budget gauges are read from the manager when ``/metrics`` is scraped, so they
are never stale. ``prometheus_client`` is imported only when this module is, i.e. when an app
with metrics is created.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from router.models import Usage

__all__ = ["BridgeMetrics", "CIRCUIT_STATES"]

logger = logging.getLogger(__name__)

#: Value of ``router_circuit_state`` per breaker state.
CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

# Latency of a whole answer: from a fraction of a second to the slowest long generations.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class BridgeMetrics:
    """The bridge's metrics in a registry of their own."""

    def __init__(self, manager: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.http_requests = Counter(
            "router_http_requests",
            "HTTP requests answered by the bridge, by route and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.requests = Counter(
            "router_requests",
            "Chat requests by serving provider, model and outcome (success, cached, error, cancelled).",
            ["endpoint", "provider", "model", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "router_errors",
            "Failed chat requests by error type.",
            ["endpoint", "type"],
            registry=r,
        )
        self.latency = Histogram(
            "router_request_duration_seconds",
            "Time to a complete answer (whole stream for streamed requests).",
            ["endpoint", "provider", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_chunk = Histogram(
            "router_stream_first_chunk_seconds",
            "Time to the first streamed chunk.",
            ["endpoint", "provider", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "router_tokens",
            "Tokens billed, by provider, model and kind (input, output).",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "router_cost_usd",
            "Cost of answered requests in USD.",
            ["provider", "model"],
            registry=r,
        )
        r.register(_ManagerCollector(manager))
        # Labelled series looked up once per label set: ``labels()`` takes a lock, formats and
        # checks the values each time (≈ 10 µs per call, six calls per answered request).
        self._http_series: dict[tuple[str, str, int], Any] = {}
        self._success_series: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def http(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        series = self._http_series.get(key)
        if series is None:
            series = self._http_series[key] = self.http_requests.labels(route, method, str(status))
        series.inc()

    def success(
        self,
        endpoint: str,
        provider: str,
        model: str,
        seconds: float,
        usage: Usage | None,
        cost: float | None,
        *,
        cached: bool = False,
    ) -> None:
        if cached:  # answered by the response cache: nothing was sent or billed
            self.requests.labels(endpoint, provider, model, "cached").inc()
            return
        key = (endpoint, provider, model)
        series = self._success_series.get(key)
        if series is None:
            series = self._success_series[key] = (
                self.requests.labels(endpoint, provider, model, "success"),
                self.latency.labels(endpoint, provider, model),
                self.tokens.labels(provider, model, "input"),
                self.tokens.labels(provider, model, "output"),
                self.cost.labels(provider, model),
            )
        answered, latency, input_tokens, output_tokens, spent = series
        answered.inc()
        latency.observe(seconds)
        if usage is not None:
            input_tokens.inc(usage.input_tokens)
            output_tokens.inc(usage.output_tokens)
        if cost:
            spent.inc(cost)

    def failure(self, endpoint: str, provider: str, model: str, error_type: str) -> None:
        # Labels only ever hold configured provider names and served model ids: a model name
        # a client made up must not create a time series.
        self.requests.labels(endpoint, provider, model, "error").inc()
        self.errors.labels(endpoint, error_type).inc()

    def cancelled(self, endpoint: str, provider: str, model: str) -> None:
        self.requests.labels(endpoint, provider, model, "cancelled").inc()

    def first_chunk_after(self, endpoint: str, provider: str, model: str, seconds: float) -> None:
        self.first_chunk.labels(endpoint, provider, model).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _ManagerCollector:
    """Gauges read from the manager at scrape time."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    def describe(self) -> list[Metric]:
        return []  # names are not known before the first scrape; skip the collision check

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("router_up", "1 when the router's manager is running.")
        running = bool(getattr(self._manager, "running", False))
        up.add_metric([], 1.0 if running else 0.0)
        yield up
        if not running:
            return
        try:
            health = self._manager.provider_health()
            budget = self._manager.get_budget_status()
            fleet = self._manager.fleet_status(health)
        except Exception:
            # A manager stopping mid-scrape must not turn the scrape into a 500.
            logger.warning("metrics: could not read provider health or budgets", exc_info=True)
            return
        yield from _provider_gauges(health)
        yield from _budget_gauges(budget)
        yield from _fleet_gauges(fleet)
        yield from _cache_counters(self._manager)


def _provider_gauges(health: dict[str, Any]) -> Iterator[Metric]:
    circuit = GaugeMetricFamily(
        "router_circuit_state",
        "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
        labels=["provider"],
    )
    score = GaugeMetricFamily(
        "router_provider_health_score", "Provider health score (0-100).", labels=["provider"]
    )
    enabled = GaugeMetricFamily(
        "router_provider_enabled", "1 when the provider is in rotation.", labels=["provider"]
    )
    in_flight = GaugeMetricFamily(
        "router_provider_in_flight", "Requests in flight per provider.", labels=["provider"]
    )
    for name, snap in health.items():
        circuit.add_metric([name], CIRCUIT_STATES.get(snap.circuit_state, 2.0))
        score.add_metric([name], snap.health_score)
        enabled.add_metric([name], 1.0 if snap.disabled_reason is None else 0.0)
        in_flight.add_metric([name], float(snap.in_flight))
    yield from (circuit, score, enabled, in_flight)


def _fleet_gauges(fleet: dict[str, Any]) -> Iterator[Metric]:
    """Every live worker's figures, labelled by worker (``host:pid``): whichever worker a
    scrape reaches, it shows the whole fleet (``sum by (provider)`` for fleet totals)."""
    shared = GaugeMetricFamily(
        "router_fleet_shared",
        "1 while rate limits and circuits are shared with the other processes on the Redis "
        "ledger; 0 alone or while Redis is unreachable (then they are per process).",
    )
    shared.add_metric([], 1.0 if fleet.get("shared") else 0.0)
    workers = fleet.get("workers") or {}
    count = GaugeMetricFamily("router_fleet_workers", "Router processes reporting to the fleet.")
    count.add_metric([], float(len(workers)))
    labels = ["provider", "worker"]
    families = {
        "requests": GaugeMetricFamily(
            "router_fleet_provider_requests",
            "Attempts per provider since each worker started.",
            labels=labels,
        ),
        "failures": GaugeMetricFamily(
            "router_fleet_provider_failures",
            "Failed attempts per provider since each worker started.",
            labels=labels,
        ),
        "in_flight": GaugeMetricFamily(
            "router_fleet_provider_in_flight",
            "Requests in flight per provider and worker.",
            labels=labels,
        ),
    }
    circuit = GaugeMetricFamily(
        "router_fleet_circuit_state",
        "Circuit state per provider as each worker sees it: 0 closed, 1 half-open, 2 open.",
        labels=labels,
    )
    for worker, doc in sorted(workers.items()):
        for name, figures in (doc.get("providers") or {}).items():
            for key, family in families.items():
                family.add_metric([name, worker], float(figures.get(key, 0)))
            state = figures.get("circuit_state", "closed")
            circuit.add_metric([name, worker], CIRCUIT_STATES.get(state, 2.0))
    yield from (shared, count, *families.values(), circuit)


def _budget_gauges(status: dict[str, Any]) -> Iterator[Metric]:
    spend = GaugeMetricFamily(
        "router_budget_spend_usd",
        "Spend per provider in the current day or month (USD).",
        labels=["provider", "period"],
    )
    reserved = GaugeMetricFamily(
        "router_budget_reserved_usd",
        "Cost reserved by requests in flight per provider (USD).",
        labels=["provider"],
    )
    for name, figures in (status.get("providers") or {}).items():
        spend.add_metric([name, "day"], float(figures.get("spent_today", 0.0)))
        spend.add_metric([name, "month"], float(figures.get("spent_month", 0.0)))
        reserved.add_metric([name], float(figures.get("reserved", 0.0)))
    spent = GaugeMetricFamily(
        "router_budget_spent_usd",
        "Spend against each configured budget limit (USD).",
        labels=["budget", "scope", "period", "provider"],
    )
    limit = GaugeMetricFamily(
        "router_budget_limit_usd",
        "Each configured budget limit (USD).",
        labels=["budget", "scope", "period", "provider"],
    )
    for row in status.get("budgets") or ():
        labels = [
            str(row.get("budget")),
            str(row.get("scope")),
            str(row.get("period")),
            str(row.get("provider") or ""),
        ]
        spent.add_metric(labels, float(row.get("spent", 0.0)))
        limit.add_metric(labels, float(row.get("limit", 0.0)))
    yield from (spend, reserved, spent, limit)


def _cache_counters(manager: Any) -> Iterator[Metric]:
    stats_of = getattr(manager, "cache_stats", None)
    stats = stats_of() if stats_of is not None else {}
    if not stats.get("enabled"):
        return
    lookups = CounterMetricFamily(
        "router_cache_lookups",
        "Response cache lookups by result (hit, miss, bypass: the request was not cacheable).",
        labels=["result"],
    )
    for result, key in (("hit", "hits"), ("miss", "misses"), ("bypass", "bypassed")):
        lookups.add_metric([result], float(stats.get(key, 0)))
    stored = CounterMetricFamily("router_cache_stored", "Answers stored in the response cache.")
    stored.add_metric([], float(stats.get("stored", 0)))
    rejected = CounterMetricFamily(
        "router_cache_rejected", "Corrupt response cache entries ignored (never served)."
    )
    rejected.add_metric([], float(stats.get("rejected", 0)))
    errors = CounterMetricFamily("router_cache_errors", "Response cache store failures.")
    errors.add_metric([], float(stats.get("errors", 0)))
    yield from (lookups, stored, rejected, errors)
