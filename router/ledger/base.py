"""The ledger interface: usage records, refusals and the store protocol.

A store keeps, per key, two totals, *spent* and *reserved*, plus open reservations and the
usage records. The budget actor is the only writer inside a process; several processes may share
one store (an SQLite file, Redis), so every operation is one atomic step in the store.

Money: the interface speaks float dollars, the stores count integer nano-dollars
(:data:`MONEY_SCALE`). Sums are then exact, a reservation released returns the reserved total
to exactly zero, and the limit check ``spent + reserved + amount > limit`` has no float drift;
rounding each amount to 1e-9 dollars is the only (documented) tolerance. Redis ``INCRBY`` works
on the same integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, runtime_checkable

from router.budget import REQUEST_SCOPE, BudgetLimit
from router.errors import BudgetExceededError

__all__ = [
    "MONEY_SCALE",
    "OUTCOMES",
    "UsageRecord",
    "Refusal",
    "LedgerStore",
    "to_units",
    "from_units",
    "unique_keys",
    "stored_keys",
    "check_amount",
    "check_expiry",
]

#: Stores count money in units of 1e-9 dollars.
MONEY_SCALE = 1_000_000_000
#: Valid ``UsageRecord.outcome`` values: ``partial`` is a stream cut or abandoned, billed for the
#: tokens seen.
OUTCOMES = ("success", "partial", "error")


def to_units(amount: float) -> int:
    """Dollars to integer nano-dollars."""
    return round(amount * MONEY_SCALE)


def from_units(units: int) -> float:
    """Integer nano-dollars to dollars."""
    return units / MONEY_SCALE


def check_amount(name: str, amount: float) -> None:
    """Reject negative, NaN or infinite money amounts with a message naming them."""
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        raise ValueError(f"{name} must be a finite number, got {amount!r}")
    if amount < 0:
        raise ValueError(f"{name} must be >= 0, got {amount!r}")


def check_expiry(expires_at: float) -> None:
    """Reject an expiry that is not a finite number (it would hold budget forever)."""
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not math.isfinite(expires_at)
    ):
        raise ValueError(f"reservation expires_at must be a finite unix time, got {expires_at!r}")


def _money(amount: float) -> str:
    return "$" + f"{amount:.6f}".rstrip("0").rstrip(".")


def unique_keys(*groups: Sequence[str]) -> tuple[str, ...]:
    """Concatenate key lists without duplicates, keeping first-seen order."""
    return tuple(dict.fromkeys(k for group in groups for k in group))


def stored_keys(limits: Sequence[BudgetLimit], keys: Sequence[str]) -> tuple[str, ...]:
    """The keys a reservation writes: every non-request limit's key, then the extra keys."""
    return unique_keys([lim.key for lim in limits if lim.scope != REQUEST_SCOPE], keys)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One settled attempt: who served it, the tokens and what it cost. No prompt or response.

    ``request_id`` is the ledger's idempotency key: settling a record whose id is already
    stored never counts or appends it twice, so every billed attempt needs its own id.
    ``day``/``month`` are the budget periods the cost was booked in.
    """

    request_id: str
    timestamp: float
    provider: str
    provider_type: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost: float
    outcome: str
    provider_request_id: str | None = None
    day: str = ""
    month: str = ""

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("UsageRecord.request_id must not be empty")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"UsageRecord.outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        check_amount("UsageRecord.cost", self.cost)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``router budget --json``, the Redis store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was refused: the first limit it would exceed and the numbers."""

    limit: BudgetLimit
    spent: float
    reserved: float
    estimate: float

    def to_error(self, *, provider: str | None = None) -> BudgetExceededError:
        """The :class:`BudgetExceededError` a caller sees for this refusal."""
        lim = self.limit
        where = f" for provider {lim.provider}" if lim.provider else ""
        period = "" if lim.scope == REQUEST_SCOPE else f" in {lim.period}"
        return BudgetExceededError(
            f"budget {lim.budget!r} ({lim.scope}{where}{period}): limit {_money(lim.limit)}, "
            f"spent {_money(self.spent)}, reserved {_money(self.reserved)}, "
            f"this request up to {_money(self.estimate)}",
            budget=lim.budget,
            limit=lim.limit,
            spent=self.spent,
            estimate=self.estimate,
            provider=provider,
        )


@runtime_checkable
class LedgerStore(Protocol):
    """Where spend, reservations and usage records live.

    Every method is atomic in the store. One writer thread per process (the budget actor);
    several processes may share the store. Limits with scope ``"request"`` are checked against
    the amount alone and never stored.
    """

    def reserve(
        self,
        reservation_id: str,
        amount: float,
        limits: Sequence[BudgetLimit],
        *,
        keys: Sequence[str] = (),
        expires_at: float,
    ) -> Refusal | None:
        """Hold ``amount`` on every limit key and extra key, or refuse without writing.

        Refuses with the first limit where ``spent + reserved + amount > limit``. Reserving an
        id that is already open raises ``ValueError``.
        """
        ...

    def settle(
        self, reservation_id: str, record: UsageRecord, *, keys: Sequence[str] | None = None
    ) -> None:
        """Turn a reservation into spend: drop its hold and add ``record.cost`` to spent on its
        keys, and append the record.

        Idempotent by ``record.request_id``: if that record is already stored, only the
        reservation (if still open) is released. If the reservation is unknown (expired and
        released meanwhile), the cost is added to the fallback ``keys`` (none when omitted) so
        real spend is never lost; the record is appended either way. ``keys`` is ignored when
        the reservation is known.
        """
        ...

    def settle_many(
        self, settlements: Sequence[tuple[str, UsageRecord, Sequence[str] | None]]
    ) -> None:
        """``settle(reservation_id, record, keys=keys)`` for each item, oldest first.

        A store may apply them in one transaction (SQLite does: one commit for a batch
        instead of one per record); the result is the same as settling them one by one.
        """
        for reservation_id, record, keys in settlements:
            self.settle(reservation_id, record, keys=keys)

    def release(self, reservation_id: str) -> None:
        """Drop a reservation without spending; unknown ids are ignored (idempotent)."""
        ...

    def totals(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        """``key -> (spent, reserved)`` in dollars; absent keys give ``(0.0, 0.0)``."""
        ...

    def expire(self, now: float) -> int:
        """Release reservations with ``expires_at <= now``; return how many."""
        ...

    def records(self, *, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        """Usage records with ``timestamp >= since``, oldest first; with ``limit``, only the
        newest ``limit`` of them (still oldest first)."""
        ...

    def record_count(self) -> int:
        """How many usage records are stored."""
        ...

    def close(self) -> None:
        """Release the store's resources; idempotent."""
        ...
