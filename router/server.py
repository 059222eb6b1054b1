"""Run the bridge on cheroot, a production WSGI server: one process, or several workers.

    serve(manager, host="127.0.0.1", port=8080)                   # blocks; Ctrl-C/SIGTERM stop
    serve_workers(make_manager, workers=4, port=8080)             # pre-forked processes

    with BridgeServer(manager) as server:                         # background, free port
        requests.get(server.url + "/healthz")

Why cheroot (measured, see ``docs/performance.md``): its connection manager parks idle
keep-alive connections in a selector instead of on a thread and hands a connection to a
worker thread only when a request arrives, and it costs the least CPU per request of the
thread-based servers tried (waitress, gunicorn's gthread, granian's WSGI mode). The bridge
stays a plain WSGI app on request threads: the manager's calls block, so each request in
flight, and each open stream, holds one thread. The pool starts small and grows with demand
(with small stacks) up to ``threads``; past the app's ``max_in_flight`` the bridge answers 503
with ``Retry-After`` at once. ``timeout`` bounds every read and write on a client socket, so
a client that sends its request slowly, or reads its stream slowly, holds only its own
connection and thread, and only until then. ``cheroot`` is imported only when a server is
created.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_THREADS",
    "DEFAULT_TIMEOUT",
    "BridgeServer",
    "default_max_in_flight",
    "serve",
    "serve_workers",
    "server_engine",
]

logger = logging.getLogger(__name__)

#: Request threads at most: every request in flight and every open stream holds one.
DEFAULT_THREADS = 2048
#: Idle keep-alive connections kept open (past it a finished response closes its connection).
DEFAULT_MAX_CONNECTIONS = 10_000
#: Seconds one read or write on a client socket may wait (slow senders, slow stream readers,
#: idle keep-alive connections).
DEFAULT_TIMEOUT = 30.0
# Threads the pool starts with, adds at a time when a request finds none idle, and keeps idle
# after a burst; their stack size (Python frames live on the heap; 1 MiB is ample for C).
_MIN_THREADS = 16
_GROW_STEP = 16
_SHRINK_EVERY = 30.0
_STACK_SIZE = 1024 * 1024
_BACKLOG = 4096


def default_max_in_flight(threads: int) -> int:
    """Requests admitted at once for a pool of ``threads``: a few threads stay free to answer
    the 503s (and ``/healthz``, ``/metrics``) at once when the bridge is full."""
    return max(1, threads - min(48, threads // 8))


def _app_for(manager_or_app: Any, create_app_kwargs: dict[str, Any]) -> Callable[..., Any]:
    if hasattr(manager_or_app, "stream_request"):
        from router.bridge import create_app

        return create_app(manager_or_app, **create_app_kwargs)
    if create_app_kwargs:
        raise TypeError(
            "create_app options ("
            + ", ".join(sorted(create_app_kwargs))
            + ") need a manager, not a ready WSGI app"
        )
    if not callable(manager_or_app):
        raise TypeError("serve() needs an AIProviderManager or a WSGI application")
    return manager_or_app


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one (each connection is a descriptor,
    twice over when it is relayed upstream); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


#: Allocations between young collections while serving (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Set the cyclic garbage collector for a server that holds hundreds of calls in flight.

    With CPython's defaults a full collection walked every object of every call in flight
    while all of them waited: at 250 requests/s it was the p99 of the bridge's overhead
    (92-99 ms; 15-18 ms with this, same CPU per request; docs/performance.md). What the
    process built while starting (modules, configuration, actors) is frozen out of every
    collection, and young collections run after 20,000 allocations instead of 700.
    """
    import gc

    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, max(middle, 50), max(old, 100))


