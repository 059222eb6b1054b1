"""FleetSync: the one thread per manager that talks to the shared fleet store about circuits
and health, so no actor ever waits on the network.

- A provider actor whose breaker changes (opened, closed by its trial) calls :meth:`publish`:
  a queue put. The thread writes it to the store at once (a failed write is kept, newest per
  provider, and written when the store answers again).
- Every :data:`POLL_INTERVAL` it reads every provider's fleet circuit and tells each provider
  actor :class:`~router.actors.messages.FleetCircuit`. A reading carries the number of the
  provider's last publication written before it, so an actor ignores a reading older than its
  own latest change.
- Every :data:`HEARTBEAT` it publishes this worker's provider figures (from the snapshot
  board) for the fleet's status and metrics.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import pykka

from router.actors.messages import FleetCircuit
from router.fleet import FleetStore
from router.health import HealthSnapshot

__all__ = ["FleetSync", "POLL_INTERVAL", "HEARTBEAT", "health_figures", "fleet_totals"]

logger = logging.getLogger(__name__)

#: Seconds between two readings of the fleet's circuits (a circuit opened elsewhere is seen
#: within this, plus a message hop).
POLL_INTERVAL = 0.25
#: Seconds between two publications of this worker's health figures.
HEARTBEAT = 1.0

_FIGURES = (
    "status",
    "circuit_state",
    "consecutive_failures",
    "uptime_percentage",
    "avg_latency_ms",
    "p95_latency_ms",
    "in_flight",
    "requests",
    "successes",
    "failures",
    "input_tokens",
    "output_tokens",
    "cost",
)


def health_figures(snapshot: HealthSnapshot) -> dict[str, Any]:
    """The part of a snapshot the fleet shares (no error text: it stays in its process)."""
    figures = {name: getattr(snapshot, name) for name in _FIGURES}
    figures["status"] = snapshot.status.value
    return figures


_SUMMED = (
    "in_flight",
    "requests",
    "successes",
    "failures",
    "input_tokens",
    "output_tokens",
    "cost",
)
# The fleet's circuit is one, but workers see it a poll apart: report the most cautious.
_CIRCUIT_RANK = {"closed": 0, "half_open": 1, "open": 2}


def fleet_totals(workers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per provider, the workers' figures summed (counts, tokens, cost, in flight), how many
    workers report it, and the most cautious circuit state any of them sees."""
    totals: dict[str, dict[str, Any]] = {}
    for doc in workers.values():
        for name, figures in (doc.get("providers") or {}).items():
            row = totals.setdefault(
                name, {key: 0 for key in _SUMMED} | {"workers": 0, "circuit_state": "closed"}
            )
            row["workers"] += 1
            for key in _SUMMED:
                row[key] += figures.get(key, 0)
            state = figures.get("circuit_state", "closed")
            if _CIRCUIT_RANK.get(state, 2) > _CIRCUIT_RANK.get(row["circuit_state"], 2):
                row["circuit_state"] = state
    return totals


class _Publication(NamedTuple):
    provider: str
    seq: int
    state: str
    retry_at: float | None  # clock time of the local timer (open only)


class FleetSync:
    """Background circuit and health synchronisation for one manager (see module)."""

    def __init__(
        self,
        store: FleetStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = POLL_INTERVAL,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.store = store
        self._clock = clock
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self._queue: queue.SimpleQueue[_Publication | None] = queue.SimpleQueue()
        self._providers: dict[str, Any] = {}
        self._board: dict[str, HealthSnapshot] = {}
        self._pending: dict[str, _Publication] = {}
        self._written: dict[str, int] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- any thread --------------------------------------------------------------------------

    def publish(self, provider: str, seq: int, state: str, retry_at: float | None) -> None:
        """Queue a breaker change for the fleet (called on the provider actor's thread)."""
        self._queue.put(_Publication(provider, seq, state, retry_at))

    def start(self, providers: dict[str, Any], board: dict[str, HealthSnapshot]) -> FleetSync:
        self._providers = dict(providers)
        self._board = board
        self._thread = threading.Thread(target=self._run, name="router-fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        next_poll = next_beat = time.monotonic()
        while not self._stopping.is_set():
            timeout = max(0.0, min(next_poll, next_beat) - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
                while item is not None:
                    self._pending[item.provider] = item
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if self._stopping.is_set():
                return
            try:
                self._write_pending()
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + self.poll_interval
                    self._poll()
                if now >= next_beat:
                    next_beat = now + self.heartbeat
                    self.store.publish_health(
                        {name: health_figures(snap) for name, snap in list(self._board.items())}
                    )
            except Exception:  # a bug here must not end the synchronisation
                logger.exception("fleet synchronisation failed")

    def _write_pending(self) -> None:
        for name, item in list(self._pending.items()):
            retry_in = 0.0
            if item.retry_at is not None:
                retry_in = max(0.0, item.retry_at - self._clock())
            if not self.store.publish_circuit(name, item.state, retry_in):
                return  # unreachable: keep the rest for the next round
            self._written[name] = item.seq
            del self._pending[name]

    def _poll(self) -> None:
        names = [name for name in self._providers if name not in self._pending]
        written = dict(self._written)  # what the reading below already reflects
        circuits = self.store.read_circuits(names)
        if not circuits:
            return
        for name, circuit in circuits.items():
            try:
                self._providers[name].tell(
                    FleetCircuit(circuit.state, circuit.retry_in, written.get(name, 0))
                )
            except pykka.ActorDeadError:
                return
