"""Budget arithmetic: applicable limits, periods in a time zone, alerts, worst-case cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from router.budget import (
    AlertTracker,
    BudgetLimit,
    Periods,
    applicable_limits,
    periods_at,
    request_limits,
    tracking_keys,
    worst_case_cost,
)
from router.ledger import MemoryLedger, UsageRecord
from router.models import ProviderType


@dataclass
class Budget:
    """Duck-typed stand-in for the config's BudgetConfig."""

    name: str
    daily_limit: float | None = None
    monthly_limit: float | None = None
    provider_limits: dict = field(default_factory=dict)
    alert_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.95])
    enabled: bool = True


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


NOV = Periods(day="2026-11-25", month="2026-11")


def limits_for(budgets, name="openai", ptype="openai", periods=NOV):
    return applicable_limits(budgets, provider_name=name, provider_type=ptype, periods=periods)


class TestApplicableLimits:
    def test_daily_and_monthly_limits(self):
        budgets = [
            Budget("Daily Budget", daily_limit=10),
            Budget("Monthly Budget", monthly_limit=300),
        ]
        assert limits_for(budgets) == [
            BudgetLimit(
                "Daily Budget", "daily", "2026-11-25", "budget:Daily Budget:day:2026-11-25", 10.0
            ),
            BudgetLimit(
                "Monthly Budget", "monthly", "2026-11", "budget:Monthly Budget:month:2026-11", 300.0
            ),
        ]

    def test_one_budget_with_both_limits_gives_two(self):
        scopes = [lim.scope for lim in limits_for([Budget("B", daily_limit=1, monthly_limit=20)])]
        assert scopes == ["daily", "monthly"]

    def test_disabled_budgets_are_skipped(self):
        budgets = [Budget("Off", daily_limit=1, enabled=False), Budget("On", monthly_limit=5)]
        assert [lim.budget for lim in limits_for(budgets)] == ["On"]

    def test_provider_limit_by_type_counts_in_the_budgets_month(self):
        budget = Budget(
            "Monthly Budget", monthly_limit=300, provider_limits={"openai": 100, "google": 50}
        )
        assert limits_for([budget], name="openai-eu", ptype=ProviderType.OPENAI)[-1] == BudgetLimit(
            "Monthly Budget",
            "provider_monthly",
            "2026-11",
            "budget:Monthly Budget:month:2026-11:provider:openai",
            100.0,
            provider="openai",
        )

    def test_provider_limit_by_instance_name_wins_over_its_type(self):
        budget = Budget("M", monthly_limit=300, provider_limits={"openai": 100, "openai-eu": 20})
        eu = limits_for([budget], name="openai-eu", ptype="openai")
        us = limits_for([budget], name="openai-us", ptype="openai")
        assert [(lim.limit, lim.provider) for lim in eu if lim.provider] == [(20.0, "openai-eu")]
        # An instance without its own limit shares the type's limit (and its key) with its peers.
        assert [(lim.limit, lim.key) for lim in us if lim.provider] == [
            (100.0, "budget:M:month:2026-11:provider:openai")
        ]

    def test_provider_limits_keyed_by_enum_are_understood(self):
        budget = Budget("M", monthly_limit=10, provider_limits={ProviderType.GOOGLE: 3})
        assert limits_for([budget], name="gemini", ptype="google")[-1].limit == 3.0

    def test_provider_limit_is_daily_when_the_budget_is_daily(self):
        budget = Budget("D", daily_limit=10, provider_limits={"anthropic": 4})
        lim = limits_for([budget], name="anthropic", ptype="anthropic")[-1]
        assert (lim.scope, lim.period, lim.key) == (
            "provider_daily",
            "2026-11-25",
            "budget:D:day:2026-11-25:provider:anthropic",
        )

    def test_provider_limit_is_monthly_when_the_budget_has_no_other_limit(self):
        budget = Budget("P", provider_limits={"anthropic": 4})
        assert [
            (lim.scope, lim.period) for lim in limits_for([budget], "anthropic", "anthropic")
        ] == [("provider_monthly", "2026-11")]

    def test_other_providers_limits_do_not_apply(self):
        budget = Budget("M", monthly_limit=300, provider_limits={"google": 50})
        assert [lim.scope for lim in limits_for([budget])] == ["monthly"]

    def test_no_budgets_no_limits(self):
        assert limits_for([]) == []

    def test_request_limits_are_request_scoped(self):
        lims = request_limits(budget_limit=0.5, max_cost_per_request=0.2)
        assert [(lim.scope, lim.limit) for lim in lims] == [("request", 0.5), ("request", 0.2)]
        assert request_limits() == []


