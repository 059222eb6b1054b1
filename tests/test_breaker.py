"""The circuit breaker's transitions, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from router.breaker import REGULAR, CircuitBreaker, CircuitState

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[CircuitState, CircuitState]]:
    return []


@pytest.fixture
def breaker(clock, changes) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3,
        recovery_timeout=10.0,
        clock=clock,
        on_change=lambda old, new: changes.append((old, new)),
    )


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        assert breaker.allow_request()
        breaker.record_failure()


def test_starts_closed_and_admits_requests(breaker):
    assert breaker.state is CLOSED
    assert breaker.allow_request() and breaker.allow_request()
    assert breaker.retry_at() is None
    assert breaker.snapshot() == {"state": "closed", "consecutive_failures": 0, "retry_in": None}


def test_opens_after_threshold_consecutive_failures(breaker, changes):
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CLOSED and breaker.consecutive_failures == 2
    breaker.record_failure()
    assert breaker.state is OPEN
    assert changes == [(CLOSED, OPEN)]


def test_a_success_resets_the_consecutive_count(breaker):
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CLOSED


def test_rejects_at_once_while_open(breaker, clock):
    trip(breaker)
    clock.advance(9.99)
    assert [breaker.allow_request() for _ in range(5)] == [None] * 5
    assert breaker.state is OPEN


def test_retry_at_and_snapshot_say_when_a_trial_is_possible(breaker, clock):
    trip(breaker)
    opened = clock.now
    assert breaker.retry_at() == opened + 10.0
    clock.advance(4)
    assert breaker.snapshot() == {"state": "open", "consecutive_failures": 3, "retry_in": 6.0}


def test_reports_half_open_once_the_timeout_has_elapsed(breaker, clock, changes):
    trip(breaker)
    clock.advance(10)
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot()["retry_in"] == 0.0
    # Reading the state is not a transition; the next allow_request is.
    assert changes == [(CLOSED, OPEN)]


def test_admits_exactly_one_trial_after_the_timeout(breaker, clock, changes):
    trip(breaker)
    clock.advance(10)
    permits = [breaker.allow_request() for _ in range(4)]
    assert permits[0] is not None and permits[0].trial and permits[1:] == [None] * 3
    assert breaker.state is HALF_OPEN and breaker.trial_in_flight
    assert breaker.retry_at() is None  # trial in flight: no time is known
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_successful_trial_closes(breaker, clock, changes):
    trip(breaker)
    clock.advance(10)
    trial = breaker.allow_request()
    breaker.record_success(trial)
    assert breaker.state is CLOSED and breaker.consecutive_failures == 0
    assert breaker.allow_request() is REGULAR and breaker.allow_request() is REGULAR
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_failed_trial_reopens_with_a_fresh_timer(breaker, clock, changes):
    trip(breaker)
    clock.advance(15)
    trial = breaker.allow_request()
    breaker.record_failure(trial)
    assert breaker.state is OPEN
    assert breaker.retry_at() == clock.now + 10.0
    clock.advance(9)
    assert not breaker.allow_request()
    clock.advance(1)
    assert breaker.allow_request()
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN)]


def test_releasing_the_trial_lets_another_trial_through(breaker, clock, changes):
    trip(breaker)
    clock.advance(10)
    trial = breaker.allow_request()
    assert trial is not None
    assert breaker.allow_request() is None
    breaker.release(trial)  # e.g. the trial was a caller error or was cancelled
    assert breaker.state is HALF_OPEN
    assert breaker.retry_at() == clock.now
    second = breaker.allow_request()
    assert second is not None and second is not trial
    assert breaker.allow_request() is None
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_release_is_a_no_op_when_closed_or_open(breaker, clock):
    breaker.release(REGULAR)
    assert breaker.state is CLOSED
    trip(breaker)
    breaker.release(REGULAR)
    assert breaker.allow_request() is None


def test_late_success_while_open_does_not_close(breaker, clock):
    trip(breaker)
    breaker.record_success()  # a straggler admitted before the breaker opened
    assert breaker.state is OPEN
    assert breaker.allow_request() is None


# Issue 12: a straggler (admitted while closed) must not end the half-open trial.


def test_a_released_straggler_does_not_free_the_trial_slot(breaker, clock):
    straggler = breaker.allow_request()
    trip(breaker)
    clock.advance(10)
    trial = breaker.allow_request()
    breaker.release(straggler)  # the straggler's caller closed it
    assert breaker.allow_request() is None  # still exactly one trial
    assert breaker.trial_in_flight
    breaker.record_success(trial)
    assert breaker.state is CLOSED


def test_a_straggler_success_while_half_open_does_not_close(breaker, clock):
    trip(breaker)
    clock.advance(10)
    trial = breaker.allow_request()
    breaker.record_success(REGULAR)
    assert breaker.state is HALF_OPEN and breaker.allow_request() is None
    breaker.record_failure(trial)  # the trial alone decides
    assert breaker.state is OPEN


def test_a_straggler_failure_while_half_open_counts_but_does_not_end_the_trial(breaker, clock):
    trip(breaker)
    clock.advance(10)
    trial = breaker.allow_request()
    breaker.record_failure(REGULAR)
    assert breaker.consecutive_failures == 4
    assert breaker.state is HALF_OPEN and breaker.allow_request() is None
    breaker.record_success(trial)
    assert breaker.state is CLOSED and breaker.consecutive_failures == 0


def test_the_trial_of_an_earlier_period_is_a_straggler(breaker, clock):
    trip(breaker)
    clock.advance(10)
    old = breaker.allow_request()
    breaker.reset()
    trip(breaker)
    clock.advance(10)
    current = breaker.allow_request()
    breaker.release(old)
    breaker.record_success(old)
    assert breaker.state is HALF_OPEN and breaker.allow_request() is None
    breaker.record_success(current)
    assert breaker.state is CLOSED


def test_late_failure_while_open_does_not_push_the_timer_back(breaker, clock):
    trip(breaker)
    retry_at = breaker.retry_at()
    clock.advance(5)
    breaker.record_failure()
    assert breaker.retry_at() == retry_at
    assert breaker.consecutive_failures == 4


def test_zero_recovery_timeout_half_opens_immediately(clock):
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=0, clock=clock)
    breaker.record_failure()
    assert breaker.state is HALF_OPEN
    assert breaker.allow_request() is not None
    assert breaker.allow_request() is None


def test_reset_closes_and_forgets(breaker, changes):
    trip(breaker)
    breaker.reset()
    assert breaker.state is CLOSED and breaker.consecutive_failures == 0
    assert changes[-1] == (OPEN, CLOSED)


def test_a_failing_listener_does_not_wedge_the_breaker(clock, caplog):
    def listener(old, new):
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker(
        failure_threshold=1, recovery_timeout=1, clock=clock, on_change=listener
    )
    breaker.record_failure()
    assert breaker.state is OPEN
    assert "on_change listener failed" in caplog.text


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"recovery_timeout": -1}, "recovery_timeout"),
        ({"recovery_timeout": float("nan")}, "recovery_timeout"),
    ],
)
def test_bad_settings_are_rejected_by_name(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CircuitBreaker(**kwargs)


def test_repr_shows_state(breaker):
    assert "closed" in repr(breaker)
