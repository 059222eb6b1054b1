"""The messages actors tell each other. Small immutable tuples; never mutated after sending."""

from __future__ import annotations

from typing import Any, NamedTuple

from router.errors import RouterError
from router.jobs import Job
from router.models import AIResponse, Usage
from router.strategies import Candidate

__all__ = [
    "Dispatch",
    "AttemptFailed",
    "ReservationRefused",
    "Attempt",
    "Outcome",
    "Admitted",
    "Reconfigure",
    "Probe",
    "ProbeResult",
    "FleetRefused",
    "FleetCircuit",
    "Reserve",
    "Settle",
    "Release",
    "ExpireReservations",
]


# --- to the supervisor ---------------------------------------------------------------------


class Dispatch(NamedTuple):
    """A new request from a caller (``plan``: made on the caller's thread, if it was)."""

    job: Job
    plan: Any = None


class AttemptFailed(NamedTuple):
    """A candidate could not serve the job (after its retries); try the next one."""

    job: Job
    candidate: Candidate
    error: RouterError
    reservation_id: str | None


class ReservationRefused(NamedTuple):
    """The budget actor refused the candidate's worst-case cost."""

    job: Job
    candidate: Candidate
    error: RouterError


# --- to a provider -------------------------------------------------------------------------


class Attempt(NamedTuple):
    """Send the job to this provider (``number`` counts retries on this provider from 1)."""

    job: Job
    candidate: Candidate
    reservation_id: str | None
    may_wait: bool  # the last candidate: wait for a rate limit instead of failing over
    number: int = 1
    # The breaker permit it was admitted with when that was a half-open trial (set by the
    # provider actor; None: a regular admission). Only the trial's own outcome ends the trial.
    permit: Any = None


class Outcome(NamedTuple):
    """What a worker thread saw for one HTTP attempt."""

    attempt: Attempt
    response: AIResponse | None
    error: RouterError | None
    latency_ms: float
    started: bool = False  # a streamed chunk reached the caller before the error
    cancelled: bool = False  # the caller went away; not the provider's fault
    partial_usage: Usage | None = None
    partial_cost: float = 0.0
    # The attempt ended its reservation itself (it settled a partial stream into it): nobody
    # releases it, and a retry reserves anew.
    reservation_ended: bool = False


class Admitted(NamedTuple):
    """A caller admitted this attempt itself through the provider's open door (see
    ``ProviderActor._push``) and runs it on its own thread; queued, never told, so the actor
    counts it in flight before it sees the attempt's outcome."""

    attempt: Attempt


class Reconfigure(NamedTuple):
    """Runtime changes: any of enabled, priority, api_key, rpm, tpm (None = unchanged)."""

    changes: dict[str, Any]


class Probe(NamedTuple):
    """Time for an active health probe."""


class ProbeResult(NamedTuple):
    ok: bool
    error: str | None


class FleetRefused(NamedTuple):
    """The fleet refused an admitted attempt before it was sent (``router.fleet.gate``):
    ``kind`` ``"rate"`` (the shared rpm/tpm window is full) or ``"circuit"`` (another process
    holds the half-open trial); ``wait`` seconds until it may go. ``trial``: the attempt was
    this process's half-open trial."""

    attempt: Attempt
    kind: str
    wait: float
    trial: bool = False


class FleetCircuit(NamedTuple):
    """The provider's circuit as the fleet sees it (``router.fleet.sync``): ``state``
    ``"open"`` or ``"closed"``, ``retry_in`` seconds until a trial may go. ``seq``: the last
    of this actor's own publications the reading had seen (older readings are ignored)."""

    state: str
    retry_in: float
    seq: int


# --- to the budget actor -------------------------------------------------------------------


class Reserve(NamedTuple):
    """Reserve ``amount`` on every applicable limit, then forward the attempt to ``target``."""

    attempt: Attempt
    amount: float
    target: Any  # the provider's ActorRef
    reply_to: Any  # the supervisor's ActorRef


class Settle(NamedTuple):
    """The real cost of a finished attempt (``reservation_id`` None when nothing was reserved)."""

    reservation_id: str | None
    record: Any  # router.ledger.UsageRecord (day/month filled by the budget actor)


class Release(NamedTuple):
    reservation_id: str


class ExpireReservations(NamedTuple):
    """Periodic: release reservations whose holder died (shared ledgers)."""
