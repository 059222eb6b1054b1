"""OpenAI Chat Completions on the wire: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Framing follows the recordings in ``tests/fixtures/wire/openai``: non-streamed bodies are
2-space pretty-printed JSON; streams are ``data: {chunk}\\n\\n`` lines of
``chat.completion.chunk`` objects ending ``data: [DONE]\\n\\n``, with ``"usage": null`` on each
chunk and a final ``choices: []`` usage chunk only when ``stream_options.include_usage`` is set.
"""

from __future__ import annotations

import json
from typing import Any

from .answers import Answer, Conversation, ToolSpec, tool_result_text
from .caching import PromptCache
from .protocol import (
    ApiError,
    Event,
    Exchange,
    Reply,
    Request,
    StreamPlan,
    bearer,
    compact,
    key_accepted,
    load_json,
    now,
    pretty,
    rand_id,
    split_json,
    text_of,
)
from .tokenizer import count_tokens, pieces

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
_FINGERPRINT = "fp_emulator"
_KEYS_URL = "https://platform.openai.com/account/api-keys"


def _headers(content_type: str = "application/json") -> list[tuple[str, str]]:
    return [
        ("Content-Type", content_type),
        ("x-request-id", "req_" + rand_id(32, "0123456789abcdef")),
        ("openai-version", "2020-10-01"),
        ("openai-processing-ms", "1"),
        ("access-control-expose-headers", "X-Request-ID"),
    ]