def _growing_pool(server: Any, threads: int) -> Any:
    """cheroot's thread pool, made to grow with demand and to shrink back after a burst."""
    from cheroot.workers.threadpool import ThreadPool, WorkerThread

    class GrowingPool(ThreadPool):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(server, min=min(_MIN_THREADS, threads), max=threads)
            self._waiting = 0  # workers blocked in get(): idle
            self._count_lock = threading.Lock()
            self._next_shrink = time.monotonic() + _SHRINK_EVERY
            self.get = self._get

        def _get(self) -> Any:
            with self._count_lock:
                self._waiting += 1
            try:
                return self._queue.get()
            finally:
                with self._count_lock:
                    self._waiting -= 1

        def put(self, obj: Any) -> None:
            super().put(obj)
            queued = self._queue.qsize()
            if queued > self._waiting and len(self._threads) < self.max:
                self.grow(max(_GROW_STEP, queued - self._waiting))
            elif time.monotonic() > self._next_shrink:
                self._next_shrink = time.monotonic() + _SHRINK_EVERY
                spare = self._waiting - queued - self.min
                if spare > 0:
                    self.shrink(spare)

        def grow(self, amount: int) -> None:
            # cheroot's own grow() polls each new thread with 0.1 s sleeps: not on this path.
            count = min(amount, max(self.max - len(self._threads), 0))
            previous = threading.stack_size()
            with contextlib.suppress(ValueError):
                threading.stack_size(_STACK_SIZE)
            try:
                for _ in range(count):
                    worker = WorkerThread(self.server)
                    worker.name = f"router-bridge-worker-{len(self._threads)}"
                    worker.daemon = True
                    worker.start()
                    self._threads.append(worker)
            finally:
                threading.stack_size(previous)

        def stop(self, timeout: float = 5) -> None:
            # cheroot's stop() joins a worker without a bound after shutting its socket; a
            # worker inside a stream waits on the upstream, which only the manager's stop()
            # ends. Bounded here: such a daemon thread is left to finish on its own.
            deadline = time.monotonic() + (timeout or 0)
            workers = list(self._threads)
            self._threads[:] = []
            for _ in workers:
                self._queue.put(_shutdown_request())
            for worker in workers:
                if worker is threading.current_thread():
                    continue
                worker.join(max(0.0, deadline - time.monotonic()))
                if worker.is_alive():
                    self._force_close(worker.conn)
                    worker.join(0.5)

    return GrowingPool()


def _one_write_gateway(gateway: type) -> type:
    """cheroot's WSGI gateway, sending a response's status line and headers together with its
    first body chunk (a whole non-streamed answer, or a stream's first event) in one write.

    cheroot writes the header block, then each chunk: two system calls (and two releases of
    the GIL, each a possible hand-off to another request thread) where one does.
    """

    class _Collect:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.parts.append(data if isinstance(data, bytes) else bytes(data))
            return len(data)

    class OneWriteGateway(gateway):  # type: ignore[misc,valid-type]
        def write(self, chunk: bytes) -> None:
            request = self.req
            if request.sent_headers or not self.started_response:
                super().write(chunk)
                return
            conn = request.conn
            socket_file, held = conn.wfile, _Collect()
            conn.wfile = held
            try:
                super().write(chunk)
            finally:
                conn.wfile = socket_file
                if held.parts:
                    socket_file.write(b"".join(held.parts))

    return OneWriteGateway


def _shutdown_request() -> Any:
    from cheroot.workers.threadpool import _SHUTDOWNREQUEST

    return _SHUTDOWNREQUEST


class ServerAddress:
    """``host`` and ``url`` of a bridge server (both engines); the server tells its ``port``."""

    _host: str

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"


