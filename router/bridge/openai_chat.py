"""The OpenAI chat-completions door: ``/v1/chat/completions`` and ``/v1/models``.

``POST /v1/chat/completions`` bodies become an :class:`~router.models.AIRequest` (plus the
router's own options), and answers go back as ``chat.completion`` objects or
``chat.completion.chunk`` events exactly as OpenAI sends them, so the official SDK and any
other OpenAI client work against the bridge unchanged.

Every problem with a body is a :class:`BodyError` naming the offending field the way OpenAI
names it (``messages[2].content[0].type``); the bridge turns it into a 400. The translations
are pure (no I/O); :class:`ChatDoor` at the end runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from router.bridge.errors import BodyError, Failure, snake_case, status_for_type, validation_error
from router.bridge.options import route_options
from router.bridge.streaming import Events
from router.bridge.wire import Problem, Request, Response, Route, served_by
from router.ids import random_hex
from router.models import AIRequest, AIResponse, Message, StreamChunk, Usage

if TYPE_CHECKING:
    from router.bridge.app import BridgeApp

__all__ = [
    "ChatDoor",
    "ChatEvents",
    "ChatOptions",
    "ChatStreamTranslator",
    "chat_request",
    "completion_body",
    "failure_body",
    "model_entry",
    "new_completion_id",
    "usage_body",
]


@dataclass(frozen=True)
class ChatOptions:
    """What a chat-completions body asks of the router besides the request itself."""

    include_usage: bool = False
    strategy: str | None = None
    selection: dict[str, Any] | None = None
    timeout: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


# Parameters OpenAI defines that carry nothing for the router (``store``: OpenAI keeps the
# completion for its dashboard; the router keeps its own usage ledger). Accepted only off.
_OFF_ONLY = {"store": "the router does not store completions; send 'store': false or leave it out"}
# Parameters OpenAI defines that would change the answer in a way the router cannot provide.
_UNSUPPORTED = {
    "functions": "legacy 'functions' are not supported; send 'tools' instead",
    "function_call": "legacy 'function_call' is not supported; send 'tool_choice' instead",
    "audio": "audio output is not supported by the router",
    "prediction": "predicted outputs are not supported by the router",
    "web_search_options": "web search is not supported by the router",
}
# OpenAI's parameters that map one to one onto AIRequest fields (each provider then carries
# them natively or the planner refuses it; see router.params).
_MAPPED = (
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "parallel_tool_calls",
    "service_tier",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_retention",
    "response_format",
)
# The router's own options, sent by OpenAI clients as extra body fields.
_ROUTER_FIELDS = frozenset(
    {
        "strategy",
        "selection",
        "timeout",
        "budget_limit",
        "cache",
        "reasoning",
        "cache_prompt",
        "strict_params",
        "top_k",
    }
)
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "metadata",
        "n",
        "logprobs",
        "top_logprobs",
        "modalities",
        "user",
        "safety_identifier",
        "reasoning_effort",
        *_MAPPED,
    }
)


def chat_request(body: Mapping[str, Any]) -> tuple[AIRequest, ChatOptions]:
    """Translate a chat-completions body; :class:`BodyError` names the first wrong field."""
    for key in body:
        if key in _UNSUPPORTED:
            raise BodyError(_UNSUPPORTED[key], key)
        if key in _OFF_ONLY:
            if body[key] not in (None, False):
                raise BodyError(_OFF_ONLY[key], key)
            continue
        if key not in _KNOWN and key not in _ROUTER_FIELDS:
            raise BodyError(f"unrecognized request argument supplied: {key}", key)
    _check_single_choice(body)
    request: dict[str, Any] = {"messages": _messages(body.get("messages"))}
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BodyError("'model' must be a string", "model")
    request["model"] = model or None
    if body.get("tools") is not None:
        request["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        request["tool_choice"] = _tool_choice(body["tool_choice"])
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        request["max_tokens"] = _strict_int(
            max_tokens,
            "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
        )
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = _number(body[name], name)
    if body.get("stop") is not None:
        request["stop"] = _stop(body["stop"])
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BodyError("'stream' must be true or false", "stream")
    request["stream"] = bool(stream)
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], dict):
            raise BodyError("'metadata' must be an object", "metadata")
        request["metadata"] = body["metadata"]
    if body.get("budget_limit") is not None:
        request["budget_limit"] = _number(body["budget_limit"], "budget_limit")
    if body.get("cache") is not None:
        if not isinstance(body["cache"], bool):
            raise BodyError("'cache' must be true or false", "cache")
        request["cache"] = body["cache"]
    for name in (*_MAPPED, "cache_prompt", "strict_params", "top_k"):
        if body.get(name) is not None:
            request[name] = body[name]
    user = body.get("safety_identifier", body.get("user"))
    if user is not None:
        request["user"] = user
    request.update(_reasoning(body))
    try:
        ai_request = AIRequest.model_validate(request)
    except ValidationError as error:
        raise validation_error(error) from None
    return ai_request, _options(body, bool(stream))


def _check_single_choice(body: Mapping[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise BodyError("only n=1 is supported", "n")
    if body.get("logprobs") not in (None, False) or body.get("top_logprobs") not in (None, 0):
        raise BodyError("logprobs are not supported by the router", "logprobs")
    modalities = body.get("modalities")
    if modalities is not None and list(modalities) != ["text"]:
        raise BodyError("only the 'text' modality is supported", "modalities")


def _reasoning(body: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``reasoning_effort`` and the router's ``reasoning`` object, merged."""
    effort = body.get("reasoning_effort")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict | str):
        raise BodyError("'reasoning' must be an object or an effort level", "reasoning")
    if effort is None and reasoning is None:
        return {}
    if isinstance(reasoning, str):
        reasoning = {"effort": reasoning}
    merged = dict(reasoning or {})
    if effort is not None:
        merged.setdefault("effort", effort)
    return {"reasoning": merged}


