"""Anthropic Messages.

``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version: 2023-06-01``.

Translation from the router's OpenAI-style messages (see ``tests/fixtures/wire/anthropic``):

- ``system`` and ``developer`` messages are joined (blank line between) into the top-level
  ``system`` string, wherever they stood in the conversation.
- User text becomes ``text`` blocks; images become ``image`` blocks (``data:`` URLs as a
  base64 source, http(s) URLs as a url source).
- An assistant's tool calls become ``tool_use`` blocks (``input`` is the parsed JSON object);
  ``tool`` messages become ``tool_result`` blocks in a user turn. Consecutive turns of the
  same role are merged, so parallel tool results travel in one user turn as Anthropic needs.
- ``max_tokens`` is required by Anthropic: a request without one asks for 4096.
- ``temperature`` above 1 is sent as 1 (Anthropic's range is 0..1; the router's is 0..2).

Usage: Anthropic reports ``input_tokens`` *without* cached tokens; the router's
``Usage.input_tokens`` includes them (``input + cache_read + cache_creation``), and
``cached_input_tokens`` is ``cache_read_input_tokens``. In a stream the output count is the
one in the *last* ``message_delta`` (cumulative, never summed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from router.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
)
from router.models import (
    AIRequest,
    AIResponse,
    FinishReason,
    ImagePart,
    Message,
    ProviderType,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from router.providers.base import (
    SHAPE_ERRORS,
    HTTPRequest,
    ProviderAdapter,
    StreamParser,
    body_snippet,
    decode_json_body,
    error_for_status,
    error_message,
    header_value,
    retry_after_from_headers,
    tool_calls_finish,
    wrong_shape,
)
from router.tools import translate_tools

__all__ = ["AnthropicAdapter", "AnthropicStreamParser", "ANTHROPIC", "DEFAULT_MAX_TOKENS"]

ANTHROPIC_VERSION = "2023-06-01"

#: ``max_tokens`` sent when the request sets none (Anthropic requires the field).
DEFAULT_MAX_TOKENS = 4096

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic's error ``type`` decides the class; the HTTP status is the fallback.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "invalid_request_error": InvalidRequestError,
    "request_too_large": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "billing_error": QuotaExceededError,
    "not_found_error": ModelNotFoundError,
    "rate_limit_error": RateLimitError,
    "api_error": ServiceUnavailableError,
    "overloaded_error": ServiceUnavailableError,
    "timeout_error": ProviderTimeoutError,
}

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.S
)


def _finish_reason(value: Any) -> FinishReason:
    return _FINISH.get(str(value), "stop") if value else "stop"


def _input_usage(raw: Mapping[str, Any]) -> tuple[int, int]:
    """(input tokens including cached ones, cache-read tokens) from an Anthropic usage object."""
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    return int(raw.get("input_tokens") or 0) + cache_read + cache_write, cache_read


def _error_from_payload(
    status: int | None,
    payload: Any,
    headers: Mapping[str, str] | None,
    *,
    provider: str | None,
) -> ProviderError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    kind = error.get("type")
    message = error.get("message")
    cls = _ERROR_TYPES.get(str(kind)) if kind else None
    if cls is None:
        cls = error_for_status(status)
    request_id = header_value(headers, "request-id")
    if not request_id and isinstance(payload, dict) and payload.get("request_id"):
        request_id = str(payload["request_id"])
    return cls(
        error_message(status, str(kind) if kind else None, str(message) if message else None),
        provider=provider or None,
        status=status,
        retry_after=retry_after_from_headers(headers) if cls is RateLimitError else None,
        request_id=request_id,
    )


def _image_block(part: ImagePart, where: str) -> dict[str, Any]:
    url = part.image_url.url
    match = _DATA_URL.match(url)
    if match:
        if ";base64" not in match.group("params"):
            raise InvalidRequestError(f"{where}: image data URLs must be base64-encoded")
        source = {"type": "base64", "media_type": match.group("mime"), "data": match.group("data")}
        return {"type": "image", "source": source}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError(f"{where}: an image must be a data: URL or an http(s) URL")


def _blocks(content: str | list[TextPart | ImagePart] | None, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [
        {"type": "text", "text": part.text}
        if isinstance(part, TextPart)
        else _image_block(part, where)
        for part in content
    ]


def _tool_input(arguments: str, where: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise InvalidRequestError(f"{where}: arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}: arguments must be a JSON object")
    return value


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


class AnthropicAdapter(ProviderAdapter):
    """The Anthropic Messages protocol."""

    provider_type = ProviderType.ANTHROPIC
    default_base_url = "https://api.anthropic.com"
    models_path = "/v1/models"

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def _turn(self, index: int, message: Message) -> tuple[str, list[dict[str, Any]]]:
        where = f"messages[{index}]"
        if message.role == "tool":
            content: Any
            if isinstance(message.content, list):
                content = _blocks(message.content, where)
            else:
                content = message.content or ""
            block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}
            return "user", [block]
        if message.role == "assistant":
            blocks = [b for b in _blocks(message.content, where) if b.get("text") != ""]
            for number, call in enumerate(message.tool_calls or ()):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function.name,
                        "input": _tool_input(
                            call.function.arguments, f"{where}.tool_calls[{number}]"
                        ),
                    }
                )
            return "assistant", blocks
        return "user", _blocks(message.content, where)

    def build_request(
        self,
        request: AIRequest,
        *,
        model: str,
        api_key: str | None,
        base_url: str,
        stream: bool,
    ) -> HTTPRequest:
        """A ``/v1/messages`` request for ``request``."""
        system: list[str] = []
        turns: list[dict[str, Any]] = []
        for index, message in enumerate(request.messages):
            if message.role in ("system", "developer"):
                system.append(message.text())
                continue
            role, blocks = self._turn(index, message)
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        body: dict[str, Any] = {
            "model": model,
            "messages": turns,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": stream,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop is not None:
            body["stop_sequences"] = (
                [request.stop] if isinstance(request.stop, str) else list(request.stop)
            )
        if request.tools:
            body["tools"] = translate_tools(request.tools, self.provider_type)
            if request.tool_choice is not None:
                body["tool_choice"] = _tool_choice(request.tool_choice)
        return self._http(
            "POST", "/v1/messages", api_key=api_key, base_url=base_url, body=body, stream=stream
        )

    def parse_response(self, body: dict[str, Any], *, model: str) -> AIResponse:
        """A ``message`` body as an :class:`AIResponse` (thinking blocks are left out)."""
        if not isinstance(body, dict):
            raise wrong_shape(f"expected a JSON object, got {type(body).__name__}")
        if body.get("type") == "error":
            raise _error_from_payload(None, body, None, provider=None)
        try:
            text: list[str] = []
            calls: list[ToolCall] = []
            for block in body["content"]:
                kind = block["type"]
                if kind == "text":
                    text.append(str(block["text"]))
                elif kind == "tool_use":
                    arguments = block.get("input") or {}
                    if not isinstance(arguments, dict):
                        raise TypeError("tool_use.input is not an object")
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
            usage_raw = body.get("usage") or {}
            input_tokens, cached = _input_usage(usage_raw)
            usage = Usage(
                input_tokens=input_tokens,
                output_tokens=int(usage_raw.get("output_tokens") or 0),
                cached_input_tokens=cached,
            )
            reason = _finish_reason(body.get("stop_reason"))
        except SHAPE_ERRORS as exc:
            raise wrong_shape("message", exc) from None
        return AIResponse(
            content="".join(text),
            tool_calls=tuple(calls),
            finish_reason=tool_calls_finish(reason, bool(calls)),
            usage=usage,
            provider=self.provider_type,
            model=model,
            request_id=str(body["id"]) if body.get("id") else None,
        )

    def new_stream_parser(self, *, model: str, provider: str = "") -> AnthropicStreamParser:
        """A parser for one Messages SSE stream."""
        return AnthropicStreamParser(model=model, provider=provider)

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> ProviderError:
        """The error ``type`` decides (529 ``overloaded_error`` is unavailable, 429 rate limit,
        ``billing_error`` quota, ``timeout_error`` timeout); the status is the fallback."""
        try:
            payload = decode_json_body(body)
            if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                return _error_from_payload(status, payload, headers, provider=provider)
            cls = error_for_status(status)
            if status == 529:
                cls = ServiceUnavailableError
            return cls(
                error_message(status, None, body_snippet(body) or None),
                provider=provider or None,
                status=status,
                retry_after=retry_after_from_headers(headers) if cls is RateLimitError else None,
                request_id=header_value(headers, "request-id"),
            )
        except Exception:  # classification must never fail, whatever the body holds
            return error_for_status(status)(
                f"HTTP {status}", provider=provider or None, status=status
            )


class AnthropicStreamParser(StreamParser):
    """``message_start`` … ``content_block_*`` … ``message_delta`` → ``message_stop``."""

    provider_type = ProviderType.ANTHROPIC

    def __init__(self, *, model: str, provider: str = "") -> None:
        super().__init__(model=model, provider=provider)
        # Anthropic's block index (text blocks count too) -> our stable tool-call index
        self._tool_index: dict[int, int] = {}
        self._provisional_output = 0

    @property
    def usage(self) -> Usage:
        """As the base class, but never below ``message_start``'s provisional output count."""
        usage = super().usage
        if self._reported_output is None and self._provisional_output > usage.output_tokens:
            return Usage(
                input_tokens=usage.input_tokens,
                output_tokens=self._provisional_output,
                cached_input_tokens=usage.cached_input_tokens,
            )
        return usage

    def feed(self, event: str, data: str) -> list[StreamChunk]:
        """One SSE event -> chunks; ``message_stop`` gives the final chunk."""
        if self._completed:
            return []
        payload = self._load(data)
        if not isinstance(payload, dict):
            raise wrong_shape("stream event is not a JSON object")
        kind = payload.get("type") or event
        if kind == "error":
            raise _error_from_payload(None, payload, None, provider=self._provider)
        try:
            return self._handle(kind, payload)
        except SHAPE_ERRORS as exc:
            raise wrong_shape(f"{kind} event", exc) from None

    def _handle(self, kind: str, payload: dict[str, Any]) -> list[StreamChunk]:
        if kind == "message_start":
            message = payload["message"]
            if message.get("id"):
                self._request_id = str(message["id"])
            usage = message.get("usage") or {}
            self._input_tokens, self._cached_tokens = _input_usage(usage)
            self._provisional_output = int(usage.get("output_tokens") or 0)
            return []
        if kind == "content_block_start":
            block = payload["content_block"]
            if block.get("type") == "text" and block.get("text"):
                return [self._text_chunk(str(block["text"]))]
            if block.get("type") == "tool_use":
                index = self._tool_index.setdefault(int(payload["index"]), len(self._tool_index))
                initial = block.get("input")
                arguments = json.dumps(initial) if isinstance(initial, dict) and initial else ""
                delta = ToolCallDelta(
                    index=index, id=block["id"], name=block["name"], arguments=arguments
                )
                return [self._tool_chunk([delta])]
            return []
        if kind == "content_block_delta":
            delta = payload["delta"]
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._text_chunk(str(delta["text"]))]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                index = self._tool_index[int(payload["index"])]
                fragment = ToolCallDelta(index=index, arguments=str(delta["partial_json"]))
                return [self._tool_chunk([fragment])]
            return []  # thinking / signature deltas are not part of the answer
        if kind == "message_delta":
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish_reason = _finish_reason(reason)
            usage = payload.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._reported_output = int(usage["output_tokens"])
            if usage.get("input_tokens") is not None:
                self._input_tokens, self._cached_tokens = _input_usage(usage)
            return []
        if kind == "message_stop":
            return [self._final_chunk()]
        return []  # ping, content_block_stop and event types added later

    def finish(self) -> list[StreamChunk]:
        """At end of input: nothing if ``message_stop`` came, else an interruption."""
        if self._completed:
            return []
        raise self._interrupted("message_stop")


ANTHROPIC = AnthropicAdapter()
