"""SupervisorActor: plans each request, orders candidates by strategy, fails over.

It reads only cached health snapshots (pushed by providers); it never asks a provider and
waits. Messages:

  Dispatch            plan the job, order its candidates, try the first
  AttemptFailed       record why that candidate failed, release its reservation, try the next
  ReservationRefused  the budget refused the candidate: record why, try the next
Asks: "snapshots".
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from router.actors.base import RouterActor
from router.actors.messages import (
    Attempt,
    AttemptFailed,
    Dispatch,
    Release,
    ReservationRefused,
    Reserve,
)
from router.errors import (
    BudgetExceededError,
    CircuitOpenError,
    NoProviderAvailableError,
    RouterError,
)
from router.health import HealthSnapshot
from router.jobs import Job
from router.planner import Plan, Planner
from router.strategies import Candidate, StrategyState, order_candidates

logger = logging.getLogger(__name__)

__all__ = ["SupervisorActor"]


class SupervisorActor(RouterActor):
    def __init__(
        self,
        planner: Planner,
        *,
        has_budgets: bool,
        clock: Callable[[], float] = time.monotonic,
        snapshots: dict[str, HealthSnapshot] | None = None,
    ) -> None:
        super().__init__()
        self.planner = planner
        self.has_budgets = has_budgets
        self.clock = clock
        self.providers: dict[str, Any] = {}  # name -> ActorRef, set by the manager at start
        self.budget: Any = None
        # Provider name -> last published snapshot. Providers store into this dict directly
        # (given by the manager); only whole immutable snapshots are stored, so a read never
        # sees a half-updated provider.
        self.snapshots: dict[str, HealthSnapshot] = snapshots if snapshots is not None else {}
        self.state = StrategyState(skipped=self._skipped)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Dispatch):
            self._on_dispatch(message.job, message.plan)
        elif isinstance(message, AttemptFailed):
            self._on_attempt_failed(message)
        elif isinstance(message, ReservationRefused):
            job = message.job
            job.reasons[message.candidate.key] = str(message.error.message)
            if isinstance(message.error, BudgetExceededError):
                job.budget_refusals.append(message.error)
            else:
                job.errors[message.candidate.key] = message.error
            self._try_next(job)
        elif isinstance(message, tuple) and message and message[0] == "wire":
            _, providers, budget = message
            self.providers, self.budget = providers, budget
        elif message == "snapshots":
            return dict(self.snapshots)
        elif isinstance(message, tuple) and message and message[0] == "plan":
            return self._plan_only(message[1], message[2], message[3])
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        logger.error("supervisor crashed: %s", exception_value)

    # --- planning ----------------------------------------------------------------------------

    def _plan_only(self, request: Any, selection: Any, strategy: str) -> list[dict[str, Any]]:
        plan = self.planner.plan(request, selection)
        ordered = order_candidates(strategy, plan.candidates, self.snapshots, StrategyState())
        rows = [{"candidate": c, "reason": None} for c in ordered]
        rows += [{"candidate": key, "reason": why} for key, why in plan.reasons.items()]
        return rows

    def _on_dispatch(self, job: Job, plan: Plan | None = None) -> None:
        if job.done:
            return
        try:
            if plan is None:
                plan = self.planner.plan(job.request, job.selection)
            ordered = order_candidates(job.strategy, plan.candidates, self.snapshots, self.state)
        except RouterError as error:
            job.fail(error)
            return
        except ValueError as error:
            job.fail(RouterError(str(error)))
            return
        preferred = job.selection.preferred_providers if job.selection else ()
        if preferred:
            rank = {name: i for i, name in enumerate(preferred)}

            def preference(c: Candidate) -> int:
                return rank.get(c.provider, rank.get(c.provider_type, len(rank)))

            ordered.sort(key=preference)  # stable: strategy order within equal preference
        job.estimated_input_tokens = plan.estimated_input_tokens
        job.candidates = deque(ordered)
        job.reasons.update(plan.reasons)
        job.budget_refusals.extend(plan.budget_refusals)
        job.total_candidates = len(ordered) + len(plan.reasons)
        self._try_next(job)

    def _try_next(self, job: Job) -> None:
        if job.done:
            return
        now = self.clock()
        if len(job.candidates) > 1:
            job.candidates = rate_limited_last(job.candidates, self.snapshots, time.monotonic())
        while job.candidates:
            candidate = job.candidates.popleft()
            reason = self._skip_reason(candidate, now)
            if reason is not None:
                job.reasons[candidate.key] = reason
                if reason.startswith("circuit open"):
                    snap = self.snapshots[candidate.provider]
                    job.errors[candidate.key] = CircuitOpenError(
                        reason,
                        provider=candidate.provider,
                        retry_after=max(0.0, (snap.circuit_retry_at or now) - now),
                    )
                continue
            ref = self.providers.get(candidate.provider)
            if ref is None:
                job.reasons[candidate.key] = "provider is not running"
                continue
            may_wait = not job.candidates
            if self.has_budgets:
                if candidate.estimated_cost is None:
                    job.reasons[candidate.key] = (
                        f"no known price for '{candidate.model}' under an enforced budget"
                    )
                    continue
                rid = f"{job.id}:{candidate.key}"
                attempt = Attempt(job, candidate, rid, may_wait)
                self.budget.tell(Reserve(attempt, candidate.estimated_cost, ref, self.actor_ref))
            else:
                ref.tell(Attempt(job, candidate, None, may_wait))
            return
        job.fail(self._exhausted(job))

    def _skip_reason(self, candidate: Candidate, now: float) -> str | None:
        return skip_reason(candidate, self.snapshots, now)

    def _skipped(self, candidate: Candidate) -> bool:
        # What _try_next will pass over (or move behind the others: a running Retry-After);
        # round-robin moves its cursor past it (strategies.py).
        return self._skip_reason(candidate, self.clock()) is not None or _rate_limited(
            self.snapshots.get(candidate.provider), time.monotonic()
        )

    def _on_attempt_failed(self, message: AttemptFailed) -> None:
        job, candidate, error = message.job, message.candidate, message.error
        if message.reservation_id is not None:
            self.budget.tell(Release(message.reservation_id))
        job.reasons[candidate.key] = f"{type(error).__name__}: {error.message}"
        job.errors[candidate.key] = error
        self._try_next(job)

    def _exhausted(self, job: Job) -> RouterError:
        """The error for a job whose every candidate was skipped or failed."""
        attempted = job.attempts > 0
        if job.budget_refusals and not attempted and len(job.budget_refusals) >= len(job.errors):
            first = job.budget_refusals[0]
            if len(job.reasons) > 1:
                first.message += f" (candidates refused: {', '.join(job.reasons)})"
            return first
        if job.total_candidates == 1 and len(job.errors) == 1:
            return next(iter(job.errors.values()))
        retry_after = _soonest_retry(job, self.snapshots, self.clock())
        if not job.reasons:
            return NoProviderAvailableError("no provider is configured for this request")
        return NoProviderAvailableError(
            "no provider could serve the request: " + _reasons_text(job.reasons),
            reasons=dict(job.reasons),
            errors=dict(job.errors),
            retry_after=retry_after,
        )


def skip_reason(
    candidate: Candidate, snapshots: dict[str, HealthSnapshot], now: float
) -> str | None:
    """Why the candidate's provider cannot be tried now (its last snapshot), or None."""
    snap = snapshots.get(candidate.provider)
    if snap is None:
        return None
    if snap.disabled_reason:
        return f"unavailable: {snap.disabled_reason}"
    if snap.circuit_state == "open" and snap.circuit_retry_at and snap.circuit_retry_at > now:
        return f"circuit open (retry in {snap.circuit_retry_at - now:.1f}s)"
    return None


