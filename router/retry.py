"""The retry policy: a value object with pure backoff arithmetic.

The router is the only retry loop. A provider actor asks :meth:`RetryPolicy.next_delay` what to
do after a failed attempt and *schedules* the next attempt that many seconds later; nothing here
sleeps, and nothing here holds state between calls (the caller counts the retries it has done).

What is retried is decided by the error class (``RouterError.retryable``: 429, 5xx, 529,
connection errors, provider timeouts, unparseable 2xx bodies). A server's ``Retry-After`` is a
floor under the computed backoff, clamped to ``max_retry_after`` so a hostile or confused server
cannot park a request for an hour. A request that another candidate could serve is not parked
at all for a server-requested wait longer than ``failover_after``: it fails over at once.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Any

from router.errors import ConfigError, RouterError

__all__ = ["RetryStrategy", "RetryPolicy", "parse_retry_after"]

# 2**62 seconds is already far beyond any cap; bounding the exponent keeps the float finite.
_MAX_EXPONENT = 62
_SECONDS = re.compile(r"^\s*\d+(\.\d+)?\s*$")


class RetryStrategy(StrEnum):
    """How the pause grows between retries of the same provider."""

    EXPONENTIAL_BACKOFF = "exponential_backoff"
    LINEAR_BACKOFF = "linear_backoff"
    JITTERED_EXPONENTIAL = "jittered_exponential"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before trying the same provider again.

    Schedules, for retry number ``n`` (1 = the first retry), all capped at ``max_delay``:

    - ``exponential_backoff``: ``base_delay * 2**(n-1)`` (0.5, 1, 2, 4, ...)
    - ``linear_backoff``: ``base_delay * n`` (0.5, 1.0, 1.5, ...)
    - ``fixed``: ``base_delay``
    - ``jittered_exponential``: "full jitter", uniform in ``[0, min(max_delay,
      base_delay * 2**(n-1))]``. Full jitter spreads a herd of clients that failed together
      most evenly; a server ``Retry-After`` still acts as a floor.
    """

    strategy: RetryStrategy = RetryStrategy.EXPONENTIAL_BACKOFF
    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    failover_after: float = 1.0

    def __post_init__(self) -> None:
        try:
            strategy = RetryStrategy(self.strategy)
        except ValueError:
            raise ValueError(
                f"retry strategy {self.strategy!r} is unknown; expected one of "
                + ", ".join(s.value for s in RetryStrategy)
            ) from None
        # Frozen dataclass: coerce a plain string into the enum once, here.
        object.__setattr__(self, "strategy", strategy)
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ValueError(f"max_retries must be an integer, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("base_delay", "max_delay", "max_retry_after", "failover_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = first retry), ignoring Retry-After.

        ``rng`` is only used by the jittered strategy; pass a seeded ``random.Random`` for
        reproducible schedules (the module's shared generator is used otherwise).
        """
        if retry_number < 1:
            raise ValueError(f"retry_number starts at 1, got {retry_number}")
        exponential = self.base_delay * 2.0 ** min(retry_number - 1, _MAX_EXPONENT)
        if self.strategy is RetryStrategy.EXPONENTIAL_BACKOFF:
            delay = exponential
        elif self.strategy is RetryStrategy.LINEAR_BACKOFF:
            delay = self.base_delay * retry_number
        elif self.strategy is RetryStrategy.FIXED:
            delay = self.base_delay
        else:
            ceiling = min(self.max_delay, exponential)
            return (rng or random).uniform(0.0, ceiling)
        return min(self.max_delay, delay)

    def next_delay(
        self,
        error: BaseException,
        retries_done: int,
        rng: random.Random | None = None,
        *,
        alternative: bool = False,
    ) -> float | None:
        """Seconds until the next attempt on the same provider, or ``None`` to stop retrying.

        ``None`` when the error is not a retryable :class:`RouterError` (anything else is a bug
        or a caller mistake, never worth repeating) or ``retries_done >= max_retries``, and,
        when another candidate could take the request (``alternative``), when the server asked
        for a wait longer than ``failover_after``. Otherwise the backoff for retry
        ``retries_done + 1``, raised to the error's ``retry_after`` (clamped to
        ``max_retry_after``) when the server sent one.
        """
        if not isinstance(error, RouterError) or not error.retryable:
            return None
        if retries_done >= self.max_retries:
            return None
        delay = self.backoff(retries_done + 1, rng)
        floor = self.server_wait(error)
        if floor is not None:
            if alternative and floor > self.failover_after:
                return None
            delay = max(delay, floor)
        return delay

    def server_wait(self, error: BaseException) -> float | None:
        """The wait the server asked for (``retry_after``), clamped to ``max_retry_after``;
        ``None`` when it asked for none."""
        floor = getattr(error, "retry_after", None)
        if floor is None or not math.isfinite(floor) or floor <= 0:
            return None
        return min(floor, self.max_retry_after)

    @classmethod
    def from_settings(cls, settings: Any, max_retries: int) -> RetryPolicy:
        """Build from the config's retry settings (``.strategy``, ``.base_delay``,
        ``.max_delay``, ``.max_retry_after``, ``.failover_after``) and the provider's
        ``max_retries``."""
        try:
            return cls(
                strategy=getattr(settings.strategy, "value", settings.strategy),
                max_retries=max_retries,
                base_delay=settings.base_delay,
                max_delay=settings.max_delay,
                max_retry_after=settings.max_retry_after,
                failover_after=getattr(settings, "failover_after", 1.0),
            )
        except ValueError as exc:
            raise ConfigError(f"retry: {exc}") from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value.

    Accepts delay-seconds (``"3"``, and ``"1.5"`` which some servers send) or an HTTP date,
    which becomes the seconds from ``now`` (unix time; the current time by default) to that
    date, never negative. Anything else (empty, negative, garbage) gives ``None``: a header we
    cannot read is no reason to fail the request, only no floor for its backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS.match(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; a "-0000" zone parses as naive.
        when = when.replace(tzinfo=UTC)
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)
