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
- ``response_format``: natively as ``output_config.format`` on models with structured
  outputs; otherwise (and for ``json_object``) through a forced tool (``json_answer``) whose
  input is the answer, unwrapped into the answer's text.
- ``reasoning``: ``thinking`` — ``adaptive`` with ``output_config.effort`` on models that take an
  effort level, else ``enabled`` with ``budget_tokens`` (from the effort when none is given);
  ``max_tokens`` grows by the thinking budget (Anthropic counts thinking inside it). Thinking
  blocks come back with their signatures in ``provider_data["thinking_blocks"]`` and are put
  back in front of that assistant turn, as Anthropic requires for tool loops.
- Prompt caching: a text part's ``cache_control`` is a breakpoint; ``cache_prompt`` adds
  breakpoints on the last tool, the system prompt and the end of the conversation (at most
  four in all).

Usage: Anthropic reports ``input_tokens`` *without* cached tokens; the router's
``Usage.input_tokens`` includes them (``input + cache_read + cache_creation``),
``cached_input_tokens`` is ``cache_read_input_tokens`` and ``cache_write_tokens`` is
``cache_creation_input_tokens`` (``cache_write_1h_tokens`` its one-hour part). Anthropic does
not count thinking tokens apart (they are billed in ``output_tokens``): ``reasoning_tokens`` is
estimated from the thinking text (4 characters a token). In a stream the output count is the
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
    MAX_CACHE_BREAKPOINTS,
    AIRequest,
    AIResponse,
    FinishReason,
    ImagePart,
    Message,
    ProviderCapability,
    ProviderType,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from router.params import (
    ANSWER_TOOL,
    MIN_ANTHROPIC_BUDGET,
    thinking_budget,
    unsupported,
    uses_native_schema,
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
    estimate_tokens,
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


def _input_usage(raw: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(input tokens including cached ones, cache reads, cache writes, one-hour cache writes)
    from an Anthropic usage object."""
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    split = raw.get("cache_creation") or {}
    write_1h = int(split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, dict) else 0
    total = int(raw.get("input_tokens") or 0) + cache_read + cache_write
    return total, cache_read, cache_write, min(write_1h, cache_write)


def _cache_control(ttl: str | None) -> dict[str, Any]:
    return {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}


def _closed(schema: Any) -> Any:
    """``schema`` with every object closed (``additionalProperties: false`` where unset), as
    Anthropic's structured outputs require."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _thinking_blocks(content: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """The reasoning text and the thinking blocks (with signatures) of a message's content."""
    texts: list[str] = []
    blocks: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "thinking":
            texts.append(str(block.get("thinking") or ""))
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking") or "",
                    "signature": block.get("signature") or "",
                }
            )
        elif kind == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": block.get("data") or ""})
    return ("".join(texts) or None), blocks


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
        retry_after=retry_after_from_headers(headers) if cls.retryable else None,
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


def _text_block(part: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control is not None:
        block["cache_control"] = _cache_control(part.cache_control.ttl)
    return block


def _blocks(content: str | list[TextPart | ImagePart] | None, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [
        _text_block(part) if isinstance(part, TextPart) else _image_block(part, where)
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


def _answer_tool_used(request: AIRequest | None) -> bool:
    """Whether a ``json_answer`` tool call may be the answer (a JSON format was asked for)."""
    return request is not None and request.wants_json()


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _add_breakpoints(body: dict[str, Any], ttl: str) -> None:
    """Automatic prompt caching: breakpoints at the end of the conversation, the system
    prompt and the tools (in that order of preference), up to Anthropic's four in all."""
    used = sum(
        1
        for turn in body["messages"]
        for block in turn["content"]
        if isinstance(block, dict) and "cache_control" in block
    )
    if isinstance(body.get("system"), list):
        used += sum(1 for block in body["system"] if "cache_control" in block)
    places: list[dict[str, Any]] = []
    last = body["messages"][-1]["content"] if body["messages"] else []
    cacheable = [b for b in last if b.get("type") not in ("thinking", "redacted_thinking")]
    if cacheable:
        places.append(cacheable[-1])
    if body.get("system"):
        if isinstance(body["system"], str):
            body["system"] = [{"type": "text", "text": body["system"]}]
        places.append(body["system"][-1])
    if body.get("tools"):
        places.append(body["tools"][-1])
    for block in places:
        if used >= MAX_CACHE_BREAKPOINTS:
            break
        if "cache_control" not in block:
            block["cache_control"] = _cache_control(ttl if ttl != "5m" else None)
            used += 1


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
            # Thinking blocks go back first, signatures unchanged (a tool loop with thinking
            # is refused without them).
            thinking = (message.provider_data or {}).get("thinking_blocks") or []
            blocks = [dict(block) for block in thinking if isinstance(block, dict)]
            blocks += [b for b in _blocks(message.content, where) if b.get("text") != ""]
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
        info: Any = None,
    ) -> HTTPRequest:
        """A ``/v1/messages`` request for ``request``."""
        skip = {problem.name for problem in unsupported(request, self.provider_type, info)}
        system: list[str] = []
        system_blocks: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for index, message in enumerate(request.messages):
            if message.role in ("system", "developer"):
                system.append(message.text())
                if isinstance(message.content, list):
                    system_blocks += [
                        _text_block(p) for p in message.content if isinstance(p, TextPart)
                    ]
                else:
                    system_blocks.append({"type": "text", "text": message.content or ""})
                continue
            role, blocks = self._turn(index, message)
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        reasoning = request.reasoning if "reasoning" not in skip else None
        budget = thinking_budget(reasoning)
        caps = getattr(info, "capabilities", None)
        adaptive = caps is not None and ProviderCapability.REASONING_EFFORT in caps
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        body: dict[str, Any] = {
            "model": model,
            "messages": turns,
            "max_tokens": max_tokens,
            "stream": stream,
        }
        output_config: dict[str, Any] = {}
        if reasoning is not None and reasoning.enabled:
            display = {} if reasoning.include_thoughts else {"display": "omitted"}
            if adaptive and reasoning.budget_tokens is None:
                body["thinking"] = {"type": "adaptive", **display}
                if reasoning.effort is not None:
                    effort = "low" if reasoning.effort == "minimal" else reasoning.effort
                    output_config["effort"] = effort
            else:
                budget = max(budget, MIN_ANTHROPIC_BUDGET)
                body["thinking"] = {"type": "enabled", "budget_tokens": budget, **display}
            # Anthropic counts thinking inside max_tokens: max_tokens stays the answer's share.
            limit = getattr(info, "max_output_tokens", None)
            body["max_tokens"] = (
                max_tokens + budget if limit is None else min(max_tokens + budget, limit)
            )
        thinking = "thinking" in body
        if system:
            cached_system = any("cache_control" in block for block in system_blocks)
            body["system"] = system_blocks if cached_system else "\n\n".join(system)
        if request.temperature is not None and "temperature" not in skip and not thinking:
            body["temperature"] = min(request.temperature, 1.0)
        if request.top_p is not None and "top_p" not in skip:
            body["top_p"] = request.top_p
        if request.top_k is not None and "top_k" not in skip:
            body["top_k"] = request.top_k
        if request.stop is not None:
            body["stop_sequences"] = (
                [request.stop] if isinstance(request.stop, str) else list(request.stop)
            )
        tools = translate_tools(request.tools, self.provider_type) if request.tools else []
        choice = None
        if request.tool_choice is not None and "tool_choice" not in skip:
            choice = _tool_choice(request.tool_choice)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text" and "response_format" not in skip:
            schema = fmt.answer_schema or {"type": "object"}
            if fmt.type == "json_schema" and uses_native_schema(info):
                output_config["format"] = {"type": "json_schema", "schema": _closed(schema)}
            else:
                tools.append(
                    {
                        "name": ANSWER_TOOL,
                        "description": "Give your whole answer as this tool's input.",
                        "input_schema": schema,
                    }
                )
                forced = {"type": "tool", "name": ANSWER_TOOL}
                choice = {"type": "any"} if request.tools else forced
        if request.parallel_tool_calls is False and tools:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if tools:
            body["tools"] = tools
            if choice is not None:
                body["tool_choice"] = choice
        if output_config:
            body["output_config"] = output_config
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if request.service_tier in ("auto", "default"):
            body["service_tier"] = "auto" if request.service_tier == "auto" else "standard_only"
        if request.cache_ttl is not None:
            _add_breakpoints(body, request.cache_ttl)
        return self._http(
            "POST", "/v1/messages", api_key=api_key, base_url=base_url, body=body, stream=stream
        )

    def parse_response(
        self, body: dict[str, Any], *, model: str, request: AIRequest | None = None
    ) -> AIResponse:
        """A ``message`` body as an :class:`AIResponse`.

        Thinking text becomes ``reasoning``; the thinking blocks with their signatures go to
        ``provider_data["thinking_blocks"]`` for the next turn. A ``json_answer`` tool call is
        the answer itself (see the module docstring)."""
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
                    if block["name"] == ANSWER_TOOL and _answer_tool_used(request):
                        text.append(json.dumps(arguments, ensure_ascii=False))
                        continue
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
            reasoning, thinking = _thinking_blocks(body["content"])
            usage_raw = body.get("usage") or {}
            input_tokens, cached, written, written_1h = _input_usage(usage_raw)
            output = int(usage_raw.get("output_tokens") or 0)
            usage = Usage(
                input_tokens=input_tokens,
                output_tokens=output,
                cached_input_tokens=cached,
                cache_write_tokens=written,
                cache_write_1h_tokens=written_1h,
                reasoning_tokens=min(estimate_tokens(len(reasoning or "")), output),
            )
            reason = _finish_reason(body.get("stop_reason"))
            if reason == "tool_calls" and not calls:
                reason = "stop"  # the answer tool's call was the answer
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
            reasoning=reasoning,
            provider_data={"thinking_blocks": thinking} if thinking else None,
        )

    def new_stream_parser(
        self, *, model: str, provider: str = "", request: AIRequest | None = None
    ) -> AnthropicStreamParser:
        """A parser for one Messages SSE stream."""
        return AnthropicStreamParser(
            model=model, provider=provider, answer_tool=_answer_tool_used(request)
        )

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
                retry_after=retry_after_from_headers(headers) if cls.retryable else None,
                request_id=header_value(headers, "request-id"),
            )
        except Exception:  # classification must never fail, whatever the body holds
            return error_for_status(status)(
                f"HTTP {status}", provider=provider or None, status=status
            )


