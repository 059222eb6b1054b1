"""ProviderActor: one per configured provider instance.

Owns the provider's health, circuit breaker, retry policy, in-flight count and client-side
rate limits. It never does I/O: attempts run on the provider's worker pool and come back as
``Outcome`` messages; backoffs are scheduled on the manager's scheduler. Every state change is
published on the supervisor's snapshot board (and its door, see ``_push``).

Messages:
  Attempt      admit (breaker, rate limit, usability) and hand to a worker, or fail back
  Outcome      update health and breaker; retry after a backoff, fail over, or finish
  Reconfigure  enable/disable, priority, key rotation, rate limits
  Probe        (optional) send a models-list request to check the provider; ProbeResult back
  FleetRefused the fleet's rate window or half-open trial refused an admitted attempt: wait or
               fail back (only with a shared fleet store, see router.fleet)
  FleetCircuit the circuit as the fleet sees it: follow it unless this process's own trial runs
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from functools import partial
from typing import Any

import pykka

from router.actors.base import RouterActor
from router.actors.deferred import DeferredMessages
from router.actors.messages import (
    Admitted,
    Attempt,
    AttemptFailed,
    FleetCircuit,
    FleetRefused,
    Outcome,
    Probe,
    ProbeResult,
    Reconfigure,
    Release,
    Reserve,
)
from router.attempt import AttemptContext, run_attempt
from router.breaker import REGULAR, CircuitBreaker, CircuitState
from router.config import ProviderConfig
from router.errors import (
    AuthenticationError,
    CircuitOpenError,
    InvalidRequestError,
    ModelNotFoundError,
    NoProviderAvailableError,
    QuotaExceededError,
    RateLimitError,
    RouterError,
)
from router.fleet.gate import run_gated
from router.fleet.window import RateWindow
from router.health import HealthSnapshot, HealthTracker
from router.retry import RetryPolicy
from router.scheduler import Scheduler

logger = logging.getLogger(__name__)

__all__ = ["ProviderActor"]


class ProviderUnavailableError(NoProviderAvailableError):
    """This one provider cannot take requests (disabled, bad key, out of quota)."""


class ProviderActor(RouterActor):
    """State and decisions for one provider; attempts run elsewhere."""

    def __init__(
        self,
        config: ProviderConfig,
        context: AttemptContext,
        executor: Executor,
        scheduler: Scheduler,
        supervisor: Any,
        budget: Any,
        clock: Any = time.monotonic,
        board: dict[str, HealthSnapshot] | None = None,
        outcomes: DeferredMessages | None = None,
        doors: dict[str, tuple[str | None] | None] | None = None,
        fleet: Any = None,
    ) -> None:
        super().__init__()
        # router.fleet.sync.FleetSync when rate windows and circuits are shared with other
        # processes (its store is called only from attempt threads, never here).
        self.fleet = fleet
        self._fleet_seq = 0  # numbers this actor's circuit publications
        self._following_fleet = False  # applying the fleet's circuit: do not publish it back
        # Where the provider says whether it admits any attempt right now (and with which
        # key): a caller with nothing to choose admits itself there instead of asking.
        self.doors = doors
        # Where snapshots are published: the supervisor's cache, read by callers' threads too.
        self.board: dict[str, HealthSnapshot] = board if board is not None else {}
        # Success outcomes workers queue instead of telling (RouterActor handles them before
        # any other message, or within router.actors.deferred's delay).
        self.deferred = outcomes
        self.config = config
        self.context = context
        self.executor = executor
        self.scheduler = scheduler
        self.supervisor = supervisor
        self.budget = budget
        self.clock = clock
        self.api_key = config.api_key.get_secret_value() if config.api_key else None
        self.enabled = config.enabled
        self.priority = config.priority
        self.rpm = config.rpm
        self.tpm = config.tpm
        # Why the provider is out of rotation (config, or an auth/quota answer); None = usable.
        self.out_reason: str | None = config.disabled_reason
        self.retry = RetryPolicy.from_settings(config.retry, config.max_retries)
        self.breaker = CircuitBreaker(
            failure_threshold=config.circuit_breaker.failure_threshold,
            recovery_timeout=config.circuit_breaker.recovery_timeout,
            clock=clock,
            on_change=self._circuit_changed,
        )
        self.health = HealthTracker()
        self.in_flight = 0
        # Monotonic time before which the provider asked not to be called again (the
        # Retry-After of its last 429/503/529); None when it asked for nothing.
        self.rate_limited_until: float | None = None
        self._window = RateWindow()  # this process's own rpm/tpm window (no shared fleet)
        self._probe_timer: Any = None
        self._batching = False  # inside handle_deferred: publish once at the end

    # --- lifecycle ---------------------------------------------------------------------------

    def on_start(self) -> None:
        self._push()
        if self.config.health_check_interval:
            self._schedule_probe()

    def on_stop(self) -> None:
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        self.drain_deferred()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        logger.error("provider actor %s crashed: %s", self.config.name, exception_value)

    # --- messages ----------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if isinstance(message, Attempt):
            self._on_attempt(message)
        elif isinstance(message, Admitted):
            self.in_flight += 1  # its Outcome follows (deferred messages keep their order)
        elif isinstance(message, Outcome):
            trial = self.fleet is not None and self.breaker.trial_in_flight
            self._on_outcome(message)
            if trial:
                self._release_fleet_trial()
        elif isinstance(message, Reconfigure):
            self._on_reconfigure(message.changes)
        elif isinstance(message, Probe):
            self._on_probe()
        elif isinstance(message, ProbeResult):
            self._on_probe_result(message)
        elif isinstance(message, FleetRefused):
            self._on_fleet_refused(message)
        elif isinstance(message, FleetCircuit):
            self._on_fleet_circuit(message)
        elif message == "snapshot":
            return self.snapshot()
        return None

    def handle_deferred(self, batch: list[Any]) -> None:
        # Successful outcomes (and self-admissions) arrive in batches: publish the state once
        # for the batch, not once per request. Nothing else can run in between, and they are
        # all successes or admissions: no caller waits on the door for them.
        self._batching = True
        try:
            super().handle_deferred(batch)
        finally:
            self._batching = False
        self._push()

    def _on_attempt(self, attempt: Attempt) -> None:
        job = attempt.job
        if job.done:
            self._release(attempt)
            return
        reason = self.unusable_reason()
        if reason is not None:
            self._fail_back(attempt, ProviderUnavailableError(reason, provider=self.config.name))
            return
        wait, why = self._rate_limit_wait(job.estimated_input_tokens)
        if wait > 0:
            self._wait_or_fail_back(attempt, wait, why)
            return
        permit = self.breaker.allow_request()
        if permit is None:
            retry_at = self.breaker.retry_at()
            retry_in = max(0.0, retry_at - self.clock()) if retry_at is not None else None
            error = CircuitOpenError(
                "circuit open" + (f" (retry in {retry_in:.1f}s)" if retry_in is not None else ""),
                provider=self.config.name,
                retry_after=retry_in,
            )
            self._fail_back(attempt, error)
            return
        if (self.rpm or self.tpm) and not self.fleet:
            # Only a configured limit reads (and prunes) the window; recording every attempt
            # without one grew it by one entry per request for the life of the process.
            self._window.record(job.estimated_input_tokens, self.clock())
        self.in_flight += 1
        job.attempts += 1
        if permit.trial:
            # Its outcome, and only its outcome, ends the trial (CircuitBreaker's docstring).
            attempt = attempt._replace(permit=permit)
        # A success may be reported lazily unless this attempt is a half-open trial, whose
        # result must close (or reopen) the breaker at once.
        trial = permit.trial
        defer_success = self.deferred is not None and not trial
        task = partial(
            run_attempt,
            self.context,
            attempt,
            self.api_key,
            self.actor_ref,
            self.budget,
            defer_success,
        )
        if self.fleet and (self.rpm or self.tpm or trial):
            task = partial(
                run_gated,
                self.fleet.store,
                attempt,
                self.rpm,
                self.tpm,
                trial,
                self.actor_ref,
                task,
            )
        try:
            # A caller waiting on its own thread runs the attempt there (no worker wake-up,
            # no hand-back); either way it takes one of the provider's max_concurrency slots.
            if job.inbox is None or not job.offer_inline(task):
                self.executor.submit(task)
        except RuntimeError:  # the pool is shut down: the manager is stopping
            self.in_flight -= 1
            self.breaker.release(permit)
            self._fail_back(attempt, RouterError("provider is stopping", provider=self.config.name))
            return
        self._push()

    def _on_outcome(self, outcome: Outcome) -> None:
        self.in_flight -= 1
        attempt = outcome.attempt
        permit = attempt.permit or REGULAR
        error = outcome.error
        if error is None:
            response = outcome.response
            self.breaker.record_success(permit)
            usage = response.usage if response is not None else None
            self.health.record_success(
                outcome.latency_ms,
                usage.input_tokens if usage else 0,
                usage.output_tokens if usage else 0,
                response.cost if response is not None else 0.0,
            )
            self._push()
            return
        if outcome.partial_usage is not None:
            self.health.add_partial_usage(
                outcome.partial_usage.input_tokens,
                outcome.partial_usage.output_tokens,
                outcome.partial_cost,
            )
        if outcome.reservation_ended:
            attempt = attempt._replace(reservation_id=None)  # settled by the attempt itself
        if outcome.cancelled:
            self.breaker.release(permit)
            self._release(attempt)
            self._push()
            return
        self._account_failure(error, permit)
        # Published before anyone hears of the failure: a caller that gets its error and
        # asks again must find the door closed if this failure opened the breaker.
        self._push()
        if outcome.started:
            return  # the attempt already ended the caller's stream with an error chunk
        job = attempt.job
        if job.done:
            self._release(attempt)
            return
        if isinstance(error, InvalidRequestError):
            # The caller's mistake: another provider would most likely refuse it too.
            self._release(attempt)
            job.fail(error)
            return
        # ``may_wait`` is False while other candidates remain: a long server-requested wait
        # then sends the request on at once instead of parking it here.
        delay = self.retry.next_delay(error, attempt.number - 1, alternative=not attempt.may_wait)
        if (
            delay is not None
            and self.breaker.state == CircuitState.CLOSED
            and self.out_reason is None
            and time.monotonic() + delay < job.deadline
        ):
            self._retry_later(attempt, outcome, delay)
        else:
            self.supervisor.tell(
                AttemptFailed(job, attempt.candidate, error, attempt.reservation_id)
            )

    def _on_fleet_refused(self, refused: FleetRefused) -> None:
        self.in_flight -= 1
        attempt = refused.attempt
        attempt.job.attempts -= 1  # nothing was sent
        if refused.kind == "circuit":
            # Another process runs the trial: open here until it may be ours, and fail over.
            self._follow_fleet(lambda: self.breaker.hold_open(self.clock() + refused.wait))
            self._push()
            if attempt.job.done:
                self._release(attempt)
                return
            error = CircuitOpenError(
                f"circuit open (trial running in another process; retry in {refused.wait:.1f}s)",
                provider=self.config.name,
                retry_after=refused.wait,
            )
            self._fail_back(attempt, error)
            return
        # It never went: if it was the trial, the next attempt is (a no-op otherwise).
        self.breaker.release(attempt.permit or REGULAR)
        self._push()
        if attempt.job.done:
            self._release(attempt)
            return
        self._wait_or_fail_back(attempt, refused.wait)

    def _on_fleet_circuit(self, circuit: FleetCircuit) -> None:
        if circuit.seq < self._fleet_seq or self.breaker.trial_in_flight:
            return  # older than this process's own last change, or our trial decides
        breaker = self.breaker
        if circuit.state == "open":
            now = self.clock()
            retry_at = now + circuit.retry_in
            current = breaker.retry_at()
            if current is not None and current <= now and circuit.retry_in <= 0.0:
                return  # a trial may go, here as in the fleet
            if breaker.state == CircuitState.CLOSED or current is None:
                logger.warning(
                    "%s: circuit opened by another process (retry in %.1fs)",
                    self.config.name,
                    circuit.retry_in,
                )
            elif abs(current - retry_at) < 0.1:
                return
            self._follow_fleet(lambda: breaker.hold_open(retry_at))
        elif breaker.state != CircuitState.CLOSED:
            logger.info("%s: circuit closed by another process's trial", self.config.name)
            self._follow_fleet(breaker.reset)
        else:
            return
        self._push()

    def _release_fleet_trial(self) -> None:
        # The trial ended without a verdict (cancelled, a caller error): free the fleet's
        # lease too, or no process could run the next trial until it expires.
        if not self.breaker.trial_in_flight and self.breaker.state == CircuitState.HALF_OPEN:
            self._publish_circuit("released", None)

    def _publish_circuit(self, state: str, retry_at: float | None) -> None:
        assert self.fleet is not None
        self._fleet_seq += 1
        self.fleet.publish(self.config.name, self._fleet_seq, state, retry_at)

    def _follow_fleet(self, change: Any) -> None:
        self._following_fleet = True
        try:
            change()
        finally:
            self._following_fleet = False

    def _wait_or_fail_back(self, attempt: Attempt, wait: float, why: str = "") -> None:
        """Over a rate limit (the provider's Retry-After, or the client-side rpm/tpm): wait
        (the last candidate, with time left) or let the supervisor try the next candidate."""
        if attempt.may_wait and time.monotonic() + wait < attempt.job.deadline:
            self.scheduler.call_later(wait, lambda: self._tell_self(attempt))
            return
        error = RateLimitError(
            why or f"client-side rate limit (rpm={self.rpm}, tpm={self.tpm})",
            provider=self.config.name,
            retry_after=wait,
        )
        self._fail_back(attempt, error)

    def _retry_later(self, attempt: Attempt, outcome: Outcome, delay: float) -> None:
        number = attempt.number + 1
        retry = attempt._replace(number=number, permit=None)
        logger.debug(
            "%s: retry %d in %.2fs after %s",
            self.config.name,
            attempt.number,
            delay,
            type(outcome.error).__name__,
        )
        original = outcome.attempt.reservation_id
        if not outcome.reservation_ended or original is None:
            self.scheduler.call_later(delay, lambda: self._tell_self(retry))
            return
        # The failed attempt billed what it used against its reservation: the retry needs
        # its own, or the two together could spend more than the budget allowed.
        retry = retry._replace(reservation_id=f"{original.partition('#')[0]}#{number}")
        reserve = Reserve(retry, retry.candidate.estimated_cost, self.actor_ref, self.supervisor)
        self.scheduler.call_later(delay, lambda: self._tell(self.budget, reserve))

    def _account_failure(self, error: RouterError, permit: Any = REGULAR) -> None:
        if error.trips_breaker:
            self.breaker.record_failure(permit)
            wait = self.retry.server_wait(error)
            if wait is not None:
                until = time.monotonic() + wait
                if self.rate_limited_until is None or until > self.rate_limited_until:
                    self.rate_limited_until = until
        else:
            self.breaker.release(permit)
        self.health.record_failure(
            f"{type(error).__name__}: {error.message}", provider_side=error.trips_breaker
        )
        if isinstance(error, QuotaExceededError | AuthenticationError):
            # Out of rotation until someone rotates the key or re-enables the provider.
            self.out_reason = f"{type(error).__name__}: {error.message}"
            logger.warning("%s taken out of rotation: %s", self.config.name, self.out_reason)
        elif isinstance(error, ModelNotFoundError):
            pass  # the model, not the provider, is the problem

    def _on_reconfigure(self, changes: dict[str, Any]) -> None:
        if "enabled" in changes and changes["enabled"] is not None:
            self.enabled = bool(changes["enabled"])
            if self.enabled and self.out_reason and self.api_key:
                self.out_reason = None
        if changes.get("priority") is not None:
            self.priority = int(changes["priority"])
        if changes.get("api_key"):
            self.api_key = changes["api_key"]
            self.out_reason = None  # a new key gets a fresh chance
        for limit in ("rpm", "tpm"):
            if limit in changes:
                setattr(self, limit, changes[limit])
        self._push()

    # --- probes ------------------------------------------------------------------------------

    def _schedule_probe(self) -> None:
        interval = float(self.config.health_check_interval or 0)
        self._probe_timer = self.scheduler.call_later(interval, lambda: self._tell_self(Probe()))

    def _on_probe(self) -> None:
        if self.unusable_reason() is None:
            try:
                self.executor.submit(self._probe_task, self.api_key, self.actor_ref)
            except RuntimeError:
                return
        self._schedule_probe()

    def _probe_task(self, api_key: str | None, ref: Any) -> None:
        # Runs on a worker: a models-list call costs no tokens.
        request = self.context.adapter.build_models_request(
            api_key=api_key, base_url=self.context.base_url
        )
        try:
            response = self.context.client.send(request)
            ok = response.status_code < 400
            error = None if ok else f"HTTP {response.status_code}"
            response.close()
        except RouterError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc.message}"
        try:
            ref.tell(ProbeResult(ok, error))
        except pykka.ActorDeadError:
            pass

    def _on_probe_result(self, result: ProbeResult) -> None:
        if result.ok:
            if self.breaker.state == CircuitState.HALF_OPEN:
                permit = self.breaker.allow_request()  # the probe is the trial, if none is out
                if permit is not None:
                    self.breaker.record_success(permit)
        else:
            self.health.last_error = f"probe failed: {result.error}"
        self._push()

    # --- helpers -----------------------------------------------------------------------------

    def unusable_reason(self) -> str | None:
        if not self.enabled:
            return "disabled"
        if self.out_reason:
            return self.out_reason
        if self.api_key is None and self.context.provider_type.value != "openai_compatible":
            return "no API key"
        return None

    def _rate_limit_wait(self, tokens: int) -> tuple[float, str]:
        """Seconds before an attempt may be sent (0: now), and why."""
        if self.rate_limited_until is not None:
            wait = self.rate_limited_until - time.monotonic()
            if wait > 0:
                return wait, f"rate limited by the provider (retry in {wait:.1f}s)"
            self.rate_limited_until = None
        if self.fleet or (not self.rpm and not self.tpm):
            # A shared fleet counts the attempt on the thread that runs it (router.fleet.gate).
            return 0.0, ""
        wait = self._window.wait(self.rpm, self.tpm, tokens, self.clock())
        return wait, f"client-side rate limit (rpm={self.rpm}, tpm={self.tpm})"

    def _fail_back(self, attempt: Attempt, error: RouterError) -> None:
        self.supervisor.tell(
            AttemptFailed(attempt.job, attempt.candidate, error, attempt.reservation_id)
        )

    def _release(self, attempt: Attempt) -> None:
        if attempt.reservation_id is not None:
            self.budget.tell(Release(attempt.reservation_id))

    def _tell_self(self, message: Any) -> None:
        self._tell(self.actor_ref, message)

    @staticmethod
    def _tell(ref: Any, message: Any) -> None:
        """Tell from a scheduler timer: a stopped router fails the job it carried."""
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            job = getattr(getattr(message, "attempt", message), "job", None)
            if job is not None:
                from router.errors import ManagerStoppedError

                job.fail(ManagerStoppedError("the router was stopped"))

    def _circuit_changed(self, old: CircuitState, new: CircuitState) -> None:
        logger.info("%s: circuit %s -> %s", self.config.name, old.value, new.value)
        if self.fleet is None or self._following_fleet or new == CircuitState.HALF_OPEN:
            return  # a trial is claimed by its attempt (router.fleet.gate), not published
        self._publish_circuit(
            new.value, self.breaker.retry_at() if new == CircuitState.OPEN else None
        )

    def snapshot(self) -> HealthSnapshot:
        p50, p95 = self.health.latency_percentiles()
        state = self.breaker.state
        reason = self.unusable_reason()
        return HealthSnapshot(
            name=self.config.name,
            provider_type=self.context.provider_type.value,
            status=self.health.status(
                usable=reason is None,
                circuit_open=state == CircuitState.OPEN,
                consecutive_failures=self.breaker.consecutive_failures,
            ),
            enabled=self.enabled,
            disabled_reason=reason,
            priority=self.priority,
            circuit_state=state.value,
            circuit_retry_at=self.breaker.retry_at(),
            consecutive_failures=self.breaker.consecutive_failures,
            uptime_percentage=self.health.uptime_percentage,
            avg_latency_ms=self.health.avg_latency_ms,
            p50_latency_ms=p50,
            p95_latency_ms=p95,
            in_flight=self.in_flight,
            max_concurrency=self.config.max_concurrency,
            requests=self.health.requests,
            successes=self.health.successes,
            failures=self.health.failures,
            input_tokens=self.health.input_tokens,
            output_tokens=self.health.output_tokens,
            cost=self.health.cost,
            last_error=self.health.last_error,
            rate_limited_until=self.rate_limited_until,
        )

    def _push(self) -> None:
        if self._batching:
            return  # once at the end of the batch (handle_deferred)
        if self.doors is not None:
            # Open only while admitting is a formality: breaker closed, usable, and no
            # client-side rate limit to count against. Half-open trials, limits and anything
            # unusual still come through Attempt.
            open_door = (
                self.breaker.state == CircuitState.CLOSED
                and self.unusable_reason() is None
                and not self.rpm
                and not self.tpm
                and self.rate_limited_until is None
            )
            self.doors[self.config.name] = (self.api_key,) if open_door else None
        # Published into the supervisor's snapshot cache (one atomic dict store) rather than
        # told: no wake-up per change; readers only ever see whole, immutable snapshots.
        self.board[self.config.name] = self.snapshot()
