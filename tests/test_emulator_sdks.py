"""The official SDKs, pointed at the emulator, cannot tell it from the real services."""

from __future__ import annotations

import json

import anthropic
import emulator_fixtures
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from router.emulator import reply_text

KEYS = emulator_fixtures.KEYS
emu_server = emulator_fixtures.emu_server
emu = emulator_fixtures.emu

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME_OPENAI = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def oai(emu, **kw):
    return openai.OpenAI(
        base_url=emu.base_urls["openai"], api_key=KEYS["openai"], max_retries=0, **kw
    )


def ant(emu):
    return anthropic.Anthropic(
        base_url=emu.base_urls["anthropic"], api_key=KEYS["anthropic"], max_retries=0
    )


def gem(emu, key=KEYS["google"]):
    # Keep the returned client referenced while using it: it closes its HTTP client when collected.
    options = gtypes.HttpOptions(
        base_url=emu.base_urls["google"], retry_options=gtypes.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=key, http_options=options)


# -- OpenAI ----------------------------------------------------------------------------------
def test_openai_plain_exchange(emu):
    response = oai(emu).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi to Bob"}]
    )
    assert (
        response.choices[0].message.content == reply_text("Say hi to Bob") == "Echo: Say hi to Bob"
    )
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (4, 6)
    assert response.id.startswith("chatcmpl-")


def test_openai_max_tokens_cuts_the_answer(emu):
    response = oai(emu).chat.completions.create(
        model="gpt-4o-mini",
        max_completion_tokens=3,
        messages=[{"role": "user", "content": "one two three"}],
    )
    assert response.choices[0].message.content == "Echo: one"
    assert response.choices[0].finish_reason == "length"


def test_openai_streamed_exchange_with_usage(emu):
    stream = oai(emu).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


def test_openai_tool_round_trip(emu):
    client = oai(emu)
    messages = [{"role": "user", "content": "What is the weather? Use get_weather."}]
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_OPENAI]
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "city", "unit": "c"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
    ]
    final = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_OPENAI]
    )
    assert final.choices[0].message.content == "Tool results: Sunny, 21C"


def test_openai_streamed_parallel_tool_calls(emu):
    stream = oai(emu).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "call get_weather and get_time"}],
        tools=[WEATHER_OPENAI, TIME_OPENAI],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += (delta.function.name or "") if delta.function else ""
            entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "city", "unit": "c"}
    assert json.loads(calls[1]["arguments"]) == {}
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_openai_sdk_raises_rate_limit_error_with_retry_after(emu):
    emu.add_fault(provider="openai", kind="rate_limit", retry_after=7, count=1)
    with pytest.raises(openai.RateLimitError) as info:
        oai(emu).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.request_id.startswith("req_")


@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("insufficient_quota", openai.RateLimitError, "insufficient_quota"),
        ("server_error", openai.InternalServerError, None),
        ("unavailable", openai.InternalServerError, None),
        ("auth", openai.AuthenticationError, "invalid_api_key"),
    ],
)
def test_openai_sdk_types_injected_errors(emu, kind, error, code):
    emu.add_fault(provider="openai", kind=kind)
    with pytest.raises(error) as info:
        oai(emu).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.code == code


def test_openai_sdk_raises_on_a_mid_stream_error(emu):
    emu.add_fault(provider="openai", kind="stream_error", after_events=2)
    stream = oai(emu).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d"}], stream=True
    )
    with pytest.raises(openai.APIError, match="server had an error"):
        list(stream)


def test_openai_sdk_refuses_a_bad_key(emu):
    client = openai.OpenAI(base_url=emu.base_urls["openai"], api_key="invalid-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert "invalid-key" not in str(info.value)


def test_openai_sdk_lists_models(emu):
    assert "gpt-4o-mini" in [m.id for m in oai(emu).models.list()]


# -- Anthropic -------------------------------------------------------------------------------
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME_ANTHROPIC = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


def test_anthropic_plain_exchange(emu):
    message = ant(emu).messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hi to Bob"}],
    )
    assert message.content[0].text == "Echo: Say hi to Bob"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 6)
    assert message.id.startswith("msg_")


def test_anthropic_streamed_exchange(emu):
    with ant(emu).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=4,
        messages=[{"role": "user", "content": "one two three"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: one two"
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 4


def test_anthropic_tool_round_trip(emu):
    client = ant(emu)
    messages = [{"role": "user", "content": "Use get_weather for Paris"}]
    first = client.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=messages, tools=[WEATHER_ANTHROPIC]
    )
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.id.startswith("toolu_") and use.input == {"city": "city"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Rain"}],
        },
    ]
    final = client.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=messages, tools=[WEATHER_ANTHROPIC]
    )
    assert final.content[0].text == "Tool results: Rain"