class AnthropicStreamParser(StreamParser):
    """``message_start`` … ``content_block_*`` … ``message_delta`` → ``message_stop``."""

    provider_type = ProviderType.ANTHROPIC

    def __init__(self, *, model: str, provider: str = "", answer_tool: bool = False) -> None:
        super().__init__(model=model, provider=provider)
        # Anthropic's block index (text blocks count too) -> our stable tool-call index
        self._tool_index: dict[int, int] = {}
        self._provisional_output = 0
        self._answer_tool = answer_tool
        self._answer_blocks: set[int] = set()  # blocks of the answer tool: their input is text
        self._thinking: dict[int, dict[str, Any]] = {}  # block index -> thinking block so far

    @property
    def usage(self) -> Usage:
        """As the base class, but never below ``message_start``'s provisional output count."""
        usage = super().usage
        if self._reported_output is None and self._provisional_output > usage.output_tokens:
            return self._usage(self._provisional_output)
        return usage

    def _final_chunk(self) -> StreamChunk:
        if self._thinking:
            blocks = [self._thinking[index] for index in sorted(self._thinking)]
            self._provider_data = {"thinking_blocks": blocks}
        if self._finish_reason == "tool_calls" and not self._has_tool_calls:
            self._finish_reason = "stop"  # the answer tool's call was the answer
        return super()._final_chunk()

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
            self._take_input_usage(usage)
            self._provisional_output = int(usage.get("output_tokens") or 0)
            return []
        if kind == "content_block_start":
            block = payload["content_block"]
            if block.get("type") == "text" and block.get("text"):
                return [self._text_chunk(str(block["text"]))]
            if block.get("type") in ("thinking", "redacted_thinking"):
                _, (start,) = _thinking_blocks([block])
                self._thinking[int(payload["index"])] = start
                text = block.get("thinking")
                return [self._reasoning_chunk(str(text))] if text else []
            if (
                block.get("type") == "tool_use"
                and self._answer_tool
                and block["name"] == ANSWER_TOOL
            ):
                self._answer_blocks.add(int(payload["index"]))
                initial = block.get("input")
                return [self._text_chunk(json.dumps(initial))] if initial else []
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
            if delta.get("type") == "thinking_delta" and delta.get("thinking"):
                block = self._thinking.setdefault(
                    int(payload["index"]), {"type": "thinking", "thinking": "", "signature": ""}
                )
                block["thinking"] += str(delta["thinking"])
                self._reasoning_tokens = estimate_tokens(
                    sum(len(b.get("thinking", "")) for b in self._thinking.values())
                )
                return [self._reasoning_chunk(str(delta["thinking"]))]
            if delta.get("type") == "signature_delta":
                block = self._thinking.setdefault(
                    int(payload["index"]), {"type": "thinking", "thinking": "", "signature": ""}
                )
                block["signature"] += str(delta.get("signature") or "")
                return []
            if (
                delta.get("type") == "input_json_delta"
                and delta.get("partial_json")
                and int(payload["index"]) in self._answer_blocks
            ):
                return [self._text_chunk(str(delta["partial_json"]))]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                index = self._tool_index[int(payload["index"])]
                fragment = ToolCallDelta(index=index, arguments=str(delta["partial_json"]))
                return [self._tool_chunk([fragment])]
            return []
        if kind == "message_delta":
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish_reason = _finish_reason(reason)
            usage = payload.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._reported_output = int(usage["output_tokens"])
            if usage.get("input_tokens") is not None:
                self._take_input_usage(usage)
            return []
        if kind == "message_stop":
            return [self._final_chunk()]
        return []  # ping, content_block_stop and event types added later

    def _take_input_usage(self, usage: Mapping[str, Any]) -> None:
        (
            self._input_tokens,
            self._cached_tokens,
            self._cache_write,
            self._cache_write_1h,
        ) = _input_usage(usage)

    def finish(self) -> list[StreamChunk]:
        """At end of input: nothing if ``message_stop`` came, else an interruption."""
        if self._completed:
            return []
        raise self._interrupted("message_stop")


ANTHROPIC = AnthropicAdapter()
