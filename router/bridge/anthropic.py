"""The Anthropic Messages door: ``POST /v1/messages``, ``/v1/messages/count_tokens`` and
``GET /v1/models`` as Anthropic serves them, so the ``anthropic`` SDK (and tools built on it,
such as Claude Code) work against the bridge by base URL alone, with any provider behind.

Pure translations first (a Messages body to an ``AIRequest``; an answer to a ``message``; the
router's chunks to Anthropic's event sequence; a failure to Anthropic's error envelope), then
:class:`AnthropicDoor`, which runs them. Field errors read like Anthropic's
(``messages.1.content.0.type: ...``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from router.bridge.errors import BodyError, Failure, Problem, status_for_type, validation_error
from router.bridge.streaming import Events
from router.bridge.wire import ModelEntry, Request, Response, Route, served_by
from router.catalog import estimate_request_tokens
from router.ids import random_hex
from router.models import AIRequest, AIResponse, StreamChunk, Usage

if TYPE_CHECKING:
    from router.bridge.app import BridgeApp

__all__ = [
    "AnthropicDoor",
    "MessageEvents",
    "failure_body",
    "message_body",
    "messages_request",
    "model_object",
]

# Top-level fields of a Messages body. Accepted and dropped: what changes nothing the router
# can honour (service tier, geography, speed, caching hints, top_k); refused: what needs a
# server-side feature the router does not have.
_FIELDS = frozenset(
    {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream"}
    | {"temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "output_config"}
    | {"service_tier", "cache_control", "container", "diagnostics", "inference_geo", "speed"}
    | {"user_profile_id", "workspace_id", "mcp_servers", "context_management"}
)
_REFUSED = {
    "container": "code-execution containers are not supported by the router",
    "mcp_servers": "the MCP connector is not supported by the router",
    "context_management": "context management is not supported by the router",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}


# --- request -------------------------------------------------------------------------------


def messages_request(body: Mapping[str, Any], *, count_only: bool = False) -> AIRequest:
    """A Messages body (or a count_tokens body) as an ``AIRequest``."""
    for key in body:
        if key not in _FIELDS or (count_only and key in ("max_tokens", "stream")):
            raise BodyError(f"{key}: Extra inputs are not permitted", key)
        if key in _REFUSED and body[key] is not None:
            raise BodyError(f"{key}: {_REFUSED[key]}", key)
    required = ("model", "messages") if count_only else ("model", "max_tokens", "messages")
    for key in required:
        if key not in body:
            raise BodyError(f"{key}: Field required", key)
    if not isinstance(body["model"], str) or not body["model"]:
        raise BodyError("model: Input should be a valid string", "model")
    request: dict[str, Any] = {"model": body["model"], "messages": []}
    if not count_only:
        request["max_tokens"] = _integer(body["max_tokens"], "max_tokens", minimum=1)
    if body.get("system") is not None:
        request["messages"].append({"role": "system", "content": _system(body["system"])})
    request["messages"].extend(_messages(body["messages"]))
    if body.get("tools") is not None:
        request["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        request["tool_choice"] = _tool_choice(body["tool_choice"])
        if body["tool_choice"].get("disable_parallel_tool_use") is True:
            request["parallel_tool_calls"] = False
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = _number(body[name], name)
    if body.get("top_k") is not None:
        request["top_k"] = _integer(body["top_k"], "top_k", minimum=1)
    if body.get("stop_sequences") is not None:
        stops = body["stop_sequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BodyError("stop_sequences: Input should be a valid list of strings")
        if stops:
            request["stop"] = tuple(stops)
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], dict):
            raise BodyError("metadata: Input should be a valid dictionary", "metadata")
        request["metadata"] = dict(body["metadata"])
        if isinstance(body["metadata"].get("user_id"), str):
            request["user"] = body["metadata"]["user_id"]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BodyError("stream: Input should be a valid boolean", "stream")
    request["stream"] = stream
    config = _output_config(body.get("output_config"))
    reasoning = _reasoning(body.get("thinking"), config.get("effort"))
    if reasoning is not None:
        request["reasoning"] = reasoning
    if config.get("format") is not None:
        request["response_format"] = _response_format(config["format"])
    ttl = _cache_ttl(body)
    if ttl is not None:
        request["cache_prompt"] = ttl
    try:
        return AIRequest.model_validate(request)
    except ValidationError as error:
        raise validation_error(error) from None


def _integer(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(f"{name}: Input should be a valid integer", name)
    if value < minimum:
        raise BodyError(f"{name}: Input should be greater than or equal to {minimum}", name)
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BodyError(f"{name}: Input should be a valid number", name)
    return float(value)


def _reasoning(thinking: Any, effort: Any) -> dict[str, Any] | None:
    """``thinking`` (and ``output_config.effort``) as the router's ``reasoning``."""
    if thinking is None:
        return {"effort": effort} if effort is not None else None
    kinds = ("enabled", "disabled", "adaptive", "between_tools")
    if not isinstance(thinking, dict) or thinking.get("type") not in kinds:
        raise BodyError(
            "thinking: Input tag does not match any of the expected tags: " + ", ".join(kinds),
            "thinking",
        )
    if thinking["type"] == "disabled":
        return {"effort": "none"}
    out: dict[str, Any] = {"include_thoughts": thinking.get("display") != "omitted"}
    if thinking["type"] == "enabled":
        out["budget_tokens"] = _integer(
            thinking.get("budget_tokens"), "thinking.enabled.budget_tokens", minimum=1024
        )
    if effort is not None:
        out["effort"] = effort
    return out


