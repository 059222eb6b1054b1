"""The HTTP client of attempts that run as request greenlets (``router.green``).

``HttpClient.send`` comes here when it is called in a request greenlet: the request goes out on
a pooled keep-alive connection of the loop and the greenlet is parked until the answer (or
each read of a stream) is in, so a call in flight holds no thread. Timeouts and the mapping of
every failure to the router's errors are the threaded client's (``router.transport``): the
provider's connect timeout, its read timeout per read (or what is left of the caller's
deadline), ``ProviderTimeoutError`` / ``ProviderConnectionError``.

Why not aiohttp (tried first, measured in docs/performance.md): its client spent about 0.4 ms
of the loop's time per call, a sixth of all the router did per request under load; the router
needs one thing of it, HTTP/1.1 with keep-alive to a handful of origins. This is that, over an
``asyncio.Protocol`` with httptools' parser (llhttp, the parser of Node.js, which uvicorn uses
for the bridge's own requests): about 50 µs per call. No redirects, cookies, proxies or
retries, as the threaded client; TLS with requests' CA bundle (certifi).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httptools

from router import green
from router.errors import (
    AnswerCutError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RequestCancelledError,
)
from router.providers.base import HTTPRequest

__all__ = ["GreenResponse", "close_pools", "send"]

# Read no further ahead of a stream's reader than this (the server waits meanwhile).
_HIGH_WATER = 1 << 20
_IDLE_PER_ORIGIN = 1024  # idle keep-alive connections kept per origin
#: Seconds an idle keep-alive connection is kept for the next call (aiohttp's default).
#: Servers close theirs after an idle time of their own; a call sent on a connection just as
#: its server closes it fails, so ours give up first rather than meet that race.
IDLE_EXPIRY = 15.0


class _Broken(Exception):
    """The connection failed or closed before the answer was whole."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to an origin; one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.error: BaseException | None = None
        self.idle_since = 0.0  # loop time it went back to the pool
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._paused = False
        self.streaming = False  # a stream's reader takes the body as it comes: flow control

    # --- the protocol ----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = _Broken(f"malformed HTTP answer ({exc})")
            self.close()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.complete and self._ends_at_close():
            self.complete = True  # a body delimited by the end of the connection
        elif not self.complete and self.error is None:
            self.error = _Broken("the connection closed before the answer was whole")
        self._wake()

    # --- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.streaming and self.buffered > _HIGH_WATER and not self._paused:
            assert self.transport is not None
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        # Asked now: llhttp answers it only while the message is the current one.
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True

    # --- for the exchange -----------------------------------------------------------------

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self.raw_headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, ready: Any, timeout: float) -> None:
        """Until ``ready(self)`` or a failure; ``TimeoutError`` after ``timeout`` s of
        waiting for bytes."""
        while not ready(self):
            await self.more(timeout)

    def more(self, timeout: float) -> asyncio.Future[None]:
        """A future done when something arrives (or fails, or ``timeout`` s pass first).

        A read deadline per connection, moved forward on each wait, instead of a timer per
        wait: a stream waits once per event, and timers cost a heap entry each.
        """
        if self.error is not None:
            raise self.error
        if self.closed:
            raise _Broken("the connection closed before the answer was whole")
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._deadline = self.loop.time() + timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
        return waiter

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.loop.time() >= self._deadline:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def take(self) -> bytes:
        """The body bytes received and not taken yet."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Idle keep-alive connections per origin, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def connect(self, origin: tuple[str, str, int], timeout: float) -> _Connection:
        idle = self.idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: the others are older
            if self.loop.time() - connection.idle_since >= IDLE_EXPIRY:
                connection.close()
                while idle:
                    idle.popleft().close()
            elif not connection.closed:
                connection._reset()
                return connection
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        async with asyncio.timeout(timeout):
            _, connection = await self.loop.create_connection(
                lambda: _Connection(self.loop),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
        return connection

    def give_back(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        if not connection.reusable():
            connection.close()
            return
        idle = self.idle.setdefault(origin, deque())
        if len(idle) >= _IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        idle.append(connection)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                import certifi  # requests' CA bundle, so both clients trust the same roots

                self._tls = ssl.create_default_context(cafile=certifi.where())
            except ImportError:
                self._tls = ssl.create_default_context()
        return self._tls

    def close(self) -> None:
        for idle in self.idle.values():
            for connection in idle:
                connection.close()
        self.idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


def _pool(loop: asyncio.AbstractEventLoop) -> _Pool:
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool(loop)
    return pool


def close_pools(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's pooled connections (the engine calls it on the way out)."""
    pool = _pools.pop(loop, None)
    if pool is not None:
        pool.close()


