"""The OpenAI Chat Completions adapter against recorded OpenAI traffic.

Recorded OpenAI requests are already in the router's message format, so each one is turned
back into an :class:`AIRequest` and the adapter must rebuild the same body. Two recorded
spellings are normalised first: ``"content": null`` on an assistant tool-call message (we
leave the key out, as the other recordings do) and ``"strict": true`` on a tool (the router
does not ask for strict tool schemas).
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
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from router.models import AIRequest, MCPTool, ProviderType, ToolCall, Usage
from router.providers import assemble_stream, get_adapter
from router.providers.openai import OPENAI, OPENAI_COMPATIBLE

BASE = "https://api.openai.com/v1"

RECORDED = [
    "pydanticai__plain_nonstream__test_max_completion_tokens_gpt-4o-mini",
    "pydanticai__tools_nonstream_roundtrip__test_openai_tool_output",
    "pydanticai__tools_stream_roundtrip_include_usage__test_run_stream_sync_streams_real_model",
    "simonw-llm__tools_nonstream_3call_chain_raw_gzip__test_tool_use_chain_of_two_calls",
    "simonw-llm__tools_stream_roundtrip_raw__test_tool_use_basic",
    "pydanticai__error_400_unsupported_value__test_openai_o1_mini_system_role_system",
    "pydanticai__error_404_model_not_found__test_model_name_suggestion_openai-chat",
]


def _ai_request(recorded: dict[str, Any]) -> AIRequest:
    """The router request equivalent to a recorded Chat Completions body."""
    tools = [
        MCPTool(
            name=tool["function"]["name"],
            description=tool["function"].get("description") or "",
            inputSchema=tool["function"]["parameters"],
        )
        for tool in recorded.get("tools", [])
    ]
    choice = recorded.get("tool_choice")
    if isinstance(choice, dict):
        choice = choice["function"]["name"]
    return AIRequest(
        messages=recorded["messages"],
        tools=tools,
        tool_choice=choice,
        max_tokens=recorded.get("max_completion_tokens"),
        temperature=recorded.get("temperature"),
        stream=recorded.get("stream", False),
    )


def _normalised(recorded: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(recorded))
    for message in body["messages"]:
        if message.get("content", "") is None:
            del message["content"]
    for tool in body.get("tools", []):
        tool["function"].pop("strict", None)
    return body


def _interactions():
    for name in RECORDED:
        for number, interaction in enumerate(load("openai", name)):
            yield pytest.param(interaction, id=f"{name}#{number}")


@pytest.mark.parametrize("interaction", list(_interactions()))
def test_build_request_reproduces_every_recorded_body(interaction):
    recorded = interaction.request_json
    request = _ai_request(recorded)

    built = OPENAI.build_request(
        request, model=recorded["model"], api_key="sk-test", base_url=BASE, stream=request.stream
    )

    expected = _normalised(recorded)
    assert built.method == "POST"
    assert built.url == interaction.uri
    assert built.stream is request.stream
    for key, value in built.json.items():
        assert key in expected, f"we send {key!r}, the recording does not"
        assert value == expected[key], key
    # The conversation and the tools must be exactly what was recorded.
    assert built.json["messages"] == expected["messages"]
    assert built.json.get("tools") == expected.get("tools")


def test_headers_carry_bearer_key_and_json_content_type():
    request = AIRequest(messages=[{"role": "user", "content": "hi"}])
    built = OPENAI.build_request(
        request, model="gpt-4o-mini", api_key="sk-secret-123", base_url=BASE + "/", stream=False
    )
    assert built.url == "https://api.openai.com/v1/chat/completions"
    assert built.headers == {
        "content-type": "application/json",
        "authorization": "Bearer sk-secret-123",
    }
    assert "sk-secret-123" not in repr(built)


def test_streams_always_ask_for_usage():
    request = AIRequest(messages=[{"role": "user", "content": "hi"}])
    built = OPENAI.build_request(request, model="m", api_key="k", base_url=BASE, stream=True)
    assert built.json["stream"] is True
    assert built.json["stream_options"] == {"include_usage": True}


def test_compatible_server_gets_no_auth_without_key_and_classic_names():
    request = AIRequest(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        max_tokens=50,
        stop=("END", "STOP"),
    )
    built = OPENAI_COMPATIBLE.build_request(
        request, model="llama3", api_key=None, base_url="http://127.0.0.1:11434/v1", stream=False
    )
    assert built.url == "http://127.0.0.1:11434/v1/chat/completions"
    assert "authorization" not in built.headers
    assert built.json["max_tokens"] == 50
    assert "max_completion_tokens" not in built.json
    assert built.json["messages"][0] == {"role": "system", "content": "be brief"}
    assert built.json["stop"] == ["END", "STOP"]
    assert get_adapter(ProviderType.OPENAI_COMPATIBLE) is OPENAI_COMPATIBLE


def test_openai_keeps_developer_role_and_uses_max_completion_tokens():
    request = AIRequest(
        messages=[{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}],
        max_tokens=7,
    )
    built = OPENAI.build_request(request, model="m", api_key="k", base_url=BASE, stream=False)
    assert built.json["messages"][0]["role"] == "developer"
    assert built.json["max_completion_tokens"] == 7


def test_named_tool_choice_images_and_provider_data_translation():
    request = AIRequest(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "function": {"name": "look", "arguments": '{"q":1}'},
                        "provider_data": {"thoughtSignature": "abc"},
                    }
                ],
                "provider_data": {"thoughtSignature": "def"},
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        ],
        tools=[MCPTool(name="look", inputSchema={"type": "object", "properties": {}})],
        tool_choice="look",
    )
    body = OPENAI.build_request(request, model="m", api_key="k", base_url=BASE, stream=False).json
    assert body["tool_choice"] == {"type": "function", "function": {"name": "look"}}
    assert body["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x.test/a.png"},
    }
    assert body["messages"][1] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "look", "arguments": '{"q":1}'},
            }
        ],
    }
    assert "provider_data" not in json.dumps(body)


def test_models_request_lists_models():
    built = OPENAI.build_models_request(api_key="sk-k", base_url=BASE)
    assert (built.method, built.url, built.json) == ("GET", BASE + "/models", None)
    assert built.headers["authorization"] == "Bearer sk-k"


# --- responses -----------------------------------------------------------------------------


def test_parse_plain_response():
    interaction = load("openai", RECORDED[0])[0]
    response = OPENAI.parse_response(interaction.json(), model="gpt-4o-mini")
    assert response.content == "Hello! How can I assist you today?"
    assert response.finish_reason == "stop"
    assert response.tool_calls == ()
    assert response.usage == Usage(input_tokens=8, output_tokens=9, total_tokens=17)
    assert response.request_id == "chatcmpl-Dr3KONlJHqM2OKkn7IPxwgC3ZIEZw"
    assert response.provider is ProviderType.OPENAI
    assert response.model == "gpt-4o-mini"
    assert response.cost == 0 and response.provider_name == "" and response.raw is None


def test_parse_tool_call_responses():
    first, second = load("openai", RECORDED[1])
    response = OPENAI.parse_response(first.json(), model="gpt-4o")
    assert response.content == ""
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="call_iXFttys57ap0o16JSlC8yhYo", name="get_user_country", arguments={}),
    )
    response = OPENAI.parse_response(second.json(), model="gpt-4o")
    assert response.tool_calls == (
        ToolCall(
            id="call_gmD2oUZUzSoCkmNmp3JPUF7R",
            name="final_result",
            arguments={"city": "Mexico City", "country": "Mexico"},
        ),
    )
    assert response.usage.input_tokens == 89 and response.usage.output_tokens == 36


def test_parse_gzip_recorded_chain():
    interactions = load("openai", RECORDED[3])
    calls = [OPENAI.parse_response(i.json(), model="gpt-4o-mini") for i in interactions]
    assert calls[0].tool_calls[0].arguments == {"country": "Crumpet"}
    assert calls[1].tool_calls[0].arguments == {"population": 123124}
    assert calls[2].content == "YES" and calls[2].finish_reason == "stop"
    assert calls[2].usage.total_tokens == 149


def test_cached_tokens_are_reported():
    body = load("openai", RECORDED[0])[0].json()
    body["usage"]["prompt_tokens_details"]["cached_tokens"] = 5
    assert OPENAI.parse_response(body, model="m").usage.cached_input_tokens == 5


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": []},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"tool_calls": [{"function": {}}]}}]},
        {"choices": [{"message": {"content": 5}}]},
        ["not", "an", "object"],
    ],
)
def test_wrong_shapes_are_malformed_responses(body):
    with pytest.raises(MalformedResponseError):
        OPENAI.parse_response(body, model="m")


def test_unparseable_tool_arguments_are_malformed():
    body = load("openai", RECORDED[1])[1].json()
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"city": '
    with pytest.raises(MalformedResponseError, match="final_result"):
        OPENAI.parse_response(body, model="m")


@pytest.mark.parametrize("piece_size", [None, 1, 7, 512])
def test_recorded_tool_stream_reassembles(piece_size):
    first, second = load("openai", RECORDED[2])
    chunks = run_stream(OPENAI.new_stream_parser(model="gpt-4o-mini"), first.body, piece_size)
    assert chunks[0].tool_call_deltas[0].id == "call_ZR5UUuTt3pf61kjwAJIYdVMj"
    assert chunks[0].tool_call_deltas[0].name == "get_capital"
    assert all(d.id is None for c in chunks[1:] for d in c.tool_call_deltas)
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "tool_calls" and final.cost is None
    assert final.usage == Usage(input_tokens=53, output_tokens=15, total_tokens=68)
    response = assemble_stream(chunks)
    assert response.tool_calls == (
        ToolCall(
            id="call_ZR5UUuTt3pf61kjwAJIYdVMj", name="get_capital", arguments={"country": "UK"}
        ),
    )

    chunks = run_stream(OPENAI.new_stream_parser(model="gpt-4o-mini"), second.body, piece_size)
    response = assemble_stream(chunks)
    assert response.content == "The capital of the UK is London."
    assert response.finish_reason == "stop"
    assert response.usage.output_tokens == 9
    assert response.request_id == "chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc"


def test_recorded_simonw_stream_with_fragmented_arguments():
    first, second = load("openai", RECORDED[4])
    parser = OPENAI.new_stream_parser(model="gpt-4o-mini")
    response = assemble_stream(run_stream(parser, first.body))
    assert response.tool_calls == (
        ToolCall(
            id="call_1EYWDzueHEp8OsB8jJSEp7WB", name="multiply", arguments={"a": 1231, "b": 2331}
        ),
    )
    assert response.usage.input_tokens == 54
    response = assemble_stream(run_stream(OPENAI.new_stream_parser(model="m"), second.body))
    assert response.content.startswith("The result of")
    assert "2,869,461" in response.content
    assert response.usage.output_tokens == 26


def test_stream_parser_reports_started_and_ignores_events_after_done():
    parser = OPENAI.new_stream_parser(model="m")
    assert not parser.started
    body = sse(
        (
            None,
            {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        ),
        (None, {"id": "x", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
    )
    from wire import sse_events

    chunks = [c for e, d in sse_events(body) for c in parser.feed(e, d)]
    assert [c.content for c in chunks] == ["Hi"]
    assert parser.started
    final = parser.feed("message", "[DONE]")
    assert final[0].is_complete
    assert parser.feed("message", "[DONE]") == [] and parser.finish() == []


def test_stream_cut_before_done_raises_and_bills_what_was_seen():
    body = sse(
        (None, {"id": "x", "choices": [{"index": 0, "delta": {"content": "Hello there, "}}]}),
        (None, {"id": "x", "choices": [{"index": 0, "delta": {"content": "friend"}}]}),
    )
    parser = OPENAI.new_stream_parser(model="m", provider="openai-main")
    with pytest.raises(StreamInterruptedError) as caught:
        run_stream(parser, body)
    assert caught.value.provider == "openai-main"
    assert parser.usage.output_tokens == 5  # ceil(19 chars / 4)


def test_stream_with_finish_reason_but_no_done_is_still_whole():
    body = sse(
        (None, {"id": "x", "choices": [{"index": 0, "delta": {"content": "ok"}}]}),
        (None, {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
    )
    chunks = run_stream(OPENAI_COMPATIBLE.new_stream_parser(model="m"), body)
    assert chunks[-1].is_complete and chunks[-1].finish_reason == "length"
    assert chunks[-1].provider is ProviderType.OPENAI_COMPATIBLE


def test_mid_stream_error_payload_raises_typed_error():
    parser = OPENAI.new_stream_parser(model="m")
    parser.feed("message", json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}}]}))
    error = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
    with pytest.raises(ServiceUnavailableError):
        parser.feed("message", json.dumps(error))


def test_undecodable_stream_data_is_malformed():
    parser = OPENAI.new_stream_parser(model="m")
    with pytest.raises(MalformedResponseError):
        parser.feed("message", '{"choices": [')


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        (
            "ddtrace__error_401_invalid_api_key__completion_stream_wrong_api_key",
            AuthenticationError,
        ),
        (
            "pydanticai__error_400_invalid_request__test_openai_web_search_tool_model_not_supported",
            InvalidRequestError,
        ),
        (
            "pydanticai__error_400_unsupported_value__test_openai_o1_mini_system_role_system",
            InvalidRequestError,
        ),
        (
            "pydanticai__error_404_model_not_found__test_model_name_suggestion_openai-chat",
            ModelNotFoundError,
        ),
    ],
)
def test_recorded_errors_classify(name, cls):
    interaction = load("openai", name)[0]
    error = OPENAI.classify_error(
        interaction.status, interaction.headers, interaction.body, provider="openai"
    )
    assert type(error) is cls
    assert error.status == interaction.status
    assert error.provider == "openai"
    assert not error.retryable


def test_recorded_401_keeps_request_id_and_never_shows_the_key():
    interaction = load(
        "openai", "ddtrace__error_401_invalid_api_key__completion_stream_wrong_api_key"
    )[0]
    error = OPENAI.classify_error(401, interaction.headers, interaction.body, provider="openai")
    assert error.request_id == interaction.headers["x-request-id"]
    assert "sk-wrong" not in str(error) and "****" not in str(error)
    assert "Incorrect API key provided" in str(error)


def _body(code: str | None, kind: str, message: str = "msg") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after"),
    [
        (429, {"retry-after": "3"}, _body("rate_limit_exceeded", "tokens"), RateLimitError, 3.0),
        (429, {}, _body("insufficient_quota", "insufficient_quota"), QuotaExceededError, None),
        (429, {"Retry-After": "20"}, _body(None, "insufficient_quota"), QuotaExceededError, None),
        (403, {}, _body(None, "invalid_request_error"), PermissionDeniedError, None),
        (422, {}, _body(None, "invalid_request_error"), InvalidRequestError, None),
        (500, {}, _body(None, "server_error"), ServiceUnavailableError, None),
        (503, {}, b"<html><body>Service Unavailable</body></html>", ServiceUnavailableError, None),
        (502, {}, b"", ServiceUnavailableError, None),
        (429, {"retry-after": "1.5"}, b"\xff\xfe not utf8", RateLimitError, 1.5),
        (400, {}, b"{not json", InvalidRequestError, None),
        (404, {}, b"null", ModelNotFoundError, None),
        (
            400,
            {},
            b'{"error": "plain text error from a compatible server"}',
            InvalidRequestError,
            None,
        ),
        (400, {}, b'{"error": 12}', InvalidRequestError, None),
    ],
)
def test_error_table(status, headers, body, cls, retry_after):
    error = OPENAI.classify_error(status, headers, body, provider="p")
    assert type(error) is cls
    assert error.retry_after == retry_after
    assert isinstance(error, ProviderError)


def test_html_error_page_message_is_short_and_tag_free():
    error = OPENAI.classify_error(
        502, {}, b"<html><h1>Bad Gateway</h1>" + b"x" * 5000, provider="p"
    )
    assert "<h1>" not in str(error) and len(str(error)) < 300


@pytest.mark.parametrize(
    "secret",
    ["sk-proj-abcDEF1234567890", "sk-ant-api03-abcdef123456", "AIzaFAKE1234567890abcdefghij"],
)
def test_keys_are_scrubbed_from_error_messages(secret):
    body = _body(
        "invalid_api_key", "invalid_request_error", f"Incorrect API key provided: {secret}."
    )
    error = OPENAI.classify_error(401, {}, body, provider="p")
    assert secret not in str(error) and secret[:8] not in error.message