def test_anthropic_streamed_parallel_tool_calls(emu):
    with ant(emu).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=200,
        messages=[{"role": "user", "content": "get_time, then get_weather"}],
        tools=[WEATHER_ANTHROPIC, TIME_ANTHROPIC],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content] == [
        ("get_time", {}),
        ("get_weather", {"city": "city"}),
    ]


def test_anthropic_tool_choice_any_forces_a_call(emu):
    message = ant(emu).messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
        tools=[WEATHER_ANTHROPIC],
        tool_choice={"type": "any"},
    )
    assert message.content[0].name == "get_weather"


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        (
            "overloaded",
            anthropic.OverloadedError
            if hasattr(anthropic, "OverloadedError")
            else anthropic.InternalServerError,
            529,
        ),
        ("rate_limit", anthropic.RateLimitError, 429),
        ("server_error", anthropic.InternalServerError, 500),
        ("auth", anthropic.AuthenticationError, 401),
    ],
)
def test_anthropic_sdk_types_injected_errors(emu, kind, error, status):
    emu.add_fault(provider="anthropic", kind=kind, count=1)
    with pytest.raises(error) as info:
        ant(emu).messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == status
    assert info.value.request_id.startswith("req_")


def test_anthropic_sdk_raises_on_a_mid_stream_error_event(emu):
    emu.add_fault(provider="anthropic", kind="stream_error", after_events=3)
    stream = ant(emu).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "a b c d"}],
    )
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), stream as events:
        list(events.text_stream)


# -- Gemini ----------------------------------------------------------------------------------
GEMINI_TOOLS = [
    gtypes.Tool(
        function_declarations=[
            gtypes.FunctionDeclaration(
                name="get_weather",
                parameters=gtypes.Schema(
                    type="OBJECT",
                    properties={"city": gtypes.Schema(type="STRING")},
                    required=["city"],
                ),
            ),
            gtypes.FunctionDeclaration(name="get_time"),
        ]
    )
]


def test_gemini_plain_exchange(emu):
    client = gem(emu)
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="Say hi to Bob",
        config=gtypes.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert response.text == "Echo: Say hi to Bob"
    assert response.candidates[0].finish_reason == gtypes.FinishReason.STOP
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (
        7,
        6,
        13,
    )


def test_gemini_max_output_tokens(emu):
    client = gem(emu)
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="one two three",
        config=gtypes.GenerateContentConfig(max_output_tokens=2),
    )
    assert response.text == "Echo:"
    assert response.candidates[0].finish_reason == gtypes.FinishReason.MAX_TOKENS


def test_gemini_streamed_exchange(emu):
    client = gem(emu)
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="stream me")
    )
    assert "".join(c.text for c in chunks) == "Echo: stream me"
    assert len(chunks) == 4
    assert chunks[-1].candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 4


def test_gemini_tool_round_trip(emu):
    client = gem(emu)
    config = gtypes.GenerateContentConfig(
        tools=GEMINI_TOOLS,
        automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
    )
    question = gtypes.Content(role="user", parts=[gtypes.Part(text="Use get_weather please")])
    first = client.models.generate_content(
        model="gemini-2.5-flash", contents=[question], config=config
    )
    call = first.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"city": "city"})
    answer = gtypes.Content(
        role="user",
        parts=[
            gtypes.Part.from_function_response(name="get_weather", response={"result": "Windy"})
        ],
    )
    final = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=[question, first.candidates[0].content, answer],
        config=config,
    )
    assert final.text == "Tool results: Windy"


def test_gemini_streamed_parallel_tool_calls(emu):
    config = gtypes.GenerateContentConfig(
        tools=GEMINI_TOOLS,
        automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
    )
    client = gem(emu)
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="get_weather and get_time", config=config
        )
    )
    calls = [fc for c in chunks for fc in c.function_calls or []]
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", {"city": "city"}),
        ("get_time", {}),
    ]


@pytest.mark.parametrize(
    ("kind", "error", "code", "status"),
    [
        ("rate_limit", genai_errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("overloaded", genai_errors.ServerError, 503, "UNAVAILABLE"),
        ("server_error", genai_errors.ServerError, 500, "INTERNAL"),
    ],
)
def test_gemini_sdk_types_injected_errors(emu, kind, error, code, status):
    emu.add_fault(provider="google", kind=kind, count=1)
    client = gem(emu)
    with pytest.raises(error) as info:
        client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert (info.value.code, info.value.status) == (code, status)


def test_gemini_sdk_reports_a_bad_key_as_invalid_argument(emu):
    client = gem(emu, key="invalid-google")
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_gemini_sdk_raises_on_a_mid_stream_error(emu):
    emu.add_fault(provider="google", kind="stream_error", after_events=1)
    client = gem(emu)
    with pytest.raises(genai_errors.ServerError):
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="a b c"))