class _Headers(dict):  # type: ignore[type-arg]
    """Response headers: a dict with case-insensitive ``get`` (names are stored lower-case)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> Any:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class GreenResponse:
    """What an attempt reads of an answer: ``status_code``, ``headers``, ``content`` (the
    whole body, for a non-streamed answer) and, for a stream, :meth:`reads`."""

    def __init__(
        self,
        connection: _Connection,
        content: bytes,
        provider: str,
        origin: tuple[str, str, int],
        read_timeout: float,
    ) -> None:
        self._connection = connection
        self._thread = threading.get_ident()
        self._provider = provider
        self._origin = origin
        self._read_timeout = read_timeout
        self._closed = False
        self._raw_headers = connection.raw_headers
        self._decoder = _decoder(connection.raw_headers)
        self.status_code = connection.status
        self.content = content
        self._headers: _Headers | None = None

    @property
    def headers(self) -> _Headers:
        if self._headers is None:
            headers = _Headers()
            for name, value in self._raw_headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            self._headers = headers
        return self._headers

    def reads(self) -> Iterator[bytes]:
        """The body's bytes as they arrive, one read at a time (``iter_reads``' contract)."""
        connection = self._connection
        while True:
            try:
                if not connection.chunks and not connection.complete:
                    green.wait(connection.more(self._read_timeout))
                    continue
            except (_Broken, OSError, TimeoutError) as exc:
                if self._closed:
                    raise RequestCancelledError("the caller closed the stream") from None
                connection.close()
                raise ProviderConnectionError(
                    f"stream broke: {type(exc).__name__}", provider=self._provider
                ) from exc
            except asyncio.CancelledError:  # the server is stopping under this stream
                connection.close()
                raise RequestCancelledError("the server stopped the stream") from None
            if connection.chunks:
                data = connection.take()
                if self._decoder is not None:
                    data = self._decoder.decompress(data)
                if data:
                    yield data
                continue
            # Complete: the connection serves the next call.
            if self._closed:
                raise RequestCancelledError("the caller closed the stream")
            _pool(connection.loop).give_back(self._origin, connection)
            self._connection = _Spent
            return

    def close(self) -> None:
        """Drop the connection (from any thread: a cancelled job closes it from its own)."""
        self._closed = True
        connection = self._connection
        if connection is _Spent or connection.complete:
            return
        if threading.get_ident() == self._thread:
            connection.close()
            connection._wake()
        else:
            try:
                connection.loop.call_soon_threadsafe(_close_and_wake, connection)
            except RuntimeError:  # the loop is closed already, and the connection with it
                pass


class _SpentConnection:
    complete = True


_Spent: Any = _SpentConnection()


def _close_and_wake(connection: _Connection) -> None:
    connection.close()
    connection._wake()


def _decoder(raw_headers: list[tuple[bytes, bytes]]) -> Any:
    for name, value in raw_headers:
        if name.lower() == b"content-encoding":
            encoding = value.strip().lower()
            if encoding == b"gzip":
                return zlib.decompressobj(16 + zlib.MAX_WBITS)
            if encoding == b"deflate":
                return zlib.decompressobj()
    return None


def send(
    request: HTTPRequest,
    body: bytes | None,
    timeout: tuple[float, float],
    default_headers: dict[str, str],
    provider: str,
) -> GreenResponse:
    """Send one attempt from a request greenlet; a non-streamed answer is read whole."""
    return green.wait(_send(request, body, timeout, default_headers, provider))


_heads: dict[tuple[Any, ...], tuple[tuple[str, str, int], bytes]] = {}


def _head(
    request: HTTPRequest, default_headers: dict[str, str]
) -> tuple[tuple[str, str, int], bytes]:
    """The origin and the request head without Content-Length (a provider sends the same URL
    and headers over and over: built once)."""
    key = (request.method, request.url, tuple(request.headers.items()))
    cached = _heads.get(key)
    if cached is not None:
        return cached
    parts = urlsplit(request.url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cannot send to {request.url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {**default_headers, **request.headers}
    # Answers are read as they are: no compression asked for (streams arrive event by event).
    headers = {k: v for k, v in headers.items() if k.lower() not in ("accept-encoding", "host")}
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Accept-Encoding: identity")
    head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    if len(_heads) >= 64:  # models and rotated keys: keep it bounded
        _heads.clear()
    result = ((scheme, host, port), head)
    _heads[key] = result
    return result


def _has_head(connection: _Connection) -> bool:
    return connection.head_done


def _is_complete(connection: _Connection) -> bool:
    return connection.complete


async def _send(
    request: HTTPRequest,
    body: bytes | None,
    timeout: tuple[float, float],
    default_headers: dict[str, str],
    provider: str,
) -> GreenResponse:
    connect, read = timeout
    connection: _Connection | None = None
    answered = False  # a 2xx head for a whole answer: a failure past it is a cut answer
    try:
        origin, head = _head(request, default_headers)
        pool = _pool(asyncio.get_running_loop())
        connection = await pool.connect(origin, connect)
        if body is None:
            data = head + b"\r\n"
        else:
            data = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        assert connection.transport is not None
        connection.transport.write(data)
        await connection.wait(_has_head, read)
        content = b""
        if not request.stream or connection.status >= 400:
            answered = 200 <= connection.status < 300
            await connection.wait(_is_complete, read)
            content = connection.take()
            decoder = _decoder(connection.raw_headers)
            if decoder is not None:
                content = decoder.decompress(content) + decoder.flush()
            response = GreenResponse(connection, content, provider, origin, read)
            pool.give_back(origin, connection)
            response._connection = _Spent
            return response
        connection.streaming = True
        return GreenResponse(connection, content, provider, origin, read)
    except TimeoutError as exc:
        if connection is not None:
            connection.close()
        if answered:
            raise AnswerCutError(
                f"the answer broke off: no bytes for {read:g}s", provider=provider
            ) from exc
        raise ProviderTimeoutError(f"no answer within {read:g}s", provider=provider) from exc
    except asyncio.CancelledError:  # the server is stopping: reported as a cancelled attempt
        if connection is not None:
            connection.close()
        raise RequestCancelledError("the server stopped before the answer") from None
    except (_Broken, OSError, ValueError, zlib.error) as exc:
        if connection is not None:
            connection.close()
        if answered:
            raise AnswerCutError(
                f"the answer broke off: {type(exc).__name__}", provider=provider
            ) from exc
        raise ProviderConnectionError(
            f"connection failed: {type(exc).__name__}", provider=provider
        ) from exc
