"""A pending request and its exactly-once resolution.

A ``Job`` is created by the manager for every ``submit``/``stream_request``. Several threads
may try to finish it: the worker that got the answer, the scheduler when the deadline passes,
the supervisor when no candidate is left, ``stop()``. The first one wins; every later attempt
is dropped. That single rule is what makes futures resolve exactly once.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from router.errors import RouterError
from router.green import LoopInbox, new_queue
from router.health import percentile
from router.ids import random_hex
from router.models import AIRequest, AIResponse, ProviderSelection, StreamChunk

__all__ = ["Job", "JobRegistry", "StreamFailure", "FINISHED"]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)

#: Put in an inline job's inbox when the job is finished: the waiting caller stops waiting.
FINISHED = object()


class StreamFailure:
    """Queue item telling a stream consumer to raise ``error`` (nothing was delivered yet)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _exc_info(error: BaseException):
    return (type(error), error, error.__traceback__)


class Job:
    """One caller request on its way through the actors."""

    __slots__ = (
        "id",
        "request",
        "strategy",
        "selection",
        "future",
        "deadline",
        "created",
        "chunks",
        "started",
        "cancelled",
        "estimated_input_tokens",
        "candidates",
        "reasons",
        "errors",
        "budget_refusals",
        "attempts",
        "total_candidates",
        "timer",
        "inbox",
        "cache_key",
        "trace",
        "answering",
        "_parked",
        "_lock",
        "_done",
        "_on_cancel",
        "_registry",
    )

    def __init__(
        self,
        request: AIRequest,
        *,
        strategy: str,
        selection: ProviderSelection | None,
        timeout: float,
        registry: JobRegistry,
        stream: bool = False,
        inline: bool = False,
    ) -> None:
        # Unique across processes too: the id keys reservations and usage records in a shared
        # ledger, where a collision would drop a record as a duplicate.
        self.id = f"r{next(_ids):x}-{random_hex(12)}"
        self.request = request
        self.strategy = strategy
        self.selection = selection
        self.future: pykka.ThreadingFuture = pykka.ThreadingFuture()
        self.created = time.monotonic()
        self.deadline = self.created + timeout
        # A LoopInbox when the caller is a request greenlet (router.green): same put/get.
        self.chunks: queue.SimpleQueue | LoopInbox | None = new_queue() if stream else None
        self.started = False  # a chunk has reached the caller: no more failover
        self.cancelled = False
        self.estimated_input_tokens = 0
        self.candidates: deque = deque()
        self.reasons: dict[str, str] = {}
        self.errors: dict[str, RouterError] = {}
        self.budget_refusals: list[Any] = []
        self.attempts = 0
        self.total_candidates = 0
        self.timer: Any = None
        # The caller's own queue while it waits on its thread (``inline``): the provider actor
        # hands the attempt over there, so the HTTP call runs on the caller's thread instead
        # of a worker's (one thread hand-off less each way). Streams share ``chunks``.
        self.inbox: queue.SimpleQueue | LoopInbox | None = None
        if inline:
            self.inbox = self.chunks if self.chunks is not None else new_queue()
        self.cache_key: str | None = None  # where the answer goes in the response cache
        self.trace: Any = None  # router.tracing.RequestTrace when the request is traced
        # Tasks handed to the waiting caller that it has not taken yet. Whoever finishes the
        # job runs them (they see it finished and report their attempt cancelled), so an
        # attempt nobody will ever take — a stream never iterated — still gives back its
        # breaker trial, in-flight count and reservation at the deadline.
        self._parked: list[Callable[..., object]] = []
        # (provider type, provider name, model) of the stream attempt reading the answer;
        # a stream's error chunk names them.
        self.answering: tuple[Any, str, str] | None = None
        self._lock = threading.Lock()
        self._done = False
        self._on_cancel: list[Callable[[], object]] = []
        self._registry = registry

    @property
    def done(self) -> bool:
        return self._done

    @property
    def is_stream(self) -> bool:
        return self.chunks is not None

    def resolve(self, response: AIResponse, final_chunk: StreamChunk | None = None) -> bool:
        """Finish with a response (and, for streams, the final chunk). False if already done."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            self._on_cancel = []
            parked = self._parked
            if parked:  # none on the common path: no new list per answer
                self._parked = []
        if self.timer is not None:
            self.timer.cancel()
        if parked:
            _report(parked)
        if self.chunks is not None and final_chunk is not None:
            self.chunks.put(final_chunk)
        self.future.set(response)
        self._wake_inline()
        self._registry.finished(self, response, None)
        return True

    def fail(self, error: RouterError) -> bool:
        """Finish with an error; a stream gets an error chunk (or a raise, if nothing was sent)."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            hooks, self._on_cancel = self._on_cancel, []
            parked, self._parked = self._parked, []
        if self.timer is not None:
            self.timer.cancel()
        if parked:
            # Before the future: whoever hears of the failure finds the provider told.
            _report(parked)
        if self.chunks is not None:
            if self.started:
                kind, name, model = self.answering or (None, error.provider, None)
                self.chunks.put(
                    StreamChunk(
                        is_complete=True,
                        finish_reason="error",
                        error=str(error),
                        error_type=type(error).__name__,
                        provider=kind,
                        provider_name=name,
                        model=model,
                    )
                )
            else:
                self.chunks.put(StreamFailure(error))
        self.future.set_exception(_exc_info(error))
        self._wake_inline()
        for hook in hooks:
            try:
                hook()
            except Exception:  # closing an already-broken connection may raise; irrelevant
                pass
        self._registry.finished(self, None, error)
        return True

    def _wake_inline(self) -> None:
        inbox = self.inbox
        if inbox is not None and self.chunks is None:  # a stream's consumer is woken by chunks
            inbox.put(FINISHED)

    def offer_inline(self, task: Callable[..., object]) -> bool:
        """Hand ``task`` to the caller waiting on its own thread; False if it is not waiting.

        Checked under the job's lock against :meth:`detach_inline`, so a task is either run by
        the caller or refused here (and run by a worker), never left in an abandoned queue.
        """
        with self._lock:
            if self.inbox is None or self._done:
                return False
            self._parked.append(task)
            self.inbox.put(task)
            return True

    def claim(self, task: Callable[..., object]) -> bool:
        """The caller takes ``task`` from its inbox to run it; False if it was already run
        (reported cancelled) by whoever finished the job or detached the inbox."""
        with self._lock:
            try:
                self._parked.remove(task)
            except ValueError:
                return False
            return True

    def detach_inline(self) -> list[Callable[..., object]]:
        """The caller stops waiting: later tasks go to workers; returns tasks not taken.

        Each returned task must still be run (it sees the job finished and reports the
        attempt cancelled, so its provider's in-flight count is released).
        """
        with self._lock:
            self.inbox = None
            parked, self._parked = self._parked, []
        return parked

    def mark_started(self) -> None:
        """A chunk reached the caller directly (it reads the stream itself): no failover."""
        if not self.started:
            self.started = True
            if self.timer is not None:
                self.timer.cancel()

    def on_cancel(self, hook: Callable[[], object]) -> None:
        """Run ``hook`` (e.g. close the HTTP response) if the job is failed/cancelled early."""
        with self._lock:
            if not self._done:
                self._on_cancel.append(hook)
                return
        try:
            hook()
        except Exception:
            pass

    def clear_cancel_hooks(self) -> None:
        with self._lock:
            self._on_cancel = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _report(tasks: list[Callable[..., object]]) -> None:
    """Run parked attempts of a finished job: each only reports itself cancelled (no I/O)."""
    for task in tasks:
        try:
            task()
        except Exception:  # a report must not stop the job from finishing
            logger.exception("a parked attempt failed to report itself")


