"""OpenAI Chat Completions (and OpenAI-compatible servers such as vLLM or Ollama).

``POST {base}/chat/completions`` with ``Authorization: Bearer``; ``base`` includes ``/v1``.
The router's message format *is* this protocol's, so requests need little translation.

Choices made here (see the recorded traffic in ``tests/fixtures/wire/openai``):

- ``max_tokens`` is sent as ``max_completion_tokens`` to OpenAI (as recorded; OpenAI's
  reasoning models refuse ``max_tokens``) and as ``max_tokens`` to OpenAI-compatible servers,
  which do not all know the newer name.
- ``developer`` messages go to OpenAI unchanged and become ``system`` messages for
  OpenAI-compatible servers, whose chat templates rarely know the ``developer`` role.
- Streams always ask for ``stream_options: {"include_usage": true}`` so a stream is billed by
  the provider's own count.
- A stream is complete at ``data: [DONE]``; one that ends after a ``finish_reason`` but before
  ``[DONE]`` is accepted too (its answer is whole; only the usage chunk may be missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.errors import (
    InvalidRequestError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
)
from router.models import (
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
from router.params import effort_for_budget, thinking_budget, unsupported
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
    parse_arguments,
    retry_after_from_headers,
    tool_calls_finish,
    wrong_shape,
)
from router.tools import translate_tools

__all__ = ["OpenAIAdapter", "OpenAIStreamParser", "OPENAI", "OPENAI_COMPATIBLE"]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# Codes and types in an error body that decide the class whatever the status says
# (insufficient_quota comes as a 429 but is not worth retrying).
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})


def _finish_reason(value: Any) -> FinishReason:
    # Unknown reasons from OpenAI-compatible servers (e.g. "eos") are normal ends.
    return _FINISH.get(str(value), "stop") if value else "stop"


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    details = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    output = int(raw.get("completion_tokens") or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        cached_input_tokens=min(int(details.get("cached_tokens") or 0), prompt),
        reasoning_tokens=min(int(completion.get("reasoning_tokens") or 0), output),
    )


def _reasons(info: Any) -> bool:
    caps = getattr(info, "capabilities", None)
    return caps is None or ProviderCapability.REASONING in caps


def _reasoning_text(message: dict[str, Any]) -> str | None:
    # OpenAI's Chat Completions returns no reasoning text; OpenAI-compatible servers (vLLM,
    # DeepSeek, OpenRouter) do, under one of these names.
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _error_from_payload(
    status: int | None,
    payload: Any,
    headers: Mapping[str, str] | None,
    *,
    provider: str | None,
) -> ProviderError:
    """The error an OpenAI ``{"error": {...}}`` payload (or its absence) stands for."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # some compatible servers send {"error": "text"}
        error = {"message": error}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    kind = error.get("type")
    message = error.get("message")
    names = {str(code), str(kind)}
    if names & _QUOTA_CODES:
        cls: type[ProviderError] = QuotaExceededError
    elif status is None and ("rate_limit_exceeded" in names or "tokens" in names):
        cls = RateLimitError
    elif status is None and "invalid_request_error" in names:
        cls = InvalidRequestError
    else:
        cls = error_for_status(status)
    retry_after = retry_after_from_headers(headers) if cls.retryable else None
    label = str(code or kind) if (code or kind) else None
    return cls(
        error_message(status, label, str(message) if message else None),
        provider=provider or None,
        status=status,
        retry_after=retry_after,
        request_id=header_value(headers, "x-request-id"),
    )


