"""The Gemini door: its pure translations, then the official ``google-genai`` SDK against a
running bridge with every provider type behind it."""

from __future__ import annotations

import json
from typing import Any

import door_fixtures
import pytest
import requests
from door_fixtures import PROVIDERS, THINKERS, TOKEN, WEATHER_EXAMPLE, WEATHER_SCHEMA, own_bridge
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes
from support import MODELS

from router.bridge.errors import BodyError, Failure
from router.bridge.gemini import GeminiEvents, failure_body, generate_request, response_body
from router.bridge.wire import Secrets
from router.models import AIResponse, StreamChunk, ToolCall, ToolCallDelta, Usage

bridge = door_fixtures.bridge
emu = door_fixtures.emu

FUNCTIONS = [
    gtypes.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city",
        parameters=gtypes.Schema(
            type="OBJECT", properties={"city": gtypes.Schema(type="STRING")}, required=["city"]
        ),
    ),
    gtypes.FunctionDeclaration(
        name="get_time", parameters=gtypes.Schema(type="OBJECT", properties={})
    ),
]
TOOLS = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=FUNCTIONS)])


# --- pure translations ---------------------------------------------------------------------


def test_a_generate_content_body_becomes_the_routers_request():
    request = generate_request(
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather?"}]},
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "sig-1",
                        }
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"output": "sun"}}}
                    ],
                },
            ],
            "tools": [
                {
                    "function_declarations": [
                        {
                            "name": "get_weather",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {"city": {"type": "STRING", "nullable": True}},
                            },
                        }
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5, "topK": 3},
        },
        "fast",
    )
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool"]
    (call,) = request.messages[2].tool_calls
    assert call.provider_data == {"thoughtSignature": "sig-1"}
    assert request.messages[3].tool_call_id == call.id and request.messages[3].content == "sun"
    assert request.tools[0].inputSchema == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
    }
    assert (request.tool_choice, request.max_tokens, request.model) == ("required", 64, "fast")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"parts": [{"text": "x"}]}], "foo": 1}, 'Unknown name "foo"'),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"bogus": 1}},
            'Unknown name "bogus"',
        ),
        (
            {"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
            "no function call named 'f'",
        ),
        ({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}, "only"),
        # Found by the bridge fuzzer: a list where an object belongs was a 500.
        (
            {"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": []}},
            "functionCallingConfig must be an object",
        ),
        ({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": "AUTO"}, "toolConfig must be"),
    ],
)
def test_bodies_google_refuses_are_refused(body, message):
    with pytest.raises(BodyError, match=message):
        generate_request(body, "m")


def test_an_answer_is_a_response_the_sdk_reads():
    response = AIResponse(
        tool_calls=(
            ToolCall(
                id="c1",
                name="get_weather",
                arguments={"city": "Paris"},
                provider_data={"thoughtSignature": "c2ln"},
            ),
        ),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=10, output_tokens=3),
        model="claude-3-haiku-20240307",
    )
    parsed = gtypes.GenerateContentResponse.model_validate(response_body(response))
    (call,) = parsed.function_calls
    assert (call.id, call.name, call.args) == ("c1", "get_weather", {"city": "Paris"})
    assert parsed.candidates[0].content.parts[0].thought_signature == b"sig"  # back unchanged
    assert parsed.usage_metadata.total_token_count == 13


def test_chunks_become_a_streamed_json_array_or_sse():
    def run(events: GeminiEvents) -> bytes:
        raw = events.chunk(StreamChunk(content="Hi", model="gpt-4o-mini"))
        raw += events.chunk(
            StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, id="c", name="f", arguments="{"),))
        )
        raw += events.chunk(StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, arguments="}"),)))
        return raw + events.chunk(StreamChunk(is_complete=True, finish_reason="tool_calls"))

    array = json.loads(run(GeminiEvents(Secrets(None), sse=False)))
    assert [item["candidates"][0]["content"]["parts"] for item in array] == [
        [{"text": "Hi"}],
        [{"functionCall": {"id": "c", "name": "f", "args": {}}}],
    ]
    assert array[-1]["candidates"][0]["finishReason"] == "STOP"
    sse = run(GeminiEvents(Secrets(None), sse=True)).decode()
    assert sse.count("\r\n\r\n") == 2 and sse.startswith("data: {")
    error = GeminiEvents(Secrets(None), sse=False).error({"type": "RateLimitError", "message": "x"})
    assert json.loads(error) == [
        {"error": {"code": 429, "message": "x", "status": "RESOURCE_EXHAUSTED"}}
    ]


def test_failures_use_googles_envelope():
    assert failure_body(Failure(402, "BudgetExceededError", "over", {})) == {
        "error": {"code": 402, "message": "over", "status": "RESOURCE_EXHAUSTED"}
    }


# --- the SDK against a running bridge ------------------------------------------------------


@pytest.fixture(params=["v1", "v1beta"])
def sdk(request, bridge) -> genai.Client:
    return client(bridge, version=request.param)