class TestPeriods:
    def test_utc_default(self):
        assert periods_at(utc(2026, 11, 25, 23, 59, 59)) == Periods("2026-11-25", "2026-11")
        assert periods_at(utc(2026, 11, 26, 0, 0, 0)) == Periods("2026-11-26", "2026-11")

    def test_day_boundary_in_new_york(self):
        # 05:00 UTC is midnight EST.
        assert periods_at(utc(2026, 11, 26, 4, 59, 59), "America/New_York").day == "2026-11-25"
        assert periods_at(utc(2026, 11, 26, 5, 0, 0), "America/New_York").day == "2026-11-26"

    def test_month_boundary_in_new_york(self):
        # Already December in UTC, still November in New York.
        moment = utc(2026, 12, 1, 3, 0, 0)
        assert periods_at(moment) == Periods("2026-12-01", "2026-12")
        assert periods_at(moment, "America/New_York") == Periods("2026-11-30", "2026-11")
        assert periods_at(utc(2026, 12, 1, 5, 0, 0), "America/New_York") == Periods(
            "2026-12-01", "2026-12"
        )

    def test_day_boundary_follows_daylight_saving_time(self):
        # In July New York is UTC-4: midnight is 04:00 UTC.
        assert periods_at(utc(2026, 7, 1, 3, 59, 59), "America/New_York") == Periods(
            "2026-06-30", "2026-06"
        )
        assert periods_at(utc(2026, 7, 1, 4, 0, 0), "America/New_York") == Periods(
            "2026-07-01", "2026-07"
        )

    def test_unknown_zone_is_named(self):
        with pytest.raises(ValueError, match="Mars/Olympus"):
            periods_at(0, "Mars/Olympus")

    def test_roll_over_starts_the_new_period_from_zero(self):
        budget = Budget("Daily", daily_limit=1.0, monthly_limit=1.5)
        ledger = MemoryLedger()
        tz = "America/New_York"

        def spend(now: float, rid: str) -> object:
            periods = periods_at(now, tz)
            limits = limits_for([budget], periods=periods)
            refusal = ledger.reserve(rid, 0.6, limits, expires_at=now + 60)
            if refusal is None:
                record = UsageRecord(rid, now, "openai", "openai", "m", 1, 1, 0, 0.6, "success")
                ledger.settle(rid, record)
            return refusal

        late_evening = utc(2026, 11, 26, 4, 30)  # 23:30 on the 25th in New York
        assert spend(late_evening, "a") is None
        refusal = spend(late_evening + 60, "b")
        assert refusal is not None and refusal.limit.scope == "daily"
        assert (refusal.spent, refusal.limit.period) == (0.6, "2026-11-25")
        # Midnight in New York: a fresh day, but the month still counts both days.
        assert spend(utc(2026, 11, 26, 5, 30), "c") is None
        refusal = spend(utc(2026, 11, 27, 5, 30), "d")
        assert refusal is not None and refusal.limit.scope == "monthly"
        # December 1st in New York: the month starts from zero too.
        assert spend(utc(2026, 12, 1, 5, 30), "e") is None


class TestTrackingKeys:
    def test_always_accounted_keys(self):
        assert tracking_keys(provider_name="openai-eu", periods=NOV) == [
            "spend:day:2026-11-25",
            "spend:month:2026-11",
            "spend:day:2026-11-25:provider:openai-eu",
            "spend:month:2026-11:provider:openai-eu",
        ]


MONTHLY = BudgetLimit(
    "Monthly Budget", "monthly", "2026-11", "budget:Monthly Budget:month:2026-11", 100.0
)
DECEMBER = BudgetLimit(
    "Monthly Budget", "monthly", "2026-12", "budget:Monthly Budget:month:2026-12", 100.0
)


