"""Google Gemini (Developer API, ``generativelanguage.googleapis.com/v1beta``).

``POST {base}/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (without ``alt=sse`` Gemini streams a JSON array, which this
adapter does not use), with the key in ``x-goog-api-key``.

Translation from the router's OpenAI-style messages (see ``tests/fixtures/wire/gemini``):

- roles are ``user`` / ``model``; ``system`` and ``developer`` messages are joined into
  ``systemInstruction``; consecutive turns of the same role are merged.
- An assistant's tool calls become ``functionCall`` parts (``args`` object, our call id as
  ``id``) with the call's ``thoughtSignature`` (from ``provider_data``) put back unchanged —
  Gemini 3 rejects a history whose function calls lost it.
- ``tool`` messages become ``functionResponse`` parts in a user turn; the function name is
  looked up from the earlier call's id. Content that is a JSON object is sent as the
  ``response`` object; anything else is wrapped as ``{"output": <text>}`` ("output" is the
  key Google's SDK documents for a function's result).
- Images: ``data:`` URLs become ``inlineData``; http(s) URLs become ``fileData`` with the MIME
  type guessed from the URL (``image/jpeg`` when it cannot be guessed).

Responses: Gemini sends no id for a function call, so calls get a deterministic id
``call_{n}_{name}`` (``n`` counts the calls of one answer), the same streamed or not.
A finish of ``STOP`` with function calls is ``tool_calls``.

``response_format`` becomes ``responseMimeType: application/json`` with ``responseJsonSchema``
(models with structured outputs) or ``responseSchema`` in Gemini's OpenAPI subset (the same
normalisation as tool schemas). ``reasoning`` becomes ``thinkingConfig``: ``thinkingLevel`` on
models that take an effort level (Gemini 3), else ``thinkingBudget``; ``includeThoughts`` returns
thought summaries, which become ``reasoning`` (never content). Implicit prompt caching needs no
request field; cache reads are reported as ``cachedContentTokenCount``. Output tokens are
``candidatesTokenCount + thoughtsTokenCount``; input tokens ``promptTokenCount`` (which
includes ``cachedContentTokenCount``). In a stream usage is taken from the last chunk (the
counts change between chunks; they are never summed) and the final chunk is produced at end of
input, after the chunk that carried ``finishReason``.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

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
    ProviderCapability,
    ProviderType,
    Reasoning,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from router.params import thinking_budget, unsupported, uses_native_schema
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
    retry_after_from_headers,
    tool_calls_finish,
    wrong_shape,
)
from router.tools import gemini_schema, translate_tools

__all__ = ["GoogleAdapter", "GoogleStreamParser", "GOOGLE"]

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

_CANONICAL: dict[str, type[ProviderError]] = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "FAILED_PRECONDITION": InvalidRequestError,
    "OUT_OF_RANGE": InvalidRequestError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": ModelNotFoundError,
    "RESOURCE_EXHAUSTED": RateLimitError,
    "UNAVAILABLE": ServiceUnavailableError,
    "INTERNAL": ServiceUnavailableError,
    "UNKNOWN": ServiceUnavailableError,
    "DEADLINE_EXCEEDED": ProviderTimeoutError,
}

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.S
)
_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_BAD_KEY_MESSAGE = re.compile(r"API key\b[^.]*\b(?:not valid|expired)", re.I)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _finish_reason(value: Any) -> FinishReason:
    # MALFORMED_FUNCTION_CALL, OTHER, LANGUAGE, ...: the model did not produce a usable answer.
    return _FINISH.get(str(value), "error") if value else "stop"


def _call_id(raw: Mapping[str, Any], number: int, name: str) -> str:
    return str(raw.get("id") or f"call_{number}_{name}")


def _signature(part: Mapping[str, Any]) -> dict[str, Any] | None:
    signature = part.get("thoughtSignature") or part.get("thought_signature")
    return {"thoughtSignature": signature} if signature else None


def _retry_delay(details: list[Any]) -> float | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _quota_exhausted(message: str, details: list[Any]) -> bool:
    """A 429 that waiting a minute will not cure: a zero limit or a per-day quota used up."""
    if re.search(r"\blimit:\s*0\b", message):
        return True
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
            "QuotaFailure"
        ):
            continue
        for violation in detail.get("violations") or ():
            if not isinstance(violation, dict):
                continue
            if str(violation.get("quotaValue", "")).strip() == "0":
                return True
            if "PerDay" in str(violation.get("quotaId", "")):
                return True
    return False


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
    if status is None and isinstance(error.get("code"), int):
        status = error["code"]
    canonical = str(error.get("status") or "")
    message = str(error.get("message") or "")
    details = error.get("details") if isinstance(error.get("details"), list) else []
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")}
    retry_after: float | None = None
    if reasons & _BAD_KEY_REASONS or _BAD_KEY_MESSAGE.search(message):
        cls: type[ProviderError] = AuthenticationError  # Gemini says 400, not 401
    elif canonical == "RESOURCE_EXHAUSTED" or status == 429:
        cls = QuotaExceededError if _quota_exhausted(message, details) else RateLimitError
        retry_after = _retry_delay(details)
        if retry_after is None:
            retry_after = retry_after_from_headers(headers)
    else:
        cls = _CANONICAL.get(canonical) or error_for_status(status)
        if cls.retryable:  # a 503 may say when to come back too
            retry_after = retry_after_from_headers(headers)
    return cls(
        error_message(status, canonical or None, message or None),
        provider=provider or None,
        status=status,
        retry_after=retry_after,
    )


def _image_part(part: ImagePart, where: str) -> dict[str, Any]:
    url = part.image_url.url
    match = _DATA_URL.match(url)
    if match:
        if ";base64" not in match.group("params"):
            raise InvalidRequestError(f"{where}: image data URLs must be base64-encoded")
        return {"inlineData": {"mimeType": match.group("mime"), "data": match.group("data")}}
    if url.startswith(("http://", "https://")):
        mime = mimetypes.guess_type(urlsplit(url).path)[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise InvalidRequestError(f"{where}: an image must be a data: URL or an http(s) URL")


def _parts(content: str | list[TextPart | ImagePart] | None, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [
        {"text": part.text} if isinstance(part, TextPart) else _image_part(part, where)
        for part in content
    ]


def _function_response(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"output": content}


def _args(arguments: str, where: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise InvalidRequestError(f"{where}: arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}: arguments must be a JSON object")
    return value


def _tool_config(choice: str) -> dict[str, Any]:
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    else:
        config = {"mode": "ANY", "allowedFunctionNames": [choice]}
    return {"functionCallingConfig": config}


class GoogleAdapter(ProviderAdapter):
    """The Gemini ``generateContent`` protocol."""

    provider_type = ProviderType.GOOGLE
    default_base_url = "https://generativelanguage.googleapis.com"
    models_path = "/v1beta/models"

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        return headers

    def _model_turn(self, index: int, message: Message) -> list[dict[str, Any]]:
        where = f"messages[{index}]"
        parts = [p for p in _parts(message.content, where) if p.get("text") != ""]
        signature = (message.provider_data or {}).get("thoughtSignature")
        if signature:
            texts = [p for p in parts if "text" in p]
            if texts:
                texts[-1]["thoughtSignature"] = signature
            elif not message.tool_calls:
                parts.append({"text": "", "thoughtSignature": signature})
        for number, call in enumerate(message.tool_calls or ()):
            part: dict[str, Any] = {
                "functionCall": {
                    "id": call.id,
                    "name": call.function.name,
                    "args": _args(call.function.arguments, f"{where}.tool_calls[{number}]"),
                }
            }
            signature = (call.provider_data or {}).get("thoughtSignature")
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
        return parts

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
        """A ``generateContent`` / ``streamGenerateContent?alt=sse`` request for ``request``."""
        skip = {problem.name for problem in unsupported(request, self.provider_type, info)}
        system: list[str] = []
        contents: list[dict[str, Any]] = []
        call_names: dict[str, str] = {}
        for index, message in enumerate(request.messages):
            if message.role in ("system", "developer"):
                system.append(message.text())
                continue
            if message.role == "assistant":
                role = "model"
                for call in message.tool_calls or ():
                    call_names[call.id] = call.function.name
                parts = self._model_turn(index, message)
            elif message.role == "tool":
                role = "user"
                call_id = message.tool_call_id or ""
                parts = [
                    {
                        "functionResponse": {
                            "id": call_id,
                            "name": call_names[call_id],
                            "response": _function_response(message.text()),
                        }
                    }
                ]
            else:
                role = "user"
                parts = _parts(message.content, f"messages[{index}]")
            if contents and contents[-1]["role"] == role:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": role, "parts": parts})
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"role": "user", "parts": [{"text": "\n\n".join(system)}]}
        generation: dict[str, Any] = {}
        reasoning = request.reasoning if "reasoning" not in skip else None
        budget = thinking_budget(reasoning)
        if request.max_tokens is not None:
            limit = getattr(info, "max_output_tokens", None)
            wanted = request.max_tokens + budget
            generation["maxOutputTokens"] = wanted if limit is None else min(wanted, limit)
        if reasoning is not None and _thinks(info):
            generation["thinkingConfig"] = _thinking_config(reasoning, info)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text" and "response_format" not in skip:
            generation["responseMimeType"] = "application/json"
            schema = fmt.answer_schema
            if fmt.type == "json_schema" and schema is not None:
                if uses_native_schema(info):
                    generation["responseJsonSchema"] = schema
                else:
                    try:
                        generation["responseSchema"] = gemini_schema(schema)
                    except ValueError as exc:
                        raise InvalidRequestError(f"response_format: {exc}") from None
        for name, key in (
            ("seed", "seed"),
            ("top_k", "topK"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ):
            value = getattr(request, name)
            if value is not None and name not in skip:
                generation[key] = value
        if request.temperature is not None:
            generation["temperature"] = request.temperature
        if request.top_p is not None:
            generation["topP"] = request.top_p
        if request.stop is not None:
            generation["stopSequences"] = (
                [request.stop] if isinstance(request.stop, str) else list(request.stop)
            )
        if generation:
            body["generationConfig"] = generation
        if request.tools:
            declarations = translate_tools(request.tools, self.provider_type)
            body["tools"] = [{"functionDeclarations": declarations}]
            if request.tool_choice is not None:
                body["toolConfig"] = _tool_config(request.tool_choice)
        name = quote(model.removeprefix("models/"), safe="-._~")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path = f"/v1beta/models/{name}:{method}"
        return self._http(
            "POST", path, api_key=api_key, base_url=base_url, body=body, stream=stream
        )

    def parse_response(
        self, body: dict[str, Any], *, model: str, request: AIRequest | None = None
    ) -> AIResponse:
        """A ``GenerateContentResponse`` as an :class:`AIResponse` (first candidate).

        A signature on a text part is kept in ``provider_data`` so the next turn can send it
        back; thought parts are left out of the content.
        """
        if not isinstance(body, dict):
            raise wrong_shape(f"expected a JSON object, got {type(body).__name__}")
        if "error" in body and "candidates" not in body:
            raise _error_from_payload(None, body, None, provider=None)
        try:
            text: list[str] = []
            thoughts: list[str] = []
            calls: list[ToolCall] = []
            provider_data: dict[str, Any] | None = None
            candidates = body.get("candidates") or []
            if candidates:
                candidate = candidates[0]
                for part in (candidate.get("content") or {}).get("parts") or ():
                    call = part.get("functionCall")
                    if call is not None:
                        name = str(call["name"])
                        args = call.get("args") or {}
                        if not isinstance(args, dict):
                            raise TypeError("functionCall.args is not an object")
                        calls.append(
                            ToolCall(
                                id=_call_id(call, len(calls), name),
                                name=name,
                                arguments=args,
                                provider_data=_signature(part),
                            )
                        )
                    elif "text" in part:
                        (thoughts if part.get("thought") else text).append(str(part["text"]))
                        provider_data = _signature(part) or provider_data
                reason = _finish_reason(candidate.get("finishReason"))
            elif (body.get("promptFeedback") or {}).get("blockReason"):
                reason = "content_filter"
            else:
                raise KeyError("candidates")
            usage = _usage(body.get("usageMetadata"))
            request_id = body.get("responseId")
        except SHAPE_ERRORS as exc:
            raise wrong_shape("GenerateContentResponse", exc) from None
        return AIResponse(
            content="".join(text),
            tool_calls=tuple(calls),
            finish_reason=tool_calls_finish(reason, bool(calls)),
            usage=usage,
            provider=self.provider_type,
            model=model,
            request_id=str(request_id) if request_id else None,
            provider_data=provider_data,
            reasoning="".join(thoughts) or None,
        )

    def new_stream_parser(
        self, *, model: str, provider: str = "", request: AIRequest | None = None
    ) -> GoogleStreamParser:
        """A parser for one ``streamGenerateContent?alt=sse`` stream."""
        return GoogleStreamParser(model=model, provider=provider)

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> ProviderError:
        """400 ``API_KEY_INVALID`` is an auth error; 429 ``RESOURCE_EXHAUSTED`` a rate limit
        (``RetryInfo`` gives the pause) or, when a quota is used up for the day or is zero, a
        quota error; 503 unavailable; 504 timeout. Never raises."""
        try:
            payload = decode_json_body(body)
            if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                return _error_from_payload(status, payload, headers, provider=provider)
            cls = error_for_status(status)
            return cls(
                error_message(status, None, body_snippet(body) or None),
                provider=provider or None,
                status=status,
                retry_after=retry_after_from_headers(headers) if cls.retryable else None,
            )
        except Exception:  # classification must never fail, whatever the body holds
            return error_for_status(status)(
                f"HTTP {status}", provider=provider or None, status=status
            )


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = int(raw.get("promptTokenCount") or 0)
    thoughts = int(raw.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=int(raw.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=min(int(raw.get("cachedContentTokenCount") or 0), prompt),
        reasoning_tokens=thoughts,
    )


def _thinks(info: Any) -> bool:
    caps = getattr(info, "capabilities", None)
    return caps is None or ProviderCapability.REASONING in caps


_LEVELS = {"minimal": "minimal", "low": "low", "medium": "medium", "none": "minimal"}


def _thinking_config(reasoning: Reasoning, info: Any) -> dict[str, Any]:
    """Gemini 3 takes a level (it cannot switch thinking off: ``none`` is ``minimal``);
    Gemini 2.5 a token budget (0 switches it off where the model allows)."""
    caps = getattr(info, "capabilities", None) or frozenset()
    config: dict[str, Any] = {}
    if ProviderCapability.REASONING_EFFORT in caps and reasoning.budget_tokens is None:
        if reasoning.effort is not None:
            config["thinkingLevel"] = _LEVELS.get(reasoning.effort, "high")
    else:
        config["thinkingBudget"] = thinking_budget(reasoning)
    if reasoning.enabled:
        config["includeThoughts"] = reasoning.include_thoughts
    return config


class GoogleStreamParser(StreamParser):
    """``data: {GenerateContentResponse}`` events; the stream simply ends after the one that
    carries ``finishReason``."""

    provider_type = ProviderType.GOOGLE

    def __init__(self, *, model: str, provider: str = "") -> None:
        super().__init__(model=model, provider=provider)
        self._calls = 0
        self._thoughts = 0

    @property
    def usage(self) -> Usage:
        """The last chunk's counts; while no output count came, thoughts plus an estimate."""
        if self._reported_output is not None:
            return super().usage
        return self._usage(self._thoughts + estimate_tokens(self._generated_chars))

    def feed(self, event: str, data: str) -> list[StreamChunk]:
        """One SSE event (a whole ``GenerateContentResponse``) -> chunks."""
        if self._completed:
            return []
        payload = self._load(data)
        if not isinstance(payload, dict):
            raise wrong_shape("stream event is not a JSON object")
        if "error" in payload and "candidates" not in payload:
            raise _error_from_payload(None, payload, None, provider=self._provider)
        try:
            return self._chunks(payload)
        except SHAPE_ERRORS as exc:
            raise wrong_shape("GenerateContentResponse", exc) from None

    def _chunks(self, payload: dict[str, Any]) -> list[StreamChunk]:
        if payload.get("responseId") and not self._request_id:
            self._request_id = str(payload["responseId"])
        usage = payload.get("usageMetadata")
        if isinstance(usage, dict):
            self._input_tokens = int(usage.get("promptTokenCount") or 0)
            self._cached_tokens = int(usage.get("cachedContentTokenCount") or 0)
            self._thoughts = int(usage.get("thoughtsTokenCount") or 0)
            self._reasoning_tokens = self._thoughts
            if usage.get("candidatesTokenCount") is not None:
                self._reported_output = int(usage["candidatesTokenCount"]) + self._thoughts
        out: list[StreamChunk] = []
        candidates = payload.get("candidates") or []
        if not candidates:
            if (payload.get("promptFeedback") or {}).get("blockReason"):
                self._finish_reason = "content_filter"
            return out
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            call = part.get("functionCall")
            if call is not None:
                name = str(call["name"])
                args = call.get("args") or {}
                if not isinstance(args, dict):
                    raise TypeError("functionCall.args is not an object")
                delta = ToolCallDelta(
                    index=self._calls,
                    id=_call_id(call, self._calls, name),
                    name=name,
                    arguments=json.dumps(args),
                    provider_data=_signature(part),
                )
                self._calls += 1
                out.append(self._tool_chunk([delta]))
            elif part.get("text") and part.get("thought"):
                out.append(self._reasoning_chunk(str(part["text"])))
            elif part.get("text"):
                out.append(self._text_chunk(str(part["text"])))
            signature = _signature(part) if call is None else None
            if signature:
                # A signature on a text part must go back with the next turn, as in
                # parse_response; the final chunk carries it.
                self._provider_data = signature
        if candidate.get("finishReason"):
            self._finish_reason = _finish_reason(candidate["finishReason"])
        return out

    def finish(self) -> list[StreamChunk]:
        """At end of input: the final chunk if a ``finishReason`` came, else an interruption."""
        if self._completed:
            return []
        if self._finish_reason is not None:
            return [self._final_chunk()]
        raise self._interrupted("a chunk with finishReason")


GOOGLE = GoogleAdapter()