def client(bridge: Any, key: str = TOKEN, version: str = "v1", **headers: str) -> genai.Client:
    options = gtypes.HttpOptions(
        base_url=bridge.url,
        api_version=version,
        headers=headers or None,
        retry_options=gtypes.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=key, http_options=options)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_answer_from_each_provider(emu, sdk, provider):
    reply = sdk.models.generate_content(model=MODELS[provider], contents="Hi there")
    assert reply.text == "Echo: Hi there"
    assert reply.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert reply.usage_metadata.candidates_token_count > 0
    assert reply.sdk_http_response.headers["x-router-provider"] == provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_answer_from_each_provider(emu, bridge, provider):
    sdk = client(bridge)
    chunks = list(sdk.models.generate_content_stream(model=MODELS[provider], contents="a b c"))
    assert "".join(c.text or "" for c in chunks) == "Echo: a b c"
    assert chunks[-1].candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_parallel_function_calls_round_trip_with_each_provider(emu, bridge, provider, stream):
    sdk = client(bridge)
    model = MODELS[provider]
    contents: list[Any] = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="get_weather get_time")])
    ]
    if stream:
        parts = [
            part
            for chunk in sdk.models.generate_content_stream(
                model=model, contents=contents, config=TOOLS
            )
            for part in chunk.candidates[0].content.parts or []
        ]
        turn = gtypes.Content(role="model", parts=parts)
    else:
        turn = sdk.models.generate_content(model=model, contents=contents, config=TOOLS)
        turn = turn.candidates[0].content
    calls = [part.function_call for part in turn.parts if part.function_call]
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", {"city": "city"}),
        ("get_time", {}),
    ]
    contents.append(turn)  # the SDK's own content goes back unchanged
    answers = [
        gtypes.Part.from_function_response(name=c.name, response={"result": c.name}) for c in calls
    ]
    contents.append(gtypes.Content(role="user", parts=answers))
    final = sdk.models.generate_content(model=model, contents=contents, config=TOOLS)
    assert final.text == "Tool results: get_weather; get_time"


def test_an_alias_is_answered_by_the_provider_the_headers_allow(emu, bridge):
    sdk = client(bridge, **{"x-router-providers": "anthropic"})
    reply = sdk.models.generate_content(model="fast", contents="use get_time", config=TOOLS)
    assert reply.sdk_http_response.headers["x-router-provider"] == "anthropic"
    assert reply.function_calls[0].name == "get_time"


def test_models_and_token_counts(emu, sdk):
    names = [model.name for model in sdk.models.list()]
    assert {"models/fast", "models/" + MODELS["google"], "models/" + MODELS["openai"]} <= set(names)
    assert sdk.models.get(model="fast").output_token_limit > 0
    with pytest.raises(genai_errors.ClientError) as info:
        sdk.models.get(model="no-such-model")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    assert sdk.models.count_tokens(model="fast", contents="hello world").total_tokens > 0


def test_the_streamed_json_array_without_alt_sse(emu, bridge):
    reply = requests.post(
        f"{bridge.url}/v1beta/models/{MODELS['openai']}:streamGenerateContent",
        params={"key": TOKEN},
        json={"contents": [{"parts": [{"text": "x y"}]}]},
        timeout=10,
    )
    assert reply.headers["content-type"].startswith("application/json")
    items = reply.json()
    assert "".join(p["text"] for i in items for p in i["candidates"][0]["content"]["parts"]) == (
        "Echo: x y"
    )


def test_errors_surface_as_the_sdks_own_exceptions(emu, bridge):
    bad = client(bridge, key="wrong-key")
    with pytest.raises(genai_errors.ClientError) as info:
        bad.models.generate_content(model="fast", contents="x")
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in info.value.message
    sdk = client(bridge)
    with pytest.raises(genai_errors.ClientError, match="candidateCount"):
        sdk.models.generate_content(
            model="fast", contents="x", config=gtypes.GenerateContentConfig(candidate_count=2)
        )
    raw = requests.post(
        f"{bridge.url}/v1beta/models/fast:generateContent",
        headers={"x-goog-api-key": TOKEN},
        json={"contents": [{"parts": [{"text": "x"}]}], "unknownField": 1},
        timeout=10,
    )
    assert raw.status_code == 400 and raw.json()["error"]["status"] == "INVALID_ARGUMENT"
    budget = client(bridge, **{"x-router-budget-limit": "0.0000001"})
    with pytest.raises(genai_errors.ClientError) as info:
        budget.models.generate_content(model="fast", contents="x")
    assert info.value.code == 402


def test_all_providers_down_is_a_server_error(emulator):
    for provider in PROVIDERS:
        emulator.add_fault(provider=provider, kind="unavailable")
    with own_bridge(emulator) as server:
        sdk = client(server)
        with pytest.raises(genai_errors.ServerError) as info:
            sdk.models.generate_content(model="fast", contents="x")
    assert (info.value.code, info.value.status) == (503, "UNAVAILABLE")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_output_from_each_provider(emu, bridge, provider):
    sdk = client(bridge)
    config = gtypes.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=WEATHER_SCHEMA
    )
    reply = sdk.models.generate_content(model=MODELS[provider], contents="Weather?", config=config)
    assert json.loads(reply.text) == WEATHER_EXAMPLE


@pytest.mark.parametrize("provider", sorted(THINKERS))
def test_thought_summaries_from_each_thinking_provider(emu, bridge, provider):
    sdk = client(bridge)
    config = gtypes.GenerateContentConfig(
        thinking_config=gtypes.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
    )
    reply = sdk.models.generate_content(model=THINKERS[provider], contents="Hi", config=config)
    thought, answer = reply.candidates[0].content.parts
    assert (thought.thought, thought.text) == (True, "Thinking about: Hi")
    assert reply.text == "Echo: Hi" and reply.usage_metadata.thoughts_token_count > 0
    chunks = list(
        sdk.models.generate_content_stream(model=THINKERS[provider], contents="Hi", config=config)
    )
    parts = [part for chunk in chunks for part in chunk.candidates[0].content.parts or []]
    assert "".join(p.text for p in parts if p.thought) == "Thinking about: Hi"


def test_no_key_is_permission_denied_as_google_answers(emu, bridge):
    reply = requests.post(
        f"{bridge.url}/v1beta/models/fast:generateContent",
        json={"contents": [{"parts": [{"text": "x"}]}]},
        timeout=10,
    )
    assert reply.status_code == 403
    assert reply.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "x-goog-api-key" in reply.json()["error"]["message"]