class TestAlerts:
    def tracker(self) -> AlertTracker:
        return AlertTracker({"Monthly Budget": [0.5, 0.8, 0.95]})

    def test_nothing_below_the_first_threshold(self):
        assert self.tracker().check(MONTHLY, 49.99) == []

    def test_fires_once_per_threshold_per_period(self):
        tracker = self.tracker()
        first = tracker.check(MONTHLY, 50.0)
        assert [(a.threshold, a.percentage) for a in first] == [(0.5, 50.0)]
        assert tracker.check(MONTHLY, 60.0) == []
        assert tracker.check(MONTHLY, 79.0) == []
        assert [a.threshold for a in tracker.check(MONTHLY, 81.0)] == [0.8]
        assert tracker.check(MONTHLY, 90.0) == []

    def test_a_jump_crosses_several_thresholds_at_once(self):
        alerts = self.tracker().check(MONTHLY, 96.0)
        assert [a.threshold for a in alerts] == [0.5, 0.8, 0.95]
        assert all(a.percentage == 96.0 and a.spent == 96.0 for a in alerts)

    def test_fires_again_in_the_next_period(self):
        tracker = self.tracker()
        tracker.check(MONTHLY, 85.0)
        again = tracker.check(DECEMBER, 55.0)
        assert [(a.threshold, a.period) for a in again] == [(0.5, "2026-12")]
        assert [a.period for a in tracker.alerts()] == ["2026-11", "2026-11", "2026-12"]

    def test_float_sums_landing_on_a_threshold_fire(self):
        limit = BudgetLimit("Monthly Budget", "monthly", "2026-11", "k", 1.0)
        assert [a.threshold for a in self.tracker().check(limit, 0.1 + 0.7 - 0.3)] == [0.5]

    def test_alert_carries_what_the_status_page_shows(self):
        limit = BudgetLimit(
            "Monthly Budget", "provider_monthly", "2026-11", "k:openai", 10.0, "openai"
        )
        (alert,) = self.tracker().check(limit, 5.0)
        assert alert.to_dict() == {
            "budget_name": "Monthly Budget",
            "threshold": 0.5,
            "percentage": 50.0,
            "spent": 5.0,
            "limit": 10.0,
            "period": "2026-11",
            "scope": "provider_monthly",
            "provider": "openai",
        }

    def test_budgets_without_thresholds_never_alert(self):
        other = BudgetLimit("Other", "daily", "2026-11-25", "budget:Other:day:2026-11-25", 1.0)
        assert self.tracker().check(other, 5.0) == []

    def test_zero_limits_and_request_caps_do_not_alert(self):
        tracker = self.tracker()
        zero = BudgetLimit("Monthly Budget", "monthly", "2026-11", "z", 0.0)
        (cap,) = request_limits(budget_limit=1.0)
        assert tracker.check(zero, 0.0) == [] and tracker.check(cap, 1.0) == []

    def test_prime_lists_crossed_thresholds_without_redelivering(self):
        tracker = self.tracker()
        tracker.prime(MONTHLY, 82.0)  # spend found in the ledger at start-up
        assert [a.threshold for a in tracker.alerts()] == [0.5, 0.8]
        assert tracker.check(MONTHLY, 83.0) == []
        assert [a.threshold for a in tracker.check(MONTHLY, 95.0)] == [0.95]

    @pytest.mark.parametrize("bad", [0, -0.1, 1.5, 80])
    def test_thresholds_must_be_fractions(self, bad):
        with pytest.raises(ValueError, match="Monthly Budget"):
            AlertTracker({"Monthly Budget": [bad]})


class TestWorstCaseCost:
    def test_prices_are_per_million_tokens(self):
        # 1,000 input tokens at $2.50/M + 500 output tokens at $10/M.
        assert worst_case_cost(1_000, 500, 2.5, 10.0) == pytest.approx(0.0075)

    def test_zero_tokens_cost_nothing(self):
        assert worst_case_cost(0, 0, 3.0, 15.0) == 0.0

    @pytest.mark.parametrize(
        "args", [(-1, 1, 1.0, 1.0), (1, 1, float("nan"), 1.0), (1, 1, 1.0, -2.0)]
    )
    def test_negative_or_nan_inputs_are_rejected(self, args):
        with pytest.raises(ValueError):
            worst_case_cost(*args)
