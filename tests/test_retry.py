"""The retry policy: schedules, caps, Retry-After parsing and what is worth retrying."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

from router.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
)
from router.retry import RetryPolicy, RetryStrategy, parse_retry_after


def schedule(policy: RetryPolicy, n: int = 6) -> list[float]:
    return [policy.backoff(i) for i in range(1, n + 1)]


class TestSchedules:
    def test_exponential_doubles_from_base_and_caps_at_max_delay(self):
        policy = RetryPolicy(RetryStrategy.EXPONENTIAL_BACKOFF, base_delay=0.5, max_delay=5.0)
        assert schedule(policy) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]

    def test_linear_grows_by_base_and_caps_at_max_delay(self):
        policy = RetryPolicy(RetryStrategy.LINEAR_BACKOFF, base_delay=0.5, max_delay=2.0)
        assert schedule(policy) == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]

    def test_fixed_is_always_base(self):
        policy = RetryPolicy(RetryStrategy.FIXED, base_delay=1.25)
        assert schedule(policy) == [1.25] * 6

    def test_fixed_is_capped_too(self):
        assert RetryPolicy(RetryStrategy.FIXED, base_delay=10, max_delay=3).backoff(1) == 3

    def test_jittered_is_full_jitter_under_the_capped_exponential(self):
        policy = RetryPolicy(RetryStrategy.JITTERED_EXPONENTIAL, base_delay=0.5, max_delay=3.0)
        rng = random.Random(7)
        for n in range(1, 8):
            ceiling = min(3.0, 0.5 * 2 ** (n - 1))
            samples = [policy.backoff(n, rng) for _ in range(200)]
            assert all(0.0 <= s <= ceiling for s in samples)
            # Spread over the whole range, not clustered at the top.
            assert min(samples) < 0.2 * ceiling and max(samples) > 0.8 * ceiling

    def test_jittered_is_reproducible_with_a_seeded_rng(self):
        policy = RetryPolicy(RetryStrategy.JITTERED_EXPONENTIAL)
        first = [policy.backoff(n, random.Random(3)) for n in range(1, 5)]
        again = [policy.backoff(n, random.Random(3)) for n in range(1, 5)]
        assert first == again

    def test_huge_retry_numbers_stay_finite_and_capped(self):
        for strategy in RetryStrategy:
            assert RetryPolicy(strategy, max_delay=30).backoff(10_000) <= 30

    def test_retry_number_starts_at_one(self):
        with pytest.raises(ValueError, match="starts at 1"):
            RetryPolicy().backoff(0)

    def test_strategy_given_as_string_is_coerced(self):
        assert RetryPolicy("linear_backoff").strategy is RetryStrategy.LINEAR_BACKOFF

    @pytest.mark.parametrize(
        "kwargs, word",
        [
            ({"strategy": "sometimes"}, "sometimes"),
            ({"max_retries": -1}, "max_retries"),
            ({"base_delay": -0.1}, "base_delay"),
            ({"max_delay": float("inf")}, "max_delay"),
            ({"max_retry_after": float("nan")}, "max_retry_after"),
        ],
    )
    def test_bad_values_are_rejected_by_name(self, kwargs, word):
        with pytest.raises(ValueError, match=word):
            RetryPolicy(**kwargs)


class TestNextDelay:
    policy = RetryPolicy(
        RetryStrategy.EXPONENTIAL_BACKOFF, max_retries=3, base_delay=1, max_delay=8
    )

    @pytest.mark.parametrize(
        "error",
        [
            RateLimitError("slow down", status=429),
            ServiceUnavailableError("overloaded", status=529),
            ServiceUnavailableError("bad gateway", status=502),
            ProviderTimeoutError("read timeout"),
            ProviderConnectionError("reset by peer"),
        ],
    )
    def test_provider_side_failures_are_retried_on_the_schedule(self, error):
        assert [self.policy.next_delay(error, done) for done in range(4)] == [1, 2, 4, None]

    @pytest.mark.parametrize(
        "error",
        [
            InvalidRequestError("bad field", status=400),
            AuthenticationError("bad key", status=401),
            PermissionDeniedError("forbidden", status=403),
            ModelNotFoundError("no such model", status=404),
            QuotaExceededError("out of credit", status=429),
            BudgetExceededError("over budget"),
            ValueError("a bug, not a provider failure"),
            KeyboardInterrupt(),
        ],
    )
    def test_caller_errors_and_foreign_exceptions_are_never_retried(self, error):
        assert self.policy.next_delay(error, 0) is None

    def test_zero_max_retries_never_retries(self):
        assert RetryPolicy(max_retries=0).next_delay(RateLimitError("x"), 0) is None

    def test_retry_after_is_a_floor_over_the_backoff(self):
        error = RateLimitError("slow down", status=429, retry_after=5)
        assert self.policy.next_delay(error, 0) == 5

    def test_backoff_wins_when_longer_than_retry_after(self):
        error = RateLimitError("slow down", status=429, retry_after=0.5)
        assert self.policy.next_delay(error, 2) == 4

    def test_retry_after_is_clamped_to_max_retry_after(self):
        policy = RetryPolicy(max_retry_after=20, max_delay=8)
        error = RateLimitError("come back in an hour", status=429, retry_after=3600)
        assert policy.next_delay(error, 0) == 20

    def test_retry_after_may_exceed_max_delay_up_to_its_own_clamp(self):
        policy = RetryPolicy(base_delay=1, max_delay=2, max_retry_after=60)
        assert policy.next_delay(RateLimitError("x", retry_after=10), 0) == 10

    def test_retry_after_does_not_bypass_max_retries(self):
        error = RateLimitError("x", retry_after=1)
        assert self.policy.next_delay(error, 3) is None

    def test_jittered_delay_still_honours_retry_after_floor(self):
        policy = RetryPolicy(RetryStrategy.JITTERED_EXPONENTIAL, base_delay=1, max_delay=2)
        rng = random.Random(1)
        delays = [policy.next_delay(RateLimitError("x", retry_after=3), 0, rng) for _ in range(50)]
        assert delays == [3] * 50

    # Issue 12: a long server-requested wait fails over when another candidate exists.

    def test_a_long_retry_after_gives_up_when_another_candidate_exists(self):
        policy = RetryPolicy(failover_after=1.0)
        long_wait = RateLimitError("x", retry_after=10)
        assert policy.next_delay(long_wait, 0, alternative=True) is None
        assert policy.next_delay(long_wait, 0) == 10  # the last candidate waits it out

    def test_a_short_retry_after_is_waited_out_even_with_another_candidate(self):
        policy = RetryPolicy(base_delay=0.1, failover_after=1.0)
        short = ServiceUnavailableError("x", status=503, retry_after=0.8)
        assert policy.next_delay(short, 0, alternative=True) == 0.8

    def test_the_failover_threshold_sees_the_clamped_wait(self):
        policy = RetryPolicy(max_retry_after=0.5, failover_after=1.0)
        error = RateLimitError("x", retry_after=3600)
        assert policy.next_delay(error, 0, alternative=True) == 0.5

    def test_without_retry_after_the_backoff_never_fails_over_early(self):
        assert self.policy.next_delay(ServiceUnavailableError("x"), 2, alternative=True) == 4


class TestFromSettings:
    def test_builds_from_config_like_settings(self):
        settings = SimpleNamespace(
            strategy="fixed", base_delay=2.0, max_delay=10.0, max_retry_after=15.0
        )
        policy = RetryPolicy.from_settings(settings, max_retries=5)
        assert policy == RetryPolicy(RetryStrategy.FIXED, 5, 2.0, 10.0, 15.0)

    def test_accepts_an_enum_strategy(self):
        settings = SimpleNamespace(
            strategy=RetryStrategy.LINEAR_BACKOFF, base_delay=1, max_delay=4, max_retry_after=9
        )
        assert RetryPolicy.from_settings(settings, 1).strategy is RetryStrategy.LINEAR_BACKOFF

    def test_unknown_strategy_is_a_config_error_naming_it(self):
        settings = SimpleNamespace(strategy="yolo", base_delay=1, max_delay=4, max_retry_after=9)
        with pytest.raises(ConfigError, match="yolo"):
            RetryPolicy.from_settings(settings, 1)


class TestParseRetryAfter:
    NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()

    @pytest.mark.parametrize(
        "value, expected", [("3", 3.0), ("0", 0.0), (" 12 ", 12.0), ("1.5", 1.5)]
    )
    def test_delay_seconds(self, value, expected):
        assert parse_retry_after(value) == expected

    def test_http_date_in_the_future(self):
        when = datetime(2026, 11, 25, 12, 0, 42, tzinfo=UTC)
        assert parse_retry_after(format_datetime(when, usegmt=True), now=self.NOW) == 42.0

    def test_http_date_literal(self):
        assert parse_retry_after("Wed, 25 Nov 2026 12:01:00 GMT", now=self.NOW) == 60.0

    def test_http_date_in_the_past_means_now(self):
        assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=self.NOW) == 0.0

    def test_http_date_without_zone_is_gmt(self):
        assert parse_retry_after("Wed, 25 Nov 2026 12:00:10 -0000", now=self.NOW) == 10.0

    @pytest.mark.parametrize(
        "value", [None, "", "   ", "soon", "-5", "1e3", "NaN", "inf", "Wed, 99 Foo 2026", "3 s"]
    )
    def test_garbage_gives_none(self, value):
        assert parse_retry_after(value, now=self.NOW) is None

    def test_parsed_header_feeds_the_clamp(self):
        floor = parse_retry_after("Wed, 26 Nov 2026 12:00:00 GMT", now=self.NOW)  # a day away
        policy = RetryPolicy(max_retry_after=60)
        assert policy.next_delay(RateLimitError("x", retry_after=floor), 0) == 60
