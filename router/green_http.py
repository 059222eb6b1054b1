"""The HTTP client of attempts that run as request greenlets (``router.green``): aiohttp.

``HttpClient.send`` comes here when it is called in a request greenlet: the request goes out
on the loop's aiohttp session and the greenlet is parked until the answer (or each read of a
stream) is in, so a call in flight holds no thread. Timeouts and the mapping of every failure
to the router's errors are the threaded client's (``router.transport``): the provider's
connect timeout, its read timeout per read (or what is left of the caller's deadline), and
``ProviderTimeoutError`` / ``ProviderConnectionError``.

One session (one connection pool) per event loop, shared by every provider; the engine closes
it with :func:`close_sessions` when it stops.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterator

import aiohttp

from router import green
from router.errors import ProviderConnectionError, ProviderTimeoutError, RequestCancelledError
from router.providers.base import HTTPRequest

__all__ = ["GreenResponse", "close_sessions", "send"]

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
    weakref.WeakKeyDictionary()
)


def _session(loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
    session = _sessions.get(loop)
    if session is None or session.closed:
        # No limit of its own: each provider's max_concurrency (and the bridge's
        # max_in_flight) bound the calls in flight. No cookies, no redirects, no retries:
        # the same as the threaded client.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        _sessions[loop] = session
    return session


async def close_sessions(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's session (its pooled connections); the engine calls it on the way out."""
    session = _sessions.pop(loop, None)
    if session is not None:
        await session.close()


class GreenResponse:
    """What an attempt reads of an answer: ``status_code``, ``headers``, ``content`` (the
    whole body, for a non-streamed answer) and, for a stream, :meth:`reads`."""

    __slots__ = ("_closed", "_loop", "_provider", "_response", "_thread", "content", "headers")

    def __init__(self, response: aiohttp.ClientResponse, content: bytes, provider: str) -> None:
        self._response = response
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._provider = provider
        self._closed = False
        self.headers = response.headers
        self.content = content

    @property
    def status_code(self) -> int:
        return self._response.status

    def reads(self) -> Iterator[bytes]:
        """The body's bytes as they arrive, one read at a time (``iter_reads``' contract)."""
        content = self._response.content
        while True:
            try:
                data = green.wait(content.readany())
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                if self._closed:
                    raise RequestCancelledError("the caller closed the stream") from None
                raise ProviderConnectionError(
                    f"stream broke: {type(exc).__name__}", provider=self._provider
                ) from exc
            except asyncio.CancelledError:  # the server is stopping under this stream
                raise RequestCancelledError("the server stopped the stream") from None
            if not data:
                if self._closed:
                    raise RequestCancelledError("the caller closed the stream")
                return
            yield data

    def close(self) -> None:
        """Drop the connection (from any thread: a cancelled job closes it from its own)."""
        self._closed = True
        if threading.get_ident() == self._thread:
            self._response.close()
        else:
            try:
                self._loop.call_soon_threadsafe(self._response.close)
            except RuntimeError:  # the loop is closed already, and the connection with it
                pass


def send(
    request: HTTPRequest,
    body: bytes | None,
    timeout: tuple[float, float],
    default_headers: dict[str, str],
    provider: str,
) -> GreenResponse:
    """Send one attempt from a request greenlet; a non-streamed answer is read whole."""
    return green.wait(_send(request, body, timeout, default_headers, provider))


async def _send(
    request: HTTPRequest,
    body: bytes | None,
    timeout: tuple[float, float],
    default_headers: dict[str, str],
    provider: str,
) -> GreenResponse:
    connect, read = timeout
    session = _session(asyncio.get_running_loop())
    headers = {**default_headers, **request.headers}
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    try:
        response = await session.request(
            request.method,
            request.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
        )
        content = b""
        if not request.stream or response.status >= 400:
            try:
                content = await response.read()
            finally:
                response.release()
        return GreenResponse(response, content, provider)
    except TimeoutError as exc:
        raise ProviderTimeoutError(f"no answer within {read:g}s", provider=provider) from exc
    except asyncio.CancelledError:  # the server is stopping: reported as a cancelled attempt
        raise RequestCancelledError("the server stopped before the answer") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise ProviderConnectionError(
            f"connection failed: {type(exc).__name__}", provider=provider
        ) from exc