def rate_limited_last(
    candidates: deque[Candidate], snapshots: dict[str, HealthSnapshot], now: float
) -> deque[Candidate]:
    """``candidates`` with those whose provider asked us to wait (a Retry-After still
    running, ``rate_limited_until``) moved behind the others, in their order.

    Not dropped: when every other candidate fails, the last one may still wait out the
    provider's pause if the request's deadline allows (the provider actor decides).
    """
    limited = [c for c in candidates if _rate_limited(snapshots.get(c.provider), now)]
    if not limited or len(limited) == len(candidates):
        return candidates
    waiting = {id(c) for c in limited}
    return deque([c for c in candidates if id(c) not in waiting] + limited)


def _rate_limited(snap: HealthSnapshot | None, now: float) -> bool:
    return (
        snap is not None and snap.rate_limited_until is not None and snap.rate_limited_until > now
    )


def plan_direct(
    job: Job,
    planner: Planner,
    snapshots: dict[str, HealthSnapshot],
    providers: dict[str, Any],
    now: float,
) -> Candidate | Dispatch:
    """On the caller's thread: the job's only candidate when there is nothing to choose.

    With one candidate no strategy has anything to order and, without budgets, nothing needs
    reserving: the supervisor would only forward the job (a thread hand-off of its own). The
    planner is pure and the snapshots are immutable, so the caller plans here and sends the
    job straight to the candidate's provider. A failed attempt still goes to the supervisor
    (``AttemptFailed``), which ends the job with the error it would have given. Otherwise
    returns the ``Dispatch`` to tell the supervisor (with the plan, so it is not made twice).
    """
    try:
        plan = planner.plan(job.request, job.selection)
    except (RouterError, ValueError):
        return Dispatch(job)  # the supervisor plans again and reports the error
    if len(plan.candidates) != 1 or plan.reasons or plan.budget_refusals:
        return Dispatch(job, plan)
    candidate = plan.candidates[0]
    if candidate.provider not in providers or skip_reason(candidate, snapshots, now) is not None:
        return Dispatch(job, plan)
    job.estimated_input_tokens = plan.estimated_input_tokens
    job.total_candidates = 1
    return candidate


def _reasons_text(reasons: dict[str, str]) -> str:
    return "; ".join(f"{key}: {why}" for key, why in reasons.items())


def _soonest_retry(job: Job, snapshots: dict[str, HealthSnapshot], now: float) -> float | None:
    times: list[float] = []
    for error in job.errors.values():
        if error.retry_after is not None:
            times.append(error.retry_after)
    mono = time.monotonic()
    for snap in snapshots.values():
        if snap.circuit_retry_at is not None and snap.circuit_retry_at > now:
            times.append(snap.circuit_retry_at - now)
        if snap.rate_limited_until is not None and snap.rate_limited_until > mono:
            times.append(snap.rate_limited_until - mono)
    return min(times) if times else None
