"""Gemini generateContent on the wire (Google AI ``v1beta``).

``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse`` (and without
``alt=sse``, the streamed JSON array), ``:countTokens``, ``GET /v1beta/models[/{model}]``.
Framing follows ``tests/fixtures/wire/gemini``: pretty-printed JSON bodies; SSE events are
``data: {full GenerateContentResponse}\\r\\n\\r\\n`` with Google's ``": "`` separators,
``usageMetadata`` on every chunk, ``finishReason`` on the last, no end marker. Function calls
arrive whole. Error replies are plain JSON even for streaming requests.
"""

from __future__ import annotations

import json
import re
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
    key_accepted,
    load_json,
    pretty,
    rand_id,
)
from .tokenizer import count_tokens, pieces

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_JSON = "application/json; charset=UTF-8"
_URLSAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

# Fields of Gemini's OpenAPI-subset Schema (discovery spec), camelCase; snake_case is accepted too.
_SCHEMA_FIELDS = {
    "anyOf",
    "default",
    "description",
    "enum",
    "example",
    "format",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "nullable",
    "pattern",
    "properties",
    "propertyOrdering",
    "required",
    "title",
    "type",
}
_SCHEMA_FIELDS |= {
    re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), f) for f in _SCHEMA_FIELDS
}


def _error(
    status: int,
    canonical: str,
    message: str,
    outcome: str,
    details: list[dict[str, Any]] | None = None,
) -> ApiError:
    error: dict[str, Any] = {"code": status, "message": message, "status": canonical}
    if details:
        error["details"] = details
    headers = [("Content-Type", _JSON), ("Vary", "Origin, X-Origin, Referer")]
    return ApiError(Reply(status, headers, pretty({"error": error})), outcome)


def _invalid(message: str, details: list[dict[str, Any]] | None = None) -> ApiError:
    return _error(400, "INVALID_ARGUMENT", message, "invalid_request", details)


