"""The bridge on an event loop (uvicorn): each request a greenlet, not a thread.

``router serve``'s default engine. uvicorn (httptools' C parser, uvloop) holds the
connections; the WSGI bridge runs unchanged inside :class:`GreenWSGI`, an ASGI application
that calls it in a greenlet per request (``router.green``). Where the request path waits, for
its attempt to be admitted, for a provider slot or for the provider's answer (its own HTTP
client, ``router.green_http``), the greenlet is parked and the loop serves others: a call in
flight costs a few kilobytes, not a thread, and no GIL hand-off wakes it. Routes that may block in
ways the greenlets cannot park (the agent loop's MCP servers, the status pages' actor asks,
configuration) run on a small thread pool instead, as they would on a threaded server.

Same contract as :class:`router.server.BridgeServer` (which stays the threaded engine):
``max_in_flight`` answers 503 with ``Retry-After`` at once when the bridge is full; ``timeout``
bounds a client's reads of its request and each write of its answer and idle keep-alive
connections, so a slow client holds only its own connection; a client that leaves a stream
cancels it upstream (what was produced is billed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from router import green
from router.server import ServerAddress, _app_for

__all__ = ["DEFAULT_GREEN_MAX_IN_FLIGHT", "GreenBridgeServer", "GreenWSGI", "engine_available"]

logger = logging.getLogger(__name__)

#: Requests answered at once by one event-loop worker (each costs memory, not a thread).
DEFAULT_GREEN_MAX_IN_FLIGHT = 10_000
#: Threads for the routes that run on threads (status, metrics, agents, configuration).
_THREAD_ROUTES_POOL = 32
_BACKLOG = 4096

# The request paths of the doors that answer with the manager's process_request/
# stream_request: these run as greenlets. (/ai/generate with mcp_servers hands its agent loop,
# which waits on MCP sessions through blocking calls, to a thread: green.offload.)
_GREEN_POSTS = (
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/completions",
    "/v1/responses",
    "/ai/generate",
)
_GREEN_GEMINI_SUFFIXES = (":generateContent", ":streamGenerateContent")


def engine_available() -> bool:
    """Whether the event-loop engine's libraries (the ``server`` extra) are installed."""
    try:
        import greenlet  # noqa: F401
        import httptools  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def runs_green(method: str, path: str) -> bool:
    """Whether a request runs as a greenlet (see ``_GREEN_POSTS``) rather than on a thread."""
    if method != "POST":
        return False
    path = path.rstrip("/")
    if path in _GREEN_POSTS:
        return True
    return path.startswith("/v1beta/models/") and path.endswith(_GREEN_GEMINI_SUFFIXES)


class _Input(io.RawIOBase):
    """``wsgi.input``: the request body, received from the server as the app reads it."""

    def __init__(
        self, receive: Callable[[], Awaitable[Any]], wait_within: Any, timeout: float
    ) -> None:
        self._receive = receive
        self._wait_within = wait_within  # waits, or raises TimeoutError after ``timeout``
        self._timeout = timeout
        self._buffer = b""
        self._more = True

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        try:
            message = self._wait_within(self._receive())
        except TimeoutError:
            from router.bridge.errors import Problem

            self._more = False
            raise Problem(
                408,
                "RequestTimeout",
                f"the request body did not arrive within {self._timeout:g}s",
                code="request_timeout",
                headers=[("Connection", "close")],
            ) from None
        if message["type"] == "http.disconnect":
            self._more = False
            raise OSError("the client disconnected while sending its request")
        self._buffer += message.get("body", b"")
        self._more = bool(message.get("more_body"))

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._more:
                self._fill()
            data, self._buffer = self._buffer, b""
            return data
        while len(self._buffer) < size and self._more:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


async def _within(awaitable: Awaitable[Any], timeout: float) -> Any:
    """``awaitable``, or ``TimeoutError`` after ``timeout`` seconds (a stalled client)."""
    async with asyncio.timeout(timeout):
        return await awaitable


