"""One JSON-ready picture of a running router: what the status page and ``--watch`` show.

:func:`status_view` reads the manager (provider health, budgets, model groups, the cache's
counters) and, when given one, an :class:`~router.activity.Activity` (the last requests and
the per-provider figures over the last minutes). The bridge serves it as ``GET /ui/data``;
``router status --watch`` renders it, from a local manager or from a bridge. No value in it is
message content or a key.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["status_view"]


def status_view(manager: Any, activity: Any = None) -> dict[str, Any]:
    """The picture (see ``docs/observability.md`` for the shape)."""
    health = manager.provider_health()
    budget = manager.get_budget_status()
    stats = manager.get_manager_stats() if activity is not None else None
    lately = activity.providers() if activity is not None else {}
    spend = budget.get("providers") or {}
    now = time.monotonic()
    providers = []
    for name, snap in health.items():
        row = snap.to_dict()
        retry_at = snap.circuit_retry_at
        row["retry_in"] = max(0.0, retry_at - now) if retry_at is not None else None
        row.update(spend.get(name, {}))
        row.update(lately.get(name) or {"requests_per_min": 0, "errors": {}, "latency": []})
        providers.append(row)
    config = manager.config
    return {
        "time": time.time(),
        "providers": providers,
        "budgets": budget.get("budgets", []),
        "alerts": budget.get("alerts", []),
        "spent_today": budget.get("spent_today", 0.0),
        "spent_month": budget.get("spent_month", 0.0),
        "reserved": budget.get("reserved", 0.0),
        "model_groups": {
            alias: [f"{m.provider}/{m.model}" for m in members]
            for alias, members in config.model_groups.items()
        },
        "default_model": config.default_model,
        "cache": manager.cache_stats(),
        "usage": _usage(stats["usage_stats"]) if stats is not None else None,
        "recent": activity.recent() if activity is not None else [],
        "window": {
            "seconds": activity.window_seconds if activity is not None else 0,
            "bucket": activity.bucket_seconds if activity is not None else 0,
        },
    }


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    keep = ("total_requests", "successful_requests", "failed_requests", "pending_requests")
    out = {key: usage.get(key) for key in keep}
    out["total_cost"] = usage.get("total_cost")
    out["latency_ms"] = usage.get("latency_ms")
    return out
