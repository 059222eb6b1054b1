"""The HTTP exchange every door shares: a request (bounded body, JSON), a response, the
route table entry, and the scrub that keeps keys out of anything the bridge sends.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from router.bridge.errors import BodyError, Problem

__all__ = [
    "SSE_HEADERS",
    "ModelEntry",
    "Request",
    "Response",
    "Route",
    "Secrets",
    "json_response",
    "log_unexpected",
    "served_by",
]

logger = logging.getLogger("router.bridge")

SSE_HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    # nginx and similar proxies buffer responses unless told not to.
    ("X-Accel-Buffering", "no"),
]


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]


@dataclass
class Request:
    environ: dict[str, Any]
    method: str
    path: str
    max_body: int
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def query(self, name: str) -> str | None:
        """The first value of a query-string parameter."""
        values = parse_qs(self.environ.get("QUERY_STRING") or "").get(name)
        return values[0] if values else None

    def body(self) -> bytes:
        """The request body, refused with 413 before reading when it is too large."""
        stream = self.environ.get("wsgi.input")
        raw_length = (self.environ.get("CONTENT_LENGTH") or "").strip()
        if raw_length:
            try:
                length = int(raw_length)
            except ValueError:
                raise Problem(400, "InvalidRequestError", "invalid Content-Length") from None
            if length < 0:
                raise Problem(400, "InvalidRequestError", "invalid Content-Length")
            if length > self.max_body:
                raise self._too_large()
            return _read_exactly(stream, length)
        chunked = "chunked" in (self.header("Transfer-Encoding") or "").lower()
        if stream is None or not (chunked or self.environ.get("wsgi.input_terminated")):
            return b""  # PEP 3333: without a length there is no body to read
        # A chunked body: read until EOF, but never more than the limit.
        pieces, total = [], 0
        while True:
            piece = stream.read(min(65536, self.max_body + 1 - total))
            if not piece:
                return b"".join(pieces)
            total += len(piece)
            if total > self.max_body:
                raise self._too_large()
            pieces.append(piece)

    def _too_large(self) -> Problem:
        return Problem(
            413,
            "PayloadTooLarge",
            f"request body larger than {self.max_body} bytes",
            code="request_too_large",
        )

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; 400 naming the problem otherwise."""
        raw = self.body()
        if not raw.strip():
            raise BodyError("request body is empty; send a JSON object")
        try:
            value = json.loads(raw.decode("utf-8"))  # RFC 8259: JSON on the wire is UTF-8
        except UnicodeDecodeError:
            raise BodyError("request body is not UTF-8") from None
        except json.JSONDecodeError as error:
            # The decoder's message holds only a position, never the input.
            raise BodyError(f"request body is not valid JSON: {error}") from None
        except RecursionError:
            raise BodyError(_TOO_DEEP) from None
        if not isinstance(value, dict):
            raise BodyError("request body must be a JSON object")
        if _nests_deeper_than(value, _MAX_BODY_DEPTH):
            raise BodyError(_TOO_DEEP)
        return value


# A body nested deeper than this is refused. Found by fuzzing: deep nesting overflowed the JSON
# decoder's (or later the validators' and the tool translator's) stack and was answered 500.
# Real requests, tool schemas included, stay far below it.
_MAX_BODY_DEPTH = 100
_TOO_DEEP = f"request body nests more than {_MAX_BODY_DEPTH} levels deep"


def _nests_deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _read_exactly(stream: Any, length: int) -> bytes:
    if stream is None or length == 0:
        return b""
    pieces, remaining = [], length
    while remaining > 0:
        piece = stream.read(remaining)
        if not piece:
            break
        pieces.append(piece)
        remaining -= len(piece)
    return b"".join(pieces)


@dataclass(frozen=True)
class ModelEntry:
    """A model the router can reach: its id, who serves it (a provider instance, or "router"
    for a model-group alias) and its catalog entry when the catalog knows it."""

    id: str
    owned_by: str
    info: Any = None  # router.catalog.ModelInfo | None


@dataclass(frozen=True)
class Route:
    """One path of one door: its handlers by method and the credential it needs."""

    name: str
    handlers: Mapping[str, Callable[[Request], Response]]
    auth: str  # "none", "auth" (the optional token) or "configure"
    door: Any = None  # the door whose envelope answers errors on this path


class Secrets:
    """The keys the bridge knows of, so that none can leak through an error message."""

    def __init__(self, manager: Any) -> None:
        # Replaced, never mutated: request threads scrub while /ai/configure adds a key.
        self._values: frozenset[str] = frozenset()
        for provider in getattr(getattr(manager, "config", None), "providers", ()):
            key = getattr(provider, "api_key", None)
            if key is not None:
                self.add(key.get_secret_value())

    def add(self, value: str) -> None:
        if len(value) >= 6:  # shorter strings would redact ordinary words
            self._values = self._values | {value}

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "[redacted]")
        return text


def json_response(
    secrets: Secrets,
    status: int,
    payload: Any,
    headers: Iterable[tuple[str, str]] = (),
    *,
    scrub: bool = True,
) -> Response:
    """A JSON response; error bodies are scrubbed of every known key (model output is not)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if scrub:
        text = secrets.scrub(text)
    body = text.encode("utf-8")
    return Response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
        [body],
    )


def log_unexpected(secrets: Secrets, where: str, error: BaseException) -> None:
    # The frames, and the message scrubbed: an exception's text may quote a key.
    frames = "".join(traceback.format_tb(error.__traceback__))
    message = secrets.scrub(f"{type(error).__name__}: {error}")
    logger.error("unexpected error on %s: %s\n%s", where, message, frames)


def served_by(response: Any) -> list[tuple[str, str]]:
    """``X-Router-Provider``, ``X-Router-Model``, ``X-Router-Cost`` (and ``X-Router-Cache``)."""
    headers = [("X-Router-Provider", response.provider_name), ("X-Router-Model", response.model)]
    headers.append(("X-Router-Cost", f"{response.cost:.8f}"))
    if response.cached:
        headers.append(("X-Router-Cache", "hit"))
    return [(k, v) for k, v in headers if v]
