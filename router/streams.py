"""``ChunkStream``: the iterator ``stream_request`` returns, which reads its own stream.

The admitted attempt (admitted by the provider actor, or by the caller itself through the
provider's open door) waits in the job's queue; the thread that iterates the stream sends the
request and steps the attempt's generator (``router.attempt._stream_steps``) one network read at
a time. See docs/architecture.md, "Guarantee 3".
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator

import pykka

from router.errors import RequestCancelledError, RequestTimeoutError, RouterError
from router.jobs import Job, JobRegistry, StreamFailure
from router.models import StreamChunk

__all__ = ["ChunkStream"]


def _weakly(method: Callable[[], object]) -> Callable[[], object]:
    """``method`` called through a weak reference to its object (a no-op once it is gone)."""
    ref = weakref.WeakMethod(method)

    def call() -> object:
        bound = ref()
        return bound() if bound is not None else None

    return call


class ChunkStream:
    """Iterator of ``StreamChunk``s for one streamed request.

    Chunks arrive as the provider sends them. The last chunk has ``is_complete=True`` (with
    usage and cost) or is an error chunk; if the request fails before anything was delivered,
    iterating raises the typed error instead. ``close()`` (or leaving a ``with`` block) cancels
    the HTTP stream; the tokens seen are still billed.

    The stream is read on the thread that iterates it: the admitted attempt (admitted by the
    provider actor, or by the caller itself through the provider's open door) waits in the
    job's queue for the iterator, which sends the request and reads and parses each network
    read itself (no worker, no hand-over per read). Nothing is read until the first ``next()``
    or until ``future`` is asked for.
    """

    def __init__(self, job: Job, registry: JobRegistry) -> None:
        self._job = job
        self._registry = registry
        self._finished = False
        self._batch: deque[StreamChunk] = deque()  # chunks of one read not yet returned
        self._steps: Iterator[list[StreamChunk]] | None = None  # read on this thread
        self._stepping = threading.Lock()  # held while this thread reads the stream
        self._error: RouterError | None = None  # met while ``future`` read the stream

    @property
    def future(self) -> pykka.ThreadingFuture:
        """Resolves to the assembled ``AIResponse`` when the stream completes.

        Asking for it reads the rest of the stream on this thread, now; the chunks not
        iterated yet stay available to iterate.
        """
        if not self._finished:
            rest: list[StreamChunk] = []
            try:
                rest.extend(self)
            except RouterError as error:
                self._error = error  # raised again to whoever iterates
            self._batch.extend(rest)
        return self._job.future

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    @property
    def answering(self) -> tuple[str, str] | None:
        """(provider name, model) of the attempt reading the stream now, once one has been
        accepted (the provider answered 2xx); a failover before any chunk may change it."""
        answering = self._job.answering
        return (answering[1], answering[2]) if answering is not None else None

    def accepted(self) -> None:
        """Wait until a provider has accepted the stream (its answer's headers are in) or the
        first chunk is ready; raises the typed error, as ``next()`` does, when the request
        fails before that. No chunk is consumed: iterating yields them all."""
        if self._batch or self._finished or self._steps is not None:
            return
        chunk = self._next(until_accepted=True)
        if chunk is not None:
            self._batch.appendleft(chunk)

    def __next__(self) -> StreamChunk:
        chunk = self._next(until_accepted=False)
        assert chunk is not None
        return chunk

    def _next(self, until_accepted: bool) -> StreamChunk | None:
        if self._batch:
            return self._batch.popleft()
        if self._finished:
            error, self._error = self._error, None
            if error is not None:
                raise error
            raise StopIteration
        job = self._job
        assert job.chunks is not None
        while True:
            if self._steps is not None:
                if until_accepted:
                    return None
                batch = self._step()
                if batch:
                    self._batch.extend(batch)
                    return self._batch.popleft()
                continue
            try:
                item = job.chunks.get(timeout=max(1.0, job.remaining() + 1.0))
            except queue.Empty:
                if job.done and not job.started:
                    continue
                job.fail(RequestTimeoutError("the stream stalled past its deadline"))
                continue
            if callable(item):  # the admitted attempt: send it and read it here
                if not job.claim(item):
                    continue  # already reported cancelled by whoever finished the job
                steps = self._registry.run_inline(item)
                if steps is not None:
                    self._steps = steps
                    # Weakly: the job must not keep this stream alive, or dropping the last
                    # reference to a half-read stream would not close (and bill) it.
                    job.on_cancel(_weakly(self._abort))
                continue
            if isinstance(item, StreamFailure):
                self._finish()
                raise item.error
            if item.is_complete:
                self._finish()
            return item

    def _step(self) -> list[StreamChunk] | None:
        """Read the next batch of chunks on this thread; None when the attempt has ended."""
        with self._stepping:
            steps = self._steps
            if steps is None:
                return None
            try:
                batch = self._registry.run_inline(next, steps)
            except StopIteration:
                self._steps = None
                return None
            job = self._job
            if batch:
                job.mark_started()
            if job.done:  # failed meanwhile (stop, close): bill what was read
                self._steps = None
                self._registry.run_inline(steps.close)
            return batch

    def _abort(self) -> None:
        # The job was failed from another thread (stop(), a deadline, close()): end the
        # attempt now unless this stream's thread is reading it (it ends it after the read).
        if self._stepping.acquire(blocking=False):
            try:
                steps, self._steps = self._steps, None
                if steps is not None:
                    self._registry.run_inline(steps.close)
            finally:
                self._stepping.release()

    def _finish(self) -> None:
        self._finished = True
        for task in self._job.detach_inline():  # admitted as the stream ended: report them
            self._registry.run_inline(task)

    def close(self) -> None:
        if not self._finished:
            self._job.fail(RequestCancelledError("the caller closed the stream"))
            self._abort()
            self._batch.clear()
            self._finish()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