def _output_config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError("output_config: Input should be a valid dictionary", "output_config")
    return value


def _response_format(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        raise BodyError(
            "output_config.format.type: Input should be 'json_schema'", "output_config.format"
        )
    if not isinstance(value.get("schema"), dict):
        raise BodyError("output_config.format.schema: Field required", "output_config.format")
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": value["schema"]}}


def _cache_ttl(body: Mapping[str, Any]) -> str | None:
    """Prompt caching asked for by a top-level or a block's ``cache_control``: its TTL.

    The router places the breakpoints itself (tools, system, the conversation so far).
    """
    marks = [body.get("cache_control")]
    for block in body.get("system") if isinstance(body.get("system"), list) else ():
        marks.append(block.get("cache_control") if isinstance(block, dict) else None)
    for message in body.get("messages") if isinstance(body.get("messages"), list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            marks.append(block.get("cache_control") if isinstance(block, dict) else None)
    for tool in body.get("tools") if isinstance(body.get("tools"), list) else ():
        marks.append(tool.get("cache_control") if isinstance(tool, dict) else None)
    found = [mark for mark in marks if isinstance(mark, dict)]
    if not found:
        return None
    return "1h" if any(mark.get("ttl") == "1h" for mark in found) else "5m"


def _system(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, block in enumerate(value):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise BodyError(f"system.{i}.type: Input should be 'text'", f"system.{i}")
            texts.append(_text(block, f"system.{i}"))
        return "\n\n".join(texts)
    raise BodyError("system: Input should be a valid string or list of text blocks", "system")


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BodyError(f"{where}.text: Field required", f"{where}.text")
    return text


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise BodyError("messages: Input should be a valid list", "messages")
    if not value:
        raise BodyError("messages: at least one message is required", "messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise BodyError(f"{where}: Input should be a valid dictionary", where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise BodyError(f"{where}.role: Input should be 'user' or 'assistant'", where)
        if "content" not in message:
            raise BodyError(f"{where}.content: Field required", f"{where}.content")
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            convert = _assistant if role == "assistant" else _user
            out.extend(convert(content, where))
        else:
            raise BodyError(f"{where}.content: Input should be a valid list", f"{where}.content")
    return out


def _user(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results become tool messages, the rest one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            use_id = block.get("tool_use_id")
            if not isinstance(use_id, str) or not use_id:
                raise BodyError(f"{at}.tool_use_id: Field required", f"{at}.tool_use_id")
            text = _result_text(block.get("content"), at)
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append({"role": "tool", "tool_call_id": use_id, "content": text})
        elif kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        else:
            raise BodyError(f"{at}.type: '{kind}' blocks are not supported in user turns", at)
    if not parts:
        return results
    if all(p["type"] == "text" for p in parts):
        return [*results, {"role": "user", "content": "\n".join(p["text"] for p in parts)}]
    return [*results, {"role": "user", "content": parts}]


def _result_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for k, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(_text(block, f"{where}.content.{k}"))
            elif not (isinstance(block, dict) and block.get("type") == "image"):
                raise BodyError(f"{where}.content.{k}: only text and image blocks", where)
        return " ".join(texts)
    raise BodyError(f"{where}.content: Input should be a valid string or list", where)


def _image(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    url = source.get("url") if isinstance(source, dict) and source.get("type") == "url" else None
    if isinstance(url, str):
        return {"type": "image_url", "image_url": {"url": url}}
    raise BodyError(f"{where}.source: a base64 or url image source is required", where)


def _assistant(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    provider_data: dict[str, Any] | None = None
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text(block, at))
            provider_data = block.get("provider_data") or provider_data
        elif kind == "tool_use":
            name, call_id = block.get("name"), block.get("id")
            if not isinstance(name, str) or not isinstance(call_id, str):
                raise BodyError(f"{at}: a tool_use block needs 'id' and 'name'", at)
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise BodyError(f"{at}.input: Input should be a valid dictionary", at)
            call: dict[str, Any] = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            if block.get("provider_data"):
                call["provider_data"] = block["provider_data"]
            calls.append(call)
        elif kind in ("thinking", "redacted_thinking"):
            # Anthropic needs its own signed blocks back; they mean nothing to other providers.
            if block.get("signature") or block.get("data"):
                thinking.append(dict(block))
        else:
            raise BodyError(f"{at}.type: '{kind}' blocks are not supported in assistant turns", at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    if thinking:
        provider_data = {**(provider_data or {}), "thinking_blocks": thinking}
    if provider_data:
        message["provider_data"] = provider_data
    return [message]


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise BodyError("tools: Input should be a valid list", "tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise BodyError(f"{where}: Input should be a valid dictionary", where)
        if tool.get("type") not in (None, "custom"):
            raise BodyError(
                f"{where}.type: server tool '{tool.get('type')}' is not supported by the router; "
                "define the tool with a name and an input_schema",
                where,
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BodyError(f"{where}.name: Field required", f"{where}.name")
        if not isinstance(tool.get("input_schema"), dict):
            raise BodyError(f"{where}.input_schema: Field required", f"{where}.input_schema")
        tools.append(
            {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "inputSchema": tool["input_schema"],
            }
        )
    return tools


def _tool_choice(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise BodyError("tool_choice.name: Field required", "tool_choice.name")
        return name
    if kind in ("auto", "any", "none"):
        return {"auto": "auto", "any": "required", "none": "none"}[kind]
    raise BodyError(
        "tool_choice: Input tag does not match any of the expected tags: "
        "'auto', 'any', 'tool', 'none'",
        "tool_choice",
    )


# --- answer --------------------------------------------------------------------------------


def new_message_id() -> str:
    return "msg_" + random_hex()


def usage_body(usage: Usage | None) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` leaves out the tokens read from cache."""
    usage = usage or Usage()
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    return {
        "input_tokens": usage.input_tokens - cached - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.output_tokens,
    }


def _thinking_blocks(reasoning: str | None, provider_data: Any) -> list[dict[str, Any]]:
    """The answer's thinking: Anthropic's own signed blocks when it served, else the serving
    provider's reasoning text as one unsigned block (dropped when sent back)."""
    blocks = (provider_data or {}).get("thinking_blocks")
    if blocks:
        return [dict(block) for block in blocks]
    return [{"type": "thinking", "thinking": reasoning, "signature": ""}] if reasoning else []


def _opaque(provider_data: Any) -> dict[str, Any] | None:
    rest = {k: v for k, v in (provider_data or {}).items() if k != "thinking_blocks"}
    return rest or None


def message_body(response: AIResponse, *, message_id: str | None = None) -> dict[str, Any]:
    """A ``message`` object for one answer.

    Provider-opaque data the next turn needs (Gemini's thought signatures) rides on the block
    it belongs to as ``provider_data``; send the blocks back as received.
    """
    content = _thinking_blocks(response.reasoning, response.provider_data)
    first = len(content)
    if response.content or not response.tool_calls:
        content.append({"type": "text", "text": response.content})
    for call in response.tool_calls:
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": call.arguments,
        }
        if call.provider_data:
            block["provider_data"] = call.provider_data
        content.append(block)
    opaque = _opaque(response.provider_data)
    if opaque:
        content[first]["provider_data"] = opaque
    return {
        "id": message_id or new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": _STOP_REASONS[response.finish_reason],
        "stop_sequence": None,
        "usage": usage_body(response.usage),
    }


class MessageEvents(Events):
    """The router's chunks as Anthropic's stream: ``message_start``, a ``content_block_start``
    / ``_delta`` / ``_stop`` run per block (text deltas; ``tool_use`` with ``input_json_delta``
    fragments), one ``ping``, ``message_delta`` with the stop reason and the cumulative usage,
    ``message_stop``; a failure is an ``error`` event. ``message_start`` goes out as soon as a
    provider accepts the stream, as Anthropic sends it before any content.
    """

    opens_early = True

    def __init__(self, secrets: Any, model: str | None) -> None:
        super().__init__(secrets)
        self._model = model or ""
        self._started = False
        self._pinged = False
        self._index = -1  # of the open block
        self._open: str | None = None  # "text", or "tool:<router index>"
        self._tools: dict[int, int] = {}  # router tool index -> block index
        self._thinking_index: int | None = None

    def _event(self, obj: dict[str, Any]) -> str:
        return f"event: {obj['type']}\ndata: {self.dumps(obj)}\n\n"

    def _start_block(self, block: dict[str, Any], key: str) -> list[str]:
        out = self._stop_block()
        self._index += 1
        self._open = key
        out.append(
            self._event(
                {"type": "content_block_start", "index": self._index, "content_block": block}
            )
        )
        if not self._pinged:
            self._pinged = True
            out.append(self._event({"type": "ping"}))
        return out

    def _stop_block(self) -> list[str]:
        if self._open is None:
            return []
        self._open = None
        return [self._event({"type": "content_block_stop", "index": self._index})]

    def _delta(self, index: int, delta: dict[str, Any]) -> str:
        return self._event({"type": "content_block_delta", "index": index, "delta": delta})

    def prelude(self, model: str | None) -> bytes:
        return "".join(self._start(model)).encode()

    def _start(self, model: str | None) -> list[str]:
        if self._started:
            return []
        self._started = True
        self._model = model or self._model
        message = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_body(None),
        }
        return [self._event({"type": "message_start", "message": message})]

    def chunk(self, chunk: StreamChunk) -> bytes:
        out = self._start(chunk.model)
        if chunk.reasoning:
            if self._open != "thinking":
                block = {"type": "thinking", "thinking": "", "signature": ""}
                out += self._start_block(block, "thinking")
                self._thinking_index = self._index
            delta = {"type": "thinking_delta", "thinking": chunk.reasoning}
            out.append(self._delta(self._index, delta))
        if chunk.content:
            if self._open != "text":
                out += self._start_block({"type": "text", "text": ""}, "text")
            out.append(self._delta(self._index, {"type": "text_delta", "text": chunk.content}))
        for delta in chunk.tool_call_deltas:
            if delta.index not in self._tools:
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": delta.id or "toolu_" + random_hex(24),
                    "name": delta.name or "",
                    "input": {},
                }
                if delta.provider_data:
                    block["provider_data"] = delta.provider_data
                out += self._start_block(block, f"tool:{delta.index}")
                self._tools[delta.index] = self._index
            if delta.arguments:
                fragment = {"type": "input_json_delta", "partial_json": delta.arguments}
                out.append(self._delta(self._tools[delta.index], fragment))
        if chunk.is_complete:
            if self._index < 0:  # an empty answer is still one (empty) text block
                out += self._start_block({"type": "text", "text": ""}, "text")
            signed = (chunk.provider_data or {}).get("thinking_blocks") or []
            signature = next((b.get("signature") for b in signed if b.get("signature")), None)
            if signature and self._thinking_index is not None:
                # The signature comes with the final chunk: it closes the thinking block (late
                # when text followed; the SDK files it by index).
                delta = {"type": "signature_delta", "signature": signature}
                out.append(self._delta(self._thinking_index, delta))
            out += self._stop_block()
            finish = chunk.finish_reason or "stop"
            delta = {"stop_reason": _STOP_REASONS[finish], "stop_sequence": None}
            usage = usage_body(chunk.usage)
            out.append(self._event({"type": "message_delta", "delta": delta, "usage": usage}))
            out.append(self._event({"type": "message_stop"}))
        return "".join(out).encode()

    def error(self, error: dict[str, Any]) -> bytes:
        status = status_for_type(str(error.get("type") or ""))
        payload = {
            "type": "error",
            "error": {
                "type": _error_type(_status(status)),
                "message": error.get("message") or "the stream failed",
            },
        }
        return f"event: error\ndata: {self.dumps(payload, scrub=True)}\n\n".encode()


# --- errors and models ---------------------------------------------------------------------

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _status(status: int) -> int:
    # No provider can take the request now: what Anthropic itself answers as overloaded.
    return 529 if status == 503 else status


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error")


def failure_body(failure: Failure) -> dict[str, Any]:
    """Anthropic's envelope: ``{"type": "error", "error": {type, message}, "request_id"}``."""
    return {
        "type": "error",
        "error": {"type": _error_type(_status(failure.status)), "message": failure.message},
        "request_id": "req_" + random_hex(),
    }


def model_object(entry: ModelEntry, created_at: str) -> dict[str, Any]:
    """One model of ``GET /v1/models`` in Anthropic's shape."""
    return {"type": "model", "id": entry.id, "display_name": entry.id, "created_at": created_at}


# --- the door ------------------------------------------------------------------------------


class AnthropicDoor:
    """``POST /v1/messages[/count_tokens]``; ``GET /v1/models[/{id}]`` when the request
    carries ``anthropic-version`` or ``x-api-key``."""

    name = "anthropic"
    missing_credential = "x-api-key header is required (or 'Authorization: Bearer <token>')"

    def __init__(self, bridge: BridgeApp) -> None:
        self.bridge = bridge

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", {"POST": self.messages}, "auth", self),
            Route("/v1/messages/count_tokens", {"POST": self.count_tokens}, "auth", self),
            Route("/v1/models", {"GET": self.models}, "auth", self),
            Route("/v1/models/{model}", {"GET": self.model}, "auth", self),
        ]

    def claims(self, request: Request) -> bool:
        return bool(request.header("anthropic-version") or request.header("x-api-key"))

    def credential(self, request: Request) -> str | None:
        key = request.header("x-api-key")
        if key:
            return key.strip()
        scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def failure_body(self, failure: Failure) -> dict[str, Any]:
        return failure_body(failure)

    def error_status(self, failure: Failure) -> int:
        return _status(failure.status)

    def _versioned(self, request: Request) -> None:
        if not request.header("anthropic-version"):
            raise Problem(400, "InvalidRequestError", "anthropic-version: header is required")

    def messages(self, request: Request) -> Response:
        self._versioned(request)
        bridge = self.bridge
        ai_request = messages_request(request.json())
        ai_request, options = bridge.with_router_headers(request, ai_request, {})
        if ai_request.stream:
            events = MessageEvents(bridge.secrets, ai_request.model)
            return bridge.stream("anthropic_messages", ai_request, options, events)
        response = bridge.answer("anthropic_messages", ai_request, options)
        message = message_body(response)
        headers = [("request-id", "req_" + random_hex()), *served_by(response)]
        return bridge.json(200, message, headers, scrub=False)

    def count_tokens(self, request: Request) -> Response:
        self._versioned(request)
        ai_request = messages_request(request.json(), count_only=True)
        return self.bridge.json(200, {"input_tokens": estimate_request_tokens(ai_request)})

    def _objects(self) -> list[dict[str, Any]]:
        created = self.bridge.created_at
        return [model_object(entry, created) for entry in self.bridge.models()]

    def models(self, request: Request) -> Response:
        data = self._objects()
        body = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return self.bridge.json(200, body)

    def model(self, request: Request) -> Response:
        wanted = request.params["model"]
        for entry in self._objects():
            if entry["id"] == wanted:
                return self.bridge.json(200, entry)
        raise Problem(404, "ModelNotFoundError", f"model: {wanted}")
