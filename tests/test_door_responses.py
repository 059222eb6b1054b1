"""The OpenAI Responses door: its pure translations, then the official ``openai`` SDK's
``client.responses`` against a running bridge with every provider type behind it."""

from __future__ import annotations

import json
from typing import Any

import door_fixtures
import openai
import pydantic
import pytest
from door_fixtures import PROVIDERS, THINKERS, TOKEN, WEATHER_EXAMPLE, WEATHER_SCHEMA, own_bridge
from openai.types.responses import Response, ResponseStreamEvent
from support import MODELS

from router.bridge.errors import BodyError
from router.bridge.openai_responses import (
    ResponseEvents,
    answer_output,
    response_object,
    responses_request,
)
from router.bridge.wire import Secrets
from router.models import AIRequest, AIResponse, StreamChunk, ToolCall, ToolCallDelta, Usage

bridge = door_fixtures.bridge
emu = door_fixtures.emu

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
]


# --- pure translations ---------------------------------------------------------------------


def test_a_responses_body_becomes_the_routers_request():
    request = responses_request(
        {
            "model": "fast",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": ""},
                {"type": "function_call_output", "call_id": "c1", "output": "sun"},
                {"type": "function_call_output", "call_id": "c2", "output": "noon"},
            ],
            "tools": TOOLS,
            "tool_choice": {"type": "function", "name": "get_time"},
            "max_output_tokens": 64,
            "reasoning": {"effort": "low"},
            "text": {"format": {"type": "text"}},
            "store": False,
        }
    )
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "tool"]
    assert [c.id for c in request.messages[2].tool_calls] == ["c1", "c2"]  # one parallel turn
    assert (request.tool_choice, request.max_tokens) == ("get_time", 64)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "input": "x", "foo": 1}, "Unknown parameter: 'foo'"),
        ({"input": "x"}, "Missing required parameter: 'model'"),
        ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "keeps no responses"),
        ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "only function tools"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format"),
    ],
)
def test_bodies_openai_refuses_are_refused(body, message):
    with pytest.raises(BodyError, match=message):
        responses_request(body)


def test_an_answer_is_a_response_the_sdk_reads():
    request = AIRequest(model="fast", messages=[{"role": "user", "content": "x"}])
    answer = AIResponse(
        content="Checking.",
        tool_calls=(ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"}),),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=9, output_tokens=4),
        model="gpt-4o-mini",
    )
    body = response_object(
        request,
        response_id="resp_1",
        created=1,
        status="completed",
        output=answer_output(answer),
        usage=answer.usage,
        model=answer.model,
    )
    parsed = Response.model_validate(body)
    assert parsed.output_text == "Checking."
    call = parsed.output[1]
    assert (call.call_id, json.loads(call.arguments)) == ("c1", {"city": "Paris"})
    assert parsed.usage.total_tokens == 13


def test_chunks_become_the_semantic_event_stream():
    request = AIRequest(model="fast", stream=True, messages=[{"role": "user", "content": "x"}])
    events = ResponseEvents(Secrets(None), request)
    raw = events.chunk(StreamChunk(content="Hi", model="gpt-4o-mini"))
    raw += events.chunk(
        StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, id="c1", name="f", arguments="{}"),))
    )
    raw += events.chunk(StreamChunk(is_complete=True, finish_reason="length", usage=Usage()))
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    kinds = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        event = adapter.validate_json(data.removeprefix("data: "))  # the SDK's own models
        assert name == f"event: {event.type}"
        kinds.append(event.type)
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    failed = ResponseEvents(Secrets(None), request).error({"type": "X", "message": "down"})
    assert [b.split("\n")[0] for b in failed.decode().strip().split("\n\n")] == [
        "event: response.created",
        "event: error",
        "event: response.failed",
    ]


# --- the SDK against a running bridge ------------------------------------------------------


