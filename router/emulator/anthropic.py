"""Anthropic Messages on the wire: ``POST /v1/messages`` and ``GET /v1/models``.

Framing follows ``tests/fixtures/wire/anthropic``: compact JSON bodies; streams are
``event: <type>\\ndata: {json}\\n\\n`` with message_start, content_block_start, ping,
content_block_delta, content_block_stop, message_delta (cumulative usage) and message_stop,
the JSON padded with spaces before its final ``}`` as the real service does. ``tool_use``
input is streamed as ``input_json_delta`` fragments (first fragment ``""``).
"""

from __future__ import annotations

import json
import random
from typing import Any

from .answers import Answer, Conversation, ToolSpec, tool_result_text
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
    rand_id,
    split_json,
    text_of,
)
from .tokenizer import count_tokens, pieces

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ROLES = ("user", "assistant", "system")


def _request_id() -> str:
    return "req_011C" + rand_id(20)


def _headers(content_type: str = "application/json") -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("request-id", _request_id())]


def _error(
    status: int, type_: str, message: str, outcome: str, extra: list[tuple[str, str]] | None = None
) -> ApiError:
    request_id = _request_id()
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    retry = "true" if status in (408, 409, 429) or status >= 500 else "false"
    headers = [
        ("Content-Type", "application/json"),
        ("request-id", request_id),
        ("x-should-retry", retry),
    ]
    return ApiError(Reply(status, headers + (extra or []), compact(body)), outcome)


def _invalid(message: str) -> ApiError:
    return _error(400, "invalid_request_error", message, "invalid_request")


def _sse(obj: dict[str, Any], rng: random.Random, paced: bool = False) -> Event:
    data = compact(obj)
    if obj.get("type") == "ping":
        data = b'{"type": "ping"}'
    else:
        # The real service pads its JSON with spaces before the final brace.
        data = data[:-1] + b" " * rng.randint(0, 15) + b"}"
    return Event(b"event: " + obj["type"].encode() + b"\ndata: " + data + b"\n\n", paced)


