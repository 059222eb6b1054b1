"""A single timer thread per manager: backoffs, deadlines and probes are scheduled, never slept.

Actors must not sleep, so anything that should happen later (a retry after a backoff, a request
deadline, a health probe) is a callback registered here. Callbacks run on the scheduler thread
and must be quick: they only ``tell`` an actor or resolve a future.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["Scheduler", "TimerHandle"]


class TimerHandle:
    """A scheduled callback; ``cancel()`` makes it a no-op (lazy deletion from the heap)."""

    __slots__ = ("when", "callback", "cancelled", "_scheduler")

    def __init__(
        self, when: float, callback: Callable[[], object], scheduler: Scheduler | None = None
    ) -> None:
        self.when = when
        self.callback: Callable[[], object] | None = callback
        self.cancelled = False
        self._scheduler = scheduler

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # Drop the callback now: a cancelled request deadline would otherwise keep its job
        # (request, response) alive in the heap until the deadline passes.
        self.callback = None
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler._cancelled += 1  # a hint for compaction (a lost update is harmless)


class Scheduler:
    """Runs callbacks at monotonic times on one daemon thread."""

    def __init__(self, name: str = "router-scheduler", clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._stopped = False
        # Heap size that triggers dropping cancelled entries (see call_at).
        self._compact_at = 1024
        self._cancelled = 0  # about how many heap entries are cancelled (TimerHandle.cancel)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def now(self) -> float:
        return self._clock()

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return self.call_at(self._clock() + max(0.0, delay), callback)

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(when, callback, self)
        with self._cond:
            if self._stopped:
                handle.cancelled = True
                return handle
            heapq.heappush(self._heap, (when, next(self._counter), handle))
            size = len(self._heap)
            if size >= self._compact_at or (self._cancelled > 64 and 2 * self._cancelled > size):
                # Nearly every request deadline is cancelled long before it is due, and a
                # live timer at the head (the reservation-expiry tick, a long backoff) keeps
                # the thread from popping the cancelled ones behind it: without this the heap
                # would grow with the request rate times the timeout. Amortised O(1): rebuild
                # once half the heap is cancelled, or when it has doubled since the last time.
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._compact_at = max(1024, 2 * len(self._heap))
                self._cancelled = 0
            # Only wake the thread when the new timer is the earliest one.
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    when, _, handle = self._heap[0]
                    if handle.cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                        continue
                    delay = when - self._clock()
                    if delay <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._cond.wait(delay)
                else:
                    return
            callback = handle.callback  # None if cancelled since it was popped
            if callback is None:
                continue
            try:
                callback()
            except Exception:  # a failing callback must not kill the timer thread
                logger.exception("scheduled callback failed")
