"""Test helper: the recorded provider traffic in ``tests/fixtures/wire/`` as plain values.

Adapted from ``tests/fixtures/wire/cassette_io.py``: it reads both cassette dialects (plain
vcrpy with possibly gzip'ed ``!!binary`` bodies, and pydantic-ai's ``parsed_body`` style) and
gives each request/response pair as an :class:`Interaction`. :func:`run_stream` splits SSE
bodies into events with ``router.transport.SSEDecoder`` exactly as the runtime does (fed one
network read at a time), optionally in small byte pieces to show that event boundaries do not
depend on how the bytes arrive. :func:`sse_events` reads them with sseclient-py instead: the
independent reference ``tests/test_sse_decoder.py`` checks the decoder against.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sseclient
import yaml

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


def _header(headers: dict[str, Any] | None, name: str) -> Any:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _flatten(headers: dict[str, Any] | None) -> dict[str, str]:
    # vcrpy records each header as a list of values; the runtime sees one string.
    out: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if isinstance(value, list):
            value = value[0] if value else ""
        out[key.lower()] = str(value)
    return out


def _to_bytes(body: Any, headers: dict[str, Any] | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, dict):
        body = body.get("string", "")
    if isinstance(body, str):
        body = body.encode("utf-8")
    encodings = [e.lower() for e in (_header(headers, "content-encoding") or [])]
    if body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    if "deflate" in encodings:
        return zlib.decompress(body)
    return body


def load(provider: str, name: str) -> list[Interaction]:
    """The interactions of cassette ``fixtures/wire/<provider>/<name>.yaml``."""
    path = WIRE / provider / f"{name}.yaml"
    with path.open("rb") as handle:
        cassette = yaml.load(handle, Loader=yaml.Loader)  # !!binary needs the full loader
    out = []
    for item in cassette["interactions"]:
        request, response = item["request"], item["response"]
        if "parsed_body" in request:
            request_json = request["parsed_body"]
        else:
            raw = _to_bytes(request.get("body"), request.get("headers"))
            request_json = json.loads(raw) if raw else None
        if "parsed_body" in response:
            body = json.dumps(response["parsed_body"]).encode()
        else:
            body = _to_bytes(response.get("body", response.get("content")), response.get("headers"))
        status = response["status"]["code"] if "status" in response else response["status_code"]
        out.append(
            Interaction(
                method=request["method"],
                uri=request["uri"],
                request_json=request_json,
                status=int(status),
                headers=_flatten(response.get("headers")),
                body=body,
            )
        )
    return out


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