def _options(body: Mapping[str, Any], stream: bool) -> ChatOptions:
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise BodyError("'stream_options' must be an object", "stream_options")
        if not stream:
            raise BodyError(
                "'stream_options' is only allowed when 'stream' is true", "stream_options"
            )
        include_usage = stream_options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise BodyError("must be true or false", "stream_options.include_usage")
    strategy = body.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise BodyError("'strategy' must be a string", "strategy")
    selection = body.get("selection")
    if selection is not None and not isinstance(selection, dict):
        raise BodyError("'selection' must be an object", "selection")
    timeout = body.get("timeout")
    if timeout is not None:
        timeout = _number(timeout, "timeout")
        if timeout <= 0:
            raise BodyError("'timeout' must be greater than 0", "timeout")
    return ChatOptions(
        include_usage=include_usage, strategy=strategy, selection=selection, timeout=timeout
    )


def _strict_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(f"'{name}' must be an integer", name)
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BodyError(f"'{name}' must be a number", name)
    return float(value)


def _stop(value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) for s in value) and len(value) <= 4:
        return tuple(value)
    raise BodyError("'stop' must be a string or a list of up to 4 strings", "stop")


# --- messages ------------------------------------------------------------------------------

# Fields of OpenAI's own response message that clients send back verbatim with the next turn.
_ECHOED_NULLS = ("refusal", "audio", "function_call", "annotations")


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise BodyError("'messages' must be a non-empty list of messages", "messages")
    return [_message(item, f"messages[{i}]") for i, item in enumerate(value)]