def client(bridge: Any, key: str = TOKEN, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=bridge.url + "/v1",
        api_key=key,
        max_retries=0,
        timeout=20,
        default_headers=headers or None,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_answer_from_each_provider(emu, bridge, provider):
    raw = client(bridge).responses.with_raw_response.create(
        model=MODELS[provider], input="Hi there", instructions="Be brief."
    )
    response = raw.parse()
    assert response.output_text == "Echo: Hi there"
    assert response.status == "completed" and response.usage.output_tokens > 0
    assert raw.headers["x-router-provider"] == provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_answer_from_each_provider(emu, bridge, provider):
    with client(bridge).responses.stream(model=MODELS[provider], input="a b c") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Echo: a b c" == final.output_text
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_parallel_function_calls_round_trip_with_each_provider(emu, bridge, provider, stream):
    sdk = client(bridge)
    conversation: list[Any] = [{"role": "user", "content": "call get_weather and get_time"}]
    ask = {"model": MODELS[provider], "tools": TOOLS}
    if stream:
        with sdk.responses.stream(input=conversation, **ask) as events:
            first = events.get_final_response()
    else:
        first = sdk.responses.create(input=conversation, **ask)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "city"}),
        ("get_time", {}),
    ]
    conversation += first.output  # the SDK's own items go back unchanged
    conversation += [
        {"type": "function_call_output", "call_id": c.call_id, "output": c.name} for c in calls
    ]
    final = sdk.responses.create(input=conversation, **ask)
    assert final.output_text == "Tool results: get_weather; get_time"


def test_an_alias_is_answered_by_the_provider_the_headers_allow(emu, bridge):
    sdk = client(bridge, **{"x-router-providers": "google", "x-router-strategy": "cost"})
    raw = sdk.responses.with_raw_response.create(model="fast", input="use get_time", tools=TOOLS)
    assert raw.headers["x-router-provider"] == "google"
    assert raw.parse().output[0].name == "get_time"


def test_errors_surface_as_the_sdks_own_exceptions(emu, bridge):
    with pytest.raises(openai.AuthenticationError):
        client(bridge, key="wrong-token").responses.create(model="fast", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        client(bridge).responses.create(model="fast", input="x", extra_body={"foo": 1})
    assert (info.value.code, info.value.param) == ("unknown_parameter", "foo")
    with pytest.raises(openai.BadRequestError, match="x-router-strategy"):
        client(bridge, **{"x-router-strategy": "bogus"}).responses.create(model="fast", input="x")
    budget = client(bridge, **{"x-router-budget-limit": "0.0000001"})
    with pytest.raises(openai.APIStatusError) as refused:
        budget.responses.create(model="fast", input="x")
    assert refused.value.status_code == 402 and refused.value.code == "budget_exceeded"


def test_all_providers_down(emulator):
    for provider in PROVIDERS:
        emulator.add_fault(provider=provider, kind="unavailable")
    with own_bridge(emulator) as server, pytest.raises(openai.InternalServerError) as info:
        client(server).responses.create(model="fast", input="x")
    assert info.value.status_code == 503 and info.value.code == "no_provider_available"


def test_a_failure_mid_stream_is_response_failed(emu, bridge):
    emu.add_fault(provider="openai", kind="stream_error", after_events=3)
    with client(bridge).responses.stream(
        model=MODELS["openai"], input="one two three four five six"
    ) as stream:
        kinds = [event.type for event in stream]
    assert kinds[-2:] == ["error", "response.failed"]


def test_the_chat_door_reads_the_same_headers(emu, bridge):
    raw = client(bridge, **{"x-router-providers": "anthropic"}).chat.completions.with_raw_response
    reply = raw.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert reply.headers["x-router-provider"] == "anthropic"
    assert reply.parse().choices[0].message.content == "Echo: hi"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_output_from_each_provider(emu, bridge, provider):
    text = {"format": {"type": "json_schema", "name": "weather", "schema": WEATHER_SCHEMA}}
    response = client(bridge).responses.create(
        model=MODELS[provider], input="Weather in Paris?", text=text
    )
    assert json.loads(response.output_text) == WEATHER_EXAMPLE
    assert response.text.format.type == "json_schema"


@pytest.mark.parametrize("provider", sorted(THINKERS))
def test_reasoning_summaries_and_a_tool_round_trip(emu, bridge, provider):
    sdk = client(bridge)
    ask = {
        "model": THINKERS[provider],
        "tools": TOOLS[1:],
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    conversation: list[Any] = [{"role": "user", "content": "call get_time"}]
    with sdk.responses.stream(input=conversation, **ask) as stream:
        summaries = [e.delta for e in stream if e.type == "response.reasoning_summary_text.delta"]
        first = stream.get_final_response()
    assert "".join(summaries) == "Thinking about: call get_time"
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and first.usage.output_tokens_details.reasoning_tokens
    conversation += first.output  # Anthropic's signed thinking rides on the reasoning item
    conversation.append({"type": "function_call_output", "call_id": call.call_id, "output": "noon"})
    assert sdk.responses.create(input=conversation, **ask).output_text == "Tool results: noon"
