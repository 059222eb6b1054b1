"""The circuit breaker: a per-provider state machine with an injected clock.

closed --(failure_threshold consecutive failures)--> open
open --(recovery_timeout elapsed, next allow_request)--> half-open, exactly one trial admitted
half-open --(the trial succeeds)--> closed
half-open --(the trial fails)--> open with a fresh timer
half-open --(the trial ends without a verdict: released)--> half-open, the next request is the trial

``allow_request`` hands out a :class:`Permit` (or ``None``: refused). The caller gives the same
permit back with the attempt's result: ``record_success``, ``record_failure`` or ``release``
(no verdict: cancelled, a caller error, refused by a budget, a deadline). A trial's permit is
a fresh object, so the breaker knows *which* attempt is the trial: **only the trial's own
result ends the trial**. Results from stragglers (attempts admitted before the breaker opened,
or a trial of an earlier period) never decide a transition: a late success while open or
half-open does not close (the failures that opened it are more recent evidence), and a late
failure is counted but neither re-opens nor pushes the timer back. Releasing a straggler's
permit is a no-op, so a cancelled straggler cannot free the trial slot (issue 12).

Only provider-side failures should be recorded (``RouterError.trips_breaker``); a caller's 400
says nothing about the provider's health. The breaker holds no lock and does no I/O: its owning
provider actor is the only caller. It never reads the wall clock itself, so tests drive it with
a fake clock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

__all__ = ["CircuitState", "CircuitBreaker", "Permit", "REGULAR"]

logger = logging.getLogger(__name__)


class CircuitState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Permit:
    """What :meth:`CircuitBreaker.allow_request` hands out; given back with the result.

    Compared by identity: every half-open trial gets a new one, so a result carrying any
    other permit (a straggler's) cannot end the trial.
    """

    __slots__ = ("trial",)

    def __init__(self, trial: bool) -> None:
        self.trial = trial

    def __repr__(self) -> str:
        return "Permit(trial)" if self.trial else "Permit(regular)"


#: The permit of every request admitted while closed (shared: nothing to tell them apart).
REGULAR = Permit(trial=False)


class _Closed:
    """Requests flow; consecutive failures are counted."""

    state = CircuitState.CLOSED

    def allow(self, breaker: CircuitBreaker) -> Permit | None:
        return REGULAR

    def on_success(self, breaker: CircuitBreaker, permit: Permit) -> None:
        breaker._failures = 0

    def on_failure(self, breaker: CircuitBreaker, permit: Permit) -> None:
        breaker._failures += 1
        if breaker._failures >= breaker.failure_threshold:
            breaker._enter(_Open(breaker._clock()))

    def release(self, permit: Permit) -> None:
        pass


class _Open:
    """Requests are rejected until the recovery timeout has elapsed."""

    state = CircuitState.OPEN

    def __init__(self, opened_at: float, retry_at: float | None = None) -> None:
        self.opened_at = opened_at
        self._retry_at = retry_at  # set when another process decided the timer (hold_open)

    def retry_at(self, breaker: CircuitBreaker) -> float:
        if self._retry_at is not None:
            return self._retry_at
        return self.opened_at + breaker.recovery_timeout

    def allow(self, breaker: CircuitBreaker) -> Permit | None:
        if breaker._clock() < self.retry_at(breaker):
            return None
        half_open = _HalfOpen()
        breaker._enter(half_open)
        return half_open.allow(breaker)

    def on_success(self, breaker: CircuitBreaker, permit: Permit) -> None:
        pass  # a straggler admitted before the breaker opened; see the module docstring

    def on_failure(self, breaker: CircuitBreaker, permit: Permit) -> None:
        breaker._failures += 1

    def release(self, permit: Permit) -> None:
        pass


class _HalfOpen:
    """One trial request at a time decides between closing and re-opening."""

    state = CircuitState.HALF_OPEN

    def __init__(self) -> None:
        self.trial: Permit | None = None  # the permit of the trial in flight

    def allow(self, breaker: CircuitBreaker) -> Permit | None:
        if self.trial is not None:
            return None
        self.trial = Permit(trial=True)
        return self.trial

    def on_success(self, breaker: CircuitBreaker, permit: Permit) -> None:
        if permit is self.trial:
            breaker._failures = 0
            breaker._enter(_Closed())

    def on_failure(self, breaker: CircuitBreaker, permit: Permit) -> None:
        breaker._failures += 1
        if permit is self.trial:
            breaker._enter(_Open(breaker._clock()))

    def release(self, permit: Permit) -> None:
        if permit is self.trial:
            self.trial = None


class CircuitBreaker:
    """Per-provider circuit breaker (no threads, no lock, injected clock).

    ``on_change(old, new)`` is called after every transition; an exception it raises is logged,
    never propagated, so a faulty listener cannot wedge the breaker.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise ValueError(f"failure_threshold must be an integer, got {failure_threshold!r}")
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not math.isfinite(recovery_timeout) or recovery_timeout < 0:
            raise ValueError(
                f"recovery_timeout must be a finite number >= 0, got {recovery_timeout!r}"
            )
        self.failure_threshold = failure_threshold
        self.recovery_timeout = float(recovery_timeout)
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._state: _Closed | _Open | _HalfOpen = _Closed()

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state.value}, "
            f"consecutive_failures={self._failures}, threshold={self.failure_threshold})"
        )

    @property
    def state(self) -> CircuitState:
        """The current state; an open breaker whose timeout has elapsed reports ``HALF_OPEN``
        (ready for a trial) even before the next :meth:`allow_request` moves it there."""
        current = self._state
        if isinstance(current, _Open) and self._clock() >= current.retry_at(self):
            return CircuitState.HALF_OPEN
        return current.state

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded since the last success (or reset)."""
        return self._failures

    def allow_request(self) -> Permit | None:
        """May a request be sent now? A permit to give back with its result, or ``None``.

        Closed: always :data:`REGULAR`. Half-open: a new trial permit exactly once per trial
        (until that trial's result or release), ``None`` otherwise.
        """
        return self._state.allow(self)

    def record_success(self, permit: Permit = REGULAR) -> None:
        """A request succeeded: reset the count; the half-open trial's success closes."""
        self._state.on_success(self, permit)

    def record_failure(self, permit: Permit = REGULAR) -> None:
        """A provider-side failure: count it; the threshold opens the breaker, and the
        half-open trial's failure re-opens it with a fresh recovery timer."""
        self._state.on_failure(self, permit)

    def release(self, permit: Permit) -> None:
        """The request holding ``permit`` ended without a verdict (cancelled, a caller error,
        refused by a budget, its deadline). If it was the half-open trial, the next request may
        be the trial; any other permit changes nothing."""
        self._state.release(permit)

    @property
    def trial_in_flight(self) -> bool:
        """A half-open trial admitted here has been admitted and has not reported back yet."""
        current = self._state
        return isinstance(current, _HalfOpen) and current.trial is not None

    def hold_open(self, retry_at: float) -> None:
        """Be open until ``retry_at`` (clock time) without counting a failure: the circuit was
        opened, or its trial taken, elsewhere (another process sharing the circuit). Replaces
        any local timer and ends a local half-open state."""
        self._enter(_Open(self._clock(), retry_at))

    def reset(self) -> None:
        """Close the breaker and forget failures (e.g. after the provider was reconfigured)."""
        self._failures = 0
        if not isinstance(self._state, _Closed):
            self._enter(_Closed())

    def retry_at(self) -> float | None:
        """Clock time at which the breaker admits a trial; ``None`` when closed, or while a
        half-open trial is in flight (then no time is known). A half-open breaker without a
        trial in flight admits one now."""
        current = self._state
        if isinstance(current, _Open):
            return current.retry_at(self)
        if isinstance(current, _HalfOpen) and current.trial is None:
            return self._clock()
        return None

    def snapshot(self) -> dict[str, Any]:
        """``{"state": str, "consecutive_failures": int, "retry_in": seconds | None}``."""
        at = self.retry_at()
        return {
            "state": self.state.value,
            "consecutive_failures": self._failures,
            "retry_in": None if at is None else max(0.0, at - self._clock()),
        }

    def _enter(self, new: _Closed | _Open | _HalfOpen) -> None:
        old = self._state.state
        self._state = new
        if self._on_change is not None and old is not new.state:
            try:
                self._on_change(old, new.state)
            except Exception:
                logger.exception("circuit breaker on_change listener failed")