def _environ(scope: dict[str, Any], body: _Input) -> dict[str, Any]:
    """PEP 3333's environ for an ASGI HTTP scope."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "80",
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,  # read until the end, whatever the framing
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
            environ[name] = value
            continue
        key = "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class GreenWSGI:
    """An ASGI application running a WSGI one: as a greenlet for the routes that
    :func:`runs_green`, on a thread for the others. ``timeout``: seconds a read of the request
    or a write of the answer may wait for the client."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], timeout: float) -> None:
        self.wsgi_app = wsgi_app
        self.timeout = timeout
        self._threads = concurrent.futures.ThreadPoolExecutor(
            _THREAD_ROUTES_POOL, thread_name_prefix="router-bridge-thread"
        )
        self._deadlines = _Deadlines(timeout)
        green.enable()

    def stop_sweeping(self) -> None:
        """On the loop, as it stops: end the task that enforces the client timeouts."""
        self._deadlines.stop()

    def close(self) -> None:
        """Join the threads of the thread routes (after the loop has stopped)."""
        self._threads.shutdown(wait=True, cancel_futures=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        loop = asyncio.get_running_loop()
        if runs_green(scope["method"], scope["path"]):
            await green.run(self._handle, scope, receive, send, _eager_wait, loop)
            return

        def wait(awaitable: Awaitable[Any]) -> Any:
            # Bounded: a loop that stops meanwhile never runs the coroutine.
            future = asyncio.run_coroutine_threadsafe(awaitable, loop)  # type: ignore[arg-type]
            return future.result(self.timeout + 30)

        await loop.run_in_executor(self._threads, self._handle, scope, receive, send, wait, loop)

    def _handle(self, scope: dict[str, Any], receive: Any, send: Any, wait: Any, loop: Any) -> None:
        """Run the WSGI app for one request and send its answer (blocking style; ``wait``
        parks the greenlet, or blocks the thread, on the loop's awaitables)."""
        timeout = self.timeout
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if exc_info is not None and started and started[0] is True:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [
                int(status[:3]),
                [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            ]
            return _no_write

        on_loop = wait is _eager_wait
        if on_loop:
            wait_within = self._deadlines.wait
        else:

            def wait_within(awaitable: Awaitable[Any]) -> Any:
                return wait(_within(awaitable, timeout))

        environ = _environ(scope, _Input(receive, wait_within, timeout))
        body = self.wsgi_app(environ, start_response)
        gone = threading.Event()
        watcher: Any = None
        try:
            status, headers = started
            if isinstance(body, list):  # answered whole: one body message
                wait(send({"type": "http.response.start", "status": status, "headers": headers}))
                wait(send({"type": "http.response.body", "body": b"".join(body)}))
                return
            # A streamed answer: a client that leaves cancels it (PEP 3333's close()).
            watch = _watch_disconnect(receive, gone, body)
            if on_loop:
                watcher: Any = loop.create_task(watch)
            else:
                watcher = asyncio.run_coroutine_threadsafe(watch, loop)
            wait(send({"type": "http.response.start", "status": status, "headers": headers}))
            for chunk in body:
                if gone.is_set():
                    return
                if chunk:
                    message = {"type": "http.response.body", "body": chunk, "more_body": True}
                    try:
                        wait_within(send(message))
                    except TimeoutError:
                        return  # the client stopped reading: it is dropped
            if not gone.is_set():
                wait(send({"type": "http.response.body", "body": b""}))
        finally:
            gone.set()
            if watcher is not None:
                watcher.cancel()
            close = getattr(body, "close", None)
            if close is not None:
                close()


class _Deadlines:
    """The client timeouts of requests on the loop, without a timer per wait.

    Reading a request's body or writing a stream's event rarely waits at all (uvicorn has
    the body already; a write waits only when the client's socket buffer is full). So
    instead of a timer around every wait, each wait notes its deadline here and one task per
    loop, once a second, cancels the request whose wait has passed it: a client that sends
    its request too slowly or stops reading its stream holds its connection for about
    ``timeout`` seconds at most, and its stream is cancelled upstream (and billed).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting: dict[asyncio.Task[Any], float] = {}  # request -> deadline of its wait
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def wait(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` (``green.eager``); if it must wait, ``TimeoutError`` once it has
        waited past the timeout."""
        return green.eager(coroutine, self._bounded)

    def _bounded(self, awaitable: Awaitable[Any]) -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        self._waiting[task] = loop.time() + self.timeout
        try:
            return green.wait(awaitable)
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                task.uncancel()
                raise TimeoutError from None
            raise
        finally:
            self._waiting.pop(task, None)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = asyncio.get_running_loop().time()
            for task, deadline in list(self._waiting.items()):
                if deadline < now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def _eager_wait(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """``wait`` of a request greenlet: the coroutine runs here until it must wait."""
    return green.eager(coroutine, green.wait)


def _no_write(data: bytes) -> None:
    raise RuntimeError("the bridge never uses the WSGI write() callable")


async def _watch_disconnect(receive: Any, gone: threading.Event, body: Any) -> None:
    """Close a streamed ``body`` when its client disconnects before the answer ends."""
    message = await receive()
    if message["type"] == "http.disconnect" and not gone.is_set():
        gone.set()
        close = getattr(body, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a failing close must not kill the loop; the log says why
                logger.exception("closing a stream whose client left failed")


class GreenBridgeServer(ServerAddress):
    """The bridge on uvicorn in a background thread with its own event loop.

    The same options and contract as :class:`router.server.BridgeServer`; ``threads`` is
    ignored (requests are greenlets). ``max_in_flight`` defaults to
    :data:`DEFAULT_GREEN_MAX_IN_FLIGHT`; ``max_connections`` bounds open client connections
    (past it uvicorn answers 503).
    """

    def __init__(
        self,
        manager_or_app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 0,
        *,
        max_connections: int = 10_000,
        timeout: float = 30.0,
        reuse_port: bool = False,
        **create_app_kwargs: Any,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if hasattr(manager_or_app, "stream_request"):
            create_app_kwargs.setdefault("max_in_flight", DEFAULT_GREEN_MAX_IN_FLIGHT)
        self.app = _app_for(manager_or_app, create_app_kwargs)
        self.asgi = GreenWSGI(self.app, timeout)
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._timeout = timeout
        self._reuse_port = reuse_port
        self._socket: socket.socket | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the server is not started")
        return int(self._socket.getsockname()[1])

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._host, self._port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self) -> GreenBridgeServer:
        """Listen, and serve in a background thread; returns once the server accepts."""
        import uvicorn

        with self._lock:
            if self._server is not None:
                return self
            self._socket = self._listen()
            config = uvicorn.Config(
                self.asgi,
                loop=_loop_setup(),
                http=_http_protocol(),
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                proxy_headers=False,  # X-Forwarded-*: the bridge does not read them
                timeout_keep_alive=max(1, int(self._timeout)),
                timeout_graceful_shutdown=max(1, int(self._timeout)),
                limit_concurrency=self._max_connections,
                backlog=_BACKLOG,
            )
            ready = self._ready

            class Server(uvicorn.Server):  # type: ignore[misc]
                async def startup(self, sockets: Any = None) -> None:
                    await super().startup(sockets=sockets)
                    ready.set()

            self._server = Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"router-bridge-loop-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed
        return self

    def _run(self) -> None:
        loop = _new_loop()
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
        except BaseException as error:  # noqa: BLE001 - handed to start() / logged
            self._failed = error
            logger.exception("the bridge's event loop failed")
        finally:
            self._ready.set()
            green.close_offload(loop)  # agent loops still running finish first
            loop.close()

    async def _serve(self) -> None:
        from router import green_http

        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self.asgi.stop_sweeping()
            green_http.close_pools(asyncio.get_running_loop())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let open requests finish (up to ``timeout``), close everything."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout + 5)
        # The loop is closed now: a route still on a thread fails at its next await.
        self.asgi.close()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()

    def __enter__(self) -> GreenBridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def _loop_setup() -> str:
    # The server's thread makes its loop itself (see _new_loop): uvicorn installs none.
    return "none"


class _OneWrite:
    """A client connection's transport that sends an answer's header block together with the
    first part of its body: one system call instead of two (uvicorn writes the headers as
    soon as the answer starts). Held bytes never wait past the current turn of the loop."""

    __slots__ = ("_held", "_loop", "_transport", "hold")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self.hold = False  # set when a request arrives: hold the next write (its headers)

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self.hold:
            self.hold = False
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _http_protocol() -> Any:
    """uvicorn's httptools protocol, closing a connection whose request headers have not all
    arrived within the keep-alive timeout (uvicorn bounds only the idle time between requests:
    a client trickling its headers would hold its connection for ever)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        _headers_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)  # its flow control keeps the real transport
            self.transport = _OneWrite(transport, self.loop)
            self._expect_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._expect_headers()

        def _expect_headers(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
            self._headers_timer = self.loop.call_later(
                self.timeout_keep_alive, self._headers_too_slow
            )

        def on_headers_complete(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None
            self.transport.hold = True  # the answer's header block waits for its body
            super().on_headers_complete()

        def _headers_too_slow(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None
            super().connection_lost(exc)

    return Protocol
