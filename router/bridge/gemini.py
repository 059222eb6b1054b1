"""The Gemini door: ``generateContent``, ``streamGenerateContent`` (``alt=sse``, or without it
the streamed JSON array), ``countTokens`` and the model list, under ``/v1beta/`` and ``/v1/``,
as Google serves them, so the ``google-genai`` SDK works against the bridge by base URL alone,
with any provider behind.

Pure translations first (a ``GenerateContentRequest`` to an ``AIRequest``; an answer to a
``GenerateContentResponse``; the router's chunks to response chunks; a failure to Google's
``{"error": {code, message, status}}``), then :class:`GeminiDoor`, which runs them. Keys are
camelCase; the snake_case spelling proto-JSON parsers accept is accepted too.
"""

from __future__ import annotations

import json
import re
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
    "GeminiDoor",
    "GeminiEvents",
    "failure_body",
    "generate_request",
    "model_object",
    "response_body",
]

_REQUEST_FIELDS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    | {"safetySettings", "cachedContent", "labels", "model"}
)
_CONFIG_FIELDS = frozenset(
    {"maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount"}
    | {"responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig", "seed"}
    | {"presencePenalty", "frequencyPenalty", "responseModalities", "mediaResolution"}
    | {"responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig"}
)
_FINISH = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",
    "content_filter": "SAFETY",
    "error": "OTHER",
}
# Results conventionally wrapped in one of these keys go to other providers as plain text.
_RESULT_KEYS = ("output", "result")


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _get(obj: Mapping[str, Any], name: str) -> Any:
    """A field by its camelCase name or its snake_case spelling."""
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def _check_fields(obj: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    allowed = known | {_snake(name) for name in known}
    for key in obj:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise BodyError(
                f'Invalid JSON payload received. Unknown name "{key}"'
                f"{' at ' + repr(where) if where else ''}: Cannot find field.",
                path,
            )


# --- request -------------------------------------------------------------------------------


def generate_request(body: Mapping[str, Any], model: str, *, stream: bool = False) -> AIRequest:
    """A ``GenerateContentRequest`` for ``model`` (from the path) as an ``AIRequest``."""
    _check_fields(body, _REQUEST_FIELDS, "")
    if _get(body, "cachedContent") is not None:
        raise BodyError("cachedContent is not supported by the router", "cachedContent")
    request: dict[str, Any] = {"model": model, "stream": stream, "messages": []}
    system = _get(body, "systemInstruction")
    if system is not None:
        text = _system_text(system)
        if text:
            request["messages"].append({"role": "system", "content": text})
    request["messages"].extend(_contents(body.get("contents")))
    tools = _tools(body.get("tools"))
    if tools:
        request["tools"] = tools
    choice = _tool_choice(_get(body, "toolConfig"))
    if choice is not None:
        request["tool_choice"] = choice
    _generation_config(_get(body, "generationConfig"), request)
    try:
        return AIRequest.model_validate(request)
    except ValidationError as error:
        raise validation_error(error) from None


def _system_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("parts"), list):
        raise BodyError("systemInstruction must be a Content with parts", "systemInstruction")
    return "\n".join(
        p["text"] for p in value["parts"] if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _contents(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise BodyError("contents is not specified", "contents")
    messages: list[dict[str, Any]] = []
    previous_calls: list[tuple[str, str]] = []  # (id, name) of the last model turn's calls
    for i, content in enumerate(value):
        where = f"contents[{i}]"
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise BodyError(f"{where}.parts must be a list of parts", f"{where}.parts")
        role = content.get("role") or "user"
        if role == "model":
            message, previous_calls = _model_turn(content["parts"], where, i)
            messages.append(message)
        elif role in ("user", "function"):
            messages.extend(_user_turn(content["parts"], where, previous_calls))
            previous_calls = []
        else:
            raise BodyError(f"{where}.role: Please use a valid role: user, model.", f"{where}.role")
    return messages


def _model_turn(
    parts: list[Any], where: str, turn: int
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    provider_data: dict[str, Any] | None = None
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BodyError(f"{where}.parts[{j}] must be an object", f"{where}.parts[{j}]")
        signature = _get(part, "thoughtSignature")
        call = _get(part, "functionCall")
        if part.get("thought") is True:
            continue  # thought summaries are not sent back to any provider
        if isinstance(call, dict):
            name = call.get("name")
            if not isinstance(name, str) or not name:
                raise BodyError(f"{where}.parts[{j}].functionCall.name is required", where)
            args = call.get("args") or {}
            entry: dict[str, Any] = {
                "id": call.get("id") or f"call_{turn}_{len(calls)}_{name}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            if signature:
                entry["provider_data"] = {"thoughtSignature": signature}
            calls.append(entry)
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
            if signature:
                provider_data = {"thoughtSignature": signature}
        else:
            raise BodyError(f"{where}.parts[{j}]: only text and functionCall parts", where)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    if provider_data:
        message["provider_data"] = provider_data
    return message, [(c["id"], c["function"]["name"]) for c in calls]


def _user_turn(
    parts: list[Any], where: str, open_calls: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    open_calls = list(open_calls)
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise BodyError(f"{at} must be an object", at)
        answer = _get(part, "functionResponse")
        inline, file = _get(part, "inlineData"), _get(part, "fileData")
        if isinstance(answer, dict):
            results.append(_function_response(answer, at, open_calls))
        elif isinstance(part.get("text"), str):
            content.append({"type": "text", "text": part["text"]})
        elif isinstance(inline, dict):
            mime, data = _get(inline, "mimeType"), inline.get("data")
            if not str(mime).startswith("image/") or not isinstance(data, str):
                raise BodyError(f"{at}.inlineData: only images are supported", at)
            content.append(
                {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
            )
        elif isinstance(file, dict) and isinstance(_get(file, "fileUri"), str):
            content.append({"type": "image_url", "image_url": {"url": _get(file, "fileUri")}})
        else:
            raise BodyError(f"{at}: unsupported part (text, inlineData, fileData, ...)", at)
    if not content:
        return results
    if all(p["type"] == "text" for p in content):
        return [*results, {"role": "user", "content": "\n".join(p["text"] for p in content)}]
    return [*results, {"role": "user", "content": content}]


def _function_response(
    answer: Mapping[str, Any], where: str, open_calls: list[tuple[str, str]]
) -> dict[str, Any]:
    """A tool message: the call is found by id, else by name among the model's open calls."""
    name, call_id = answer.get("name"), answer.get("id")
    match = next(
        (c for c in open_calls if (call_id and c[0] == call_id) or (not call_id and c[1] == name)),
        None,
    )
    if match is None:
        raise BodyError(
            f"{where}.functionResponse: no function call named '{name}' in the previous model "
            "turn answers it",
            f"{where}.functionResponse",
        )
    open_calls.remove(match)
    response = answer.get("response")
    if isinstance(response, dict) and len(response) == 1:
        (key, value), *_ = response.items()
        if key in _RESULT_KEYS and isinstance(value, str):
            return {"role": "tool", "tool_call_id": match[0], "content": value}
    text = json.dumps(response, ensure_ascii=False, separators=(",", ":"))
    return {"role": "tool", "tool_call_id": match[0], "content": text}


def _tools(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyError("tools must be a list", "tools")
    tools = []
    for i, tool in enumerate(value):
        declarations = _get(tool, "functionDeclarations") if isinstance(tool, dict) else None
        others = (
            sorted(set(tool) - {"functionDeclarations", "function_declarations"})
            if (isinstance(tool, dict))
            else ["?"]
        )
        if others:
            raise BodyError(
                f"tools[{i}].{others[0]}: only functionDeclarations are supported by the router",
                f"tools[{i}]",
            )
        for j, declaration in enumerate(declarations or []):
            where = f"tools[{i}].functionDeclarations[{j}]"
            if not isinstance(declaration, dict) or not declaration.get("name"):
                raise BodyError(f"{where}.name is required", where)
            schema = _get(declaration, "parametersJsonSchema")
            if schema is None:
                schema = _json_schema(declaration.get("parameters"))
            tools.append(
                {
                    "name": declaration["name"],
                    "description": declaration.get("description") or "",
                    "inputSchema": schema or {"type": "object", "properties": {}},
                }
            )
    return tools


def _json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-subset schema (``"type": "OBJECT"``) as JSON Schema."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: _json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = _json_schema(value)
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    return out


def _tool_choice(config: Any) -> str | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise BodyError("toolConfig must be an object", "toolConfig")
    calling = _get(config, "functionCallingConfig")
    if calling is None:
        return None
    if not isinstance(calling, dict):
        raise BodyError(
            "toolConfig.functionCallingConfig must be an object", "toolConfig.functionCallingConfig"
        )
    mode = str(calling.get("mode") or "AUTO").upper()
    allowed = _get(calling, "allowedFunctionNames") or []
    if mode == "ANY":
        return allowed[0] if len(allowed) == 1 else "required"
    if mode == "NONE":
        return "none"
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return "auto"
    raise BodyError(
        f"toolConfig.functionCallingConfig.mode: invalid value '{mode}'",
        "toolConfig.functionCallingConfig.mode",
    )


def _generation_config(config: Any, request: dict[str, Any]) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise BodyError("generationConfig must be an object", "generationConfig")
    _check_fields(config, _CONFIG_FIELDS, "generation_config")
    maximum = _get(config, "maxOutputTokens")
    if maximum is not None:
        if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
            raise BodyError(
                "generationConfig.maxOutputTokens must be a positive integer",
                "generationConfig.maxOutputTokens",
            )
        request["max_tokens"] = maximum
    for name, key in (("temperature", "temperature"), ("topP", "top_p")):
        value = _get(config, name)
        if value is not None:
            request[key] = value
    stops = _get(config, "stopSequences")
    if stops:
        request["stop"] = tuple(stops)
    if _get(config, "candidateCount") not in (None, 1):
        raise BodyError("only candidateCount 1 is supported", "generationConfig.candidateCount")
    for name, key in (
        ("topK", "top_k"),
        ("seed", "seed"),
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
    ):
        value = _get(config, name)
        if value is not None:
            request[key] = value
    response_format = _response_format(config)
    if response_format is not None:
        request["response_format"] = response_format
    thinking = _get(config, "thinkingConfig")
    if thinking is not None:
        request["reasoning"] = _reasoning(thinking)


def _response_format(config: Mapping[str, Any]) -> dict[str, Any] | None:
    mime = _get(config, "responseMimeType")
    schema = _get(config, "responseJsonSchema")
    if schema is None and _get(config, "responseSchema") is not None:
        schema = _json_schema(_get(config, "responseSchema"))
    if mime in (None, "text/plain") and schema is None:
        return None
    if mime not in (None, "application/json"):
        raise BodyError(
            f"generationConfig.responseMimeType: '{mime}' is not supported "
            "(text/plain, application/json)",
            "generationConfig.responseMimeType",
        )
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}


def _reasoning(thinking: Any) -> dict[str, Any]:
    """``thinkingConfig`` as the router's ``reasoning`` (a budget of -1: the model decides)."""
    if not isinstance(thinking, dict):
        raise BodyError("generationConfig.thinkingConfig must be an object", "thinkingConfig")
    out: dict[str, Any] = {"include_thoughts": bool(_get(thinking, "includeThoughts"))}
    budget = _get(thinking, "thinkingBudget")
    if isinstance(budget, int) and not isinstance(budget, bool) and budget >= 0:
        out["budget_tokens"] = budget
    level = _get(thinking, "thinkingLevel")
    if level is not None:
        if str(level).upper() not in _LEVELS:
            raise BodyError(
                f"generationConfig.thinkingConfig.thinkingLevel: invalid value '{level}'",
                "generationConfig.thinkingConfig.thinkingLevel",
            )
        out["effort"] = _LEVELS[str(level).upper()]
    return out


# --- answer --------------------------------------------------------------------------------


def usage_metadata(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    thoughts = min(usage.reasoning_tokens, usage.output_tokens)
    out = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens - thoughts,
        "totalTokenCount": usage.total_tokens or usage.input_tokens + usage.output_tokens,
    }
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    if usage.cached_input_tokens:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    return out


def _call_part(call_id: str, name: str, args: Any, provider_data: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"id": call_id, "name": name, "args": args}}
    signature = (provider_data or {}).get("thoughtSignature")
    if signature:
        part["thoughtSignature"] = signature  # Gemini 3 needs it back with the next turn
    return part


def _candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = _FINISH[finish]
    return candidate


def response_body(response: AIResponse, *, response_id: str | None = None) -> dict[str, Any]:
    """A ``GenerateContentResponse`` for one answer."""
    parts: list[dict[str, Any]] = []
    if response.reasoning:
        parts.append({"text": response.reasoning, "thought": True})
    if response.content or not response.tool_calls:
        parts.append({"text": response.content})
        signature = (response.provider_data or {}).get("thoughtSignature")
        if signature:
            parts[-1]["thoughtSignature"] = signature
    for call in response.tool_calls:
        parts.append(_call_part(call.id, call.name, call.arguments, call.provider_data))
    return {
        "candidates": [_candidate(parts, response.finish_reason)],
        "usageMetadata": usage_metadata(response.usage),
        "modelVersion": response.model,
        "responseId": response_id or random_hex(),
    }


class GeminiEvents(Events):
    """The router's chunks as ``GenerateContentResponse`` chunks: text as it comes, each
    function call whole (Gemini never splits one) once its arguments are complete, the last
    chunk with ``finishReason`` and ``usageMetadata``. ``sse``: ``data: ...\\r\\n\\r\\n``
    events; otherwise the elements of one streamed JSON array.
    """

    def __init__(self, secrets: Any, *, sse: bool) -> None:
        super().__init__(secrets)
        self._sse = sse
        self._sent = 0
        self._model = ""
        self._response_id = random_hex()
        self._calls: dict[int, dict[str, Any]] = {}

    def _item(self, obj: dict[str, Any], *, scrub: bool = False) -> str:
        text = self.dumps(obj, scrub=scrub)
        self._sent += 1
        if self._sse:
            return f"data: {text}\r\n\r\n"
        return ("[" if self._sent == 1 else ",\r\n") + text

    def chunk(self, chunk: StreamChunk) -> bytes:
        self._model = chunk.model or self._model
        for delta in chunk.tool_call_deltas:
            call = self._calls.setdefault(
                delta.index, {"id": delta.id, "name": delta.name, "arguments": "", "data": None}
            )
            call["id"] = call["id"] or delta.id
            call["name"] = call["name"] or delta.name
            call["arguments"] += delta.arguments
            call["data"] = delta.provider_data or call["data"]
        parts: list[dict[str, Any]] = []
        if chunk.reasoning:
            parts.append({"text": chunk.reasoning, "thought": True})
        if chunk.content:
            parts.append({"text": chunk.content})
        if chunk.is_complete:
            for index in sorted(self._calls):
                call = self._calls[index]
                try:
                    args = json.loads(call["arguments"] or "{}")
                except json.JSONDecodeError:
                    args = {}  # the provider sent broken arguments; Gemini's are objects
                call_id = call["id"] or f"call_{index}_{call['name']}"
                parts.append(_call_part(call_id, call["name"] or "", args, call["data"]))
            signature = (chunk.provider_data or {}).get("thoughtSignature")
            if signature:
                parts.append({"text": "", "thoughtSignature": signature})
        if not parts and not chunk.is_complete:
            return b""
        obj: dict[str, Any] = {
            "candidates": [_candidate(parts, chunk.finish_reason if chunk.is_complete else None)],
            "modelVersion": self._model,
            "responseId": self._response_id,
        }
        if chunk.is_complete:
            obj["usageMetadata"] = usage_metadata(chunk.usage)
        out = self._item(obj)
        if chunk.is_complete and not self._sse:
            out += "]"
        return out.encode()

    def error(self, error: dict[str, Any]) -> bytes:
        status = status_for_type(str(error.get("type") or ""))
        payload = _error_object(status, str(error.get("message") or "the stream failed"))
        out = self._item(payload, scrub=True)
        return (out if self._sse else out + "]").encode()


# --- errors and models ---------------------------------------------------------------------

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error_object(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": status, "message": message, "status": _STATUSES.get(status, "UNKNOWN")}
    }


def failure_body(failure: Failure) -> dict[str, Any]:
    """Google's envelope: ``{"error": {"code", "message", "status"}}``."""
    return _error_object(failure.status, failure.message)


def model_object(entry: ModelEntry) -> dict[str, Any]:
    """One ``Model`` of ``GET /v1beta/models`` in Google's shape."""
    info = entry.info
    out: dict[str, Any] = {
        "name": f"models/{entry.id}",
        "version": "001",
        "displayName": entry.id,
        "description": f"served by {entry.owned_by}",
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    }
    if info is not None:
        out["inputTokenLimit"] = info.context_window
        out["outputTokenLimit"] = info.max_output_tokens
    return out


# --- the door ------------------------------------------------------------------------------

_VERSIONS = ("/v1beta", "/v1")


class GeminiDoor:
    """``models/{model}:generateContent`` / ``:streamGenerateContent`` / ``:countTokens`` and
    ``GET models[/{model}]`` under ``/v1beta`` and ``/v1`` (the latter shared with other doors,
    claimed by ``x-goog-api-key`` or ``?key=``)."""

    name = "gemini"
    missing_credential = (
        "Method doesn't allow unregistered callers: send the x-goog-api-key header or ?key="
    )

    def __init__(self, bridge: BridgeApp) -> None:
        self.bridge = bridge

    def routes(self) -> list[Route]:
        routes = []
        for prefix in _VERSIONS:
            base = prefix + "/models/{model}"
            routes += [
                Route(base + ":generateContent", {"POST": self.generate}, "auth", self),
                Route(base + ":streamGenerateContent", {"POST": self.stream}, "auth", self),
                Route(base + ":countTokens", {"POST": self.count_tokens}, "auth", self),
                Route(prefix + "/models", {"GET": self.models}, "auth", self),
                Route(base, {"GET": self.model}, "auth", self),
            ]
        return routes

    def claims(self, request: Request) -> bool:
        return bool(request.header("x-goog-api-key") or request.query("key"))

    def credential(self, request: Request) -> str | None:
        key = request.header("x-goog-api-key") or request.query("key")
        if key:
            return key.strip()
        scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def error_status(self, failure: Failure) -> int:
        # Google answers a wrong key with 400 and a missing one with 403.
        if failure.kind == "AuthenticationRequired":
            return 400 if failure.code == "invalid_api_key" else 403
        return failure.status

    def failure_body(self, failure: Failure) -> dict[str, Any]:
        if failure.kind == "AuthenticationRequired" and failure.code == "invalid_api_key":
            return _error_object(400, "API key not valid. Please pass a valid API key.")
        return _error_object(self.error_status(failure), failure.message)

    def _request(self, request: Request, *, stream: bool) -> tuple[AIRequest, dict[str, Any]]:
        model = request.params["model"].removeprefix("models/")
        ai_request = generate_request(request.json(), model, stream=stream)
        return self.bridge.with_router_headers(request, ai_request, {})

    def generate(self, request: Request) -> Response:
        ai_request, options = self._request(request, stream=False)
        response = self.bridge.answer("gemini_generate", ai_request, options)
        return self.bridge.json(200, response_body(response), served_by(response), scrub=False)

    def stream(self, request: Request) -> Response:
        ai_request, options = self._request(request, stream=True)
        sse = request.query("alt") == "sse"
        events = GeminiEvents(self.bridge.secrets, sse=sse)
        return self.bridge.stream(
            "gemini_generate", ai_request, options, events, media_type=None if sse else "json"
        )

    def count_tokens(self, request: Request) -> Response:
        body = request.json()
        model = request.params["model"].removeprefix("models/")
        inner = _get(body, "generateContentRequest")
        # The SDK sends contents alone, or the whole request wrapped (tools, system...).
        body = inner if isinstance(inner, dict) else {k: v for k, v in body.items() if k != "model"}
        ai_request = generate_request(body, model)
        return self.bridge.json(200, {"totalTokens": estimate_request_tokens(ai_request)})

    def models(self, request: Request) -> Response:
        models = [model_object(entry) for entry in self.bridge.models()]
        return self.bridge.json(200, {"models": models})

    def model(self, request: Request) -> Response:
        wanted = request.params["model"].removeprefix("models/")
        for entry in self.bridge.models():
            if entry.id == wanted:
                return self.bridge.json(200, model_object(entry))
        raise Problem(404, "ModelNotFoundError", f"models/{wanted} is not found")
