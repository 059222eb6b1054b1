"""The request surface through the bridge's ``/v1/chat/completions``, with the official openai
SDK as the client, whichever provider answers (the emulator plays each)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from pydantic import BaseModel

from router.server import BridgeServer

PROVIDERS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-sonnet-4-6",
    "anthropic-tool": "claude-3-5-haiku-20241022",
    "google": "gemini-2.5-flash",
}


class Invite(BaseModel):
    guest: str
    seats: int
    vegetarian: bool


@pytest.fixture
def server(make_manager) -> Iterator[BridgeServer]:
    server = BridgeServer(make_manager(), threads=4, auth_token="").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=20)


def test_ai_generate_takes_the_request_surface(server):
    body = {
        **_ask(model="gemini-2.5-flash"),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"schema": Invite.model_json_schema()},
        },
        "reasoning": {"effort": "low"},
        "user": "u-9",
    }
    answer = requests.post(server.url + "/ai/generate", json=body, timeout=20).json()
    assert Invite.model_validate(answer["parsed"]) == Invite.model_validate_json(answer["content"])
    assert answer["reasoning"] == "Thinking about: Invite Ada"
    assert answer["usage"]["reasoning_tokens"] > 0
    assert answer["dropped_params"] == ["user: Gemini takes no end-user id"]
    cut = {**body, "max_tokens": 2, "reasoning": None}  # no thinking budget on top
    broken = requests.post(server.url + "/ai/generate", json=cut, timeout=20)
    assert broken.status_code == 502
    error = broken.json()["error"]
    assert error["type"] == "StructuredOutputError" and error["raw_text"]


def _ask(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Invite Ada"}], **extra}


@pytest.mark.parametrize("model", PROVIDERS.values(), ids=PROVIDERS)
def test_the_sdks_parse_works_whichever_provider_answers(sdk, model):
    completion = sdk.chat.completions.parse(model=model, response_format=Invite, **_ask())
    message = completion.choices[0].message
    assert isinstance(message.parsed, Invite)
    assert message.parsed == Invite.model_validate_json(message.content)
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", PROVIDERS.values(), ids=PROVIDERS)
def test_a_streamed_schema_answer_through_the_sdk(sdk, model):
    with sdk.chat.completions.stream(model=model, response_format=Invite, **_ask()) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Invite)


@pytest.mark.parametrize("model", ["gpt-5-mini", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_reasoning_effort_is_mapped_and_its_tokens_returned(sdk, model):
    completion = sdk.chat.completions.create(model=model, reasoning_effort="low", **_ask())
    details = completion.usage.completion_tokens_details
    assert details.reasoning_tokens > 0
    assert completion.usage.completion_tokens > details.reasoning_tokens
    reasoning = getattr(completion.choices[0].message, "reasoning_content", None)
    if model.startswith("gpt"):
        assert reasoning is None
    else:
        assert reasoning == "Thinking about: Invite Ada"
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
            **_ask(),
        )
    )
    streamed = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert streamed == (reasoning or "")
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == details.reasoning_tokens


def test_cache_reads_and_writes_are_returned(sdk):
    system = [
        {"type": "text", "text": "House rules. " * 40, "cache_control": {"type": "ephemeral"}}
    ]
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]}
    first = sdk.chat.completions.create(model="claude-sonnet-4-6", **body)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert first.usage.prompt_tokens_details.cache_write_tokens > 0
    second = sdk.chat.completions.create(model="claude-sonnet-4-6", **body)
    assert second.usage.prompt_tokens_details.cached_tokens > 0


def test_no_parameter_is_silently_dropped(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="claude-sonnet-4-6", seed=4, **_ask())
    assert caught.value.status_code == 503 and "seed: Anthropic has no seed" in str(caught.value)
    completion = sdk.chat.completions.create(
        model="claude-sonnet-4-6",
        seed=4,
        user="u-1",
        extra_body={"strict_params": False},
        **_ask(),
    )
    assert completion.model_extra["dropped_params"] == ["seed: Anthropic has no seed"]
    openai_answer = sdk.chat.completions.create(
        model="gpt-5-mini", seed=4, presence_penalty=0.5, parallel_tool_calls=False, **_ask()
    )
    assert "dropped_params" not in (openai_answer.model_extra or {})
    with pytest.raises(openai.BadRequestError, match="store"):
        sdk.chat.completions.create(model="gpt-5-mini", store=True, **_ask())


def test_anthropic_thinking_round_trips_through_the_bridge(sdk):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "Use get_weather for Oslo"}]
    extra = {"reasoning": {"budget_tokens": 2048}}
    first = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=messages, tools=tools, extra_body=extra
    )
    message = first.choices[0].message
    assert message.model_extra["provider_data"]["thinking_blocks"][0]["signature"]
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "cold"})
    second = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=messages, tools=tools, extra_body=extra
    )
    assert second.choices[0].message.content.startswith("Tool results: cold")
