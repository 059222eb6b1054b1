"""The Anthropic Messages door: its pure translations, then the official ``anthropic`` SDK
against a running bridge with every provider type behind it."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import door_fixtures
import pydantic
import pytest
import requests
from anthropic.types import Message, RawMessageStreamEvent
from door_fixtures import PROVIDERS, THINKERS, TOKEN, WEATHER_EXAMPLE, WEATHER_SCHEMA, own_bridge
from support import MODELS

from router.bridge.anthropic import MessageEvents, failure_body, message_body, messages_request
from router.bridge.errors import BodyError, Failure
from router.bridge.wire import Secrets
from router.models import AIResponse, StreamChunk, ToolCall, ToolCallDelta, Usage

bridge = door_fixtures.bridge
emu = door_fixtures.emu

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


# --- pure translations ---------------------------------------------------------------------


def test_a_messages_body_becomes_the_routers_request():
    request = messages_request(
        {
            "model": "fast",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "...", "signature": "sig"},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                            "provider_data": {"thoughtSignature": "abc"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ],
            "tools": [WEATHER],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "service_tier": "auto",
        }
    )
    roles = [m.role for m in request.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert request.messages[0].content == "Be brief."
    (call,) = request.messages[2].tool_calls
    assert (call.id, call.function.name) == ("toolu_1", "get_weather")
    assert call.provider_data == {"thoughtSignature": "abc"}
    assert request.messages[3].tool_call_id == "toolu_1"
    assert request.messages[3].content == "sunny"
    assert request.tools[0].inputSchema == WEATHER["input_schema"]
    assert request.tool_choice == "required"
    assert request.stop == ("END",)
    assert request.max_tokens == 64 and request.metadata == {"user_id": "u1"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field"),
        (
            {"model": "m", "max_tokens": 5, "messages": [], "foo": 1},
            "foo: Extra inputs are not permitted",
        ),
        (
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "greater than or equal to 1",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "server tool",
        ),
    ],
)
def test_bodies_the_real_api_refuses_are_refused(body, message):
    with pytest.raises(BodyError, match=message):
        messages_request(body)


def test_an_answer_is_a_message_the_sdk_reads():
    response = AIResponse(
        content="Let me look.",
        tool_calls=(ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=30, cached_input_tokens=10, output_tokens=5),
        model="gemini-1.5-flash",
    )
    message = Message.model_validate(message_body(response))
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (20, 10)


def _events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        event = pydantic.TypeAdapter(dict).validate_json(data.removeprefix("data: "))
        assert name == "event: " + event["type"]
        out.append(event)
    return out


def test_chunks_become_anthropics_event_sequence():
    events = MessageEvents(Secrets(None), "fast")
    raw = events.chunk(StreamChunk(content="Hel", model="gpt-4o-mini"))
    raw += events.chunk(StreamChunk(content="lo"))
    raw += events.chunk(
        StreamChunk(
            tool_call_deltas=(
                ToolCallDelta(index=0, id="call_a", name="get_weather", arguments='{"ci'),
            )
        )
    )
    raw += events.chunk(
        StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, arguments='ty":"Paris"}'),))
    )
    raw += events.chunk(
        StreamChunk(tool_call_deltas=(ToolCallDelta(index=1, id="call_b", name="get_time"),))
    )
    raw += events.chunk(
        StreamChunk(
            is_complete=True,
            finish_reason="tool_calls",
            usage=Usage(input_tokens=12, output_tokens=9),
        )
    )
    sequence = _events(raw)
    assert [e["type"] for e in sequence] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    adapter = pydantic.TypeAdapter(RawMessageStreamEvent)
    for event in sequence:
        if event["type"] != "ping":
            adapter.validate_python(event)  # the SDK's own event models accept each one
    assert [e["index"] for e in sequence if e["type"] == "content_block_start"] == [0, 1, 2]
    assert sequence[-2]["usage"]["output_tokens"] == 9
    assert sequence[-2]["delta"]["stop_reason"] == "tool_use"
    error = _events(events.error({"type": "NoProviderAvailableError", "message": "down"}))
    assert error == [{"type": "error", "error": {"type": "overloaded_error", "message": "down"}}]


def test_failures_use_anthropics_envelope_and_types():
    budget = failure_body(Failure(402, "BudgetExceededError", "over", {}))
    assert budget["type"] == "error" and budget["error"]["type"] == "billing_error"
    assert failure_body(Failure(503, "X", "m", {}))["error"]["type"] == "overloaded_error"


# --- the SDK against a running bridge ------------------------------------------------------


def client(bridge: Any, key: str = TOKEN, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=bridge.url, api_key=key, max_retries=0, timeout=20, default_headers=headers
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_answer_from_each_provider(emu, bridge, provider):
    raw = client(bridge).messages.with_raw_response.create(
        model=MODELS[provider], max_tokens=50, messages=[{"role": "user", "content": "Hi there"}]
    )
    message = raw.parse()
    assert message.content[0].text == "Echo: Hi there"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert raw.headers["x-router-provider"] == provider
    assert float(raw.headers["x-router-cost"]) >= 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_answer_from_each_provider(emu, bridge, provider):
    with client(bridge).messages.stream(
        model=MODELS[provider], max_tokens=50, messages=[{"role": "user", "content": "a b c d"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: a b c d" == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_parallel_tool_calls_round_trip_with_each_provider(emu, bridge, provider, stream):
    sdk = client(bridge)
    messages: list[Any] = [{"role": "user", "content": "call get_weather and get_time"}]
    ask = {"model": MODELS[provider], "max_tokens": 100, "tools": [WEATHER, TIME]}
    if stream:
        with sdk.messages.stream(messages=messages, **ask) as events:
            first = events.get_final_message()
    else:
        first = sdk.messages.create(messages=messages, **ask)
    calls = [block for block in first.content if block.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert [(c.name, c.input) for c in calls] == [
        ("get_weather", {"city": "city"}),
        ("get_time", {}),
    ]
    messages.append({"role": "assistant", "content": first.content})  # the SDK's own blocks
    results = [{"type": "tool_result", "tool_use_id": c.id, "content": c.name} for c in calls]
    messages.append({"role": "user", "content": results})
    final = sdk.messages.create(messages=messages, **ask)
    assert final.content[0].text == "Tool results: get_weather; get_time"


def test_an_alias_is_answered_by_the_provider_the_headers_allow(emu, bridge):
    sdk = client(bridge, **{"x-router-providers": "google"})
    with sdk.messages.stream(
        model="fast",
        max_tokens=100,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "use get_weather"}],
    ) as stream:
        final = stream.get_final_message()
        served_by = stream.response.headers["x-router-provider"]
    assert served_by == "google" and final.model == MODELS["google"]
    assert final.content[0].type == "tool_use"


def test_models_and_token_counts(emu, bridge):
    sdk = client(bridge)
    ids = [model.id for model in sdk.models.list()]
    assert {"fast", MODELS["openai"], MODELS["anthropic"], MODELS["google"]} <= set(ids)
    assert sdk.models.retrieve("fast").type == "model"
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("no-such-model")
    count = sdk.messages.count_tokens(
        model="fast", messages=[{"role": "user", "content": "Hi there"}], tools=[WEATHER]
    )
    assert count.input_tokens > 0
    # The same path without Anthropic's headers answers in OpenAI's shape.
    plain = requests.get(
        bridge.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).json()
    assert plain["object"] == "list" and plain["data"][0]["object"] == "model"


def test_errors_surface_as_the_sdks_own_exceptions(emu, bridge):
    ask = {"model": "fast", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(anthropic.AuthenticationError):
        client(bridge, key="wrong-token").messages.create(**ask)
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        client(bridge).post(
            "/v1/messages", body={"model": "fast", "messages": ask["messages"]}, cast_to=object
        )
    with pytest.raises(anthropic.BadRequestError, match="Extra inputs are not permitted"):
        client(bridge).messages.create(**ask, extra_body={"unknown_field": 1})
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        client(bridge).post(
            "/v1/messages", body=ask, cast_to=object, options={"headers": {"anthropic-version": ""}}
        )
    budget = client(bridge, **{"x-router-budget-limit": "0.0000001"})
    with pytest.raises(anthropic.PaymentRequiredError) as info:
        budget.messages.create(**ask)
    assert info.value.body["error"]["type"] == "billing_error"


def test_all_providers_down_is_overloaded(emulator):
    for provider in PROVIDERS:
        emulator.add_fault(provider=provider, kind="unavailable")
    with own_bridge(emulator) as server, pytest.raises(anthropic.OverloadedError):
        client(server).messages.create(
            model="fast", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )


def test_a_failure_mid_stream_is_an_error_event(emu, bridge):
    emu.add_fault(provider="anthropic", kind="stream_error", after_events=4)
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded|Overloaded"),
        client(bridge).messages.stream(
            model=MODELS["anthropic"],
            max_tokens=50,
            messages=[{"role": "user", "content": "one two three four five six"}],
        ) as stream,
    ):
        for _ in stream:
            pass


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_output_from_each_provider(emu, bridge, provider):
    message = client(bridge).messages.create(
        model=MODELS[provider],
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        output_config={"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}},
    )
    assert json.loads(message.content[0].text) == WEATHER_EXAMPLE


@pytest.mark.parametrize("provider", sorted(THINKERS))
def test_thinking_and_a_tool_round_trip_with_each_thinking_provider(emu, bridge, provider):
    sdk = client(bridge)
    ask = {
        "model": THINKERS[provider],
        "max_tokens": 4000,
        "tools": [TIME],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    messages: list[Any] = [{"role": "user", "content": "call get_time"}]
    with sdk.messages.stream(messages=messages, **ask) as stream:
        first = stream.get_final_message()
    thinking, call = first.content
    assert (thinking.type, thinking.thinking) == ("thinking", "Thinking about: call get_time")
    # Anthropic's own blocks come signed (its emulator checks the signature coming back).
    assert bool(thinking.signature) is (provider == "anthropic")
    messages.append({"role": "assistant", "content": first.content})
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "noon"}
    messages.append({"role": "user", "content": [result]})
    final = sdk.messages.create(messages=messages, **ask)
    assert final.content[-1].text == "Tool results: noon"


def test_no_key_is_an_authentication_error_naming_x_api_key(emu, bridge):
    reply = requests.post(
        bridge.url + "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": "fast", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert reply.status_code == 401
    assert reply.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required (or 'Authorization: Bearer <token>')",
    }
