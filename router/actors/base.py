"""The base class of the router's actors: a pykka ``ThreadingActor`` with a leaner inbox.

pykka's default inbox is a ``queue.Queue`` (a Python-level condition variable and a lock
allocated per wait). ``queue.SimpleQueue`` is implemented in C and satisfies pykka's
``ActorInbox`` protocol (``put``, ``get``, ``empty``); a ``tell`` costs about a quarter as
much, which matters because every request passes through several actors.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

import pykka

from router.actors.deferred import DeferredMessages, Flush
from router.errors import RouterError

__all__ = ["RouterActor"]

logger = logging.getLogger(__name__)


class RouterActor(pykka.ThreadingActor):
    """``pykka.ThreadingActor`` with a ``SimpleQueue`` inbox and guarded message handling.

    Subclasses implement :meth:`handle`. pykka stops an actor when a *told* message raises,
    which would leave every later request waiting forever; here such a failure is logged and
    fails only the request the message was about. Asks (strings and plain tuples) still raise
    to their caller.
    """

    #: Messages other threads queued without waking this actor (router.actors.deferred).
    deferred: DeferredMessages | None = None

    @staticmethod
    def _create_actor_inbox() -> Any:
        return queue.SimpleQueue()

    def handle(self, message: Any) -> Any:
        raise NotImplementedError

    def drain_deferred(self, *, flush: bool = False) -> None:
        """Handle every deferred message now, oldest first."""
        if self.deferred is not None:
            batch = self.deferred.drain(flush=flush)
            if batch:
                self.handle_deferred(batch)
                self.deferred.batch_done()

    def handle_deferred(self, batch: list[Any]) -> None:
        """Handle a batch of deferred messages (an actor may apply them together)."""
        for message in batch:
            self._guarded(message)

    def on_receive(self, message: Any) -> Any:
        deferred = self.deferred
        if deferred is not None:
            # Deferred messages first: whatever this message sees or answers counts them.
            if isinstance(message, Flush):
                self.drain_deferred(flush=True)
                return None
            if len(deferred):
                self.drain_deferred()
        return self._guarded(message)

    def _guarded(self, message: Any) -> Any:
        try:
            return self.handle(message)
        except Exception as error:
            if not hasattr(message, "_fields"):  # an ask: the caller gets the exception
                raise
            logger.exception("%s failed on %s", type(self).__name__, type(message).__name__)
            job = getattr(message, "job", None)
            if job is None:
                job = getattr(getattr(message, "attempt", None), "job", None)
            if job is not None:
                job.fail(RouterError(f"internal error ({type(error).__name__}); see the log"))
            return None
