"""Test helper: the recorded provider traffic in ``tests/fixtures/wire/`` as plain values.

Cassettes are read by the loader that ships with them, ``tests/fixtures/wire/cassette_io.py``
(both dialects: plain vcrpy with possibly gzip'ed ``!!binary`` bodies, and pydantic-ai's
``parsed_body`` style); each request/response pair becomes an :class:`Interaction`. :func:`run_stream` splits SSE
bodies into events with ``router.transport.SSEDecoder`` exactly as the runtime does (fed one
network read at a time), optionally in small byte pieces to show that event boundaries do not
depend on how the bytes arrive. :func:`sse_events` reads them with sseclient-py instead: the
independent reference ``tests/test_sse_decoder.py`` checks the decoder against.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sseclient

from router.models import StreamChunk
from router.providers.base import StreamParser
from router.transport import SSEDecoder

WIRE = Path(__file__).parent / "fixtures" / "wire"


@dataclass(frozen=True)
class Interaction:
    """One recorded request and its answer."""

    method: str
    uri: str
    request_json: Any
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


def _cassette_io() -> Any:
    # The loader shipped with the recordings (kept byte-for-byte as shared; not a package).
    spec = importlib.util.spec_from_file_location("cassette_io", WIRE / "cassette_io.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CASSETTE_IO = _cassette_io()


def _flatten(headers: dict[str, Any] | None) -> dict[str, str]:
    # vcrpy records each header as a list of values; the runtime sees one string.
    out: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if isinstance(value, list):
            value = value[0] if value else ""
        out[key.lower()] = str(value)
    return out


def load(provider: str, name: str) -> list[Interaction]:
    """The interactions of cassette ``fixtures/wire/<provider>/<name>.yaml``."""
    return [
        Interaction(
            method=item["method"],
            uri=item["uri"],
            request_json=item["request_json"],
            status=int(item["status"]),
            headers=_flatten(item["response_headers"]),
            body=item["response_bytes"],
        )
        for item in _CASSETTE_IO.load_interactions(WIRE / provider / f"{name}.yaml")
    ]


def _pieces(body: bytes, size: int | None) -> Iterator[bytes]:
    if not size:
        yield body
        return
    for start in range(0, len(body), size):
        yield body[start : start + size]


def sse_events(body: bytes, piece_size: int | None = None) -> list[tuple[str, str]]:
    """``(event, data)`` for each SSE event in ``body``, read by sseclient-py.

    The reference decoder: the runtime no longer uses sseclient-py (see :func:`decoded_events`).
    """
    client = sseclient.SSEClient(_pieces(body, piece_size))
    return [(event.event, event.data) for event in client.events()]


def decoded_events(body: bytes, piece_size: int | None = None) -> list[tuple[str, str]]:
    """``(event, data)`` for each SSE event in ``body``, read by ``SSEDecoder`` as the runtime
    reads a stream: each piece fed as one network read, then ``finish()`` at the end."""
    decoder = SSEDecoder()
    events: list[tuple[str, str]] = []
    for piece in _pieces(body, piece_size):
        events.extend(decoder.feed(piece))
    events.extend(decoder.finish())
    return events


def run_stream(
    parser: StreamParser, body: bytes, piece_size: int | None = None
) -> list[StreamChunk]:
    """Every chunk ``parser`` makes of the SSE ``body`` decoded by ``SSEDecoder`` (as the
    runtime does), including those from the parser's ``finish()``."""
    chunks: list[StreamChunk] = []
    for event, data in decoded_events(body, piece_size):
        chunks.extend(parser.feed(event, data))
    chunks.extend(parser.finish())
    return chunks


def sse(*events: tuple[str | None, Any], newline: str = "\n") -> bytes:
    """An SSE body from ``(event name or None, data)`` pairs; dicts are JSON-encoded."""
    lines = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        block = (f"event: {name}{newline}" if name else "") + f"data: {text}{newline}{newline}"
        lines.append(block)
    return "".join(lines).encode()