def _message(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise BodyError(f"{where} must be an object", where)
    message = dict(item)
    role = message.get("role")
    if role == "function":
        raise BodyError(
            f"{where}: legacy 'function' messages are not supported; use 'tool' messages",
            f"{where}.role",
        )
    if message.get("function_call") is not None:
        raise BodyError(
            f"{where}: legacy 'function_call' is not supported; use 'tool_calls'",
            f"{where}.function_call",
        )
    if message.get("audio") is not None:
        raise BodyError(f"{where}: audio messages are not supported", f"{where}.audio")
    for key in _ECHOED_NULLS:
        message.pop(key, None)  # a refusal string carries nothing the next turn needs
    message.pop("reasoning_content", None)  # our own answer's reasoning, echoed back
    if message.get("name") is None:
        message.pop("name", None)
    if message.get("tool_calls") == []:
        message.pop("tool_calls")  # some clients send an empty list on plain answers
    content = message.get("content")
    if isinstance(content, list):
        parts = [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
        parts = [p for p in parts if p is not None]
        cached = any("cache_control" in p for p in parts)
        if role == "tool" or (all(p["type"] == "text" for p in parts) and not cached):
            # Tool results and text-only lists are plain text to every provider.
            message["content"] = "".join(p["text"] for p in parts)
        else:
            message["content"] = parts
    if message.get("tool_calls") is not None:
        calls = message["tool_calls"]
        if not isinstance(calls, list):
            raise BodyError(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
        message["tool_calls"] = [
            _tool_call(call, f"{where}.tool_calls[{k}]") for k, call in enumerate(calls)
        ]
    try:
        Message.model_validate(message)
    except ValidationError as error:
        raise validation_error(error, _loc(where)) from None
    return message


def _loc(where: str) -> list[int | str]:
    # "messages[3]" -> ["messages", 3]
    name, _, rest = where.partition("[")
    return [name, int(rest.rstrip("]"))] if rest else [name]


def _part(part: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        raise BodyError(f"{where} must be an object", where)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise BodyError(f"{where}.text must be a string", f"{where}.text")
        if part.get("cache_control") is not None:
            # A prompt-cache breakpoint (Anthropic's shape, as OpenAI-compatible gateways
            # accept it); other providers cache on their own.
            return {"type": "text", "text": text, "cache_control": part["cache_control"]}
        return {"type": "text", "text": text}
    if kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, str):
            image = {"url": image}
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise BodyError(f"{where}.image_url must be an object with a 'url'", where)
        out = {"url": image["url"]}
        if image.get("detail") is not None:
            out["detail"] = image["detail"]
        return {"type": "image_url", "image_url": out}
    if kind == "refusal":
        return None
    raise BodyError(f"{where}.type '{kind}' is not supported (text and image_url are)", where)


def _tool_call(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise BodyError(f"{where} must be an object", where)
    function = call.get("function")
    if not isinstance(function, dict):
        raise BodyError(f"{where}.function must be an object", f"{where}.function")
    out: dict[str, Any] = {
        "id": call.get("id"),
        "type": call.get("type", "function"),
        "function": {"name": function.get("name"), "arguments": function.get("arguments", "{}")},
    }
    if call.get("provider_data") is not None:
        out["provider_data"] = call["provider_data"]
    return out


# --- tools ---------------------------------------------------------------------------------


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise BodyError("'tools' must be a list", "tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise BodyError(f"{where}: only tools of type 'function' are supported", where)
        function = tool.get("function")
        if not isinstance(function, dict):
            raise BodyError(f"{where}.function must be an object", f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise BodyError(f"{where}.function.name must be a non-empty string", where)
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise BodyError(
                f"{where}.function.parameters must be a JSON Schema object",
                f"{where}.function.parameters",
            )
        tools.append(
            {
                "name": name,
                "description": function.get("description") or "",
                "inputSchema": parameters,
            }
        )
    return tools


def _tool_choice(value: Any) -> str:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        name = (value.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return name
    raise BodyError(
        "'tool_choice' must be 'auto', 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}",
        "tool_choice",
    )


# --- responses -----------------------------------------------------------------------------


def new_completion_id() -> str:
    """An id in OpenAI's ``chatcmpl-...`` shape."""
    return "chatcmpl-" + random_hex()


def usage_body(usage: Usage | None) -> dict[str, Any]:
    """OpenAI's ``usage`` object from the router's :class:`~router.models.Usage`."""
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens or usage.input_tokens + usage.output_tokens,
        # Cache writes are billed apart (Anthropic); the openai SDK knows the field.
        "prompt_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def completion_body(
    response: AIResponse, *, completion_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object for one answer."""
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI sends null content next to tool calls and "" never; keep that shape.
        "content": response.content or (None if response.tool_calls else ""),
        "refusal": None,
    }
    if response.tool_calls:
        message["tool_calls"] = []
        for call in response.tool_calls:
            entry: dict[str, Any] = {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": json.dumps(call.arguments, ensure_ascii=False),
                },
            }
            if call.provider_data:
                # Provider-opaque values (Gemini's thoughtSignature) must come back unchanged.
                entry["provider_data"] = call.provider_data
            message["tool_calls"].append(entry)
    if response.reasoning:
        # The name OpenAI-compatible servers (vLLM, DeepSeek) use for reasoning text.
        message["reasoning_content"] = response.reasoning
    if response.provider_data:
        message["provider_data"] = response.provider_data
    finish = response.finish_reason if response.finish_reason != "error" else "stop"
    body = {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": response.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_body(response.usage),
        "system_fingerprint": None,
    }
    if response.dropped_params:
        body["dropped_params"] = list(response.dropped_params)
    return body


class ChatStreamTranslator:
    """Turns the router's ``StreamChunk``s into ``chat.completion.chunk`` objects.

    The first object carries ``delta.role``; content and tool-call pieces follow as they come;
    the final one carries ``finish_reason``, then (with ``include_usage``) a usage object with
    ``choices: []``. The caller sends ``data: [DONE]`` after :meth:`translate` returns the
    final objects, or an error object when the chunk is an error chunk.
    """

    def __init__(
        self,
        *,
        include_usage: bool = False,
        completion_id: str | None = None,
        model: str | None = None,
    ) -> None:
        self.completion_id = completion_id or new_completion_id()
        self.created = int(time.time())
        self.include_usage = include_usage
        # The requested name until a chunk says which model serves (the final one does).
        self.model = model or ""
        self.model_known = False
        self._started = False
        self._tool_ids: dict[int, str] = {}
        self._content_frame: tuple[str, str, str] | None = None  # (model, before, after)

    def _object(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            out["usage"] = None  # as OpenAI does on every chunk but the usage one
        return out

    def content_event(self, text: str, dumps: Callable[[Any], str]) -> str | None:
        """The ``data:`` event of a chunk that is content alone, past the first one: the
        object around the text is rendered once per stream (a stream has hundreds of these);
        None when the general path must run (``translate``)."""
        if not self._started:
            return None
        frame = self._content_frame
        if frame is None or frame[0] != self.model:
            marker = '"\\u0000"'  # how dumps writes the placeholder "\x00"
            # The last one: the content comes after the id and the model, which might hold it.
            before, _, after = dumps(self._object({"content": "\x00"})).rpartition(marker)
            frame = self._content_frame = (self.model, "data: " + before, after + "\n\n")
        return frame[1] + dumps(text) + frame[2]

    def opening(self) -> list[dict[str, Any]]:
        """The first object (``delta.role``), once: sent before any chunk when the stream
        opens early, else with the first chunk."""
        if self._started:
            return []
        self._started = True
        return [self._object({"role": "assistant", "content": ""})]

    def translate(self, chunk: StreamChunk) -> list[dict[str, Any]]:
        """The chunk objects for one router chunk (error chunks are the caller's business)."""
        if chunk.model and not self.model_known:
            self.model, self.model_known = chunk.model, True
        out: list[dict[str, Any]] = self.opening()
        if chunk.reasoning:
            out.append(self._object({"reasoning_content": chunk.reasoning}))
        if chunk.content:
            out.append(self._object({"content": chunk.content}))
        if chunk.tool_call_deltas:
            out.append(
                self._object({"tool_calls": [self._tool_delta(d) for d in chunk.tool_call_deltas]})
            )
        if chunk.is_complete and chunk.error is None:
            finish = chunk.finish_reason if chunk.finish_reason not in (None, "error") else "stop"
            last = self._object({}, finish)
            if chunk.provider_data:
                # What the next turn needs (thinking blocks, thought signatures).
                last["choices"][0]["delta"]["provider_data"] = chunk.provider_data
            if chunk.dropped_params:
                last["dropped_params"] = list(chunk.dropped_params)
            out.append(last)
            if self.include_usage:
                usage = self._object({})
                usage["choices"] = []
                usage["usage"] = usage_body(chunk.usage)
                out.append(usage)
        return out

    def _tool_delta(self, delta: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": delta.index}
        function: dict[str, Any] = {}
        if delta.index not in self._tool_ids:
            # OpenAI names id, type and function name once, on a call's first delta.
            call_id = delta.id or "call_" + random_hex(24)
            self._tool_ids[delta.index] = call_id
            entry["id"] = call_id
            entry["type"] = "function"
            function["name"] = delta.name or ""
        elif delta.name:
            function["name"] = delta.name
        function["arguments"] = delta.arguments or ""
        entry["function"] = function
        if delta.provider_data:
            entry["provider_data"] = delta.provider_data
        return entry


def model_entry(model_id: str, owned_by: str, created: int) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


# OpenAI's ``error.type`` per status.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def failure_body(failure: Failure) -> dict[str, Any]:
    """OpenAI's error envelope: ``{"error": {message, type, param, code}}``."""
    return {
        "error": {
            "message": failure.message,
            "type": _OPENAI_TYPES.get(failure.status, "server_error"),
            "param": failure.param,
            "code": failure.code,
        }
    }


class ChatEvents(Events):
    """OpenAI's ``data: {chat.completion.chunk}`` events, then ``data: [DONE]``."""

    opens_early = True  # the role chunk, as OpenAI sends it before any content

    def __init__(self, secrets: Any, translator: ChatStreamTranslator) -> None:
        super().__init__(secrets)
        self._translator = translator

    def prelude(self, model: str | None) -> bytes:
        translator = self._translator
        if model and not translator.model_known:
            translator.model = model  # the provider's name, not an alias; a chunk may refine it
        return "".join(f"data: {self.dumps(o)}\n\n" for o in translator.opening()).encode()

    def chunk(self, chunk: StreamChunk) -> bytes:
        if (
            chunk.content
            and not chunk.is_complete
            and not chunk.reasoning
            and not chunk.tool_call_deltas
            and (chunk.model is None or self._translator.model == chunk.model)
        ):
            event = self._translator.content_event(chunk.content, self.dumps)
            if event is not None:
                return event.encode()
        out = "".join(f"data: {self.dumps(obj)}\n\n" for obj in self._translator.translate(chunk))
        if chunk.is_complete:
            out += "data: [DONE]\n\n"
        return out.encode()

    def error(self, error: dict[str, Any]) -> bytes:
        kind = str(error.get("type") or "RouterError")
        status = status_for_type(kind)
        payload = {
            "error": {
                "message": error.get("message") or "the stream failed",
                "type": _OPENAI_TYPES.get(status, "server_error"),
                "param": None,
                "code": snake_case(kind),
            }
        }
        return f"data: {self.dumps(payload, scrub=True)}\n\n".encode()


# --- the door ------------------------------------------------------------------------------


class ChatDoor:
    """``POST /v1/chat/completions``, ``GET /v1/models[/{id}]`` in OpenAI's shapes."""

    name = "openai"

    def __init__(self, bridge: BridgeApp) -> None:
        self.bridge = bridge

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", {"POST": self.chat_completions}, "auth", self),
            Route("/v1/models", {"GET": self.models}, "auth", self),
            Route("/v1/models/{model}", {"GET": self.model}, "auth", self),
        ]

    def claims(self, request: Request) -> bool:
        return True  # the default door of shared paths

    def failure_body(self, failure: Failure) -> dict[str, Any]:
        return failure_body(failure)

    def chat_completions(self, request: Request) -> Response:
        ai_request, chat = chat_request(request.json())
        bridge = self.bridge
        options = route_options(
            {"strategy": chat.strategy, "selection": chat.selection, "timeout": chat.timeout}
        )
        ai_request, options = bridge.with_router_headers(request, ai_request, options)
        if ai_request.stream:
            translator = ChatStreamTranslator(
                include_usage=chat.include_usage, model=ai_request.model
            )
            events = ChatEvents(bridge.secrets, translator)
            return bridge.stream("chat_completions", ai_request, options, events)
        response = bridge.answer("chat_completions", ai_request, options)
        completion_id = new_completion_id()
        return bridge.json(
            200,
            completion_body(response, completion_id=completion_id),
            [("X-Request-Id", completion_id), *served_by(response)],
            scrub=False,
        )

    def _model_entries(self) -> list[dict[str, Any]]:
        created = self.bridge.created
        return [model_entry(m.id, m.owned_by, created) for m in self.bridge.models()]

    def models(self, request: Request) -> Response:
        return self.bridge.json(200, {"object": "list", "data": self._model_entries()})

    def model(self, request: Request) -> Response:
        wanted = request.params["model"]
        for entry in self._model_entries():
            if entry["id"] == wanted:
                return self.bridge.json(200, entry)
        raise Problem(
            404,
            "ModelNotFoundError",
            f"The model '{wanted}' does not exist",
            param="model",
            code="model_not_found",
        )
