"""The contract between the HTTP server and the three wire-protocol modules.

A protocol module is pure: it reads a :class:`Request` and returns :class:`Reply` or
:class:`StreamPlan` values (bytes and headers); the server owns sockets, pacing and faults.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .answers import Answer, Conversation

_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Request:
    """An HTTP request as the protocol modules see it (header names lower-cased)."""

    method: str
    path: str  # path without the base-URL prefix and without the query string
    prefix: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    path_model: str | None = None  # Gemini carries the model in the path
    action: str | None = None  # Gemini: generateContent / streamGenerateContent / countTokens


@dataclass(frozen=True)
class Reply:
    """A complete (non-streamed) HTTP response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Event:
    """One framed stream event; ``paced`` ones are preceded by the per-token delay."""

    data: bytes
    paced: bool = False


@dataclass(frozen=True)
class StreamPlan:
    """A streamed response: status, headers and the framed events in order."""

    status: int
    headers: list[tuple[str, str]]
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Exchange:
    """A decoded request: what faults match on and what the answer is built from."""

    body: dict[str, Any]
    model: str | None
    stream: bool
    conversation: Conversation | None = None
    options: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    """A request the real service would refuse; carries the provider's error reply."""

    def __init__(self, reply: Reply, outcome: str) -> None:
        super().__init__(f"{reply.status} {outcome}")
        self.reply = reply
        self.outcome = outcome


class WireProtocol(Protocol):
    """What each provider module implements."""

    name: str

    def authenticate(self, req: Request, pinned: frozenset[str] | None) -> None:
        """Raise :class:`ApiError` (outcome ``auth``) unless the request carries a good key."""

    def decode(self, req: Request) -> Exchange:
        """Parse the JSON body enough to know the model and streaming (400 on bad JSON)."""

    def validate(self, req: Request, exchange: Exchange) -> Exchange:
        """Check the request like the service does and fill in ``conversation``."""

    def render(self, exchange: Exchange, answer: Answer) -> Reply:
        """The non-streamed success reply."""

    def stream(self, exchange: Exchange, answer: Answer) -> StreamPlan:
        """The streamed success reply."""

    def error(self, kind: str, exchange: Exchange | None, params: dict[str, Any]) -> Reply:
        """The error reply for a fault kind or ``not_found``."""

    def stream_error_event(self) -> bytes:
        """The framed in-stream error event."""

    def malformed(self, exchange: Exchange) -> Reply | StreamPlan:
        """A 200 whose body (or first event) is not valid JSON."""

    def models(self, req: Request, models: tuple[str, ...]) -> Reply:
        """The model list (or one model) reply."""


def rand_id(length: int, alphabet: str = _ALNUM) -> str:
    """A random identifier tail of ``length`` characters (unique enough, not secret)."""
    return "".join(random.choices(alphabet, k=length))


def now() -> int:
    """Unix time in whole seconds, as the APIs report ``created``."""
    return int(time.time())


def compact(obj: Any) -> bytes:
    """JSON without spaces, as OpenAI and Anthropic stream it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def pretty(obj: Any, indent: int = 2) -> bytes:
    """Pretty-printed JSON, as OpenAI and Gemini send non-streamed bodies."""
    return json.dumps(obj, indent=indent, ensure_ascii=False).encode() + b"\n"


def load_json(body: bytes) -> Any:
    """Decode a JSON request body; raises ValueError when it is not valid JSON."""
    return json.loads(body.decode("utf-8"))


def bearer(headers: dict[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_accepted(key: str | None, pinned: frozenset[str] | None) -> bool:
    """Default key policy: any non-empty key not starting with ``invalid``, unless pinned."""
    if not key:
        return False
    if pinned is not None:
        return key in pinned
    return not key.startswith("invalid")


def text_of(content: Any, sep: str = "\n") -> str:
    """The text of a message content: a string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"]
            for p in content
            if isinstance(p, dict)
            and isinstance(p.get("text"), str)
            and p.get("type", "text") == "text"
        ]
        return sep.join(texts)
    return ""


def split_json(text: str) -> list[str]:
    """Cut a JSON string into stream fragments: runs of word and of non-word characters."""
    return re.findall(r"\w+|\W+", text) or [text]
