"""HTTP for attempts: a pooled client per provider, timeouts, SSE reading, exception mapping.

Attempts run on workers and on callers' own threads; both share one connection pool per
provider. urllib3 retries are off: the router is the only retry loop. Every lower-level
exception is mapped to the router's hierarchy here, in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from router.errors import (
    InvalidRequestError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)
from router.providers.base import HTTPRequest

__all__ = ["HttpClient", "iter_sse_events", "decode_json"]


class HttpClient:
    """Pooled keep-alive connections to one provider instance, shared by every thread.

    Requests are sent through ``requests``' ``HTTPAdapter`` (a thread-safe urllib3 pool) with a
    ``PreparedRequest`` built here, not through a ``Session``: the router needs none of a
    session's cookie jar, redirect handling, hooks or per-call settings merging, which cost
    about 130 µs per request (a quarter of a local round trip). One pool per provider, not one
    session per thread: callers' own threads run attempts too (``process_request``), and a
    pool per thread would keep a connection per thread that ever called.
    """

    def __init__(self, provider: str, *, connect_timeout: float, read_timeout: float, pool: int):
        self.provider = provider
        self.timeout = (connect_timeout, read_timeout)
        # Connections beyond ``pool`` are opened when needed and closed after use.
        self._adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool), max_retries=0)
        # What a Session would add: the User-Agent, compression and keep-alive headers.
        self._default_headers = dict(requests.utils.default_headers())

    @property
    def read_timeout(self) -> float:
        return self.timeout[1]

    def send(self, request: HTTPRequest, read_timeout: float | None = None) -> requests.Response:
        """Send one attempt; raises ``ProviderTimeoutError`` / ``ProviderConnectionError``,
        and ``InvalidRequestError`` for text that cannot be sent as UTF-8.

        ``read_timeout`` (seconds) replaces the provider's own when it is shorter: what is
        left of the caller's deadline. A non-streamed answer is read whole before returning.
        """
        body = None
        if request.json is not None:
            try:
                # UTF-8 as the providers expect it. A lone surrogate ("\ud800") cannot be
                # encoded: that is the caller's mistake, refused here rather than sent as an
                # escape a server may choke on (the emulator dropped the connection, which
                # counted against every provider's breaker in turn; found by fuzzing).
                body = json.dumps(request.json, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError(
                    "the request contains text that is not valid Unicode (a lone surrogate)",
                    provider=self.provider,
                ) from None
        timeout = self.timeout
        if read_timeout is not None and read_timeout < timeout[1]:
            timeout = (min(timeout[0], read_timeout), read_timeout)
        try:
            prepared = requests.PreparedRequest()
            prepared.prepare(
                method=request.method,
                url=request.url,
                headers={**self._default_headers, **request.headers},
                data=body,
            )
            response = self._adapter.send(prepared, stream=request.stream, timeout=timeout)
            if not request.stream:
                response.content  # noqa: B018 -- read the body under the same error mapping
            return response
        except requests.Timeout as exc:
            raise ProviderTimeoutError(
                f"no answer within {timeout[1]:g}s", provider=self.provider
            ) from exc
        except requests.RequestException as exc:
            raise ProviderConnectionError(
                f"connection failed: {type(exc).__name__}", provider=self.provider
            ) from exc

    def close(self) -> None:
        self._adapter.close()


def decode_json(response: requests.Response, provider: str) -> dict[str, Any]:
    """The body of a 2xx JSON answer; ``MalformedResponseError`` when it is not a JSON object."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedResponseError(
            "the provider answered with a body that is not JSON", provider=provider
        ) from exc
    except requests.RequestException as exc:
        raise ProviderConnectionError(
            f"connection broke while reading the answer: {type(exc).__name__}", provider=provider
        ) from exc
    if not isinstance(body, dict):
        raise MalformedResponseError(
            "the provider's JSON answer is not an object", provider=provider
        )
    return body


def _raw_chunks(
    response: requests.Response, before_read: Callable[[], object] | None = None
) -> Iterator[bytes]:
    """Bytes as they arrive: one HTTP chunk at a time, never waiting to fill a buffer.

    ``before_read`` runs before every read that may block: the caller hands over what it
    parsed from the previous reads there, so nothing that has arrived waits for more.
    """
    raw = response.raw
    if getattr(raw, "chunked", False) and hasattr(raw, "read_chunked"):
        source: Iterator[bytes] = raw.read_chunked(decode_content=True)
    else:
        read = raw.read1 if hasattr(raw, "read1") else None

        def reads() -> Iterator[bytes]:
            while True:
                data = read(65536, decode_content=True) if read else raw.read(1)
                if not data:
                    return
                yield data

        source = reads()
    for data in _announced(source, before_read):
        if data:
            yield data


def _announced(source: Iterator[bytes], before_read: Callable[[], object] | None):
    if before_read is None:
        yield from source
        return
    while True:
        before_read()
        data = next(source, None)
        if data is None:
            return
        yield data


def iter_sse_events(
    response: requests.Response,
    provider: str,
    before_read: Callable[[], object] | None = None,
) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from an SSE response, each delivered as soon as it is complete.

    ``before_read`` (optional) runs before each network read (see ``_raw_chunks``).
    """
    import sseclient  # imported lazily: only streams need it

    try:
        for event in sseclient.SSEClient(_raw_chunks(response, before_read)).events():
            yield event.event, event.data
    except (requests.RequestException, OSError, ValueError) as exc:
        # urllib3 ProtocolError, a reset, or a read timeout mid-stream.
        if isinstance(exc, ProviderError):
            raise
        raise ProviderConnectionError(
            f"stream broke: {type(exc).__name__}", provider=provider
        ) from exc
    except Exception as exc:
        import urllib3.exceptions

        if isinstance(exc, urllib3.exceptions.HTTPError):
            raise ProviderConnectionError(
                f"stream broke: {type(exc).__name__}", provider=provider
            ) from exc
        raise