class JobRegistry:
    """Pending jobs (so ``stop()`` can fail them) and request statistics."""

    def __init__(self, latency_window: int = 1000) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Job] = {}
        self.total = 0
        self.successes = 0
        self.failures = 0
        self.cost = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.errors_by_type: dict[str, int] = {}
        self.by_model: dict[str, dict[str, float]] = {}
        self._latencies: deque[float] = deque(maxlen=latency_window)
        # Attempts running on callers' threads right now (``stop()`` waits for them as it
        # waits for the workers, so their settlements land before the budget actor stops).
        self._inline_running = 0
        self._inline_idle = threading.Condition(self._lock)
        # Called with (job, response, error) on the thread that finishes a job, after its
        # future is set (the response cache stores answers, observers record them).
        self.listeners: list[Callable[[Job, AIResponse | None, BaseException | None], Any]] = []

    def run_inline(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run (a step of) an attempt handed to a waiting caller, on the caller's thread."""
        with self._lock:
            self._inline_running += 1
        try:
            return step(*args, **kwargs)
        finally:
            with self._lock:
                self._inline_running -= 1
                if not self._inline_running:
                    self._inline_idle.notify_all()

    def wait_inline(self, timeout: float) -> bool:
        """Wait until no attempt runs on a caller's thread; False on timeout."""
        with self._lock:
            return self._inline_idle.wait_for(lambda: not self._inline_running, timeout)

    def add(self, job: Job) -> None:
        with self._lock:
            self._pending[job.id] = job

    def finished(self, job: Job, response: AIResponse | None, error: BaseException | None):
        elapsed_ms = (time.monotonic() - job.created) * 1000.0
        with self._lock:
            self._pending.pop(job.id, None)
            self.total += 1
            if response is not None:
                self.successes += 1
                self.cost += response.cost
                self.input_tokens += response.usage.input_tokens
                self.output_tokens += response.usage.output_tokens
                self._latencies.append(elapsed_ms)
                model = self.by_model.setdefault(
                    response.model, {"requests": 0, "cost": 0.0, "tokens": 0}
                )
                model["requests"] += 1
                model["cost"] += response.cost
                model["tokens"] += response.usage.total_tokens
            else:
                self.failures += 1
                name = type(error).__name__
                self.errors_by_type[name] = self.errors_by_type.get(name, 0) + 1
        for listener in self.listeners:
            try:
                listener(job, response, error)
            except Exception:  # an observer must never break the request it observes
                logger.exception("job listener %r failed", listener)

    def pending(self) -> list[Job]:
        with self._lock:
            return list(self._pending.values())

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            ordered = sorted(self._latencies)
            total = self.total
            return {
                "total_requests": total,
                "successful_requests": self.successes,
                "failed_requests": self.failures,
                "pending_requests": len(self._pending),
                "success_rate": (self.successes / total) if total else 1.0,
                "total_cost": self.cost,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
                "errors_by_type": dict(self.errors_by_type),
                "by_model": {k: dict(v) for k, v in self.by_model.items()},
                "latency_ms": {
                    "p50": percentile(ordered, 0.5),
                    "p95": percentile(ordered, 0.95),
                    "p99": percentile(ordered, 0.99),
                },
            }
