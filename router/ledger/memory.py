"""An in-process ledger: dictionaries, gone when the process exits (tests, throwaway runs)."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from router.budget import REQUEST_SCOPE, BudgetLimit
from router.ledger.base import (
    LedgerStore,
    Refusal,
    UsageRecord,
    check_amount,
    check_expiry,
    from_units,
    stored_keys,
    to_units,
)

__all__ = ["MemoryLedger"]


@dataclass(slots=True)
class _Reservation:
    amount: int
    keys: tuple[str, ...]
    expires_at: float


class MemoryLedger(LedgerStore):
    """A :class:`~router.ledger.base.LedgerStore` in memory.

    A lock makes each call atomic, so a status reader on another thread sees consistent totals
    while the budget actor writes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._records: dict[str, UsageRecord] = {}

    def __repr__(self) -> str:
        return f"MemoryLedger(records={len(self._records)}, reservations={len(self._reservations)})"

    def reserve(
        self,
        reservation_id: str,
        amount: float,
        limits: Sequence[BudgetLimit],
        *,
        keys: Sequence[str] = (),
        expires_at: float,
    ) -> Refusal | None:
        check_amount("reservation amount", amount)
        check_expiry(expires_at)
        units = to_units(amount)
        with self._lock:
            if reservation_id in self._reservations:
                raise ValueError(f"reservation {reservation_id!r} is already open")
            for lim in limits:
                if lim.scope == REQUEST_SCOPE:
                    spent = reserved = 0
                else:
                    spent = self._spent.get(lim.key, 0)
                    reserved = self._reserved.get(lim.key, 0)
                if spent + reserved + units > to_units(lim.limit):
                    return Refusal(lim, from_units(spent), from_units(reserved), amount)
            written = stored_keys(limits, keys)
            for key in written:
                self._reserved[key] = self._reserved.get(key, 0) + units
            self._reservations[reservation_id] = _Reservation(units, written, expires_at)
            return None

    def settle(
        self, reservation_id: str, record: UsageRecord, *, keys: Sequence[str] | None = None
    ) -> None:
        with self._lock:
            reservation = self._drop(reservation_id)
            if record.request_id in self._records:
                return
            spend_keys = reservation.keys if reservation is not None else tuple(keys or ())
            cost = to_units(record.cost)
            for key in dict.fromkeys(spend_keys):
                self._spent[key] = self._spent.get(key, 0) + cost
            self._records[record.request_id] = record

    def release(self, reservation_id: str) -> None:
        with self._lock:
            self._drop(reservation_id)

    def totals(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        with self._lock:
            return {
                key: (from_units(self._spent.get(key, 0)), from_units(self._reserved.get(key, 0)))
                for key in keys
            }

    def expire(self, now: float) -> int:
        with self._lock:
            due = [rid for rid, r in self._reservations.items() if r.expires_at <= now]
            for rid in due:
                self._drop(rid)
            return len(due)

    def records(self, *, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        with self._lock:
            ordered = sorted(self._records.values(), key=lambda r: r.timestamp)
        if since is not None:
            ordered = ordered[bisect.bisect_left([r.timestamp for r in ordered], since) :]
        if limit is not None:
            ordered = ordered[-limit:] if limit > 0 else []
        return ordered

    def record_count(self) -> int:
        with self._lock:
            return len(self._records)

    def close(self) -> None:
        pass  # nothing to release; the data lives as long as the object

    def _drop(self, reservation_id: str) -> _Reservation | None:
        reservation = self._reservations.pop(reservation_id, None)
        if reservation is not None:
            for key in reservation.keys:
                left = self._reserved[key] - reservation.amount
                if left:
                    self._reserved[key] = left
                else:
                    del self._reserved[key]
        return reservation
