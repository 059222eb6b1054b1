"""The fleet store: client-side limits, circuits and health shared by every router process.

One process needs nothing shared: each provider actor keeps its own rpm/tpm window
(:class:`~router.fleet.window.RateWindow`) and circuit breaker, which is what
:class:`LocalFleet` stands for. Several processes on one Redis ledger (``ledger.type: redis``)
share them through :class:`~router.fleet.redis.RedisFleet`, with the same Redis and key prefix
as the budgets:

- **rate limits**: an attempt takes its rpm/tpm token with one atomic Lua call before it sends,
  so a provider's 500 rpm holds across every worker and host;
- **circuits**: a circuit opened by one process is published at once and seen by the others
  within :data:`~router.fleet.sync.POLL_INTERVAL`; a half-open trial takes a fleet-wide lease,
  so exactly one trial runs across the fleet;
- **health**: every process publishes its providers' figures each second, so status and
  metrics show the whole fleet, one entry per worker.

A shared store does network I/O, so it is never called on an actor's thread: tokens and trial
leases are taken by the thread that runs the attempt (:mod:`router.fleet.gate`), and circuit
changes travel through a background thread (:mod:`router.fleet.sync`) that tells the provider
actors what the fleet decided. ``breaker.py`` stays a pure state machine.
"""

from __future__ import annotations

import importlib
import itertools
import os
import socket
import time
from typing import Any, NamedTuple

from router.errors import ConfigError
from router.fleet.window import RateWindow

__all__ = ["FleetStore", "LocalFleet", "RemoteCircuit", "open_fleet", "worker_id"]

_managers = itertools.count(1)


def worker_id() -> str:
    """This process's name in the fleet: ``host:pid``, with ``/n`` for a second manager."""
    n = next(_managers)
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if n == 1 else f"{base}/{n}"


class RemoteCircuit(NamedTuple):
    """A provider's circuit as the fleet sees it."""

    state: str  # "open" or "closed"
    retry_in: float  # seconds until a trial may go (open only; a trial elsewhere included)


class FleetStore:
    """What processes share besides spend. Every method may be called from any thread but an
    actor's (a shared store does network I/O); none raises for an unreachable backend: limits
    and circuits then fall back to this process alone and :meth:`stats` says so."""

    #: True when the state is shared with other processes (and the store does network I/O).
    shared: bool = False
    worker: str = ""

    def take_rate(self, provider: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
        """Count one request of ``tokens`` input tokens against the provider's window if it
        fits: 0.0. Otherwise count nothing and return the seconds until it may fit."""
        raise NotImplementedError

    def take_trial(self, provider: str, ttl: float) -> float | None:
        """Claim the provider's half-open trial for this process (held at most ``ttl``
        seconds). ``None``: go ahead; otherwise seconds until another trial may go."""
        raise NotImplementedError

    def publish_circuit(self, provider: str, state: str, retry_in: float) -> bool:
        """Tell the fleet this process's breaker opened (``"open"``, ``retry_in`` seconds of
        recovery), closed (``"closed"``: its trial succeeded) or that its trial ended without
        a verdict (``"released"``). False when the store could not be reached."""
        raise NotImplementedError

    def read_circuits(self, providers: list[str]) -> dict[str, RemoteCircuit] | None:
        """The fleet's circuits; ``None`` when the store could not be reached."""
        raise NotImplementedError

    def publish_health(self, providers: dict[str, dict[str, Any]]) -> None:
        """This worker's per-provider figures (kept a few seconds unless published again)."""
        raise NotImplementedError

    def read_health(self) -> dict[str, dict[str, Any]] | None:
        """Every live worker's last published figures; ``None`` when unreachable."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """The store as this process sees it (never touches the network)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class LocalFleet(FleetStore):
    """One process alone: nothing to share (today's behaviour). The provider actors keep their
    own windows and breakers; this store only answers like a fleet of one."""

    shared = False

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or worker_id()
        self._windows: dict[str, RateWindow] = {}
        self._health: dict[str, Any] | None = None

    def take_rate(self, provider: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
        window = self._windows.setdefault(provider, RateWindow())
        return window.take(rpm, tpm, tokens, time.monotonic())

    def take_trial(self, provider: str, ttl: float) -> float | None:
        return None  # the process's own breaker admits exactly one trial

    def publish_circuit(self, provider: str, state: str, retry_in: float) -> bool:
        return True

    def read_circuits(self, providers: list[str]) -> dict[str, RemoteCircuit] | None:
        return {}

    def publish_health(self, providers: dict[str, dict[str, Any]]) -> None:
        self._health = {"worker": self.worker, "updated": time.time(), "providers": providers}

    def read_health(self) -> dict[str, dict[str, Any]] | None:
        return {self.worker: self._health} if self._health is not None else {}

    def stats(self) -> dict[str, Any]:
        return {"type": "local", "shared": False, "worker": self.worker}


def open_fleet(config: Any) -> FleetStore | None:
    """The shared store for a ledger configuration: a :class:`~router.fleet.redis.RedisFleet`
    on the ledger's Redis when ``type`` is ``redis`` and ``share_limits`` is on; else
    ``None`` (nothing to share)."""
    kind = str(getattr(config.type, "value", config.type)).lower()
    if kind != "redis" or not getattr(config, "share_limits", True):
        return None
    try:
        module = importlib.import_module("router.fleet.redis")
    except ModuleNotFoundError as exc:
        if exc.name != "redis" and not (exc.name or "").startswith("redis."):
            raise
        raise ConfigError(
            "ledger.type 'redis' needs redis-py (pip install 'router[redis]')"
        ) from None
    return module.RedisFleet.from_config(config)
