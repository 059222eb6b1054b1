"""Budget arithmetic: which limits apply, the periods they count in, alerts, worst-case cost.

Pure functions and small values; the budget actor owns the state and the ledger stores totals.

Every limit is identified by a ledger *key* that contains its period (``2026-11-25`` or
``2026-11``), so a new day or month starts from zero without any reset job, and old periods
stay readable. Periods are calendar days and months in the configured time zone (UTC by
default).

Keys (opaque to the ledger, documented for operators reading a store):

- ``budget:<budget>:day:<YYYY-MM-DD>`` and ``budget:<budget>:month:<YYYY-MM>``
- ``budget:<budget>:<day|month>:<period>:provider:<p>`` where ``<p>`` is the ``provider_limits``
  key that matched: an instance name, or a provider type shared by every instance of that type
  that has no limit of its own.
- ``spend:day:<day>``, ``spend:month:<month>`` and the same with ``:provider:<name>``: always
  accounted, without a limit, so status can show spend even with no budget configured.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "BudgetLimit",
    "Periods",
    "periods_at",
    "resolve_tz",
    "applicable_limits",
    "request_limits",
    "tracking_keys",
    "BudgetAlert",
    "AlertTracker",
    "worst_case_cost",
    "provider_limit_period",
    "REQUEST_SCOPE",
]

#: Scope of a per-request cap (``AIRequest.budget_limit``, ``max_cost_per_request``): checked
#: against the estimate alone, never accumulated in a store.
REQUEST_SCOPE = "request"

# Thresholds are compared with a tolerance so that spend landing exactly on 80 % (after float
# arithmetic such as 0.1 + 0.7) still fires the 80 % alert.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """One limit that applies to a request: a budget's daily/monthly/per-provider cap."""

    budget: str
    scope: str
    period: str
    key: str
    limit: float
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Periods:
    """The calendar day (``YYYY-MM-DD``) and month (``YYYY-MM``) a moment falls in."""

    day: str
    month: str


