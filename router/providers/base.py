"""What every wire adapter provides, and the pure helpers they share.

An adapter translates between the router's values (:mod:`router.models`) and one provider's
HTTP protocol. It does no I/O: the runtime sends the :class:`HTTPRequest` an adapter builds,
hands the decoded JSON body back to :meth:`ProviderAdapter.parse_response`, feeds each SSE
event of a stream to a :class:`StreamParser`, and asks :meth:`ProviderAdapter.classify_error`
what a non-2xx answer means.

:class:`StreamAccumulator` folds the chunks of one stream back into an :class:`AIResponse`
(for billing and logging, and so tests can compare a streamed answer with a non-streamed one).
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from router.errors import (
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from router.models import (
    AIRequest,
    AIResponse,
    FinishReason,
    ProviderType,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
    chunk_from,
)
from router.retry import parse_retry_after

__all__ = [
    "HTTPRequest",
    "StreamParser",
    "ProviderAdapter",
    "StreamAccumulator",
    "assemble_stream",
    "estimate_tokens",
    "scrub_secrets",
    "header_value",
    "retry_after_from_headers",
    "error_for_status",
    "error_message",
    "decode_json_body",
    "body_snippet",
    "parse_arguments",
    "tool_calls_finish",
    "wrong_shape",
    "join_url",
    "SHAPE_ERRORS",
]

# Header names whose values are credentials: never shown in a repr or a log line.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})

# Anything that looks like a provider key. OpenAI's 401 message echoes a masked key
# ("sk-wrong****-key"); a proxy may echo a whole one. Better to over-redact an error message.
_SECRET_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_\-*.]{3,}"),
    re.compile(r"AIza[0-9A-Za-z_\-*]{6,}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9_\-.~+/=*]{6,}"),
    re.compile(r"(?i)([?&](?:key|api_key|api-key)=)[^&\s\"']+"),
)

# Error message bodies are cut to this length: an HTML error page is not a useful message.
_MAX_MESSAGE = 500

# json.loads' own C scanner (shared, as json.loads shares its decoder's).
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """One HTTP request an adapter wants sent. ``headers`` include the auth header.

    The repr hides credential headers so a request can be logged safely.
    """

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    stream: bool

    def __repr__(self) -> str:
        shown = {
            name: ("<redacted>" if name.lower() in _SECRET_HEADERS else value)
            for name, value in self.headers.items()
        }
        return (
            f"HTTPRequest(method={self.method!r}, url={self.url!r}, headers={shown!r}, "
            f"json={'<body>' if self.json is not None else None}, stream={self.stream!r})"
        )


# --- small pure helpers ----------------------------------------------------------------------


def estimate_tokens(chars: int) -> int:
    """A rough token count for ``chars`` characters of generated text (4 chars per token)."""
    return math.ceil(chars / 4) if chars > 0 else 0


def scrub_secrets(text: str) -> str:
    """``text`` with anything that looks like an API key replaced by ``[redacted]``."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


