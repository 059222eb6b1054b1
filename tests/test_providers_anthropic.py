"""The Anthropic Messages adapter against recorded Anthropic traffic.

Each recorded request is rebuilt from the router request a caller would have made. Recorded
spellings that mean the same are normalised first: a user turn's plain-string content (2024
ddtrace recordings) is the one-text-block list we send, ``"is_error": false`` on a tool
result is the default we leave out, and a missing ``"stream"`` means ``false``.

Not expressible, so only their answers are checked: the ddtrace tool-result follow-up (its
``tool_use_id`` answers no earlier call, which the router refuses) and the ddtrace 400 whose
``messages`` is a bare string.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from wire import load, run_stream, sse

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
from router.providers.anthropic import ANTHROPIC

BASE = "https://api.anthropic.com"

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
        "title": "CityLocation",
        "type": "object",
    },
)
PELICAN = MCPTool(
    name="pelican_name_generator",
    description="",
    inputSchema={"properties": {}, "type": "object"},
)
WEATHER = MCPTool(
    name="get_weather",
    description="Get the weather for a specific location",
    inputSchema={"type": "object", "properties": {"location": {"type": "string"}}},
)
USER_COUNTRY_CALL = {
    "id": "toolu_01X9wcHKKAZD9tBC711xipPa",
    "function": {"name": "get_user_country", "arguments": "{}"},
}
PELICAN_CALLS = [
    {"id": "toolu_01LtHJmixrs9NcWQkK8hu8hj", "function": {"name": "pelican_name_generator"}},
    {"id": "toolu_01N8a4jWyf116qKTMqKKmjyt", "function": {"name": "pelican_name_generator"}},
]


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# (cassette, interaction, the router request a caller would have made)
REPLAYS = [
    (
        "pydanticai__plain_nonstream_system__test_anthropic_model_instructions",
        0,
        AIRequest(
            messages=[
                {"role": "system", "content": "You are a helpful assistant.\n\n"},
                _user("What is the capital of France?"),
            ]
        ),
    ),
    (
        "pydanticai__tools_nonstream_roundtrip__test_anthropic_tool_output",
        0,
        AIRequest(
            messages=[_user("What is the largest city in the user country?")],
            tools=[COUNTRY, FINAL],
            tool_choice="required",
        ),
    ),
    (
        "pydanticai__tools_nonstream_roundtrip__test_anthropic_tool_output",
        1,
        AIRequest(
            messages=[
                _user("What is the largest city in the user country?"),
                {"role": "assistant", "tool_calls": [USER_COUNTRY_CALL]},
                {"role": "tool", "tool_call_id": USER_COUNTRY_CALL["id"], "content": "Mexico"},
            ],
            tools=[COUNTRY, FINAL],
            tool_choice="required",
        ),
    ),
    (
        "pydanticai__plain_stream__test_request_stream_fallback_for_high_max_tokens",
        0,
        AIRequest(
            messages=[_user("What is 1+1? Answer with just the number.")],
            max_tokens=32000,
            stream=True,
        ),
    ),
    (
        "simonw-llm-anthropic__plain_stream_raw_gzip__test_stream_events_text",
        0,
        AIRequest(
            messages=[_user("Say just hello")], max_tokens=8192, temperature=1.0, stream=True
        ),
    ),
    (
        "simonw-llm-anthropic__tools_stream_parallel_roundtrip_raw_gzip__test_tools",
        0,
        AIRequest(
            messages=[_user("Two names for a pet pelican")],
            tools=[PELICAN],
            max_tokens=8192,
            temperature=1.0,
            stream=True,
        ),
    ),
    (
        "simonw-llm-anthropic__tools_stream_parallel_roundtrip_raw_gzip__test_tools",
        1,
        AIRequest(
            messages=[
                _user("Two names for a pet pelican"),
                {"role": "assistant", "content": " ", "tool_calls": PELICAN_CALLS},
                {"role": "tool", "tool_call_id": PELICAN_CALLS[0]["id"], "content": "Charles"},
                {"role": "tool", "tool_call_id": PELICAN_CALLS[1]["id"], "content": "Sammy"},
            ],
            tools=[PELICAN],
            max_tokens=8192,
            temperature=1.0,
            stream=True,
        ),
    ),
    (
        "ddtrace__tools_stream_text_plus_input_json_delta__anthropic_completion_tools_stream",
        0,
        AIRequest(
            messages=[_user("What is the weather in San Francisco, CA?")],
            tools=[WEATHER],
            max_tokens=200,
            stream=True,
        ),
    ),
    (
        "ddtrace__error_401_authentication__anthropic_completion_invalid_api_key",
        0,
        AIRequest(
            messages=[
                {"role": "system", "content": "Respond only in all caps."},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": "Hello, I am looking for information about some books!",
                        },
                        {"type": "text", "text": "What is the best selling book?"},
                    ],
                },
            ],
            max_tokens=15,
            temperature=0.8,
        ),
    ),
    (
        "pydanticai__error_404_not_found__test_model_name_suggestion_anthropic",
        0,
        AIRequest(messages=[_user("hello")]),
    ),
    (
        "pydanticai__error_400_invalid_request__test_anthropic_explicit_effort_xhigh_unsupported_model_errors",
        0,
        AIRequest(messages=[_user("What is 2+2?")]),
    ),
]


def _normalised(recorded: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(recorded))
    body.setdefault("stream", False)
    for turn in body["messages"]:
        if isinstance(turn["content"], str):
            turn["content"] = [{"type": "text", "text": turn["content"]}]
        for block in turn["content"]:
            if block.get("type") == "tool_result" and block.get("is_error") is False:
                del block["is_error"]
    return body


@pytest.mark.parametrize(
    ("name", "number", "request_"),
    [pytest.param(*replay, id=f"{replay[0]}#{replay[1]}") for replay in REPLAYS],
)
def test_build_request_reproduces_recorded_body(name, number, request_):
    interaction = load("anthropic", name)[number]
    recorded = _normalised(interaction.request_json)

    built = ANTHROPIC.build_request(
        request_, model=recorded["model"], api_key="sk-ant-x", base_url=BASE, stream=request_.stream
    )

    assert built.url == "https://api.anthropic.com/v1/messages"
    assert interaction.uri.split("?")[0] == built.url
    for key, value in built.json.items():
        assert key in recorded, f"we send {key!r}, the recording does not"
        assert value == recorded[key], key
    assert built.json["messages"] == recorded["messages"]
    assert built.json.get("system") == recorded.get("system")
    assert built.json.get("tools") == recorded.get("tools")
    assert built.json["max_tokens"] == recorded["max_tokens"]


def test_headers_and_models_request():
    request = AIRequest(messages=[_user("hi")])
    built = ANTHROPIC.build_request(
        request, model="claude", api_key="sk-ant-secret", base_url=BASE + "//", stream=False
    )
    assert built.url == "https://api.anthropic.com/v1/messages"
    assert built.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-secret",
    }
    assert "sk-ant-secret" not in repr(built)
    probe = ANTHROPIC.build_models_request(api_key="sk-ant-secret", base_url=BASE)
    assert (probe.method, probe.url) == ("GET", "https://api.anthropic.com/v1/models")
    assert probe.headers["x-api-key"] == "sk-ant-secret"
    assert get_adapter(ProviderType.ANTHROPIC) is ANTHROPIC


def test_conversation_translation_rules():
    request = AIRequest(
        messages=[
            {"role": "system", "content": "rule one"},
            _user("first"),
            _user("second"),
            {"role": "developer", "content": "rule two"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "t1", "function": {"name": "a", "arguments": '{"x": 1}'}},
                    {"id": "t2", "function": {"name": "b", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "one"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "two"}]},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            },
        ],
        tools=[
            MCPTool(name="a", inputSchema={"type": "object", "properties": {}}),
            MCPTool(name="b", inputSchema={"type": "object", "properties": {}}),
        ],
        tool_choice="b",
        temperature=1.7,
        top_p=0.5,
        stop="END",
    )
    body = ANTHROPIC.build_request(
        request, model="c", api_key="k", base_url=BASE, stream=False
    ).json
    assert body["system"] == "rule one\n\nrule two"
    assert body["max_tokens"] == 4096
    assert body["temperature"] == 1.0
    assert body["top_p"] == 0.5
    assert body["stop_sequences"] == ["END"]
    assert body["tool_choice"] == {"type": "tool", "name": "b"}
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t1", "name": "a", "input": {"x": 1}},
                {"type": "tool_use", "id": "t2", "name": "b", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "two"}],
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "wire"), [("auto", {"type": "auto"}), ("none", {"type": "none"})]
)
def test_tool_choice_modes(choice, wire):
    request = AIRequest(messages=[_user("x")], tools=[PELICAN], tool_choice=choice)
    body = ANTHROPIC.build_request(
        request, model="c", api_key="k", base_url=BASE, stream=False
    ).json
    assert body["tool_choice"] == wire


def test_bad_tool_arguments_in_history_are_named():
    request = AIRequest(
        messages=[
            _user("x"),
            {
                "role": "assistant",
                "tool_calls": [{"id": "t", "function": {"name": "a", "arguments": "[1]"}}],
            },
        ]
    )
    with pytest.raises(InvalidRequestError, match=r"messages\[1\]\.tool_calls\[0\]"):
        ANTHROPIC.build_request(request, model="c", api_key="k", base_url=BASE, stream=False)


# --- responses -----------------------------------------------------------------------------


def test_parse_plain_response():
    interaction = load("anthropic", REPLAYS[0][0])[0]
    response = ANTHROPIC.parse_response(interaction.json(), model="claude-3-opus-latest")
    assert response.content == "The capital of France is Paris."
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=20, output_tokens=10)
    assert response.request_id == "msg_01Fg1JVgvCYUHWsxrj9GkpEv"
    assert response.provider is ProviderType.ANTHROPIC


def test_parse_tool_use_responses():
    first, second = load("anthropic", REPLAYS[1][0])
    response = ANTHROPIC.parse_response(first.json(), model="m")
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="toolu_01X9wcHKKAZD9tBC711xipPa", name="get_user_country", arguments={}),
    )
    response = ANTHROPIC.parse_response(second.json(), model="m")
    assert response.tool_calls[0].arguments == {"city": "Mexico City", "country": "Mexico"}
    assert response.usage.input_tokens == 497


def test_cache_tokens_count_as_input():
    body = load("anthropic", REPLAYS[0][0])[0].json()
    body["usage"].update(
        input_tokens=5, cache_read_input_tokens=100, cache_creation_input_tokens=20
    )
    usage = ANTHROPIC.parse_response(body, model="m").usage
    assert usage == Usage(
        input_tokens=125, output_tokens=10, cached_input_tokens=100, cache_write_tokens=20
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(reason, expected):
    body = load("anthropic", REPLAYS[0][0])[0].json()
    body["stop_reason"] = reason
    assert ANTHROPIC.parse_response(body, model="m").finish_reason == expected


@pytest.mark.parametrize(
    "body", [{}, {"content": "text"}, {"content": [{"type": "tool_use"}]}, {"content": [1]}, []]
)
def test_wrong_shapes_are_malformed(body):
    with pytest.raises(MalformedResponseError):
        ANTHROPIC.parse_response(body, model="m")


@pytest.mark.parametrize("piece_size", [None, 1, 13])
def test_recorded_plain_streams(piece_size):
    interaction = load("anthropic", REPLAYS[3][0])[0]
    chunks = run_stream(ANTHROPIC.new_stream_parser(model="m"), interaction.body, piece_size)
    assert [c.content for c in chunks if c.content] == ["2"]
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "stop"
    assert final.usage == Usage(input_tokens=20, output_tokens=5)
    assert final.request_id == "msg_018E1hg8GoVTGEKQY3ovMcSJ"

    interaction = load("anthropic", REPLAYS[4][0])[0]
    response = assemble_stream(run_stream(ANTHROPIC.new_stream_parser(model="m"), interaction.body))
    assert response.content == "Hello"
    assert response.usage == Usage(input_tokens=10, output_tokens=4)


def test_recorded_parallel_tool_stream_gets_indexes_0_and_1():
    first, second = load("anthropic", REPLAYS[5][0])
    chunks = run_stream(ANTHROPIC.new_stream_parser(model="m"), first.body)
    starts = [d for c in chunks for d in c.tool_call_deltas if d.id]
    assert [(d.index, d.id) for d in starts] == [
        (0, "toolu_01LtHJmixrs9NcWQkK8hu8hj"),
        (1, "toolu_01N8a4jWyf116qKTMqKKmjyt"),
    ]
    response = assemble_stream(chunks)
    assert response.tool_calls == (
        ToolCall(id="toolu_01LtHJmixrs9NcWQkK8hu8hj", name="pelican_name_generator"),
        ToolCall(id="toolu_01N8a4jWyf116qKTMqKKmjyt", name="pelican_name_generator"),
    )
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(input_tokens=542, output_tokens=62)

    response = assemble_stream(run_stream(ANTHROPIC.new_stream_parser(model="m"), second.body))
    assert "**Charles**" in response.content and response.content.endswith("🦅")
    assert response.usage.output_tokens == 82


def test_recorded_text_then_tool_stream_maps_block_1_to_tool_index_0():
    interaction = load("anthropic", REPLAYS[7][0])[0]
    chunks = run_stream(ANTHROPIC.new_stream_parser(model="m"), interaction.body, 64)
    assert {d.index for c in chunks for d in c.tool_call_deltas} == {0}
    response = assemble_stream(chunks)
    assert response.content.startswith("<thinking>") and response.content.endswith("</thinking>")
    assert response.tool_calls == (
        ToolCall(
            id="toolu_01DYJo37oETVsCdLTTcCWcdq",
            name="get_weather",
            arguments={"location": "San Francisco, CA"},
        ),
    )
    assert response.usage == Usage(input_tokens=599, output_tokens=135)


def test_recorded_tool_result_followup_stream():
    interaction = load(
        "anthropic",
        "ddtrace__tool_result_followup_stream__anthropic_completion_tools_call_with_tool_result_stream",
    )[0]
    response = assemble_stream(run_stream(ANTHROPIC.new_stream_parser(model="m"), interaction.body))
    assert response.content.startswith("\n\nBased on the result")
    assert "73°F (23°C)." in response.content
    assert response.usage == Usage(input_tokens=762, output_tokens=33)


def _start(input_tokens: int = 30, output_tokens: int = 1) -> tuple[str, dict[str, Any]]:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return "message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": usage}}


def _text(index: int, text: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "text_delta", "text": text}
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def test_mid_stream_overloaded_error_event_raises_service_unavailable():
    parser = ANTHROPIC.new_stream_parser(model="m")
    for event, data in [
        _start(),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _text(0, "Hel"),
    ]:
        parser.feed(event, json.dumps(data))
    assert parser.started
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(ServiceUnavailableError, match="overloaded_error"):
        parser.feed("error", json.dumps(error))


def test_cut_stream_raises_and_bills_input_and_estimated_output():
    body = sse(_start(input_tokens=40, output_tokens=1), _text(0, "x" * 37))
    parser = ANTHROPIC.new_stream_parser(model="m", provider="claude")
    with pytest.raises(StreamInterruptedError, match="message_stop"):
        run_stream(parser, body)
    assert parser.usage == Usage(input_tokens=40, output_tokens=10)


def test_usage_takes_last_message_delta_not_a_sum():
    body = sse(
        _start(input_tokens=10, output_tokens=1),
        _text(0, "hi"),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"output_tokens": 3},
            },
        ),
        ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}}),
        ("ping", {"type": "ping"}),
        ("message_stop", {"type": "message_stop"}),
    )
    chunks = run_stream(ANTHROPIC.new_stream_parser(model="m"), body)
    assert chunks[-1].usage == Usage(input_tokens=10, output_tokens=7)
    assert chunks[-1].finish_reason == "length"


def test_undecodable_event_is_malformed():
    with pytest.raises(MalformedResponseError):
        ANTHROPIC.new_stream_parser(model="m").feed("message_start", '{"type": "message_start", ')


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "request_id"),
    [
        (
            "ddtrace__error_401_authentication__anthropic_completion_invalid_api_key",
            AuthenticationError,
            "req_013JyjhVcnhy8mfJkvBTqMNB",
        ),
        (
            "pydanticai__error_400_invalid_request__test_anthropic_explicit_effort_xhigh_unsupported_model_errors",
            InvalidRequestError,
            "req_011Ca7jT9AHpgXgdv8igm4z9",
        ),
        (
            "ddtrace__error_400_invalid_request_old__anthropic_completion_error",
            InvalidRequestError,
            "req_01BjwuzUpsYgKjQJguJyvKb3",
        ),
        (
            "pydanticai__error_404_not_found__test_model_name_suggestion_anthropic",
            ModelNotFoundError,
            "req_011CdufXo8Y2LVfY2veyuQWG",
        ),
    ],
)
def test_recorded_errors_classify(name, cls, request_id):
    interaction = load("anthropic", name)[0]
    error = ANTHROPIC.classify_error(
        interaction.status, interaction.headers, interaction.body, provider="claude"
    )
    assert type(error) is cls
    assert error.status == interaction.status and error.provider == "claude"
    assert error.request_id == request_id
    assert not error.retryable


def _error(kind: str, message: str = "m") -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after"),
    [
        (
            529,
            {"x-should-retry": "true"},
            _error("overloaded_error", "Overloaded"),
            ServiceUnavailableError,
            None,
        ),
        (529, {}, b"", ServiceUnavailableError, None),
        (429, {"retry-after": "12"}, _error("rate_limit_error"), RateLimitError, 12.0),
        (
            429,
            {"retry-after-ms": "1500", "retry-after": "2"},
            _error("rate_limit_error"),
            RateLimitError,
            1.5,
        ),
        (500, {}, _error("api_error"), ServiceUnavailableError, None),
        (504, {}, _error("timeout_error"), ProviderTimeoutError, None),
        (413, {}, _error("request_too_large"), InvalidRequestError, None),
        (403, {}, _error("permission_error"), PermissionDeniedError, None),
        (402, {}, _error("billing_error"), QuotaExceededError, None),
        (400, {}, b"\x00\xff\xfe", InvalidRequestError, None),
        (503, {}, b"<html>upstream connect error</html>", ServiceUnavailableError, None),
    ],
)
def test_error_table(status, headers, body, cls, retry_after):
    error = ANTHROPIC.classify_error(status, headers, body, provider="claude")
    assert type(error) is cls
    assert error.retry_after == retry_after


def test_request_id_comes_from_header_or_body():
    body = json.dumps(
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": "req_body",
        }
    ).encode()
    assert ANTHROPIC.classify_error(529, {}, body, provider="c").request_id == "req_body"
    error = ANTHROPIC.classify_error(529, {"Request-Id": "req_header"}, body, provider="c")
    assert error.request_id == "req_header"


def test_key_in_error_message_is_scrubbed():
    body = _error("authentication_error", "invalid x-api-key sk-ant-api03-SECRETSECRET")
    error = ANTHROPIC.classify_error(401, {}, body, provider="c")
    assert "SECRETSECRET" not in str(error) and "sk-ant" not in str(error)
