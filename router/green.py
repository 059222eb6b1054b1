"""Blocking code on an event loop: each bridge request runs as a greenlet, not a thread.

The router's request path is written as plain blocking code (``process_request`` waits on its
job's queue, an attempt sends and reads HTTP). Threads make that cost an OS thread per call in
flight and a GIL hand-off per wake-up. Under ``router serve``'s event-loop engine
(``router.green_server``) each request instead runs in a greenlet on the loop's thread, and the
few places that wait (:class:`LoopInbox`, :func:`acquire`, the HTTP client in
``router.green_http``) park the greenlet on an awaitable instead of blocking: thousands of calls
in flight cost one thread. This is the bridge SQLAlchemy's asyncio support uses
(``greenlet_spawn`` / ``await_only``).

Code that runs on a plain thread sees :func:`current_loop` return ``None`` and takes the
threaded path, unchanged; ``greenlet`` is imported only by :func:`enable`. Work that blocks in
ways a greenlet cannot park (the agent loop's MCP sessions) goes to a thread with
:func:`offload` while the greenlet parks.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = [
    "LoopInbox",
    "acquire",
    "close_offload",
    "current_loop",
    "eager",
    "enable",
    "new_queue",
    "offload",
    "offload_iteration",
    "run",
    "wait",
]

T = TypeVar("T")

_getcurrent: Callable[[], Any] | None = None  # greenlet.getcurrent once enabled
_Green: Any = None  # the greenlet subclass requests run in


def enable() -> None:
    """Load greenlet (the event-loop engine calls this before serving)."""
    global _getcurrent, _Green
    if _Green is not None:
        return
    import greenlet

    class Green(greenlet.greenlet):  # type: ignore[misc]
        """A request's greenlet; ``driver`` (the loop's) awaits on its behalf."""

        def __init__(self, fn: Callable[..., Any], driver: Any, loop: Any) -> None:
            super().__init__(fn, driver)
            self.driver = driver
            self.loop = loop

    _Green, _getcurrent = Green, greenlet.getcurrent


def current_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop the caller runs on as a request greenlet; None on a plain thread."""
    if _getcurrent is None:
        return None
    current = _getcurrent()
    return current.loop if type(current) is _Green else None


