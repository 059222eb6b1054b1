"""The Gemini adapter against recorded Gemini traffic.

Each recorded request is rebuilt from the router request a caller would have made;
``contents`` and ``systemInstruction`` must be identical. Normalised first, each a documented
choice: pydantic-ai wraps a tool's text result as ``{"return_value": ...}`` where we send
``{"output": ...}`` (the key Google documents); the genai SDK re-encodes ``thoughtSignature``
as URL-safe base64 where we send back the bytes exactly as received; ``generationConfig`` and
``toolConfig`` are compared on the keys we set (pydantic-ai adds ``responseModalities`` and
lists every tool in ``allowedFunctionNames`` for "required"); a tool whose parameters are an
empty object has no ``parameters`` (router.tools' choice).

Not replayed: the simonw JSON-array cassettes (``:streamGenerateContent`` without
``alt=sse``), a mode the router does not use; their elements are still checked to be the same
``GenerateContentResponse`` values the SSE mode carries.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from wire import WIRE, load, run_stream, sse

from router.errors import (
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from router.models import AIRequest, MCPTool, ProviderType, ToolCall, Usage
from router.providers import assemble_stream, get_adapter
from router.providers.google import GOOGLE

BASE = "https://generativelanguage.googleapis.com"

COUNTRY = MCPTool(
    name="get_user_country",
    description="",
    inputSchema={"additionalProperties": False, "properties": {}, "type": "object"},
)
FINAL = MCPTool(
    name="final_result",
    description="The final response which ends this conversation",
    inputSchema={
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "type": "object",
    },
)
CAPITAL = MCPTool(
    name="get_capital",
    description="Get the capital of a country.",
    inputSchema={
        "properties": {"country": {"description": "The country name.", "type": "string"}},
        "required": ["country"],
        "type": "object",
    },
)
TEMPERATURE = MCPTool(
    name="get_temperature",
    description="Get the temperature in a city.",
    inputSchema={
        "properties": {"city": {"description": "The city name.", "type": "string"}},
        "required": ["city"],
        "type": "object",
    },
)
GET_COUNTRY = MCPTool(
    name="get_country",
    description="",
    inputSchema={"additionalProperties": False, "properties": {}, "type": "object"},
)
SIGNATURE = json.loads(
    load(
        "gemini",
        "pydanticai__tools_stream_sse_thought_signature__test_google_streaming_tool_call_thought_signature",
    )[0]
    .body.decode()
    .split("data: ", 2)[1]
    .split("\r\n")[0]
)["candidates"][0]["content"]["parts"][0]["thoughtSignature"]


def _system(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _call(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {"id": call_id, "function": {"name": name, "arguments": arguments}, **extra}


def _turn(calls: list[dict[str, Any]], results: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "assistant", "tool_calls": calls}]
    out += [
        {"role": "tool", "tool_call_id": call["id"], "content": result}
        for call, result in zip(calls, results, strict=True)
    ]
    return out


CAPITAL_CALL = _call(
    "pyd_ai_0e1a07b3c2b64d2ab3ad2efbe18e1b97", "get_capital", '{"country": "France"}'
)
TEMPERATURE_CALL = _call(
    "pyd_ai_98b25d994c5648df82f683188629229d", "get_temperature", '{"city": "Paris"}'
)
ITER = "pydanticai__tools_stream_sse_roundtrip__test_google_model_iter_stream"
ITER_START = [
    _system("You are a helpful chatbot."),
    _user("What is the temperature of the capital of France?"),
]
THOUGHT = "pydanticai__tools_stream_sse_thought_signature__test_google_streaming_tool_call_thought_signature"
THOUGHT_USER = _user("What is the capital of the user country? Call the tool")

REPLAYS = [
    (
        "pydanticai__plain_nonstream__test_google_model",
        0,
        AIRequest(messages=[_system("You are a chatbot."), _user("Hello!")]),
    ),
    (
        "pydanticai__plain_nonstream_max_tokens__test_google_model_max_tokens",
        0,
        AIRequest(
            messages=[
                _system("You are a helpful chatbot."),
                _user("What is the capital of France?"),
            ],
            max_tokens=5,
        ),
    ),
    (
        "pydanticai__tools_nonstream_roundtrip__test_google_tool_output",
        0,
        AIRequest(
            messages=[_user("What is the largest city in the user country?")],
            tools=[COUNTRY, FINAL],
            tool_choice="required",
        ),
    ),
    (
        "pydanticai__tools_nonstream_roundtrip__test_google_tool_output",
        1,
        AIRequest(
            messages=[
                _user("What is the largest city in the user country?"),
                *_turn(
                    [_call("pyd_ai_3fa5644dae1d4aad997ae39c70006fbd", "get_user_country", "{}")],
                    ["Mexico"],
                ),
            ],
            tools=[COUNTRY, FINAL],
            tool_choice="required",
        ),
    ),
    (
        "pydanticai__plain_stream_sse__test_google_model_stream",
        0,
        AIRequest(
            messages=[
                _system("You are a helpful chatbot."),
                _user("What is the capital of France?"),
            ],
            temperature=0.0,
            stream=True,
        ),
    ),
    (
        "pydanticai__stream_sse_usage_per_chunk__test_google_stream_usage_is_live_mid_stream",
        0,
        AIRequest(
            messages=[_user("Count from 1 to 30, one number per line, digits only.")], stream=True
        ),
    ),
    (ITER, 0, AIRequest(messages=ITER_START, tools=[CAPITAL, TEMPERATURE], stream=True)),
    (
        ITER,
        1,
        AIRequest(
            messages=[*ITER_START, *_turn([CAPITAL_CALL], ["Paris"])],
            tools=[CAPITAL, TEMPERATURE],
            stream=True,
        ),
    ),
    (
        ITER,
        2,
        AIRequest(
            messages=[
                *ITER_START,
                *_turn([CAPITAL_CALL], ["Paris"]),
                *_turn([TEMPERATURE_CALL], ["30°C"]),
            ],
            tools=[CAPITAL, TEMPERATURE],
            stream=True,
        ),
    ),
    (THOUGHT, 0, AIRequest(messages=[THOUGHT_USER], tools=[GET_COUNTRY], stream=True)),
    (
        THOUGHT,
        1,
        AIRequest(
            messages=[
                THOUGHT_USER,
                *_turn(
                    [
                        _call(
                            "pyd_ai_29bf73b69e02448588e15893d47a3e7e",
                            "get_country",
                            "{}",
                            provider_data={"thoughtSignature": SIGNATURE},
                        )
                    ],
                    ["Mexico"],
                ),
            ],
            tools=[GET_COUNTRY],
            stream=True,
        ),
    ),
    (
        "ddtrace__plain_stream_sse_raw__generate_content_stream",
        0,
        AIRequest(messages=[_user("Why is the sky blue? Explain in 2-3 sentences.")], stream=True),
    ),
    (
        "pydanticai__error_404_not_found__test_model_name_suggestion_google",
        0,
        AIRequest(messages=[_user("hello")]),
    ),
]


def _model(uri: str) -> str:
    return uri.split("/models/")[1].split(":")[0]


def _normalised_contents(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    contents = json.loads(json.dumps(contents))
    for turn in contents:
        for part in turn["parts"]:
            response = (part.get("functionResponse") or {}).get("response")
            if response is not None and set(response) == {"return_value"}:
                part["functionResponse"]["response"] = {"output": response["return_value"]}
            if "thoughtSignature" in part:
                urlsafe = part["thoughtSignature"]
                part["thoughtSignature"] = urlsafe.replace("-", "+").replace("_", "/")
    return contents


def _normalised_declarations(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for declaration in recorded:
        declaration = dict(declaration)
        parameters = declaration.get("parameters")
        if parameters == {"properties": {}, "type": "OBJECT"}:
            del declaration["parameters"]
        out.append(declaration)
    return out


def _assert_subset(built: Any, recorded: Any, path: str) -> None:
    if isinstance(built, dict):
        assert isinstance(recorded, dict), path
        for key, value in built.items():
            assert key in recorded, f"{path}.{key}: we send it, the recording does not"
            _assert_subset(value, recorded[key], f"{path}.{key}")
    else:
        assert built == recorded, path


@pytest.mark.parametrize(
    ("name", "number", "request_"),
    [pytest.param(*replay, id=f"{replay[0]}#{replay[1]}") for replay in REPLAYS],
)
def test_build_request_reproduces_recorded_body(name, number, request_):
    interaction = load("gemini", name)[number]
    recorded = interaction.request_json

    built = GOOGLE.build_request(
        request_,
        model=_model(interaction.uri),
        api_key="AIza-test",
        base_url=BASE,
        stream=request_.stream,
    )

    assert built.url == interaction.uri
    body = built.json
    assert set(body) <= set(recorded), "we send keys the recording does not have"
    assert body["contents"] == _normalised_contents(recorded["contents"])
    assert body.get("systemInstruction") == recorded.get("systemInstruction")
    _assert_subset(
        body.get("generationConfig", {}), recorded.get("generationConfig", {}), "generationConfig"
    )
    if "toolConfig" in body:
        _assert_subset(body["toolConfig"], recorded["toolConfig"], "toolConfig")
    if "tools" in recorded:
        built_declarations = body["tools"][0]["functionDeclarations"]
        recorded_declarations = recorded["tools"][0]["functionDeclarations"]
        if any("parameters_json_schema" in d for d in recorded_declarations):
            # pydantic-ai sent JSON Schema there; we send the Schema message: names must agree.
            assert [d["name"] for d in built_declarations] == [
                d["name"] for d in recorded_declarations
            ]
        else:
            assert built_declarations == _normalised_declarations(recorded_declarations)
    else:
        assert "tools" not in body


def test_headers_url_and_models_request():
    request = AIRequest(messages=[_user("hi")])
    built = GOOGLE.build_request(
        request,
        model="models/gemini-2.5-flash",
        api_key="AIzaSECRET123456",
        base_url=BASE + "/",
        stream=True,
    )
    assert built.url == BASE + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert built.headers == {
        "content-type": "application/json",
        "x-goog-api-key": "AIzaSECRET123456",
    }
    assert "AIzaSECRET" not in repr(built)
    probe = GOOGLE.build_models_request(api_key="AIzaSECRET123456", base_url=BASE)
    assert (probe.method, probe.url, probe.json) == ("GET", BASE + "/v1beta/models", None)
    assert get_adapter(ProviderType.GOOGLE) is GOOGLE


def test_translation_rules():
    request = AIRequest(
        messages=[
            _system("one"),
            {"role": "developer", "content": "two"},
            _user("look"),
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/p.webp"}},
                ],
            },
            {
                "role": "assistant",
                "content": "calling",
                "tool_calls": [_call("c1", "a", '{"k": [1]}'), _call("c2", "b", "")],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"rows": 3}'},
            {"role": "tool", "tool_call_id": "c2", "content": "[1, 2]"},
            {"role": "assistant", "content": "done", "provider_data": {"thoughtSignature": "sig"}},
        ],
        tools=[
            MCPTool(
                name="a",
                inputSchema={
                    "type": "object",
                    "properties": {"k": {"type": "array", "items": {"type": "integer"}}},
                },
            ),
            MCPTool(name="b", inputSchema={"type": "object", "properties": {}}),
        ],
        tool_choice="a",
        max_tokens=10,
        temperature=0.3,
        top_p=0.9,
        stop=("X", "Y"),
    )
    body = GOOGLE.build_request(request, model="g", api_key="k", base_url=BASE, stream=False).json
    assert body["systemInstruction"] == {"role": "user", "parts": [{"text": "one\n\ntwo"}]}
    assert body["generationConfig"] == {
        "maxOutputTokens": 10,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["X", "Y"],
    }
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a"]}
    }
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["a", "b"]
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "look"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/p.webp"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "calling"},
                {"functionCall": {"id": "c1", "name": "a", "args": {"k": [1]}}},
                {"functionCall": {"id": "c2", "name": "b", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "c1", "name": "a", "response": {"rows": 3}}},
                {"functionResponse": {"id": "c2", "name": "b", "response": {"output": "[1, 2]"}}},
            ],
        },
        {"role": "model", "parts": [{"text": "done", "thoughtSignature": "sig"}]},
    ]


@pytest.mark.parametrize(
    ("choice", "mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")]
)
def test_tool_choice_modes(choice, mode):
    request = AIRequest(messages=[_user("x")], tools=[CAPITAL], tool_choice=choice)
    body = GOOGLE.build_request(request, model="g", api_key="k", base_url=BASE, stream=False).json
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


# --- responses -----------------------------------------------------------------------------


def test_parse_plain_response_counts_thoughts_as_output():
    body = load("gemini", REPLAYS[0][0])[0].json()
    response = GOOGLE.parse_response(body, model="gemini-2.5-flash")
    assert response.content == "Hello! How can I help you today?"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=9, output_tokens=43, reasoning_tokens=34)
    assert response.request_id == "bzlXaa_EE_aHqtsPi_zw8Ao"
    assert response.provider is ProviderType.GOOGLE


def test_parse_max_tokens_response():
    response = GOOGLE.parse_response(load("gemini", REPLAYS[1][0])[0].json(), model="m")
    assert response.content == "The capital of France is"
    assert response.finish_reason == "length"
    assert response.usage == Usage(input_tokens=15, output_tokens=5)


def test_parse_function_call_responses():
    first, second = load("gemini", REPLAYS[2][0])
    response = GOOGLE.parse_response(first.json(), model="m")
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (ToolCall(id="call_0_get_user_country", name="get_user_country"),)
    response = GOOGLE.parse_response(second.json(), model="m")
    assert response.tool_calls == (
        ToolCall(
            id="call_0_final_result",
            name="final_result",
            arguments={"city": "Mexico City", "country": "Mexico"},
        ),
    )


def test_text_signature_is_kept_for_the_next_turn():
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking", "thought": True},
                        {"text": "Hi", "thoughtSignature": "c2ln"},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    response = GOOGLE.parse_response(body, model="m")
    assert response.content == "Hi"
    assert response.to_message()["provider_data"] == {"thoughtSignature": "c2ln"}


def test_text_signature_survives_a_stream_too():
    parser = GOOGLE.new_stream_parser(model="m")
    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "H"}]}}]}
    last = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "i", "thoughtSignature": "c2ln"}]},
                "finishReason": "STOP",
            }
        ]
    }
    chunks = parser.feed("message", json.dumps(first)) + parser.feed("message", json.dumps(last))
    chunks += parser.finish()
    response = assemble_stream(chunks)
    assert response.content == "Hi"
    assert response.to_message()["provider_data"] == {"thoughtSignature": "c2ln"}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
    ],
)
def test_finish_reasons(reason, expected):
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert GOOGLE.parse_response(body, model="m").finish_reason == expected


def test_blocked_prompt_is_content_filter():
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    response = GOOGLE.parse_response(body, model="m")
    assert (response.content, response.finish_reason, response.usage.input_tokens) == (
        "",
        "content_filter",
        4,
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": "x"}}]}}]},
        {"candidates": "nope"},
        [1],
    ],
)
def test_wrong_shapes_are_malformed(body):
    with pytest.raises(MalformedResponseError):
        GOOGLE.parse_response(body, model="m")


@pytest.mark.parametrize("piece_size", [None, 1, 9])
def test_recorded_crlf_text_streams(piece_size):
    interaction = load("gemini", REPLAYS[4][0])[0]
    chunks = run_stream(GOOGLE.new_stream_parser(model="m"), interaction.body, piece_size)
    response = assemble_stream(chunks)
    assert response.content == "The capital of France is Paris.\n"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=13, output_tokens=8)  # last chunk wins: 15 -> 13

    interaction = load("gemini", REPLAYS[5][0])[0]
    response = assemble_stream(run_stream(GOOGLE.new_stream_parser(model="m"), interaction.body))
    assert response.content == "\n".join(str(n) for n in range(1, 31))
    assert response.usage == Usage(input_tokens=18, output_tokens=115, reasoning_tokens=35)

    interaction = load("gemini", "ddtrace__plain_stream_sse_raw__generate_content_stream")[0]
    response = assemble_stream(run_stream(GOOGLE.new_stream_parser(model="m"), interaction.body))
    assert response.content.startswith("The sky appears blue due to")
    assert response.usage == Usage(input_tokens=14, output_tokens=51)


def test_recorded_function_call_streams():
    interactions = load("gemini", ITER)
    responses = [
        assemble_stream(run_stream(GOOGLE.new_stream_parser(model="m"), i.body))
        for i in interactions
    ]
    assert responses[0].tool_calls == (
        ToolCall(id="call_0_get_capital", name="get_capital", arguments={"country": "France"}),
    )
    assert responses[0].finish_reason == "tool_calls"
    assert responses[1].tool_calls[0].arguments == {"city": "Paris"}
    assert responses[2].content == "The temperature in Paris is 30°C.\n"
    assert responses[2].usage == Usage(input_tokens=79, output_tokens=12)


def test_recorded_thought_signature_rides_on_the_tool_call():
    first, second = load("gemini", THOUGHT)
    chunks = run_stream(GOOGLE.new_stream_parser(model="gemini-3-pro-preview"), first.body)
    (delta,) = [d for c in chunks for d in c.tool_call_deltas]
    assert (delta.index, delta.id, delta.name, delta.arguments) == (
        0,
        "call_0_get_country",
        "get_country",
        "{}",
    )
    response = assemble_stream(chunks)
    assert response.tool_calls == (
        ToolCall(
            id="call_0_get_country",
            name="get_country",
            provider_data={"thoughtSignature": SIGNATURE},
        ),
    )
    assert response.usage == Usage(input_tokens=29, output_tokens=212, reasoning_tokens=202)
    # The signature goes back unchanged in the next turn.
    message = response.to_message()
    request = AIRequest(
        messages=[
            THOUGHT_USER,
            message,
            {"role": "tool", "tool_call_id": "call_0_get_country", "content": "Mexico"},
        ]
    )
    body = GOOGLE.build_request(request, model="g", api_key="k", base_url=BASE, stream=True).json
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE

    response = assemble_stream(run_stream(GOOGLE.new_stream_parser(model="m"), second.body))
    assert response.content == "The capital of Mexico is Mexico City."
    assert response.usage == Usage(input_tokens=257, output_tokens=8)


def test_json_array_elements_are_the_same_responses():
    interaction = load(
        "gemini", "simonw-llm-gemini__plain_stream_JSONARRAY_no_alt_sse_raw_gzip__test_prompt"
    )[0]
    parser = GOOGLE.new_stream_parser(model="m")
    chunks = [
        c
        for element in json.loads(interaction.body)
        for c in parser.feed("message", json.dumps(element))
    ]
    chunks += parser.finish()
    response = assemble_stream(chunks)
    assert response.content == "Scoop"  # the thought part is not part of the answer
    assert response.usage.output_tokens == 2 + 291


def test_usage_before_output_is_reported_estimates_and_adds_thoughts():
    parser = GOOGLE.new_stream_parser(model="m")
    event = {
        "candidates": [{"content": {"parts": [{"text": "abcdefgh"}]}}],
        "usageMetadata": {"promptTokenCount": 7, "thoughtsTokenCount": 100},
    }
    parser.feed("message", json.dumps(event))
    assert parser.started
    assert parser.usage == Usage(input_tokens=7, output_tokens=102, reasoning_tokens=100)
    with pytest.raises(StreamInterruptedError, match="finishReason"):
        parser.finish()


def test_mid_stream_error_payload_is_classified():
    parser = GOOGLE.new_stream_parser(model="m")
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(ServiceUnavailableError):
        parser.feed("message", json.dumps(error))


def test_undecodable_stream_data_is_malformed():
    body = sse((None, '{"candidates": [{"content": '), newline="\r\n")
    with pytest.raises(MalformedResponseError):
        run_stream(GOOGLE.new_stream_parser(model="m"), body)


# --- errors --------------------------------------------------------------------------------

OBSERVED = {
    entry["status"]: entry["body"]
    for entry in json.loads((WIRE / "gemini" / "errors_observed.json").read_text())
    if isinstance(entry.get("status"), int) and "body" in entry
}


def _status(code: int, status: str, message: str = "m", details: list[Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}, indent=2).encode()


PER_MINUTE = [
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}
        ],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"},
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after"),
    [
        (400, {}, json.dumps(OBSERVED[400]).encode(), AuthenticationError, None),
        (
            400,
            {},
            _status(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
            AuthenticationError,
            None,
        ),
        (
            400,
            {},
            _status(400, "INVALID_ARGUMENT", "Invalid JSON payload"),
            InvalidRequestError,
            None,
        ),
        (403, {}, _status(403, "PERMISSION_DENIED"), PermissionDeniedError, None),
        (429, {}, json.dumps(OBSERVED[429]).encode(), QuotaExceededError, 36.0),
        (
            429,
            {},
            _status(429, "RESOURCE_EXHAUSTED", "Quota exceeded", PER_MINUTE),
            RateLimitError,
            12.5,
        ),
        (
            429,
            {},
            _status(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric: x, limit: 0"),
            QuotaExceededError,
            None,
        ),
        (429, {"Retry-After": "4"}, _status(429, "RESOURCE_EXHAUSTED"), RateLimitError, 4.0),
        (503, {}, json.dumps(OBSERVED[503]).encode(), ServiceUnavailableError, None),
        (500, {}, _status(500, "INTERNAL"), ServiceUnavailableError, None),
        (504, {}, _status(504, "DEADLINE_EXCEEDED"), ProviderTimeoutError, None),
        (502, {}, b"<html><title>502</title></html>", ServiceUnavailableError, None),
        (400, {}, b"", InvalidRequestError, None),
        (404, {}, b"\xc3\x28", ModelNotFoundError, None),
        (429, {}, b'{"error": {"details": "not a list", "code": "x"}}', RateLimitError, None),
    ],
)
def test_error_table(status, headers, body, cls, retry_after):
    error = GOOGLE.classify_error(status, headers, body, provider="gemini")
    assert type(error) is cls
    assert error.retry_after == retry_after
    assert error.status == status


def test_recorded_404_is_model_not_found():
    interaction = load(
        "gemini", "pydanticai__error_404_not_found__test_model_name_suggestion_google"
    )[0]
    error = GOOGLE.classify_error(404, interaction.headers, interaction.body, provider="gemini")
    assert type(error) is ModelNotFoundError
    assert "gemini-3.6-flahs is not found" in str(error)


def test_key_in_error_message_is_scrubbed():
    body = _status(
        400,
        "INVALID_ARGUMENT",
        "API key AIzaFAKEDUMMYDUMMYDUMMYDUMMY not valid; url ?key=AIzaFAKEXYZXYZXYZ",
    )
    error = GOOGLE.classify_error(400, {}, body, provider="gemini")
    assert type(error) is AuthenticationError
    assert "DUMMY" not in str(error) and "XYZXYZ" not in str(error)