def resolve_tz(tz: tzinfo | str | None) -> tzinfo:
    """A ``tzinfo`` from a zone name (``"Europe/Berlin"``), ``None``/``"UTC"`` meaning UTC."""
    if tz is None or (isinstance(tz, str) and tz.upper() in ("UTC", "Z")):
        # No tz database needed for the default.
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {tz!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from exc


def periods_at(now: float, tz: tzinfo | str = "UTC") -> Periods:
    """The budget periods for unix time ``now`` in time zone ``tz``."""
    moment = datetime.fromtimestamp(now, resolve_tz(tz))
    return Periods(day=moment.strftime("%Y-%m-%d"), month=moment.strftime("%Y-%m"))


def _key_text(value: Any) -> str:
    # Config keys may arrive as enums (ProviderType) or strings.
    return str(getattr(value, "value", value))


def applicable_limits(
    budgets: Iterable[Any],
    *,
    provider_name: str,
    provider_type: Any,
    periods: Periods,
) -> list[BudgetLimit]:
    """Every limit a request on provider instance ``provider_name`` counts against.

    ``budgets`` are the config's budget objects (``.name``, ``.daily_limit``,
    ``.monthly_limit``, ``.provider_limits``, ``.enabled``); disabled ones are skipped. A
    provider limit counts in the period :func:`provider_limit_period` gives. It is looked up by
    instance name first, then by provider type.
    """
    type_key = _key_text(provider_type)
    out: list[BudgetLimit] = []
    for budget in budgets:
        if not getattr(budget, "enabled", True):
            continue
        name = budget.name
        daily = getattr(budget, "daily_limit", None)
        monthly = getattr(budget, "monthly_limit", None)
        if daily is not None:
            out.append(
                BudgetLimit(
                    name, "daily", periods.day, f"budget:{name}:day:{periods.day}", float(daily)
                )
            )
        if monthly is not None:
            out.append(
                BudgetLimit(
                    name,
                    "monthly",
                    periods.month,
                    f"budget:{name}:month:{periods.month}",
                    float(monthly),
                )
            )
        provider_limits = {
            _key_text(k): v for k, v in (getattr(budget, "provider_limits", None) or {}).items()
        }
        matched = provider_name if provider_name in provider_limits else type_key
        if matched not in provider_limits or provider_limits[matched] is None:
            continue
        if provider_limit_period(daily, monthly) == "daily":
            scope, unit, period = "provider_daily", "day", periods.day
        else:
            scope, unit, period = "provider_monthly", "month", periods.month
        out.append(
            BudgetLimit(
                name,
                scope,
                period,
                f"budget:{name}:{unit}:{period}:provider:{matched}",
                float(provider_limits[matched]),
                provider=matched,
            )
        )
    return out


def provider_limit_period(
    daily_limit: float | None, monthly_limit: float | None
) -> Literal["daily", "monthly"]:
    """The period a budget's ``provider_limits`` count in.

    Daily only when the budget has a ``daily_limit`` and no ``monthly_limit``; otherwise
    monthly, including a budget of provider limits alone (providers bill, and cap spend, by
    the month).
    """
    return "daily" if daily_limit is not None and monthly_limit is None else "monthly"


def request_limits(
    *, budget_limit: float | None = None, max_cost_per_request: float | None = None
) -> list[BudgetLimit]:
    """Per-request caps as limits with scope ``"request"`` (checked against the estimate only;
    the ledger stores nothing under their keys)."""
    out = []
    if budget_limit is not None:
        out.append(
            BudgetLimit(
                "request budget_limit",
                REQUEST_SCOPE,
                REQUEST_SCOPE,
                "request:budget_limit",
                float(budget_limit),
            )
        )
    if max_cost_per_request is not None:
        out.append(
            BudgetLimit(
                "selection max_cost_per_request",
                REQUEST_SCOPE,
                REQUEST_SCOPE,
                "request:max_cost_per_request",
                float(max_cost_per_request),
            )
        )
    return out


def tracking_keys(*, provider_name: str, periods: Periods) -> list[str]:
    """Keys always accounted (no limit) so status can show spend per period and provider."""
    return [
        f"spend:day:{periods.day}",
        f"spend:month:{periods.month}",
        f"spend:day:{periods.day}:provider:{provider_name}",
        f"spend:month:{periods.month}:provider:{provider_name}",
    ]


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """Spend on one budget limit crossed one alert threshold in one period."""

    budget_name: str
    threshold: float
    percentage: float
    spent: float
    limit: float
    period: str
    scope: str
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the shape ``get_budget_alerts()`` returns)."""
        return asdict(self)


class AlertTracker:
    """Decides which alert thresholds have newly been crossed.

    Fires once per threshold per limit key; the key contains the period, so the same
    threshold fires again in the next day or month. Thresholds are fractions of the limit
    (``0.8`` = 80 %), taken per budget name. At start-up, :meth:`prime` the tracker with the
    spend already in the ledger so thresholds crossed earlier in the current period are listed
    but not delivered again.
    """

    def __init__(
        self, thresholds_by_budget: Mapping[str, Sequence[float]], *, history: int = 1000
    ) -> None:
        self._thresholds: dict[str, tuple[float, ...]] = {}
        for name, thresholds in thresholds_by_budget.items():
            for t in thresholds:
                if not isinstance(t, int | float) or not 0 < t <= 1:
                    raise ValueError(
                        f"budget {name!r}: alert threshold {t!r} must be a fraction in (0, 1]"
                    )
            self._thresholds[name] = tuple(sorted(set(float(t) for t in thresholds)))
        self._fired: set[tuple[str, float]] = set()
        self._history: deque[BudgetAlert] = deque(maxlen=history)

    def set_thresholds(self, budget: str, thresholds: Sequence[float]) -> None:
        """Replace a budget's thresholds (a budget changed at run time)."""
        self._thresholds[budget] = tuple(sorted(set(float(t) for t in thresholds)))

    def check(self, limit: BudgetLimit, spent: float) -> list[BudgetAlert]:
        """Alerts newly crossed by ``spent`` on ``limit`` (lowest threshold first)."""
        fresh = self._crossed(limit, spent)
        self._history.extend(fresh)
        return fresh

    def prime(self, limit: BudgetLimit, spent: float) -> None:
        """Record thresholds already crossed (listed by :meth:`alerts`, not returned)."""
        self._history.extend(self._crossed(limit, spent))

    def alerts(self) -> list[BudgetAlert]:
        """Every alert fired so far (this and past periods, bounded history), newest last."""
        return list(self._history)

    def _crossed(self, limit: BudgetLimit, spent: float) -> list[BudgetAlert]:
        # A zero limit blocks everything; alerting "100 % of $0" on every check helps nobody.
        if limit.scope == REQUEST_SCOPE or limit.limit <= 0 or not math.isfinite(spent):
            return []
        fresh = []
        for threshold in self._thresholds.get(limit.budget, ()):
            if spent + _EPSILON < threshold * limit.limit:
                break
            mark = (limit.key, threshold)
            if mark in self._fired:
                continue
            self._fired.add(mark)
            fresh.append(
                BudgetAlert(
                    budget_name=limit.budget,
                    threshold=threshold,
                    percentage=spent / limit.limit * 100.0,
                    spent=spent,
                    limit=limit.limit,
                    period=limit.period,
                    scope=limit.scope,
                    provider=limit.provider,
                )
            )
        return fresh


def worst_case_cost(
    input_tokens: int, max_output_tokens: int, input_price: float, output_price: float
) -> float:
    """The most a request can cost, in dollars; prices are per million tokens."""
    for name, value in (
        ("input_tokens", input_tokens),
        ("max_output_tokens", max_output_tokens),
        ("input_price", input_price),
        ("output_price", output_price),
    ):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return (input_tokens * input_price + max_output_tokens * output_price) / 1_000_000