class AnthropicProtocol:
    """The Anthropic Messages wire protocol."""

    name = "anthropic"

    def authenticate(self, req: Request, pinned: frozenset[str] | None) -> None:
        """``x-api-key`` (or bearer) and ``anthropic-version``, with Anthropic's error bodies."""
        key = req.headers.get("x-api-key") or bearer(req.headers)
        if not key:
            raise _error(401, "authentication_error", "x-api-key header is required", "auth")
        if not key_accepted(key, pinned):
            raise _error(401, "authentication_error", "invalid x-api-key", "auth")
        if not req.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")

    def decode(self, req: Request) -> Exchange:
        """Parse the body; 400 when it is not a JSON object."""
        try:
            body = load_json(req.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _invalid("There was an error parsing the body of your request as JSON.")
        model = body.get("model") if isinstance(body.get("model"), str) else None
        return Exchange(body=body, model=model, stream=body.get("stream") is True)

    def validate(self, req: Request, exchange: Exchange) -> Exchange:
        """Field and turn checks with Anthropic's messages; builds the conversation."""
        body = exchange.body
        for field in ("max_tokens", "messages", "model"):
            if field not in body:
                raise _invalid(f"{field}: Field required")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise _invalid("max_tokens: Input should be greater than or equal to 1")
        messages = body["messages"]
        if not isinstance(messages, list):
            raise _invalid("messages: Input should be a valid list")
        if not messages:
            raise _invalid("messages: at least one message is required")
        self._check_messages(messages)
        tools = self._tools(body.get("tools"))
        choice, forced, parallel = self._tool_choice(body.get("tool_choice"), tools)
        last = messages[-1]
        results = None
        if last.get("role") == "user" and isinstance(last.get("content"), list):
            blocks = [
                b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"
            ]
            if blocks:
                results = tuple(tool_result_text(b.get("content")) for b in blocks)
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        conv = Conversation(
            last_user_text=text_of(last_user.get("content")) if last_user else "",
            tool_results=results,
            tools=tools,
            tool_choice=choice,
            forced=forced,
            parallel=parallel,
            max_tokens=max_tokens,
            prompt_tokens=_prompt_tokens(body),
        )
        return Exchange(body=body, model=exchange.model, stream=exchange.stream, conversation=conv)

    def _check_messages(self, messages: list[Any]) -> None:
        previous_uses: set[str] = set()
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid(f"messages.{i}: Input should be a valid dictionary")
            role = message.get("role")
            if "role" not in message:
                raise _invalid(f"messages.{i}.role: Field required")
            if role not in _ROLES:
                raise _invalid(
                    f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
                )
            if "content" not in message:
                raise _invalid(f"messages.{i}.content: Field required")
            content = message["content"]
            if not isinstance(content, (str, list)):
                raise _invalid(f"messages.{i}.content: Input should be a valid list")
            blocks = content if isinstance(content, list) else []
            results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            answered = set()
            for j, block in enumerate(blocks):
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    use_id = block.get("tool_use_id")
                    if use_id not in previous_uses:
                        raise _invalid(
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                            f"`tool_result` blocks: {use_id}. Each `tool_result` block must have a "
                            "corresponding `tool_use` block in the previous message."
                        )
                    answered.add(use_id)
            if previous_uses - answered:
                missing = ", ".join(sorted(previous_uses - answered))
                raise _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {missing}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
            if results and role != "user":
                raise _invalid(
                    f"messages.{i}: `tool_result` blocks are only allowed in user messages"
                )
            previous_uses = set()
            if role == "assistant":
                previous_uses = {
                    str(b.get("id"))
                    for b in blocks
                    if isinstance(b, dict) and b.get("type") == "tool_use"
                }
        if previous_uses:
            raise _invalid(
                f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {', '.join(sorted(previous_uses))}. Each `tool_use` "
                "block must have a corresponding `tool_result` block in the next message."
            )

    def _tools(self, tools: Any) -> tuple[ToolSpec, ...]:
        if tools is None:
            return ()
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        out = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _invalid(f"tools.{i}: Input should be a valid dictionary")
            if tool.get("type") not in (None, "custom") and "input_schema" not in tool:
                continue  # server tools (web_search, bash, ...) carry no schema
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _invalid(f"tools.{i}.custom.name: Field required")
            if "input_schema" not in tool:
                raise _invalid(f"tools.{i}.custom.input_schema: Field required")
            out.append(ToolSpec(tool["name"], tool["input_schema"]))
        return tuple(out)

    def _tool_choice(
        self, choice: Any, tools: tuple[ToolSpec, ...]
    ) -> tuple[str, tuple[str, ...], bool]:
        if choice is None:
            return "auto", (), True
        if not isinstance(choice, dict) or choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            raise _invalid(
                "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                "'tool', 'none'"
            )
        parallel = not choice.get("disable_parallel_tool_use", False)
        kind = choice["type"]
        if kind == "tool":
            name = choice.get("name")
            if name not in {t.name for t in tools}:
                raise _invalid(f"tool_choice.name: Tool '{name}' not found in provided tools")
            return "named", (name,), parallel
        return {"auto": "auto", "any": "required", "none": "none"}[kind], (), parallel

    # -- response side -----------------------------------------------------------------------
    def _usage(self, exchange: Exchange, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": exchange.conversation.prompt_tokens if exchange.conversation else 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def render(self, exchange: Exchange, answer: Answer) -> Reply:
        """A ``message`` object."""
        if answer.calls:
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_01" + rand_id(22),
                    "name": c.name,
                    "input": c.arguments,
                }
                for c in answer.calls
            ]
        else:
            content = [{"type": "text", "text": answer.text}]
        body = {
            "model": exchange.model,
            "id": "msg_01" + rand_id(22),
            "type": "message",
            "role": "assistant",
            "content": content,
            "stop_reason": _STOP[answer.finish],
            "stop_sequence": None,
            "usage": self._usage(exchange, answer.output_tokens),
        }
        return Reply(200, _headers(), compact(body))

    def stream(self, exchange: Exchange, answer: Answer) -> StreamPlan:
        """The recorded event sequence; text one token per delta, tool input in fragments."""
        rng = random.Random()
        start = {
            "model": exchange.model,
            "id": "msg_01" + rand_id(22),
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(exchange, 1),
        }
        events = [_sse({"type": "message_start", "message": start}, rng)]
        if answer.calls:
            for index, call in enumerate(answer.calls):
                block = {
                    "type": "tool_use",
                    "id": "toolu_01" + rand_id(22),
                    "name": call.name,
                    "input": {},
                }
                events.append(
                    _sse(
                        {"type": "content_block_start", "index": index, "content_block": block}, rng
                    )
                )
                if index == 0:
                    events.append(_sse({"type": "ping"}, rng))
                fragments = [""] + (split_json(call.arguments_json) if call.arguments else [])
                for fragment in fragments:
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                    events.append(
                        _sse(
                            {"type": "content_block_delta", "index": index, "delta": delta},
                            rng,
                            paced=True,
                        )
                    )
                events.append(_sse({"type": "content_block_stop", "index": index}, rng))
        else:
            block = {"type": "text", "text": ""}
            events.append(
                _sse({"type": "content_block_start", "index": 0, "content_block": block}, rng)
            )
            events.append(_sse({"type": "ping"}, rng))
            for piece in pieces(answer.text):
                delta = {"type": "text_delta", "text": piece}
                events.append(
                    _sse(
                        {"type": "content_block_delta", "index": 0, "delta": delta}, rng, paced=True
                    )
                )
            events.append(_sse({"type": "content_block_stop", "index": 0}, rng))
        usage = self._usage(exchange, answer.output_tokens)
        del usage["cache_creation"], usage["service_tier"]
        delta = {"stop_reason": _STOP[answer.finish], "stop_sequence": None}
        events.append(_sse({"type": "message_delta", "delta": delta, "usage": usage}, rng))
        events.append(_sse({"type": "message_stop"}, rng))
        headers = _headers("text/event-stream; charset=utf-8") + [("Cache-Control", "no-cache")]
        return StreamPlan(200, headers, events)

    def error(self, kind: str, exchange: Exchange | None, params: dict[str, Any]) -> Reply:
        """Anthropic's error replies for the fault kinds and an unknown model."""
        if kind == "rate_limit":
            wait = params.get("retry_after", 1)
            seconds = str(int(wait)) if float(wait).is_integer() else f"{wait:g}"
            err = _error(
                429,
                "rate_limit_error",
                "This request would exceed your account's rate limit. Please try again later.",
                kind,
                [("retry-after", seconds), ("anthropic-ratelimit-requests-remaining", "0")],
            )
        elif kind == "insufficient_quota":
            err = _error(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans "
                "& Billing to upgrade or purchase credits.",
                kind,
            )
        elif kind == "server_error":
            err = _error(500, "api_error", "Internal server error", kind)
        elif kind == "unavailable":
            err = _error(503, "api_error", "Service unavailable", kind)
        elif kind in ("overloaded", "stream_error"):
            err = _error(529, "overloaded_error", "Overloaded", kind)
        elif kind == "auth":
            err = _error(401, "authentication_error", "invalid x-api-key", kind)
        elif kind == "not_found":
            model = exchange.model if exchange else None
            err = _error(404, "not_found_error", f"model: {model}", kind)
        else:
            raise ValueError(f"no Anthropic error reply for {kind!r}")
        return err.reply

    def stream_error_event(self) -> bytes:
        """``event: error`` with ``overloaded_error``, as seen mid-stream."""
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return b"event: error\ndata: " + compact(body) + b"\n\n"

    def malformed(self, exchange: Exchange) -> Reply | StreamPlan:
        """Truncated JSON with a 200 status."""
        broken = b'{"model":"' + str(exchange.model).encode() + b'","id":"msg_01'
        if exchange.stream:
            events = [Event(b"event: message_start\ndata: " + broken + b"\n\n")]
            headers = _headers("text/event-stream; charset=utf-8") + [("Cache-Control", "no-cache")]
            return StreamPlan(200, headers, events)
        return Reply(200, _headers(), broken)

    def models(self, req: Request, models: tuple[str, ...]) -> Reply:
        """``GET /v1/models`` and ``GET /v1/models/{id}`` in Anthropic's shape."""
        entries = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in models
        ]
        wanted = req.path.removeprefix("/v1/models").strip("/")
        if wanted:
            for entry in entries:
                if entry["id"] == wanted:
                    return Reply(200, _headers(), compact(entry))
            return self.error("not_found", Exchange({}, wanted, False), {})
        body = {
            "data": entries,
            "has_more": False,
            "first_id": entries[0]["id"] if entries else None,
            "last_id": entries[-1]["id"] if entries else None,
        }
        return Reply(200, _headers(), compact(body))


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = count_tokens(text_of(body.get("system")))
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content)
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                total += count_tokens(str(block.get("text", "")))
            elif kind == "tool_use":
                total += count_tokens(str(block.get("name", ""))) + count_tokens(
                    json.dumps(block.get("input", {}))
                )
            elif kind == "tool_result":
                total += count_tokens(tool_result_text(block.get("content")))
    if body.get("tools"):
        total += count_tokens(json.dumps(body["tools"], sort_keys=True))
    return total