def header_value(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """The value of header ``name`` (case-insensitive); the first one if a list was recorded."""
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            return None if value is None else str(value)
    return None


def retry_after_from_headers(headers: Mapping[str, Any] | None) -> float | None:
    """The server's requested pause: ``retry-after-ms`` (Anthropic) or ``Retry-After``."""
    millis = header_value(headers, "retry-after-ms")
    if millis is not None:
        seconds = parse_retry_after(millis)
        if seconds is not None:
            return seconds / 1000.0
    return parse_retry_after(header_value(headers, "retry-after"))


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (trailing slashes ignored) joined with ``path`` (which starts with ``/``)."""
    return base_url.rstrip("/") + path


def decode_json_body(body: bytes | str | None) -> Any:
    """The JSON value of an error body, or ``None`` when it is empty, not UTF-8 or not JSON."""
    if not body:
        return None
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else str(body)
        return json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None


def body_snippet(body: bytes | str | None) -> str:
    """A short, single-line, printable excerpt of a body that is not the expected JSON."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    text = re.sub(r"<[^>]*>", " ", text)  # an HTML error page reads better without its tags
    text = " ".join(text.split())
    return text[:200]


def error_message(status: int | None, kind: str | None, message: str | None) -> str:
    """``"HTTP 429 rate_limit_error: <message>"``, scrubbed of keys and cut to a sane length."""
    head = f"HTTP {status}" if status is not None else "stream error"
    if kind:
        head = f"{head} {kind}"
    text = f"{head}: {message}" if message else head
    text = scrub_secrets(text)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text


def error_for_status(status: int | None) -> type[ProviderError]:
    """The error class an HTTP status means when the body says nothing more specific."""
    if status is None:
        return ServiceUnavailableError
    if status == 401:
        return AuthenticationError
    if status == 402:
        return QuotaExceededError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return ModelNotFoundError
    if status in (408, 504):
        return ProviderTimeoutError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServiceUnavailableError
    if status >= 400:
        return InvalidRequestError
    return ProviderError


def parse_arguments(text: str, *, tool: str) -> dict[str, Any]:
    """A tool call's JSON argument string as a dict (``""`` means no arguments)."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MalformedResponseError(
            f"tool call '{tool}': arguments are not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    if not isinstance(value, dict):
        raise MalformedResponseError(
            f"tool call '{tool}': arguments must be a JSON object, got {type(value).__name__}"
        )
    return value


def tool_calls_finish(reason: FinishReason, has_tool_calls: bool) -> FinishReason:
    """A normal stop that carries tool calls is a ``tool_calls`` finish.

    Gemini has no tool-specific finish reason, and some OpenAI-compatible servers say
    ``stop`` after tool calls; callers decide what to do next from this value.
    """
    if has_tool_calls and reason == "stop":
        return "tool_calls"
    return reason


# --- streams ---------------------------------------------------------------------------------


class StreamParser:
    """Turns one provider stream's SSE events into :class:`StreamChunk` values.

    One instance per stream; a pure state machine (no I/O). Subclasses implement
    :meth:`feed` and :meth:`finish` and record what they see through the protected helpers,
    which keep :attr:`usage` and :attr:`started` right for every provider.
    """

    provider_type: ProviderType

    def __init__(self, *, model: str, provider: str = "") -> None:
        self._model = model
        self._provider = provider
        self._request_id: str | None = None
        self._input_tokens = 0
        self._cached_tokens = 0
        self._cache_write = 0
        self._cache_write_1h = 0
        self._reasoning_tokens = 0
        self._reported_output: int | None = None
        self._generated_chars = 0
        self._started = False
        self._finish_reason: FinishReason | None = None
        self._has_tool_calls = False
        self._completed = False
        self._provider_data: dict[str, Any] | None = None  # carried on the final chunk

    def feed(self, event: str, data: str) -> list[StreamChunk]:
        """One SSE event (its name, ``"message"`` when none, and its data) -> 0..n chunks.

        The final chunk (``is_complete=True``) comes when the provider's end marker arrives.
        Raises a typed :class:`ProviderError` for an in-stream error event and
        :class:`MalformedResponseError` for data that is not the expected JSON.
        """
        raise NotImplementedError

    def finish(self) -> list[StreamChunk]:
        """Called at end of input: the final chunk if it is still due.

        Raises :class:`StreamInterruptedError` when the stream was cut before its end.
        """
        raise NotImplementedError

    @property
    def usage(self) -> Usage:
        """Tokens seen so far; output is estimated from the text while none was reported."""
        output = self._reported_output
        if output is None:
            output = estimate_tokens(self._generated_chars)
        return self._usage(output)

    def _usage(self, output: int) -> Usage:
        cached = min(self._cached_tokens, self._input_tokens)
        written = min(self._cache_write, self._input_tokens - cached)
        return Usage(
            input_tokens=self._input_tokens,
            output_tokens=output,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            cache_write_1h_tokens=min(self._cache_write_1h, written),
            reasoning_tokens=min(self._reasoning_tokens, output),
        )

    @property
    def started(self) -> bool:
        """True once any content or tool-call chunk has been produced."""
        return self._started

    @property
    def completed(self) -> bool:
        """True once the final chunk has been produced."""
        return self._completed

    # -- helpers for subclasses --

    # Chunks are built once, already naming who answers (a stream may carry thousands of
    # them): copies of one validated template (models.chunk_from), not validated each.

    @property
    def _template(self) -> StreamChunk:
        template = self.__dict__.get("_chunk_template")
        if template is None:
            template = self._chunk_template = StreamChunk(
                provider=self.provider_type,
                provider_name=self._provider or None,
                model=self._model,
            )
        return template

    def _text_chunk(self, text: str) -> StreamChunk:
        self._generated_chars += len(text)
        self._started = True
        return chunk_from(self._template, content=str(text))

    def _reasoning_chunk(self, text: str) -> StreamChunk:
        self._generated_chars += len(text)
        self._started = True
        return chunk_from(self._template, reasoning=str(text))

    def _tool_chunk(self, deltas: list[ToolCallDelta]) -> StreamChunk:
        for delta in deltas:
            self._generated_chars += len(delta.arguments)
        self._started = True
        self._has_tool_calls = True
        return chunk_from(self._template, tool_call_deltas=tuple(deltas))

    def _final_chunk(self) -> StreamChunk:
        self._completed = True
        reason = tool_calls_finish(self._finish_reason or "stop", self._has_tool_calls)
        return StreamChunk(
            is_complete=True,
            finish_reason=reason,
            usage=self.usage,
            cost=None,
            provider=self.provider_type,
            model=self._model,
            request_id=self._request_id,
            provider_data=self._provider_data,
        )

    def _interrupted(self, what: str) -> StreamInterruptedError:
        return StreamInterruptedError(
            f"stream ended before {what}",
            provider=self._provider or None,
            request_id=self._request_id,
        )

    def _load(self, data: str) -> Any:
        try:
            try:
                # The C scanner itself: json.loads adds two regex scans and three calls.
                value, end = _scan_json(data, 0)
            except StopIteration:  # not a value at offset 0 (leading space): the long way
                return json.loads(data)
            if end != len(data) and data[end:].strip():
                raise ValueError("extra data")
            return value
        except ValueError:
            raise MalformedResponseError(
                f"stream event is not JSON: {body_snippet(data)!r}",
                provider=self._provider or None,
                request_id=self._request_id,
            ) from None


class StreamAccumulator:
    """Folds the chunks of one stream into the answer a non-streamed call would give.

    Content is concatenated; tool-call deltas are grouped by their stable index (the first
    delta of a call carries id and name, the rest carry argument fragments) and parsed into
    :class:`ToolCall` values.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._final: StreamChunk | None = None

    def add(self, chunk: StreamChunk) -> None:
        """Take one chunk into account."""
        if chunk.content:
            self._content.append(chunk.content)
        if chunk.reasoning:
            self._reasoning.append(chunk.reasoning)
        for delta in chunk.tool_call_deltas:
            call = self._calls.setdefault(
                delta.index, {"id": None, "name": None, "args": [], "provider_data": None}
            )
            if delta.id and not call["id"]:
                call["id"] = delta.id
            if delta.name and not call["name"]:
                call["name"] = delta.name
            if delta.arguments:
                call["args"].append(delta.arguments)
            if delta.provider_data:
                call["provider_data"] = {**(call["provider_data"] or {}), **delta.provider_data}
        if chunk.is_complete:
            self._final = chunk

    @property
    def content(self) -> str:
        """The text so far."""
        return "".join(self._content)

    @property
    def final(self) -> StreamChunk | None:
        """The final (or error) chunk, once seen."""
        return self._final

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far, in index order, with parsed arguments."""
        calls = []
        for index in sorted(self._calls):
            call = self._calls[index]
            name = call["name"] or ""
            if not name:
                raise MalformedResponseError(f"streamed tool call #{index} has no name")
            calls.append(
                ToolCall(
                    id=call["id"] or f"call_{index}_{name}",
                    name=name,
                    arguments=parse_arguments("".join(call["args"]), tool=name),
                    provider_data=call["provider_data"],
                )
            )
        return tuple(calls)

    def response(
        self,
        *,
        usage: Usage | None = None,
        provider: ProviderType | None = None,
        model: str | None = None,
        request_id: str | None = None,
    ) -> AIResponse:
        """The assembled answer. Values from the final chunk win unless given here.

        Without a final chunk (a cut stream) the finish reason is ``"error"``.
        """
        final = self._final
        return AIResponse(
            content=self.content,
            tool_calls=self.tool_calls(),
            finish_reason=(final.finish_reason if final and final.finish_reason else "error"),
            usage=usage or (final.usage if final and final.usage else Usage()),
            provider=provider or (final.provider if final else None),
            model=model or (final.model if final and final.model else ""),
            request_id=request_id or (final.request_id if final else None),
            provider_data=final.provider_data if final else None,
            reasoning="".join(self._reasoning) or None,
            parsed=final.parsed if final else None,
            dropped_params=final.dropped_params if final else (),
        )


def assemble_stream(chunks: Iterable[StreamChunk]) -> AIResponse:
    """The :class:`AIResponse` that ``chunks`` (one whole stream) add up to."""
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.response()


# --- adapters --------------------------------------------------------------------------------


class ProviderAdapter:
    """Pure translation for one provider protocol. Stateless: one instance serves every call."""

    provider_type: ProviderType
    default_base_url: str
    models_path: str  # the list-models endpoint below the base URL (health probes)

    def _headers(self, api_key: str | None) -> dict[str, str]:
        """JSON content type plus this provider's auth header (when there is a key)."""
        raise NotImplementedError

    def _http(
        self,
        method: str,
        path: str,
        *,
        api_key: str | None,
        base_url: str,
        body: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> HTTPRequest:
        return HTTPRequest(
            method=method,
            url=join_url(base_url or self.default_base_url, path),
            headers=self._headers(api_key),
            json=body,
            stream=stream,
        )

    def build_models_request(self, *, api_key: str | None, base_url: str) -> HTTPRequest:
        """``GET`` the provider's models list: a health probe that spends no tokens."""
        return self._http("GET", self.models_path, api_key=api_key, base_url=base_url)

    def build_request(
        self,
        request: AIRequest,
        *,
        model: str,
        api_key: str | None,
        base_url: str,
        stream: bool,
        info: Any = None,
    ) -> HTTPRequest:
        """The HTTP request that asks ``model`` for an answer to ``request``.

        ``info`` is the model's catalog entry (:class:`router.catalog.ModelInfo`), None when
        the catalog does not know it: it decides which native mechanism carries a parameter
        (e.g. a schema natively or through a forced tool). Parameters the provider cannot
        honour (:func:`router.params.unsupported`) are left out; the planner has already
        refused the candidate when they mattered and ``strict_params`` was on.
        """
        raise NotImplementedError

    def parse_response(
        self, body: dict[str, Any], *, model: str, request: AIRequest | None = None
    ) -> AIResponse:
        """The :class:`AIResponse` in a 2xx JSON body (cost and provider name left for the runtime).

        ``request`` (when given) says how the answer was asked for (e.g. a forced answer tool
        to unwrap). Raises :class:`MalformedResponseError` when the body does not have the
        expected shape.
        """
        raise NotImplementedError

    def new_stream_parser(
        self, *, model: str, provider: str = "", request: AIRequest | None = None
    ) -> StreamParser:
        """A fresh parser for one streamed answer from ``model`` to ``request``."""
        raise NotImplementedError

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> ProviderError:
        """The typed error a non-2xx answer means. Never raises, whatever the body holds."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.provider_type.value})"


def wrong_shape(what: str, exc: BaseException | None = None) -> MalformedResponseError:
    """The error for a 2xx body whose shape is not what the protocol promises."""
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return MalformedResponseError(scrub_secrets(f"unexpected response shape: {what}{detail}"))


# Exceptions that mean "the JSON was not shaped as expected" while walking a body.
SHAPE_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ValueError)