def _error(
    status: int,
    message: str,
    type_: str,
    outcome: str,
    param: str | None = None,
    code: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> ApiError:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    indent = 4 if status == 401 else 2  # the recorded 401 is 4-space indented
    reply = Reply(status, _headers(content_type) + (extra or []), pretty(body, indent))
    return ApiError(reply, outcome)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return _error(400, message, "invalid_request_error", "invalid_request", param, code)


class OpenAIProtocol:
    """The OpenAI Chat Completions wire protocol."""

    name = "openai"

    def __init__(self) -> None:
        self.cache = PromptCache()

    # -- request side ------------------------------------------------------------------------
    def authenticate(self, req: Request, pinned: frozenset[str] | None) -> None:
        """Bearer key check with OpenAI's 401 bodies (the key itself is never echoed)."""
        key = bearer(req.headers)
        if key is None:
            raise _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                "or as the password field (with blank username) if you're accessing the API "
                "from your browser and are prompted for a username and password. You can "
                f"obtain an API key from {_KEYS_URL}.",
                "invalid_request_error",
                "auth",
                content_type="application/json; charset=utf-8",
            )
        if not key_accepted(key, pinned):
            raise self._bad_key()

    def _bad_key(self) -> ApiError:
        return _error(
            401,
            f"Incorrect API key provided: ********. You can find your API key at {_KEYS_URL}.",
            "invalid_request_error",
            "auth",
            code="invalid_api_key",
            content_type="application/json; charset=utf-8",
        )

    def decode(self, req: Request) -> Exchange:
        """Parse the body; 400 with OpenAI's message when it is not a JSON object."""
        try:
            body = load_json(req.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON. If you have trouble figuring "
                "out how to fix this, please contact us through our help center at "
                "help.openai.com.)"
            )
        model = body.get("model") if isinstance(body.get("model"), str) else None
        return Exchange(body=body, model=model, stream=body.get("stream") is True)

    def validate(self, req: Request, exchange: Exchange) -> Exchange:
        """The common mistakes OpenAI refuses, with its messages; builds the conversation."""
        body = exchange.body
        if not exchange.model:
            raise _invalid("you must provide a model parameter")
        if "messages" not in body:
            raise _invalid(
                "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
            )
        messages = body["messages"]
        if not isinstance(messages, list):
            raise _invalid(
                f"Invalid type for 'messages': expected an array, but got {_json_type(messages)} instead.",
                "messages",
                "invalid_type",
            )
        if not messages:
            raise _invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                "messages",
                "empty_array",
            )
        self._check_messages(messages)
        tools = self._tools(body)
        if body.get("stream_options") is not None and not exchange.stream:
            raise _invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        choice, forced = self._tool_choice(body, tools)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            raise _invalid(
                f"Invalid '{param}': integer below minimum value. Expected a value >= 1, "
                f"but got {max_tokens!r} instead.",
                param,
                "integer_below_min_value",
            )
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        results = None
        if messages[-1].get("role") == "tool":
            trailing = []
            for message in reversed(messages):
                if message.get("role") != "tool":
                    break
                trailing.append(tool_result_text(message.get("content")))
            results = tuple(reversed(trailing))
        json_answer, schema = _response_format(body.get("response_format"))
        effort = body.get("reasoning_effort")
        prompt_tokens = _prompt_tokens(messages, body.get("tools"))
        conv = Conversation(
            last_user_text=text_of(last_user.get("content")) if last_user else "",
            tool_results=results,
            tools=tools,
            tool_choice=choice,
            forced=forced,
            parallel=body.get("parallel_tool_calls", True) is not False,
            max_tokens=max_tokens,
            prompt_tokens=prompt_tokens,
            json_answer=json_answer,
            json_schema=schema,
            thinking=effort is not None and effort != "none",
        )
        # Automatic caching: a repeated prefix (all but the last message, the tools and the
        # cache key) is read from the cache.
        cached = 0
        if len(messages) > 1:
            prefix = [messages[:-1], body.get("tools"), body.get("prompt_cache_key")]
            if self.cache.touch(prefix):
                cached = min(_prompt_tokens(messages[:-1], body.get("tools")), prompt_tokens)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Exchange(
            body=body,
            model=exchange.model,
            stream=exchange.stream,
            conversation=conv,
            options={"include_usage": include_usage, "cached": cached},
        )

    def _check_messages(self, messages: list[Any]) -> None:
        open_calls: dict[str, int] = {}  # tool_call_id -> index of the assistant message
        answerable = False  # whether a tool message may appear here
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid(
                    f"Invalid type for 'messages[{i}]': expected an object, but got "
                    f"{_json_type(message)} instead.",
                    f"messages[{i}]",
                    "invalid_type",
                )
            role = message.get("role")
            if role is None:
                raise _invalid(
                    f"Missing required parameter: 'messages[{i}].role'.",
                    f"messages[{i}].role",
                    "missing_required_parameter",
                )
            if role not in _ROLES:
                raise _invalid(
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                    "'user', 'function', 'tool', and 'developer'.",
                    f"messages[{i}].role",
                    "invalid_value",
                )
            if role == "tool":
                call_id = message.get("tool_call_id")
                if not answerable or call_id not in open_calls:
                    raise _invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.",
                        f"messages.[{i}].role",
                    )
                del open_calls[call_id]
                continue
            if open_calls:
                first = min(open_calls.values())
                raise _invalid(
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                    f"response messages: {', '.join(open_calls)}",
                    f"messages.[{first}].role",
                )
            answerable = False
            if role == "assistant" and message.get("tool_calls"):
                calls = message["tool_calls"]
                if not isinstance(calls, list):
                    raise _invalid(
                        f"Invalid type for 'messages[{i}].tool_calls': expected an array, but got "
                        f"{_json_type(calls)} instead.",
                        f"messages[{i}].tool_calls",
                        "invalid_type",
                    )
                for j, call in enumerate(calls):
                    function = call.get("function") if isinstance(call, dict) else None
                    if not isinstance(function, dict) or not isinstance(
                        function.get("arguments"), str
                    ):
                        raise _invalid(
                            f"Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': "
                            "expected a string.",
                            f"messages[{i}].tool_calls[{j}].function.arguments",
                            "invalid_type",
                        )
                    open_calls[str(call.get("id"))] = i
                answerable = True
        if open_calls:
            first = min(open_calls.values())
            raise _invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(open_calls)}",
                f"messages.[{first}].role",
            )

    def _tools(self, body: dict[str, Any]) -> tuple[ToolSpec, ...]:
        tools = body.get("tools")
        if tools is None:
            return ()
        if not isinstance(tools, list):
            raise _invalid(
                f"Invalid type for 'tools': expected an array, but got {_json_type(tools)} instead.",
                "tools",
                "invalid_type",
            )
        out = []
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict):
                raise _invalid(
                    f"Missing required parameter: 'tools[{i}].function'.",
                    f"tools[{i}].function",
                    "missing_required_parameter",
                )
            name = function.get("name")
            if not isinstance(name, str) or not name:
                raise _invalid(
                    f"Missing required parameter: 'tools[{i}].function.name'.",
                    f"tools[{i}].function.name",
                    "missing_required_parameter",
                )
            out.append(ToolSpec(name, function.get("parameters")))
        return tuple(out)

    def _tool_choice(
        self, body: dict[str, Any], tools: tuple[ToolSpec, ...]
    ) -> tuple[str, tuple[str, ...]]:
        choice = body.get("tool_choice")
        if choice is None:
            return "auto", ()
        if not tools:
            raise _invalid(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                "tool_choice",
            )
        if choice in ("auto", "none", "required"):
            return choice, ()
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if isinstance(name, str) and name in {t.name for t in tools}:
                return "named", (name,)
            raise _invalid(
                f"Invalid value for 'tool_choice': function '{name}' is not one of the "
                "functions in 'tools'.",
                "tool_choice",
            )
        raise _invalid(
            f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
            "tool_choice",
            "invalid_value",
        )

    # -- response side -----------------------------------------------------------------------
    def render(self, exchange: Exchange, answer: Answer) -> Reply:
        """A ``chat.completion`` object, pretty-printed like the real service."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.text if not answer.calls else None,
            "refusal": None,
            "annotations": [],
        }
        if answer.calls:
            message["tool_calls"] = [
                {
                    "id": "call_" + rand_id(24),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in answer.calls
            ]
        body = {
            "id": "chatcmpl-" + rand_id(29),
            "object": "chat.completion",
            "created": now(),
            "model": exchange.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH[answer.finish],
                }
            ],
            "usage": self._usage(exchange, answer),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        return Reply(200, _headers(), pretty(body))

    def _usage(self, exchange: Exchange, answer: Answer) -> dict[str, Any]:
        prompt = exchange.conversation.prompt_tokens if exchange.conversation else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": answer.output_tokens,
            "total_tokens": prompt + answer.output_tokens,
            "prompt_tokens_details": {
                "cached_tokens": exchange.options.get("cached", 0),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": answer.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def stream(self, exchange: Exchange, answer: Answer) -> StreamPlan:
        """``chat.completion.chunk`` events as recorded, one per token or argument fragment."""
        include_usage = bool(exchange.options.get("include_usage"))
        base = {
            "id": "chatcmpl-" + rand_id(29),
            "object": "chat.completion.chunk",
            "created": now(),
            "model": exchange.model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, paced: bool = False) -> Event:
            obj = dict(base)
            obj["choices"] = [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ]
            if include_usage:
                obj["usage"] = None
            return Event(b"data: " + compact(obj) + b"\n\n", paced)

        events: list[Event] = []
        if answer.calls:
            for index, call in enumerate(answer.calls):
                head = {
                    "index": index,
                    "id": "call_" + rand_id(24),
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                if index == 0:
                    delta = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [head],
                        "refusal": None,
                    }
                else:
                    delta = {"tool_calls": [head]}
                events.append(chunk(delta, paced=index > 0))
                for fragment in split_json(call.arguments_json):
                    events.append(
                        chunk(
                            {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]},
                            paced=True,
                        )
                    )
        else:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            for piece in pieces(answer.text):
                events.append(chunk({"content": piece}, paced=True))
        events.append(chunk({}, _FINISH[answer.finish]))
        if include_usage:
            obj = dict(base)
            obj["choices"] = []
            obj["usage"] = self._usage(exchange, answer)
            events.append(Event(b"data: " + compact(obj) + b"\n\n"))
        events.append(Event(b"data: [DONE]\n\n"))
        return StreamPlan(200, _headers("text/event-stream; charset=utf-8"), events)

    def error(self, kind: str, exchange: Exchange | None, params: dict[str, Any]) -> Reply:
        """OpenAI's error replies for the fault kinds and an unknown model."""
        model = exchange.model if exchange else None
        if kind == "rate_limit":
            wait = params.get("retry_after", 1)
            seconds = _seconds(wait)
            err = _error(
                429,
                f"Rate limit reached for {model} in organization org-emulator on requests per min "
                f"(RPM): Limit 60, Used 60, Requested 1. Please try again in {seconds}s. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                kind,
                code="rate_limit_exceeded",
                extra=[
                    ("retry-after", seconds),
                    ("x-ratelimit-limit-requests", "60"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", f"{seconds}s"),
                ],
            )
        elif kind == "insufficient_quota":
            err = _error(
                429,
                "You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                kind,
                code="insufficient_quota",
            )
        elif kind == "server_error":
            err = _error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                kind,
            )
        elif kind in ("unavailable", "overloaded", "stream_error"):
            err = _error(
                503,
                "That model is currently overloaded with other requests. You can retry your "
                "request, or contact us through our help center at help.openai.com if the error "
                "persists.",
                "server_error",
                kind,
            )
        elif kind == "auth":
            err = self._bad_key()
        elif kind == "not_found":
            err = _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                kind,
                code="model_not_found",
            )
        else:
            raise ValueError(f"no OpenAI error reply for {kind!r}")
        return err.reply

    def stream_error_event(self) -> bytes:
        """A mid-stream error payload; the openai SDK raises ``APIError`` on it."""
        error = {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return b"data: " + compact(error) + b"\n\n"

    def malformed(self, exchange: Exchange) -> Reply | StreamPlan:
        """Truncated JSON with a 200 status."""
        broken = b'{"id": "chatcmpl-' + rand_id(29).encode() + b'", "object": "chat.comple'
        if exchange.stream:
            events = [Event(b"data: " + broken + b"\n\n"), Event(b"data: [DONE]\n\n")]
            return StreamPlan(200, _headers("text/event-stream; charset=utf-8"), events)
        return Reply(200, _headers(), broken)

    def models(self, req: Request, models: tuple[str, ...]) -> Reply:
        """``GET /v1/models`` and ``GET /v1/models/{id}``."""
        created = 1700000000
        entries = [
            {"id": m, "object": "model", "created": created, "owned_by": "emulator"} for m in models
        ]
        wanted = req.path.removeprefix("/v1/models").strip("/")
        if wanted:
            for entry in entries:
                if entry["id"] == wanted:
                    return Reply(200, _headers(), pretty(entry))
            return self.error("not_found", Exchange({}, wanted, False), {})
        return Reply(200, _headers(), pretty({"object": "list", "data": entries}))


def _response_format(value: Any) -> tuple[bool, dict[str, Any] | None]:
    """(whether the answer must be JSON, the schema it must follow) from ``response_format``."""
    if value is None:
        return False, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _invalid(
            "Invalid value for 'response_format.type': expected one of 'text', 'json_object' "
            "or 'json_schema'.",
            "response_format.type",
            "invalid_value",
        )
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _invalid(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema.name",
                "missing_required_parameter",
            )
        schema = spec.get("schema")
        return True, schema if isinstance(schema, dict) else None
    return kind == "json_object", None


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _prompt_tokens(messages: list[dict[str, Any]], tools: Any) -> int:
    total = 0
    for message in messages:
        total += count_tokens(text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += count_tokens(str(function.get("name", ""))) + count_tokens(
                str(function.get("arguments", ""))
            )
    if tools:
        total += count_tokens(json.dumps(tools, sort_keys=True))
    return total
