"""The circuit breaker as a hypothesis state machine (issue 12).

Random interleavings of admissions, results (success, provider failure, a release without a
verdict: cancellation, caller error, deadline), stragglers admitted before the breaker opened,
and a clock that moves in steps around the recovery timeout. The invariants are the breaker's
promises, not its arithmetic:

- at most one half-open trial is ever in flight;
- only the trial's own result ends it: a straggler's success, failure or release leaves a
  half-open breaker half-open with its trial still out, and never closes an open one;
- a closed breaker admits everything, and ``failure_threshold`` consecutive failures open it;
- an open breaker admits nothing before its recovery timeout and one trial after it;
- the trial's success closes, its failure re-opens for a full timeout, its release lets the
  next request be the trial (nothing wedges).
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from router.breaker import CircuitBreaker, CircuitState, Permit

THRESHOLD = 3
RECOVERY = 10.0
OUTCOMES = ("success", "failure", "release")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BreakerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = Clock()
        self.breaker = CircuitBreaker(THRESHOLD, RECOVERY, clock=self.clock)
        self.out: list[Permit] = []  # admitted, result not reported yet
        self.streak = 0  # consecutive failures reported since the breaker last closed
        self.opened_at: float | None = None

    # --- rules -------------------------------------------------------------------------------

    @rule(times=st.integers(min_value=1, max_value=4))
    def admit(self, times: int) -> None:
        """Several callers ask at once (concurrent trials: at most one may pass)."""
        for _ in range(times):
            before = self.breaker.state
            live_trial = any(p.trial for p in self.out)
            permit = self.breaker.allow_request()
            if before is CircuitState.CLOSED:
                assert permit is not None and not permit.trial
            elif before is CircuitState.OPEN:
                assert permit is None
            elif live_trial:
                assert permit is None  # one trial at a time
            else:
                assert permit is not None and permit.trial  # nothing wedges
            if permit is not None:
                self.out.append(permit)

    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    @precondition(lambda self: self.out)
    def finish(self, data: st.DataObject, outcome: str) -> None:
        """One admitted request reports back: the trial, a regular one or a straggler."""
        permit = data.draw(st.sampled_from(self.out))
        self._finish(permit, outcome)

    def _finish(self, permit: Permit, outcome: str) -> None:
        self.out.remove(permit)
        before = self.breaker.state
        if outcome == "success":
            self.breaker.record_success(permit)
        elif outcome == "failure":
            self.breaker.record_failure(permit)
        else:  # cancelled, a caller error or its deadline: no verdict
            self.breaker.release(permit)
        after = self.breaker.state
        is_trial = permit.trial and before is CircuitState.HALF_OPEN
        if before is CircuitState.CLOSED:
            if outcome == "success":
                self.streak = 0
            elif outcome == "failure":
                self.streak += 1
            if self.streak >= THRESHOLD:
                assert after is CircuitState.OPEN
                self.opened_at = self.clock.now
            else:
                assert after is CircuitState.CLOSED
        elif before is CircuitState.OPEN:
            assert after is CircuitState.OPEN  # stragglers never close nor move the timer
            assert self.breaker.retry_at() == self.opened_at + RECOVERY
        elif is_trial and outcome == "success":
            assert after is CircuitState.CLOSED
            self.streak = 0
        elif is_trial and outcome == "failure":
            assert after is CircuitState.OPEN
            assert self.breaker.retry_at() == self.clock.now + RECOVERY  # a full timeout
            self.opened_at = self.clock.now
        elif is_trial:
            assert after is CircuitState.HALF_OPEN
            assert self.breaker.retry_at() == self.clock.now  # the next request is the trial
        else:
            # A straggler while half-open: the trial (if out) is untouched.
            assert after is CircuitState.HALF_OPEN
            assert self.breaker.trial_in_flight == any(p.trial for p in self.out)

    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    @precondition(lambda self: any(not p.trial for p in self.out))
    def straggler_reports(self, data: st.DataObject, outcome: str) -> None:
        """A request admitted while closed reports back, whatever the breaker did since."""
        regular = [p for p in self.out if not p.trial]
        permit = data.draw(st.sampled_from(regular))
        self._finish(permit, outcome)

    @rule()
    @precondition(lambda self: self.breaker.state is CircuitState.CLOSED)
    def provider_goes_down(self) -> None:
        """Concurrent requests fail until the breaker opens; one more stays out (a straggler)."""
        straggler = self.breaker.allow_request()
        while self.breaker.state is CircuitState.CLOSED:
            permit = self.breaker.allow_request()
            self.out.append(permit)
            self._finish(permit, "failure")
        self.out.append(straggler)

    @rule(seconds=st.sampled_from([0.5, 3.0, 9.99, 0.01, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def at_most_one_trial_in_flight(self) -> None:
        trials = [p for p in self.out if p.trial]
        assert len(trials) <= 1
        # The breaker knows its trial is out exactly while it is.
        assert self.breaker.trial_in_flight == bool(trials)

    @invariant()
    def open_means_timer_running(self) -> None:
        state = self.breaker.state
        if state is CircuitState.OPEN:
            assert self.breaker.retry_at() > self.clock.now
        if state is CircuitState.CLOSED:
            assert self.breaker.retry_at() is None


BreakerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("ROUTER_FUZZ_EXAMPLES", "100")),
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
)
test_breaker_state_machine = BreakerMachine.TestCase
