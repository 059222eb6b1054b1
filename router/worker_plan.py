"""How many processes ``router serve`` runs, and what each one enforces.

One Python process answers on one core at a time (the GIL), so ``router serve`` runs one
worker per CPU by default (``--workers auto``) wherever the workers can agree: their usage and
budgets must live in a shared ledger (``sqlite`` or ``redis``), and ``/ai/configure`` (which
changes only the process that answers it) must be off. Otherwise it runs one.

Client-side limits (a provider's ``rpm``, ``tpm`` and ``max_concurrency``) are shared through
Redis when the ledger is ``redis`` (``share_limits``, the default). Without that, each of N
workers enforces an even share of each limit, so that together they never exceed what was
configured: the configured figure is what the provider allows, whatever the worker count.
"""

from __future__ import annotations

import os
from typing import Any

from router.config import RouterConfig

__all__ = ["auto_workers", "available_cpus", "config_for_worker", "limits_shared"]

_SPLIT = ("rpm", "tpm", "max_concurrency")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _ledger_type(config: RouterConfig) -> str:
    kind = config.ledger.type
    return str(getattr(kind, "value", kind)).lower()


def limits_shared(config: RouterConfig) -> bool:
    """Whether the workers share rpm/tpm windows and circuits (a Redis ledger sharing them)."""
    return _ledger_type(config) == "redis" and config.ledger.share_limits


def auto_workers(
    config: RouterConfig, *, configure_enabled: bool, cpus: int | None = None
) -> tuple[int, str]:
    """The worker count ``--workers auto`` picks, and why (for the log)."""
    cpus = available_cpus() if cpus is None else cpus
    if cpus <= 1:
        return 1, "one CPU"
    if _ledger_type(config) == "memory" or config.ledger.path == ":memory:":
        return 1, "a memory ledger keeps usage and budgets per process (use sqlite or redis)"
    if configure_enabled:
        return 1, "/ai/configure changes only the worker that answers it"
    return cpus, f"one per CPU ({cpus})"


def config_for_worker(config: RouterConfig, workers: int) -> RouterConfig:
    """The configuration one of ``workers`` processes runs with: unchanged when the limits are
    shared (or there is one worker), else each provider's rpm, tpm and max_concurrency divided
    evenly among the workers (rounded down, at least 1)."""
    if workers <= 1 or limits_shared(config):
        return config
    providers = []
    for provider in config.providers:
        update: dict[str, Any] = {
            name: max(1, value // workers)
            for name in _SPLIT
            if (value := getattr(provider, name)) is not None
        }
        providers.append(provider.model_copy(update=update) if update else provider)
    return config.model_copy(update={"providers": tuple(providers)})
