"""A client-side rpm/tpm window: the requests (and their input tokens) of the last minute.

Pure bookkeeping with an injected time, no threads. The provider actor keeps one for its own
process (the default), and the Redis fleet store keeps one per provider as its fallback while
Redis cannot be reached (then it is used from attempt threads, under :meth:`take`'s lock).
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["RateWindow", "WINDOW"]

#: Seconds a request counts against ``rpm``/``tpm``.
WINDOW = 60.0


class RateWindow:
    """``(time, tokens)`` of the requests admitted in the last :data:`WINDOW` seconds."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._entries: deque[tuple[float, int]] = deque()
        self._tokens = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        """Seconds until a request of ``tokens`` input tokens fits (0.0: it fits now)."""
        if not rpm and not tpm:
            return 0.0
        entries = self._entries
        while entries and entries[0][0] <= now - self.window:
            self._tokens -= entries.popleft()[1]
        if not entries:
            return 0.0
        if (rpm and len(entries) >= rpm) or (tpm and self._tokens + tokens > tpm):
            return entries[0][0] + self.window - now
        return 0.0

    def record(self, tokens: int, now: float) -> None:
        """Count an admitted request."""
        self._entries.append((now, tokens))
        self._tokens += tokens

    def take(self, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float:
        """:meth:`wait`, and :meth:`record` when it fits, in one step (thread-safe)."""
        with self._lock:
            wait = self.wait(rpm, tpm, tokens, now)
            if wait <= 0.0 and (rpm or tpm):
                self.record(tokens, now)
            return wait
