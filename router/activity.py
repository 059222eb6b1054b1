"""What the router answered lately: the last requests and per-provider figures by time bucket.

:class:`Activity` is fed one :class:`RequestSummary` per finished request (a manager request
listener, see ``AIProviderManager.add_request_listener``) and answers the status page and
``router status --watch``: the last N requests (provider, model, tokens, cost, latency,
outcome; never content or keys) and, per provider over the last minutes, requests per minute,
errors by kind and latency percentiles per bucket (the page's small charts).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from router.health import percentile

__all__ = ["Activity", "RequestSummary"]


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One finished request, without content."""

    time: float  # wall clock, seconds
    request_id: str
    provider: str  # the configured instance that answered ("" when none did)
    model: str
    input_tokens: int
    output_tokens: int
    cost: float
    latency_ms: float
    outcome: str  # "success", "cached" or "error"
    error_type: str | None = None
    stream: bool = False
    # (provider, error type) of each candidate that failed before the outcome
    failed: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed"] = [list(pair) for pair in self.failed]
        return out


@dataclass
class _Bucket:
    start: float
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


class Activity:
    """Thread-safe recorder; see the module docstring."""

    def __init__(
        self,
        *,
        recent: int = 50,
        bucket_seconds: float = 10.0,
        window_seconds: float = 600.0,
        samples_per_bucket: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket_seconds = bucket_seconds
        self.window_seconds = window_seconds
        self._samples = samples_per_bucket
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[RequestSummary] = deque(maxlen=recent)
        self._buckets: dict[str, deque[_Bucket]] = {}

    def record(self, summary: RequestSummary) -> None:
        with self._lock:
            self._recent.append(summary)
            for provider, error_type in summary.failed:
                self._bucket(provider, summary.time).errors[error_type] += 1
            if summary.provider and summary.outcome != "cached":
                bucket = self._bucket(summary.provider, summary.time)
                bucket.requests += 1
                if summary.outcome == "error":
                    bucket.errors[summary.error_type or "RouterError"] += 1
                elif len(bucket.latencies) < self._samples:
                    bucket.latencies.append(summary.latency_ms)

    __call__ = record  # usable directly as a request listener

    def _bucket(self, provider: str, at: float) -> _Bucket:
        start = at - at % self.bucket_seconds
        buckets = self._buckets.setdefault(provider, deque())
        if not buckets or buckets[-1].start < start:
            buckets.append(_Bucket(start))
        horizon = start - self.window_seconds
        while buckets and buckets[0].start <= horizon:
            buckets.popleft()
        for bucket in reversed(buckets):  # a late record goes into its own bucket
            if bucket.start <= start:
                return bucket
        return buckets[0]

    def recent(self) -> list[dict[str, Any]]:
        """The last requests, newest first."""
        with self._lock:
            return [summary.to_dict() for summary in reversed(self._recent)]

    def providers(self) -> dict[str, dict[str, Any]]:
        """Per provider: ``requests_per_min`` (last 60 s), ``errors`` by kind (the window) and
        ``latency``: one ``{t, requests, p50, p95}`` per bucket, oldest first."""
        now = self._clock()
        horizon = now - self.window_seconds
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for provider, buckets in self._buckets.items():
                live = [b for b in buckets if b.start > horizon - self.bucket_seconds]
                errors: Counter[str] = Counter()
                series = []
                for bucket in live:
                    errors.update(bucket.errors)
                    ordered = sorted(bucket.latencies)
                    series.append(
                        {
                            "t": bucket.start,
                            "requests": bucket.requests,
                            "p50": percentile(ordered, 0.5) if ordered else None,
                            "p95": percentile(ordered, 0.95) if ordered else None,
                        }
                    )
                minute = sum(b.requests for b in live if b.start + self.bucket_seconds > now - 60)
                out[provider] = {
                    "requests_per_min": minute,
                    "errors": dict(errors),
                    "latency": series,
                }
        return out
