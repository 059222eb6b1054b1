"""Settlements on their way to the budget actor, batched to spare a thread wake-up per request.

Every finished attempt produces a ``Settle``. Telling each one to the budget actor wakes its
thread once per request; on a small machine that wake-up (and going back to sleep) costs more
CPU than the bookkeeping itself. Workers therefore ``add`` settlements here and the budget actor
drains them:

- before it handles any other message (a reservation, a status or records ask, a release), so
  whatever the actor answers already counts every settlement added before the ask was sent —
  a worker adds its settlement before it resolves the caller's future, so a caller that got its
  answer and then asks for the budget status sees that answer's cost;
- on a ``FlushSettlements`` message, which the first settlement of an empty buffer schedules
  ``delay`` seconds later (one wake-up per batch instead of one per request);
- when it stops.

The only visible difference from one message per settlement: another process sharing the
ledger sees the spend up to ``delay`` seconds later (the reservation, which is never lower than
the real cost, is held meanwhile, so limits are never overshot because of it).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, NamedTuple

import pykka

__all__ = ["SettlementBuffer", "FlushSettlements"]


class FlushSettlements(NamedTuple):
    """To the budget actor: drain the settlement buffer now."""


class SettlementBuffer:
    """Thread-safe queue of ``Settle`` messages for one budget actor."""

    def __init__(self, scheduler: Any, delay: float = 0.05) -> None:
        self._scheduler = scheduler
        self._delay = delay
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._flush_pending = False
        self.budget_ref: Any = None  # set once the budget actor is started

    def add(self, settle: Any) -> None:
        """Queue one ``Settle``; schedules a flush if none is pending."""
        with self._lock:
            self._items.append(settle)
            if self._flush_pending:
                return
            self._flush_pending = True
        self._scheduler.call_later(self._delay, self._kick)

    def drain(self, *, flush: bool = False) -> list[Any]:
        """Everything queued so far, oldest first (called on the budget actor's thread).

        ``flush=True`` when handling ``FlushSettlements``: the next ``add`` schedules a new
        flush. A drain before another message leaves the scheduled flush in place (it may find
        nothing), so a busy actor does not schedule one timer per request.
        """
        with self._lock:
            if flush:
                self._flush_pending = False
            if not self._items:
                return []
            items = list(self._items)
            self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)

    def _kick(self) -> None:
        # Runs on the scheduler thread.
        ref = self.budget_ref
        if ref is None:
            return
        try:
            ref.tell(FlushSettlements())
        except pykka.ActorDeadError:
            pass  # stopping: on_stop drains what is left