class BridgeServer(ServerAddress):
    """The bridge on a cheroot server in a background thread.

    ``threads``: request threads at most (the pool grows to it with demand). For a manager,
    ``create_app_kwargs`` go to :func:`router.bridge.create_app`; ``max_in_flight`` defaults
    to :func:`default_max_in_flight` of ``threads``. ``max_connections``: idle keep-alive
    connections kept open. ``timeout``: seconds one socket read or write may wait.
    ``reuse_port``: ``SO_REUSEPORT``, so several processes can listen on one port.
    ``port=0`` picks a free port; :attr:`url` says which. ``start()`` returns once the socket
    listens; ``stop()`` closes every connection and joins the worker threads. The manager's
    lifecycle is the caller's: start it before and stop it after.
    """

    def __init__(
        self,
        manager_or_app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = DEFAULT_THREADS,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        reuse_port: bool = False,
        **create_app_kwargs: Any,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if hasattr(manager_or_app, "stream_request"):
            create_app_kwargs.setdefault("max_in_flight", default_max_in_flight(threads))
        self.app = _app_for(manager_or_app, create_app_kwargs)
        self._host = host
        self._port = port
        self._threads = threads
        self._max_connections = max_connections
        self._timeout = timeout
        self._reuse_port = reuse_port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _create(self) -> Any:
        from cheroot import wsgi

        server = wsgi.Server(
            (self._host, self._port),
            self.app,
            numthreads=min(_MIN_THREADS, self._threads),
            max=self._threads,
            server_name="router",
            request_queue_size=_BACKLOG,
            timeout=self._timeout,
            shutdown_timeout=5,
            reuse_port=self._reuse_port,
        )
        server.gateway = _one_write_gateway(server.gateway)
        server.requests = _growing_pool(server, self._threads)
        server.keep_alive_conn_limit = self._max_connections
        server.prepare()  # binds and listens
        return server

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.bind_addr[1])

    def start(self) -> BridgeServer:
        """Listen, and serve in a background thread."""
        with self._lock:
            if self._server is not None:
                return self
            self._server = self._create()
        self._thread = threading.Thread(
            target=self._server.serve, name=f"router-bridge-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: close the socket and every connection, join the worker threads."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _StopFlag:
    """A stop request that a signal handler may set: an ``Event``-like flag on a self-pipe.

    ``threading.Event.set`` takes the lock that ``Event.wait`` holds, so a handler that runs
    in the main thread while the main thread waits deadlocks (seen as a supervisor that never
    exits on SIGTERM). Writing a byte to a non-blocking pipe takes no Python lock.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._set = False

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending already
            os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if not self._set:
            with contextlib.suppress(InterruptedError):
                select.select([self._read], [], [], max(0.0, timeout))
        return self._set

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event | _StopFlag]:
    """A flag set by SIGTERM (systemd, docker stop) or SIGINT (Ctrl-C), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield threading.Event()
        return
    stop = _StopFlag()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop.close()


def serve(
    manager_or_app: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = DEFAULT_THREADS,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    timeout: float = DEFAULT_TIMEOUT,
    reuse_port: bool = False,
    ready: Callable[[str], object] | None = None,
    engine: str = "auto",
    **create_app_kwargs: Any,
) -> None:
    """Serve the bridge until Ctrl-C or SIGTERM (blocking).

    ``ready(url)`` is called once the socket listens (``router serve`` prints the URL with it).
    ``manager_or_app``: an ``AIProviderManager`` (wrapped with
    :func:`router.bridge.create_app` and ``create_app_kwargs``, e.g. ``auth_token=``,
    ``configure_token=``, ``max_in_flight=``) or a ready WSGI app; the other options are
    :class:`BridgeServer`'s. A manager that is not running is started here and stopped on the
    way out (after the server, so open streams are settled); a running one is left running.
    Binds 127.0.0.1 by default: expose it deliberately (``host="0.0.0.0"``), with an
    ``auth_token``. ``engine``: ``"loop"`` (:class:`router.green_server.GreenBridgeServer`:
    an event loop, requests as greenlets), ``"threads"`` (:class:`BridgeServer`: cheroot, a
    thread per request) or ``"auto"`` (the loop when its libraries are installed).
    """
    server_class = server_engine(engine)
    raise_open_files_limit()
    owns_manager = hasattr(manager_or_app, "stream_request") and not manager_or_app.running
    if owns_manager:
        manager_or_app.start()
    tune_gc()
    try:
        with _stop_on_signals() as stop:
            server = server_class(
                manager_or_app,
                host,
                port,
                threads,
                max_connections=max_connections,
                timeout=timeout,
                reuse_port=reuse_port,
                **create_app_kwargs,
            ).start()
            try:
                logger.info("router bridge serving on %s (%s engine)", server.url, engine)
                if ready is not None:
                    ready(server.url)
                while not stop.wait(1.0):
                    pass
            finally:
                server.stop()
    finally:
        if owns_manager:
            manager_or_app.stop()


def server_engine(engine: str) -> type:
    """The server class of an engine name (``auto``, ``loop`` or ``threads``)."""
    if engine not in ("auto", "loop", "threads"):
        raise ValueError(f"unknown engine {engine!r}: use auto, loop or threads")
    if engine != "threads":
        from router.green_server import GreenBridgeServer, engine_available

        if engine_available():
            return GreenBridgeServer
        if engine == "loop":
            raise ImportError("the loop engine needs uvicorn, httptools and greenlet")
    return BridgeServer


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) ``SO_REUSEPORT`` socket: fixes the port the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_workers(
    run_worker: Callable[[int, Callable[[str], object]], None],
    workers: int,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: Callable[[str], object] | None = None,
    restart_delay: float = 1.0,
) -> int:
    """Pre-fork ``workers`` processes listening on one port (``SO_REUSEPORT``: the kernel
    spreads connections over them) and supervise them until Ctrl-C or SIGTERM.

    ``run_worker(port, ready)`` runs in each child: it builds its own manager (actor threads
    do not survive ``fork``, so nothing is started in the parent) and calls :func:`serve` with
    ``port`` and ``reuse_port=True``, calling ``ready`` once it listens. A worker that dies is
    started again (at most once per ``restart_delay`` seconds each). SIGTERM or SIGINT is
    passed on to every worker, which finishes its open requests' settlement and exits.
    Returns 0, or 1 if a worker could not start. POSIX only.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    reserved = _reserve_port(host, port)
    port = reserved.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    children: dict[int, int] = {}  # pid -> worker index
    started: dict[int, float] = {}
    read_end, write_end = os.pipe()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: whatever happens, it never returns into the supervisor
            # The supervisor's handlers only set its own stop flag: a SIGTERM that arrives
            # while this worker starts must end it (serve() installs graceful ones).
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = 0
            try:
                with contextlib.suppress(OSError):  # closed already for a restarted worker
                    os.close(read_end)
                reserved.close()

                def listening(_url: str) -> None:
                    # A restarted worker finds the pipe closed: nobody waits for it any more.
                    with contextlib.suppress(OSError):
                        os.write(write_end, b"r")

                run_worker(port, listening)
            except BaseException:  # noqa: BLE001 - reported, and the exit code says so
                logger.exception("router worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index
        started[index] = time.monotonic()

    with _stop_on_signals() as stop:
        for index in range(workers):
            spawn(index)
        os.close(write_end)
        # Every worker listens before the URL is announced; one that exits first is a failure.
        listening, failed = 0, False
        while listening < workers and not failed and not stop.is_set():
            if select.select([read_end], [], [], 0.2)[0]:
                listening += len(os.read(read_end, workers - listening))
            with contextlib.suppress(ChildProcessError):
                dead = os.waitpid(-1, os.WNOHANG)[0]
                if dead:
                    children.pop(dead, None)
                    failed = True
        os.close(read_end)
        status = 0
        if listening < workers and not stop.is_set():
            logger.error("router workers: only %d of %d started", listening, workers)
            stop.set()
            status = 1
        elif ready is not None and not stop.is_set():
            ready(url)
            logger.info("router bridge serving on %s (%d workers)", url, workers)
        while not stop.is_set():
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                stop.wait(0.2)
                continue
            index = children.pop(pid)
            logger.warning(
                "router worker %d (pid %d) exited (status %d); starting it again", index, pid, code
            )
            stop.wait(max(0.0, started[index] + restart_delay - time.monotonic()))
            if not stop.is_set():
                spawn(index)
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in children:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    reserved.close()
    return status