def _get(obj: dict[str, Any], camel: str) -> Any:
    """Proto-JSON accepts camelCase and snake_case field names."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel))


def _dumps(obj: Any) -> bytes:
    # The recorded stream events use ", " nowhere but ": " after keys.
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False).encode()


class GeminiProtocol:
    """The Gemini (Google AI Studio) generateContent wire protocol."""

    name = "google"

    def __init__(self) -> None:
        self.cache = PromptCache()

    def authenticate(self, req: Request, pinned: frozenset[str] | None) -> None:
        """``x-goog-api-key`` header or ``?key=``; a bad key is 400 API_KEY_INVALID."""
        key = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not key:
            raise _error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                "auth",
            )
        if not key_accepted(key, pinned):
            raise self._bad_key()

    def _bad_key(self) -> ApiError:
        message = "API key not valid. Please pass a valid API key."
        return _error(
            400,
            "INVALID_ARGUMENT",
            message,
            "auth",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                },
            ],
        )

    def decode(self, req: Request) -> Exchange:
        """Parse the body; the model and streaming come from the URL."""
        try:
            body = load_json(req.body) if req.body.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received. Unexpected token.")
        stream = req.action == "streamGenerateContent"
        sse = req.query.get("alt") == "sse"
        return Exchange(body=body, model=req.path_model, stream=stream, options={"sse": sse})

    def validate(self, req: Request, exchange: Exchange) -> Exchange:
        """Turn and schema checks with Gemini's messages; builds the conversation."""
        body = exchange.body
        contents = body.get("contents")
        if not contents:
            raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
        if not isinstance(contents, list):
            raise _invalid(
                'Invalid JSON payload received. Unknown name "contents": Proto field is not '
                "repeating, cannot start list."
            )
        self._check_contents(contents)
        tools = self._tools(body.get("tools"))
        choice, forced = self._tool_choice(_get(body, "toolConfig"))
        config = _get(body, "generationConfig") or {}
        max_tokens = _get(config, "maxOutputTokens") if isinstance(config, dict) else None
        if max_tokens is not None and not isinstance(max_tokens, int):
            raise _invalid(
                "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), "
                f"{json.dumps(max_tokens)}"
            )
        last = contents[-1]
        parts = last.get("parts") or []
        responses = [_get(p, "functionResponse") for p in parts if _get(p, "functionResponse")]
        results = None
        if responses and last.get("role", "user") == "user":
            results = tuple(tool_result_text(r.get("response")) for r in responses)
        last_user = next(
            (
                c
                for c in reversed(contents)
                if c.get("role", "user") == "user"
                and any(isinstance(p.get("text"), str) for p in c.get("parts") or [])
            ),
            None,
        )
        user_text = ""
        if last_user:
            user_text = "\n".join(
                p["text"]
                for p in last_user["parts"]
                if isinstance(p.get("text"), str) and not p.get("thought")
            )
        config = config if isinstance(config, dict) else {}
        json_answer = _get(config, "responseMimeType") == "application/json"
        schema = _get(config, "responseJsonSchema") or _get(config, "responseSchema")
        if schema is not None and not json_answer:
            raise _invalid(
                "* GenerationConfig.response_schema: response_mime_type must be "
                "application/json when a response schema is set\n"
            )
        thinking_config = _get(config, "thinkingConfig") or {}
        thinking = bool(thinking_config) and _get(thinking_config, "thinkingBudget") != 0
        prompt_tokens = _prompt_tokens(body)
        conv = Conversation(
            last_user_text=user_text,
            tool_results=results,
            tools=tools,
            tool_choice=choice,
            forced=forced,
            max_tokens=max_tokens,
            prompt_tokens=prompt_tokens,
            json_answer=json_answer,
            json_schema=schema if isinstance(schema, dict) else None,
            thinking=thinking,
        )
        # Implicit caching: a repeated prefix (system instruction, tools and all but the last
        # turn) is read from the cache.
        cached = 0
        if len(contents) > 1:
            prefix = {**body, "contents": contents[:-1]}
            prefix.pop("generationConfig", None)
            if self.cache.touch(prefix):
                cached = min(_prompt_tokens(prefix), prompt_tokens)
        return Exchange(
            body=body,
            model=exchange.model,
            stream=exchange.stream,
            conversation=conv,
            options={
                **exchange.options,
                "cached": cached,
                "thoughts": bool(_get(thinking_config, "includeThoughts")),
            },
        )

    def _check_contents(self, contents: list[Any]) -> None:
        previous_calls = 0
        previous_kind = None  # "user", "call", "response", "model"
        for i, content in enumerate(contents):
            if not isinstance(content, dict):
                raise _invalid(
                    f"Invalid value at 'contents[{i}]' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content)"
                )
            role = content.get("role", "user") or "user"
            if role not in ("user", "model"):
                raise _invalid("Please use a valid role: user, model.")
            parts = content.get("parts")
            if not parts or not isinstance(parts, list):
                raise _invalid(
                    f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
                )
            calls = sum(1 for p in parts if isinstance(p, dict) and _get(p, "functionCall"))
            responses = sum(1 for p in parts if isinstance(p, dict) and _get(p, "functionResponse"))
            if responses:
                if previous_kind != "call":
                    raise _invalid(
                        "Please ensure that function response turn comes immediately after a "
                        "function call turn."
                    )
                if responses != previous_calls:
                    raise _invalid(
                        "Please ensure that the number of function response parts is equal to "
                        "the number of function call parts of the function call turn."
                    )
            if calls and previous_kind not in ("user", "response"):
                raise _invalid(
                    "Please ensure that function call turn comes immediately after a user turn "
                    "or after a function response turn."
                )
            previous_calls = calls
            previous_kind = "call" if calls else "response" if responses else role

    def _tools(self, tools: Any) -> tuple[ToolSpec, ...]:
        if tools is None:
            return ()
        if not isinstance(tools, list):
            raise _invalid(
                'Invalid JSON payload received. Unknown name "tools": Proto field is not repeating, cannot start list.'
            )
        out = []
        for i, tool in enumerate(tools):
            declarations = _get(tool, "functionDeclarations") if isinstance(tool, dict) else None
            for j, decl in enumerate(declarations or []):
                name = decl.get("name")
                if not isinstance(name, str) or not name:
                    raise _invalid(
                        f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: "
                        "Name cannot be empty.\n"
                    )
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", name):
                    raise _invalid(
                        f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: "
                        "Invalid function name. Must start with a letter or an underscore. Must be "
                        "a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a "
                        "maximum length of 64.\n"
                    )
                schema = _get(decl, "parameters")
                if schema is not None:
                    self._check_schema(schema, f"tools[{i}].function_declarations[{j}].parameters")
                else:
                    schema = _get(decl, "parametersJsonSchema")
                out.append(ToolSpec(name, schema))
        return tuple(out)

    def _check_schema(self, schema: Any, path: str) -> None:
        if not isinstance(schema, dict):
            return
        for key in schema:
            if key not in _SCHEMA_FIELDS:
                message = f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
                raise _invalid(
                    message,
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [{"field": path, "description": message}],
                        }
                    ],
                )
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for index, value in enumerate(properties.values()):
                self._check_schema(value, f"{path}.properties[{index}].value")
        items = schema.get("items")
        if isinstance(items, dict):
            self._check_schema(items, f"{path}.items")
        for key in ("anyOf", "any_of"):
            for index, branch in enumerate(schema.get(key) or []):
                self._check_schema(branch, f"{path}.any_of[{index}]")

    def _tool_choice(self, config: Any) -> tuple[str, tuple[str, ...]]:
        calling = _get(config, "functionCallingConfig") if isinstance(config, dict) else None
        if not isinstance(calling, dict):
            return "auto", ()
        mode = str(calling.get("mode", "AUTO")).upper()
        allowed = tuple(_get(calling, "allowedFunctionNames") or ())
        if mode == "NONE":
            return "none", ()
        if mode == "ANY":
            return ("named", allowed) if allowed else ("required", ())
        if mode not in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
            raise _invalid(
                f"Invalid value at 'tool_config.function_calling_config.mode' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), "{mode}"'
            )
        return "auto", ()

    # -- response side -----------------------------------------------------------------------
    def _usage(
        self, exchange: Exchange, output_tokens: int | None, thoughts: int = 0
    ) -> dict[str, Any]:
        prompt = exchange.conversation.prompt_tokens if exchange.conversation else 0
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if exchange.options.get("cached"):
            usage["cachedContentTokenCount"] = exchange.options["cached"]
        if output_tokens is not None:
            usage["candidatesTokenCount"] = output_tokens
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        usage["totalTokenCount"] = prompt + (output_tokens or 0) + thoughts
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        if output_tokens is not None:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": output_tokens}]
        return usage

    def _response(
        self,
        exchange: Exchange,
        parts: list[dict[str, Any]],
        finish: str | None,
        output_tokens: int | None,
        response_id: str,
        thoughts: int = 0,
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = finish
            candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(exchange, output_tokens, thoughts),
            "modelVersion": exchange.model,
            "responseId": response_id,
        }

    def _parts(self, answer: Answer) -> list[dict[str, Any]]:
        if answer.calls:
            return [{"functionCall": {"name": c.name, "args": c.arguments}} for c in answer.calls]
        return [{"text": answer.text}]

    def _thought(self, exchange: Exchange, answer: Answer) -> list[dict[str, Any]]:
        if answer.thinking and exchange.options.get("thoughts"):
            return [{"text": answer.thinking, "thought": True}]
        return []

    def render(self, exchange: Exchange, answer: Answer) -> Reply:
        """A ``GenerateContentResponse``."""
        body = self._response(
            exchange,
            self._thought(exchange, answer) + self._parts(answer),
            _FINISH[answer.finish],
            answer.output_tokens - answer.reasoning_tokens,
            rand_id(23, _URLSAFE),
            answer.reasoning_tokens,
        )
        return Reply(
            200, [("Content-Type", _JSON), ("Vary", "Origin, X-Origin, Referer")], pretty(body)
        )

    def stream(self, exchange: Exchange, answer: Answer) -> StreamPlan:
        """Full responses per event: one per text token, or one per function call."""
        response_id = rand_id(23, _URLSAFE)
        chunks: list[tuple[list[dict[str, Any]], int]] = []
        thought = self._thought(exchange, answer)
        if thought:
            chunks.append((thought, 0))
        if answer.calls:
            seen = 0
            for call in answer.calls:
                seen += count_tokens(call.name) + count_tokens(call.arguments_json)
                chunks.append(
                    ([{"functionCall": {"name": call.name, "args": call.arguments}}], seen)
                )
        else:
            seen = 0
            for piece in pieces(answer.text) or [""]:
                seen += count_tokens(piece)
                chunks.append(([{"text": piece}], seen))
        bodies = []
        for n, (parts, tokens) in enumerate(chunks):
            finish = _FINISH[answer.finish] if n == len(chunks) - 1 else None
            bodies.append(
                self._response(
                    exchange, parts, finish, tokens, response_id, answer.reasoning_tokens
                )
            )
        if exchange.options.get("sse"):
            events = [
                Event(b"data: " + _dumps(b) + b"\r\n\r\n", paced=n > 0)
                for n, b in enumerate(bodies)
            ]
            headers = [("Content-Type", "text/event-stream"), ("Content-Disposition", "attachment")]
        else:
            # Without alt=sse: one JSON array streamed element by element, as recorded.
            events = []
            for n, b in enumerate(bodies):
                lead = b"[" if n == 0 else b",\r\n"
                events.append(Event(lead + pretty(b).rstrip(b"\n") + b"\n", paced=n > 0))
            events.append(Event(b"]"))
            headers = [("Content-Type", _JSON)]
        return StreamPlan(200, headers + [("Vary", "Origin, X-Origin, Referer")], events)

    def error(self, kind: str, exchange: Exchange | None, params: dict[str, Any]) -> Reply:
        """Gemini's ``google.rpc.Status`` replies for the fault kinds and an unknown model."""
        if kind == "rate_limit":
            wait = params.get("retry_after", 1)
            seconds = str(int(wait)) if float(wait).is_integer() else f"{wait:g}"
            err = _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details. "
                f"Please retry in {seconds}s.",
                kind,
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                                "quotaValue": "60",
                            }
                        ],
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{seconds}s",
                    },
                ],
            )
        elif kind == "insufficient_quota":
            err = _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                kind,
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                                "quotaValue": "0",
                            }
                        ],
                    }
                ],
            )
        elif kind == "server_error":
            err = _error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
                kind,
            )
        elif kind in ("unavailable", "overloaded", "stream_error"):
            err = _error(
                503, "UNAVAILABLE", "The model is overloaded. Please try again later.", kind
            )
        elif kind == "auth":
            err = self._bad_key()
        elif kind == "not_found":
            model = exchange.model if exchange else None
            err = _error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for "
                "generateContent. Call ModelService.ListModels to see the list of available "
                "models and their supported methods.",
                kind,
            )
        else:
            raise ValueError(f"no Gemini error reply for {kind!r}")
        return err.reply

    def stream_error_event(self) -> bytes:
        """An ``{"error": ...}`` event; google-genai raises ``APIError`` on it."""
        error = {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        }
        return b"data: " + _dumps(error) + b"\r\n\r\n"

    def malformed(self, exchange: Exchange) -> Reply | StreamPlan:
        """Truncated JSON with a 200 status."""
        broken = b'{\n  "candidates": [\n    {\n      "content": {\n        "parts": [\n          {\n            "text": "Ech'
        if exchange.stream and exchange.options.get("sse"):
            events = [Event(b"data: " + broken + b"\r\n\r\n")]
            return StreamPlan(
                200,
                [("Content-Type", "text/event-stream"), ("Content-Disposition", "attachment")],
                events,
            )
        return Reply(200, [("Content-Type", _JSON)], broken)

    def count_tokens_reply(self, exchange: Exchange) -> Reply:
        """``:countTokens``: the prompt tokens of the contents."""
        total = _prompt_tokens(exchange.body)
        body = {
            "totalTokens": total,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
        }
        return Reply(200, [("Content-Type", _JSON)], pretty(body))

    def models(self, req: Request, models: tuple[str, ...]) -> Reply:
        """``GET /v1beta/models`` and ``GET /v1beta/models/{model}``."""
        entries = [
            {
                "name": f"models/{m}",
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for m in models
        ]
        if req.path_model:
            for entry in entries:
                if entry["name"] == f"models/{req.path_model}":
                    return Reply(200, [("Content-Type", _JSON)], pretty(entry))
            return self.error("not_found", Exchange({}, req.path_model, False), {})
        return Reply(200, [("Content-Type", _JSON)], pretty({"models": entries}))


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    system = _get(body, "systemInstruction")
    contents = list(body.get("contents") or [])
    if isinstance(system, dict):
        contents.append(system)
    for content in contents:
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                total += count_tokens(part["text"])
            call = _get(part, "functionCall")
            if isinstance(call, dict):
                total += count_tokens(str(call.get("name", ""))) + count_tokens(
                    json.dumps(call.get("args", {}))
                )
            response = _get(part, "functionResponse")
            if isinstance(response, dict):
                total += count_tokens(tool_result_text(response.get("response")))
    if body.get("tools"):
        total += count_tokens(json.dumps(body["tools"], sort_keys=True))
    return total