class OpenAIAdapter(ProviderAdapter):
    """Chat Completions for OpenAI itself or for an OpenAI-compatible server."""

    def __init__(self, provider_type: ProviderType = ProviderType.OPENAI) -> None:
        if provider_type not in (ProviderType.OPENAI, ProviderType.OPENAI_COMPATIBLE):
            raise ValueError(f"OpenAIAdapter cannot speak for {provider_type.value}")
        self.provider_type = provider_type
        self.default_base_url = "https://api.openai.com/v1"
        self.models_path = "/models"

    @property
    def _compatible(self) -> bool:
        return self.provider_type is ProviderType.OPENAI_COMPATIBLE

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    # -- requests --

    def _message(self, message: Message) -> dict[str, Any]:
        role = message.role
        if role == "developer" and self._compatible:
            role = "system"
        out: dict[str, Any] = {"role": role}
        if message.content is not None:
            if isinstance(message.content, str):
                out["content"] = message.content
            else:
                out["content"] = [_part(part) for part in message.content]
        if message.name:
            out["name"] = message.name
        if message.tool_calls:
            # provider_data is ours, not OpenAI's: it is left out.
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
        return out

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
        """A ``/chat/completions`` request for ``request``."""
        skip = {problem.name for problem in unsupported(request, self.provider_type, info)}
        body: dict[str, Any] = {
            "model": model,
            "messages": [self._message(message) for message in request.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        reasoning = request.reasoning if "reasoning" not in skip else None
        if request.max_tokens is not None:
            key = "max_tokens" if self._compatible else "max_completion_tokens"
            # Reasoning tokens count against this limit: max_tokens is the answer's share.
            body[key] = request.max_tokens + thinking_budget(reasoning)
        if reasoning is not None and (reasoning.enabled or _reasons(info)):
            effort = reasoning.effort
            if effort is None:
                effort = (
                    effort_for_budget(thinking_budget(reasoning)) if reasoning.enabled else "none"
                )
            body["reasoning_effort"] = effort
        fmt = request.response_format
        if fmt is not None and "response_format" not in skip:
            body["response_format"] = fmt.wire()
        for name in ("seed", "presence_penalty", "frequency_penalty", "logit_bias", "verbosity"):
            value = getattr(request, name)
            if value is not None and name not in skip:
                body[name] = value
        if request.service_tier is not None:
            body["service_tier"] = request.service_tier
        if request.user is not None:
            # OpenAI replaced ``user`` by ``safety_identifier``; compatible servers know ``user``.
            body["user" if self._compatible else "safety_identifier"] = request.user
        if not self._compatible:
            if request.prompt_cache_key is not None:
                body["prompt_cache_key"] = request.prompt_cache_key
            if request.prompt_cache_retention is not None:
                body["prompt_cache_retention"] = request.prompt_cache_retention
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop is not None:
            body["stop"] = request.stop if isinstance(request.stop, str) else list(request.stop)
        if request.tools:
            body["tools"] = translate_tools(request.tools, self.provider_type)
            if request.tool_choice is not None:
                body["tool_choice"] = _tool_choice(request.tool_choice)
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        return self._http(
            "POST",
            "/chat/completions",
            api_key=api_key,
            base_url=base_url,
            body=body,
            stream=stream,
        )

    # -- responses --

    def parse_response(
        self, body: dict[str, Any], *, model: str, request: AIRequest | None = None
    ) -> AIResponse:
        """A ``chat.completion`` body as an :class:`AIResponse` (first choice)."""
        if not isinstance(body, dict):
            raise wrong_shape(f"expected a JSON object, got {type(body).__name__}")
        if "error" in body and "choices" not in body:
            raise _error_from_payload(None, body, None, provider=None)
        try:
            choice = body["choices"][0]
            message = choice["message"]
            content = message.get("content") or ""
            if not isinstance(content, str):
                raise TypeError("message.content is not a string")
            reason = _finish_reason(choice.get("finish_reason"))
            if not content and message.get("refusal"):
                content = str(message["refusal"])
                reason = "content_filter"
            calls = []
            for raw in message.get("tool_calls") or ():
                function = raw["function"]
                name = function["name"]
                calls.append(
                    ToolCall(
                        id=raw.get("id") or f"call_{len(calls)}_{name}",
                        name=name,
                        arguments=parse_arguments(function.get("arguments") or "", tool=name),
                    )
                )
            usage = _usage(body.get("usage"))
            request_id = body.get("id")
            reasoning = _reasoning_text(message)
        except SHAPE_ERRORS as exc:
            raise wrong_shape("chat.completion", exc) from None
        return AIResponse(
            content=content,
            tool_calls=tuple(calls),
            finish_reason=tool_calls_finish(reason, bool(calls)),
            usage=usage,
            provider=self.provider_type,
            model=model,
            request_id=str(request_id) if request_id else None,
            reasoning=reasoning,
        )

    def new_stream_parser(
        self, *, model: str, provider: str = "", request: AIRequest | None = None
    ) -> OpenAIStreamParser:
        """A parser for one ``chat.completion.chunk`` SSE stream."""
        return OpenAIStreamParser(model=model, provider=provider, provider_type=self.provider_type)

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> ProviderError:
        """401 auth, 403 permission, 404 model, 429 rate limit (``insufficient_quota``: quota),
        400/422 invalid request, 5xx unavailable. Never raises."""
        try:
            payload = decode_json_body(body)
            if isinstance(payload, dict) and "error" in payload:
                return _error_from_payload(status, payload, headers, provider=provider)
            cls = error_for_status(status)
            return cls(
                error_message(status, None, body_snippet(body) or None),
                provider=provider or None,
                status=status,
                retry_after=retry_after_from_headers(headers) if cls.retryable else None,
                request_id=header_value(headers, "x-request-id"),
            )
        except Exception:  # classification must never fail, whatever the body holds
            return error_for_status(status)(
                f"HTTP {status}", provider=provider or None, status=status
            )


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.image_url.url}
    if part.image_url.detail:
        image["detail"] = part.image_url.detail
    return {"type": "image_url", "image_url": image}


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


# The keys of a delta that carries nothing but text (see OpenAIStreamParser._chunks).
_PLAIN_DELTA = frozenset({"content", "role"})


class OpenAIStreamParser(StreamParser):
    """``data: {chat.completion.chunk}`` events ending with ``data: [DONE]``."""

    def __init__(
        self,
        *,
        model: str,
        provider: str = "",
        provider_type: ProviderType = ProviderType.OPENAI,
    ) -> None:
        super().__init__(model=model, provider=provider)
        self.provider_type = provider_type
        # provider's tool-call index (or id when a server sends none) -> our stable index
        self._indexes: dict[Any, int] = {}
        self._last_key: Any = None

    def feed(self, event: str, data: str) -> list[StreamChunk]:
        """One SSE event -> chunks; ``[DONE]`` gives the final chunk."""
        if self._completed:
            return []
        if data[:1] != "{" and data.strip() == "[DONE]":
            return [self._final_chunk()]
        payload = self._load(data)
        if not isinstance(payload, dict):
            raise wrong_shape("stream chunk is not a JSON object")
        if "error" in payload:
            raise _error_from_payload(None, payload, None, provider=self._provider)
        try:
            return self._chunks(payload)
        except SHAPE_ERRORS as exc:
            raise wrong_shape("chat.completion.chunk", exc) from None

    def _chunks(self, payload: dict[str, Any]) -> list[StreamChunk]:
        if payload.get("id") and not self._request_id:
            self._request_id = str(payload["id"])
        if payload.get("usage"):
            usage = _usage(payload["usage"])
            self._input_tokens = usage.input_tokens
            self._cached_tokens = usage.cached_input_tokens
            self._reasoning_tokens = usage.reasoning_tokens
            self._reported_output = usage.output_tokens
        choices = payload.get("choices")
        if type(choices) is list and len(choices) == 1 and type(choices[0]) is dict:
            # Nearly every event: one choice whose delta is text (or the opening role).
            choice = choices[0]
            delta = choice.get("delta")
            if (
                type(delta) is dict
                and delta.keys() <= _PLAIN_DELTA
                and not choice.get("finish_reason")
                and choice.get("index", 0) == 0
            ):
                text = delta.get("content")
                return [self._text_chunk(str(text))] if text else []
        out: list[StreamChunk] = []
        for choice in choices or ():
            if choice.get("index", 0) != 0:
                continue  # only the first choice is ever requested
            delta = choice.get("delta") or {}
            thought = _reasoning_text(delta)
            if thought:
                out.append(self._reasoning_chunk(thought))
            text = delta.get("content")
            if text:
                out.append(self._text_chunk(str(text)))
            elif delta.get("refusal"):
                out.append(self._text_chunk(str(delta["refusal"])))
                self._finish_reason = "content_filter"
            deltas = [self._tool_delta(raw) for raw in delta.get("tool_calls") or ()]
            if deltas:
                out.append(self._tool_chunk(deltas))
            if choice.get("finish_reason") and self._finish_reason != "content_filter":
                self._finish_reason = _finish_reason(choice["finish_reason"])
        return out

    def _tool_delta(self, raw: dict[str, Any]) -> ToolCallDelta:
        function = raw.get("function") or {}
        key = raw.get("index")
        if key is None:
            # Some compatible servers omit the index: a new id starts a new call.
            key = ("id", raw["id"]) if raw.get("id") else self._last_key
        self._last_key = key
        first = key not in self._indexes
        if first:
            self._indexes[key] = len(self._indexes)
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):
            raise TypeError("tool call arguments are not a string")
        return ToolCallDelta(
            index=self._indexes[key],
            id=raw.get("id") if first else None,
            name=function.get("name") if first else None,
            arguments=arguments,
        )

    def finish(self) -> list[StreamChunk]:
        """At end of input: the final chunk if only ``[DONE]`` was missing, else an error."""
        if self._completed:
            return []
        if self._finish_reason is not None:
            return [self._final_chunk()]
        raise self._interrupted("its finish_reason and [DONE]")


OPENAI = OpenAIAdapter(ProviderType.OPENAI)
OPENAI_COMPATIBLE = OpenAIAdapter(ProviderType.OPENAI_COMPATIBLE)