def wait(awaitable: Awaitable[T]) -> T:
    """Park the calling request greenlet until ``awaitable`` is done; its result or error."""
    current = _getcurrent() if _getcurrent is not None else None
    if type(current) is not _Green:
        raise RuntimeError("green.wait() outside a request greenlet")
    return current.driver.switch(awaitable)  # type: ignore[no-any-return]


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking ``fn(*args)`` as a greenlet on the running loop: each :func:`wait` in it
    is awaited here, so the loop serves others meanwhile. Returns what ``fn`` returns."""
    enable()
    task = _Green(fn, _getcurrent(), asyncio.get_running_loop())  # type: ignore[misc]
    result = task.switch(*args)
    while not task.dead:
        try:
            value = await result
        except BaseException as error:  # noqa: BLE001 - raised again inside the greenlet
            result = task.throw(error)
        else:
            result = task.switch(value)
    return result  # type: ignore[no-any-return]


def eager(coroutine: Coroutine[Any, Any, T], wait_rest: Callable[[Awaitable[T]], T]) -> T:
    """Run ``coroutine`` here, in the request greenlet, until it first waits; most of the
    bridge's awaits never do (uvicorn's ``send`` returns at once unless the client's buffer
    is full, ``receive`` when the body is in), and then no switch to the loop is paid. If it
    does wait, ``wait_rest`` (``wait``, or one bounded by a deadline) awaits the rest."""
    try:
        waiting = coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return wait_rest(_resume(coroutine, waiting))


async def _resume(coroutine: Coroutine[Any, Any, T], waiting: Any) -> T:
    """Carry on with ``coroutine``, stopped on ``waiting``, as its task would."""
    while True:
        try:
            if waiting is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:
                await asyncio.wait((waiting,))  # done, whatever its outcome
        except BaseException as error:  # noqa: BLE001 - cancelled: raised inside it
            try:
                waiting = coroutine.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            continue
        try:
            waiting = coroutine.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LoopInbox:
    """A job's queue (``queue.SimpleQueue``'s ``put``/``get``) whose reader is a request
    greenlet: ``get`` parks the greenlet; ``put`` works from any thread (actors and timers
    put from their own, through ``call_soon_threadsafe``)."""

    __slots__ = ("_items", "_loop", "_thread", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        if threading.get_ident() == self._thread:
            self._deliver(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop is closed: the server is gone, nobody reads this
            pass

    def _deliver(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None:
            _wake(self._waiter)

    def get(self, timeout: float | None = None) -> Any:
        """The next item; ``queue.Empty`` after ``timeout`` seconds without one."""
        if not self._items:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiter = waiter
            timer = None if timeout is None else self._loop.call_later(timeout, _wake, waiter)
            try:
                wait(waiter)
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._items:
                raise queue.Empty
        return self._items.popleft()


def new_queue() -> queue.SimpleQueue[Any] | LoopInbox:
    """A queue for the calling code to wait on: a :class:`LoopInbox` in a request greenlet."""
    loop = current_loop()
    return queue.SimpleQueue() if loop is None else LoopInbox(loop)


def acquire(slots: Any, timeout: float) -> bool:
    """``slots.acquire(timeout=timeout)`` without blocking the loop when run in a greenlet
    (a full provider's waiters wait on a thread of the loop's default executor)."""
    loop = current_loop()
    if loop is None:
        return bool(slots.acquire(timeout=timeout))
    if slots.acquire(blocking=False):
        return True
    waiting = loop.run_in_executor(None, lambda: slots.acquire(timeout=timeout))
    try:
        return bool(wait(waiting))
    except BaseException:
        # Given up (the request was cancelled): a slot taken after all goes straight back.
        waiting.add_done_callback(_give_back(slots))
        raise


def _give_back(slots: Any) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None and future.result():
            slots.release()

    return done


# --- blocking work a greenlet cannot park on --------------------------------------------------

_OFFLOAD_THREADS = 32
# Per loop (a server's): its engine joins them when it stops (close_offload).
_offload_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ThreadPoolExecutor] = (
    weakref.WeakKeyDictionary()
)


def _offload_threads(loop: asyncio.AbstractEventLoop) -> ThreadPoolExecutor:
    pool = _offload_pools.get(loop)  # only the loop's own thread gets here: no lock
    if pool is None:
        pool = _offload_pools[loop] = ThreadPoolExecutor(
            _OFFLOAD_THREADS, thread_name_prefix="router-offload"
        )
    return pool


def close_offload(loop: asyncio.AbstractEventLoop) -> None:
    """Join ``loop``'s offload threads (the engine calls it once its loop has stopped)."""
    pool = _offload_pools.pop(loop, None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def offload(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, which may block in ways a greenlet cannot park (the agent loop waits on
    MCP sessions and thread futures): on a thread of a shared pool when called from a request
    greenlet, which parks meanwhile; directly on a plain thread."""
    loop = current_loop()
    if loop is None:
        return fn(*args)
    return wait(loop.run_in_executor(_offload_threads(loop), fn, *args))


def offload_iteration(iterable: Iterable[T]) -> Iterable[T]:
    """``iterable``, each of its steps run through :func:`offload` when iterated by a request
    greenlet (a streamed answer whose every step may block); itself on a plain thread."""
    loop = current_loop()
    if loop is None:
        return iterable
    return _Offloaded(iter(iterable), loop)


_END: Any = object()


class _Offloaded(Iterator[T]):
    """An iterator whose steps run on the offload pool, one at a time; ``close()`` runs there
    too, after the step in progress (a generator cannot be closed while it runs)."""

    def __init__(self, steps: Iterator[T], loop: asyncio.AbstractEventLoop) -> None:
        self._steps = steps
        self._pool = _offload_threads(loop)
        self._lock = threading.Lock()

    def __next__(self) -> T:
        item = offload(self._step)
        if item is _END:
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def _step(self) -> Any:
        with self._lock:
            return next(self._steps, _END)

    def close(self) -> None:
        """From the greenlet, the loop (a client that left) or any thread; never waits."""
        close = getattr(self._steps, "close", None)
        if close is None:
            return
        try:
            self._pool.submit(self._close, close)
        except RuntimeError:  # the pool is shut down: no step can be running any more
            self._close(close)

    def _close(self, close: Callable[[], Any]) -> None:
        with self._lock:
            close()
