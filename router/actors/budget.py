"""BudgetActor: the single writer of cost accounting in this process.

Messages:
  Reserve             reserve the worst case on every applicable limit; forward the attempt to
                      the provider, or tell the supervisor the candidate was refused
  Settle              the real cost of a finished attempt (moves reserved to spent, appends the
                      usage record, fires alerts)
  Release             drop a reservation (failure, cancellation, failover)
  ExpireReservations  release reservations whose holder died (shared ledgers)
Asks (for status output): "status", "alerts", "records".

The ledger store does the arithmetic atomically (so several processes sharing a store never
overspend together); this actor decides which limits apply and orders the calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pykka

from router.actors.base import RouterActor
from router.actors.deferred import DeferredMessages
from router.actors.messages import (
    ExpireReservations,
    Release,
    ReservationRefused,
    Reserve,
    Settle,
)
from router.actors.writeahead import replay_orphans
from router.budget import (
    AlertTracker,
    BudgetAlert,
    BudgetLimit,
    Periods,
    applicable_limits,
    periods_at,
    tracking_keys,
)
from router.errors import BudgetExceededError, ConfigError, LedgerUnavailableError
from router.ledger.base import LedgerStore, UsageRecord

logger = logging.getLogger(__name__)

__all__ = ["BudgetActor"]


class BudgetActor(RouterActor):
    def __init__(
        self,
        budgets: Sequence[Any],
        store: LedgerStore,
        *,
        timezone: str = "UTC",
        reservation_ttl: float = 600.0,
        provider_types: dict[str, str] | None = None,
        alert_callbacks: list[Callable[[BudgetAlert], Any]] | None = None,
        clock: Callable[[], float] = time.time,
        settlements: DeferredMessages | None = None,
        pending_dir: Any = None,
    ) -> None:
        super().__init__()
        # Settles that workers queue instead of telling them (see router.actors.deferred);
        # RouterActor handles them before any other message.
        self.deferred = settlements
        self.pending_dir = pending_dir  # write-ahead files of dead processes to replay (Path)
        self.budgets = list(budgets)  # disabled ones are skipped by applicable_limits
        self.store = store
        self.tz = ZoneInfo(timezone)
        self.ttl = reservation_ttl
        self.provider_types = dict(provider_types or {})
        self.callbacks = alert_callbacks if alert_callbacks is not None else []
        self.clock = clock
        self.alerts = AlertTracker({b.name: b.alert_thresholds for b in self.budgets})
        self._reservations: dict[str, tuple[list[BudgetLimit], list[str]]] = {}
        self._periods: tuple[int, Periods] | None = None

    def on_start(self) -> None:
        if self.pending_dir is not None:
            # Records a killed process answered but had not stored yet (router.actors.writeahead).
            try:
                replay_orphans(self.pending_dir, lambda r: self._on_settle(Settle(None, r)))
            except LedgerUnavailableError as error:
                logger.error("write-ahead records not replayed yet: %s", error)
        # Thresholds already crossed this period are listed but not delivered again.
        periods = self._now_periods()
        try:
            for name, kind in self.provider_types.items():
                for limit in applicable_limits(
                    self.budgets, provider_name=name, provider_type=kind, periods=periods
                ):
                    spent, _ = self.store.totals([limit.key])[limit.key]
                    self.alerts.prime(limit, spent)
        except LedgerUnavailableError as error:
            # Start anyway: reservations fail closed (or open) until the ledger returns.
            logger.error("budget alerts not primed: %s", error)

    def on_stop(self) -> None:
        self.drain_deferred()  # the last settlements land before the store closes
        if self.deferred is not None:
            self.deferred.close()
        # The budget actor stops last: nothing in this process can settle what is still
        # reserved (a retry or rate-limit wait whose timer died with the scheduler). Release
        # it now rather than hold a shared ledger's budget until the reservations expire.
        for rid in list(self._reservations):
            try:
                self.store.release(rid)
            except LedgerUnavailableError as error:
                logger.error("reservation %s not released at stop: %s", rid, error)
                break
        self._reservations.clear()
        self.store.close()

    def handle(self, message: Any) -> Any:
        if isinstance(message, Reserve):
            self._on_reserve(message)
        elif isinstance(message, Settle | Release | ExpireReservations):
            # Told, not asked: an exception here would kill the actor. A store that can keep
            # a write for later (the Redis journal) does so without raising.
            try:
                self._on_write(message)
            except LedgerUnavailableError as error:
                logger.error("ledger write failed (%s): %s", type(message).__name__, error)
        elif isinstance(message, tuple) and message and message[0] == "update_budget":
            return self._update_budget(message[1], message[2])
        elif message == "status":
            return self.status()
        elif message == "alerts":
            return [a.to_dict() for a in self.alerts.alerts()]
        elif isinstance(message, tuple) and message and message[0] == "records":
            return self.store.records(since=message[1], limit=message[2])
        return None

    # --- periods and keys --------------------------------------------------------------------

    def _now_periods(self) -> Periods:
        now = self.clock()
        second = int(now)
        if self._periods is None or self._periods[0] != second:
            self._periods = (second, periods_at(now, self.tz))
        return self._periods[1]

    def _limits_and_keys(
        self, provider: str, periods: Periods
    ) -> tuple[list[BudgetLimit], list[str]]:
        kind = self.provider_types.get(provider, provider)
        limits = applicable_limits(
            self.budgets, provider_name=provider, provider_type=kind, periods=periods
        )
        keys = tracking_keys(provider_name=provider, periods=periods)
        return limits, keys

    # --- messages ----------------------------------------------------------------------------

    def _on_write(self, message: Settle | Release | ExpireReservations) -> None:
        if isinstance(message, Settle):
            self._on_settle(message)
        elif isinstance(message, Release):
            self._reservations.pop(message.reservation_id, None)
            self.store.release(message.reservation_id)
        else:
            count = self.store.expire(self.clock())
            if count:
                logger.warning("released %d expired budget reservation(s)", count)

    def _on_reserve(self, message: Reserve) -> None:
        attempt = message.attempt
        candidate = attempt.candidate
        if attempt.job.done:
            return
        periods = self._now_periods()
        limits, keys = self._limits_and_keys(candidate.provider, periods)
        rid = attempt.reservation_id
        try:
            refusal = self.store.reserve(
                rid, message.amount, limits, keys=keys, expires_at=self.clock() + self.ttl
            )
        except LedgerUnavailableError as error:
            message.reply_to.tell(ReservationRefused(attempt.job, candidate, error))
            return
        if refusal is not None:
            limit = refusal.limit
            error = BudgetExceededError(
                f"budget '{limit.budget}' ({limit.scope} {limit.period}) would be exceeded: "
                f"limit ${limit.limit:.6f}, spent ${refusal.spent:.6f}, reserved "
                f"${refusal.reserved:.6f}, this request up to ${refusal.estimate:.6f}",
                budget=limit.budget,
                limit=limit.limit,
                spent=refusal.spent,
                estimate=refusal.estimate,
                provider=candidate.provider,
            )
            message.reply_to.tell(ReservationRefused(attempt.job, candidate, error))
            return
        self._reservations[rid] = (limits, keys)
        try:
            message.target.tell(attempt)
        except pykka.ActorDeadError:
            self.store.release(rid)
            self._reservations.pop(rid, None)

    def _on_settle(self, message: Settle) -> None:
        self._settle_all([message])

    def handle_deferred(self, batch: list[Any]) -> None:
        # Workers defer only Settles: applied together, in one store transaction.
        settles = [m for m in batch if isinstance(m, Settle)]
        if len(settles) < len(batch):
            super().handle_deferred([m for m in batch if not isinstance(m, Settle)])
        if settles:
            try:
                self._settle_all(settles)
            except LedgerUnavailableError as error:
                logger.error("ledger write failed (Settle x%d): %s", len(settles), error)
            except Exception:
                logger.exception("BudgetActor failed on %d Settle(s)", len(settles))

    def _settle_all(self, messages: list[Settle]) -> None:
        """Book each record (on its reservation's keys) and check the limits they touch."""
        items: list[tuple[str, UsageRecord, list[str]]] = []
        touched: dict[str, BudgetLimit] = {}
        for message in messages:
            record: UsageRecord = message.record
            periods = periods_at(record.timestamp, self.tz)
            record = _with_periods(record, periods)
            rid = message.reservation_id
            held = self._reservations.pop(rid, None) if rid else None
            if held is not None:
                # Keys are passed even for a known reservation: if the store expired it
                # meanwhile, the real cost still lands on the same limits (the store ignores
                # them otherwise).
                limits = held[0]
                keys = [limit.key for limit in limits] + held[1]
            else:
                limits, tracking = self._limits_and_keys(record.provider, periods)
                keys = [limit.key for limit in limits] + tracking
            items.append((rid or f"settle-{record.request_id}", record, keys))
            touched.update((limit.key, limit) for limit in limits)
        settle_many = getattr(self.store, "settle_many", None)
        if settle_many is not None and len(items) > 1:
            settle_many(items)
        else:
            for rid, record, keys in items:
                self.store.settle(rid, record, keys=keys)
        if not touched:
            return
        try:
            totals = self.store.totals(list(touched))
        except LedgerUnavailableError as error:
            # The settlement itself is safe (a shared store journals it); alerts wait for the
            # next settlement that can read the totals.
            logger.debug("budget alerts not checked: %s", error)
            return
        for key, limit in touched.items():
            for alert in self.alerts.check(limit, totals[key][0]):
                self._deliver(alert)

    def _deliver(self, alert: BudgetAlert) -> None:
        logger.warning(
            "budget alert: %s at %.1f%% of $%g (%s %s)",
            alert.budget_name,
            alert.percentage,
            alert.limit,
            alert.scope,
            alert.period,
        )
        for callback in list(self.callbacks):
            try:
                callback(alert)
            except Exception:
                logger.exception("budget alert callback failed")

    def _update_budget(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Replace one budget's limits or thresholds; spend and reservations are kept."""
        from pydantic import ValidationError

        from router.config import BudgetConfig

        index = next((i for i, b in enumerate(self.budgets) if b.name == name), None)
        if index is None:
            known = ", ".join(b.name for b in self.budgets) or "none"
            raise ConfigError(f"unknown budget '{name}' (configured: {known})")
        budget = self.budgets[index]
        try:
            updated = BudgetConfig.model_validate({**budget.model_dump(), **changes})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "budget"
            raise ConfigError(f"budget '{name}': {where}: {first['msg']}") from None
        self.budgets[index] = updated
        self.alerts.set_thresholds(name, updated.alert_thresholds)
        logger.info("budget %s changed: %s", name, ", ".join(sorted(changes)))
        return updated.model_dump(mode="json")

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        periods = self._now_periods()
        out: dict[str, Any] = {
            "budgets": [],
            "providers": {},
            "periods": {"day": periods.day, "month": periods.month},
        }
        seen: set[str] = set()
        for name, _kind in self.provider_types.items():
            limits, keys = self._limits_and_keys(name, periods)
            totals = self.store.totals(keys + [limit.key for limit in limits])
            day_key, month_key = keys[2], keys[3]
            out["providers"][name] = {
                "spent_today": totals[day_key][0],
                "spent_month": totals[month_key][0],
                "reserved": totals[month_key][1],
            }
            for limit in limits:
                if limit.key in seen:
                    continue
                seen.add(limit.key)
                spent, reserved = totals[limit.key]
                out["budgets"].append(
                    {
                        "budget": limit.budget,
                        "scope": limit.scope,
                        "period": limit.period,
                        "provider": limit.provider,
                        "limit": limit.limit,
                        "spent": spent,
                        "reserved": reserved,
                        "percentage": 100.0 * spent / limit.limit if limit.limit else 0.0,
                    }
                )
        overall = self.store.totals([f"spend:day:{periods.day}", f"spend:month:{periods.month}"])
        out["spent_today"], out["reserved_today"] = overall[f"spend:day:{periods.day}"]
        out["spent_month"], out["reserved"] = overall[f"spend:month:{periods.month}"]
        out["alerts"] = [a.to_dict() for a in self.alerts.alerts()]
        stats = getattr(self.store, "stats", None)
        if callable(stats):
            out["ledger"] = stats()  # e.g. Redis: reachable, fail-open grants, journal
        return out


def _with_periods(record: UsageRecord, periods: Periods) -> UsageRecord:
    if record.day and record.month:
        return record
    from dataclasses import replace

    return replace(record, day=periods.day, month=periods.month)
