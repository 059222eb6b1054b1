"""The fleet's part of admission, run by the thread that runs the attempt (never an actor).

The provider actor admits an attempt as usual (usable, this process's breaker, in flight), but
with a shared store it does not count the attempt in a local rpm/tpm window: the attempt's own
thread takes the fleet-wide token first, and, for a half-open trial, the fleet-wide trial
lease. A refusal goes back to the actor as :class:`~router.actors.messages.FleetRefused`, and
the actor does what it does for its own window or an open circuit: wait, or fail over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from router.actors.messages import Attempt, FleetRefused
from router.fleet import FleetStore

__all__ = ["run_gated", "TRIAL_MARGIN"]

logger = logging.getLogger(__name__)

#: Seconds a trial lease outlives its request's deadline (a process that dies mid-trial frees
#: the trial for another process after that).
TRIAL_MARGIN = 5.0


def run_gated(
    store: FleetStore,
    attempt: Attempt,
    rpm: int | None,
    tpm: int | None,
    trial: bool,
    provider_ref: Any,
    task: Callable[[], Any],
) -> Any:
    """Take the fleet's rate token (and trial lease), then run ``task`` (the attempt); on a
    refusal tell the provider and return ``None`` without sending anything."""
    job = attempt.job
    name = attempt.candidate.provider
    if not job.done:  # a finished job is reported cancelled by the attempt itself
        refused: FleetRefused | None = None
        if rpm or tpm:
            wait = store.take_rate(name, rpm, tpm, job.estimated_input_tokens)
            if wait > 0:
                refused = FleetRefused(attempt, "rate", wait, trial)
        if refused is None and trial:
            wait_trial = store.take_trial(name, max(0.0, job.remaining()) + TRIAL_MARGIN)
            if wait_trial is not None:
                refused = FleetRefused(attempt, "circuit", wait_trial, trial)
        if refused is not None:
            try:
                provider_ref.tell(refused)
            except pykka.ActorDeadError:
                logger.debug("dropped FleetRefused: provider stopped")
            return None
    return task()
