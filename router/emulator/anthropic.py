"""Anthropic Messages on the wire: ``POST /v1/messages`` and ``GET /v1/models``.

Framing follows ``tests/fixtures/wire/anthropic``: compact JSON bodies; streams are
``event: <type>\\ndata: {json}\\n\\n`` with message_start, content_block_start, ping,
content_block_delta, content_block_stop, message_delta (cumulative usage) and message_stop,
the JSON padded with spaces before its final ``}`` as the real service does. ``tool_use``
input is streamed as ``input_json_delta`` fragments (first fragment ``""``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
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

    def __init__(self) -> None:
        self.cache = PromptCache()

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
        thinking = _thinking(body, max_tokens)
        if thinking and choice in ("required", "named"):
            raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
        if thinking:
            _check_thinking_history(messages)
        json_answer, schema = _output_format(body.get("output_config"))
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
            json_answer=json_answer,
            json_schema=schema,
            thinking=thinking,
        )
        options = self._caching(body, conv.prompt_tokens)
        return Exchange(
            body=body,
            model=exchange.model,
            stream=exchange.stream,
            conversation=conv,
            options=options,
        )

    def _caching(self, body: dict[str, Any], prompt_tokens: int) -> dict[str, Any]:
        """Cache reads and writes for the request's ``cache_control`` breakpoints: the longest
        prefix seen before is read; the rest up to the last breakpoint is written."""
        prefixes: list[tuple[Any, str]] = []
        tools = body.get("tools") or []
        system = body.get("system") if isinstance(body.get("system"), list) else []
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("cache_control"):
                prefixes.append(([tools[: i + 1]], _ttl(tool)))
        for i, block in enumerate(system):
            if isinstance(block, dict) and block.get("cache_control"):
                prefixes.append(([tools, system[: i + 1]], _ttl(block)))
        for m, message in enumerate(body["messages"]):
            content = message.get("content")
            for b, block in enumerate(content if isinstance(content, list) else []):
                if isinstance(block, dict) and block.get("cache_control"):
                    turns = body["messages"][:m] + [{**message, "content": content[: b + 1]}]
                    prefixes.append(([tools, system, turns], _ttl(block)))
        read = written = written_1h = 0
        for prefix, ttl in prefixes:
            tokens = min(count_tokens(compact(_uncached(prefix)).decode()), prompt_tokens)
            if self.cache.touch(_uncached(prefix)):
                read = max(read, tokens)
            else:
                fresh = max(0, tokens - read - written)
                written += fresh
                written_1h += fresh if ttl == "1h" else 0
        return {"cache_read": read, "cache_write": written, "cache_write_1h": written_1h}

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
        prompt = exchange.conversation.prompt_tokens if exchange.conversation else 0
        read = exchange.options.get("cache_read", 0)
        written = exchange.options.get("cache_write", 0)
        written_1h = exchange.options.get("cache_write_1h", 0)
        return {
            "input_tokens": max(0, prompt - read - written),
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written - written_1h,
                "ephemeral_1h_input_tokens": written_1h,
            },
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
        if answer.thinking:
            thought = {
                "type": "thinking",
                "thinking": answer.thinking,
                "signature": signature(answer.thinking),
            }
            content = [thought, *content]
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
        first = 0  # index of the first answer block (after the thinking block, if any)
        if answer.thinking:
            first = 1
            block = {"type": "thinking", "thinking": "", "signature": ""}
            events.append(
                _sse({"type": "content_block_start", "index": 0, "content_block": block}, rng)
            )
            for piece in pieces(answer.thinking):
                delta = {"type": "thinking_delta", "thinking": piece}
                events.append(
                    _sse(
                        {"type": "content_block_delta", "index": 0, "delta": delta}, rng, paced=True
                    )
                )
            delta = {"type": "signature_delta", "signature": signature(answer.thinking)}
            events.append(_sse({"type": "content_block_delta", "index": 0, "delta": delta}, rng))
            events.append(_sse({"type": "content_block_stop", "index": 0}, rng))
        if answer.calls:
            for number, call in enumerate(answer.calls):
                index = first + number
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
                if number == 0:
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
                _sse({"type": "content_block_start", "index": first, "content_block": block}, rng)
            )
            events.append(_sse({"type": "ping"}, rng))
            for piece in pieces(answer.text):
                delta = {"type": "text_delta", "text": piece}
                events.append(
                    _sse(
                        {"type": "content_block_delta", "index": first, "delta": delta},
                        rng,
                        paced=True,
                    )
                )
            events.append(_sse({"type": "content_block_stop", "index": first}, rng))
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


def signature(thinking: str) -> str:
    """The emulator's signature of a thinking block (checked when the block comes back)."""
    digest = hashlib.sha256(b"emulator-thinking:" + thinking.encode()).digest()
    return base64.b64encode(digest).decode()


def _ttl(block: dict[str, Any]) -> str:
    control = block.get("cache_control")
    return str(control.get("ttl") or "5m") if isinstance(control, dict) else "5m"


def _uncached(value: Any) -> Any:
    """``value`` without its ``cache_control`` markers (they do not change the prefix)."""
    if isinstance(value, list):
        return [_uncached(item) for item in value]
    if isinstance(value, dict):
        return {k: _uncached(v) for k, v in value.items() if k != "cache_control"}
    return value


def _thinking(body: dict[str, Any], max_tokens: int) -> bool:
    config = body.get("thinking")
    if config is None:
        return False
    kind = config.get("type") if isinstance(config, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise _invalid(
            "thinking: Input tag does not match any of the expected tags: 'enabled', "
            "'disabled', 'adaptive'"
        )
    if kind == "enabled":
        budget = config.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _invalid(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= max_tokens:
            raise _invalid(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
            )
    return kind != "disabled"


def _check_thinking_history(messages: list[Any]) -> None:
    """With thinking on, the assistant turn of an open tool loop must start with its thinking
    block, signature intact (as Anthropic requires)."""
    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if (
                isinstance(block, dict)
                and block.get("type") == "thinking"
                and block.get("signature") != signature(str(block.get("thinking", "")))
            ):
                raise _invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
        last_tool_loop = i == len(messages) - 2 and any(
            isinstance(b, dict) and b.get("type") == "tool_use" for b in content
        )
        if last_tool_loop and (
            not content or content[0].get("type") not in ("thinking", "redacted_thinking")
        ):
            kind = content[0].get("type") if content else "nothing"
            raise _invalid(
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
                f"found `{kind}`. When `thinking` is enabled, a final `assistant` message must "
                "start with a thinking block (preceeding the lastmost set of `tool_use` and "
                "`tool_result` blocks)."
            )


def _output_format(config: Any) -> tuple[bool, dict[str, Any] | None]:
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        return False, None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _invalid("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise _invalid("output_config.format.json_schema.schema: Field required")
    return True, schema


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
