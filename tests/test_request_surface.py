"""The 2026 request surface: structured outputs, reasoning, prompt caching and every other
parameter, on all three providers.

Request bodies are checked against the official SDKs' request types (``sdk_types``); answers
come from the emulator over real sockets, through the manager.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from sdk_types import check_anthropic, check_gemini, check_openai
from support import router_config

from router.catalog import load_catalog, price
from router.errors import InvalidRequestError, NoProviderAvailableError, StructuredOutputError
from router.models import AIRequest, ProviderType, Usage
from router.params import EFFORT_BUDGETS
from router.planner import Planner
from router.providers import get_adapter

CATALOG = load_catalog()
CHECKS = {"openai": check_openai, "anthropic": check_anthropic, "google": check_gemini}


class Event(BaseModel):
    name: str
    day: int
    attendees: list[str]
    place: str | None = None


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "inputSchema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def _request(**fields: Any) -> AIRequest:
    messages = fields.pop("messages", None) or [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Plan the launch party"},
    ]
    return AIRequest(messages=messages, **fields)


def _body(kind: str, model: str, request: AIRequest, stream: bool = False) -> dict[str, Any]:
    adapter = get_adapter(ProviderType(kind))
    http = adapter.build_request(
        request, model=model, api_key="k", base_url="", stream=stream, info=CATALOG.get(model)
    )
    return http.json


# --- request bodies against the SDK types ----------------------------------------------------

MODELS = [
    ("openai", "gpt-5-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-6"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("google", "gemini-3-pro-preview"),
    ("google", "gemini-2.5-flash"),
    ("google", "gemini-2.0-flash"),
]
FEATURES: dict[str, dict[str, Any]] = {
    "pydantic": {"response_format": Event},
    "json_schema": {"response_format": SCHEMA},
    "json_object": {"response_format": {"type": "json_object"}},
    "effort": {"reasoning": {"effort": "high"}, "max_tokens": 500},
    "budget": {"reasoning": {"budget_tokens": 3000, "include_thoughts": False}},
    "reasoning_off": {"reasoning": "none"},
    "cache_auto": {"cache_prompt": "1h", "tools": TOOLS},
    "cache_parts": {
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Long rules", "cache_control": {}}],
            },
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]},
        ]
    },
    "thinking_history": {
        "reasoning": {"budget_tokens": 2048},
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Use get_weather for Oslo"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "toolu_1", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
                "provider_data": {
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "Oslo?", "signature": "c2ln"},
                        {"type": "redacted_thinking", "data": "ZGF0YQ=="},
                    ]
                },
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
        ],
    },
    "params": {
        "seed": 7,
        "top_k": 5,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.2,
        "logit_bias": {"1234": -5},
        "parallel_tool_calls": False,
        "tools": TOOLS,
        "user": "user-42",
        "service_tier": "auto",
        "verbosity": "low",
        "prompt_cache_key": "party",
        "prompt_cache_retention": "24h",
        "temperature": 0.3,
        "stop": ["END"],
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize(("kind", "model"), MODELS, ids=[m for _, m in MODELS])
def test_every_request_conforms_to_the_sdk_types(kind, model, feature, stream):
    request = _request(model=model, strict_params=False, **FEATURES[feature])
    body = _body(kind, model, request, stream)
    assert CHECKS[kind](body) == []


def test_the_type_checks_catch_what_the_sdks_would_refuse():
    assert check_openai({"model": "m", "messages": [], "reasoning": "high"})
    assert check_openai({"model": "m", "messages": [], "reasoning_effort": "huge"})
    assert check_anthropic({"model": "m", "max_tokens": 1, "messages": [], "thinking": {}})
    bad_block = {"role": "user", "content": [{"type": "text", "text": "x", "cache": 1}]}
    assert check_anthropic({"model": "m", "max_tokens": 1, "messages": [bad_block]})
    assert check_gemini({"contents": [], "generationConfig": {"thinking": {}}})


def test_structured_outputs_use_each_providers_native_mechanism():
    openai = _body("openai", "gpt-5-mini", _request(response_format=Event))
    assert openai["response_format"]["type"] == "json_schema"
    assert openai["response_format"]["json_schema"]["name"] == "Event"
    assert openai["response_format"]["json_schema"]["strict"] is True

    native = _body("anthropic", "claude-sonnet-4-5", _request(response_format=SCHEMA))
    assert native["output_config"]["format"]["type"] == "json_schema"
    assert "tools" not in native
    fallback = _body("anthropic", "claude-3-5-haiku-20241022", _request(response_format=SCHEMA))
    assert "output_config" not in fallback
    assert fallback["tools"][-1]["name"] == "json_answer"
    assert fallback["tool_choice"] == {"type": "tool", "name": "json_answer"}

    gemini = _body("google", "gemini-2.5-flash", _request(response_format=SCHEMA))
    config = gemini["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA["json_schema"]["schema"]
    older = _body("google", "gemini-2.0-flash", _request(response_format=SCHEMA))
    assert older["generationConfig"]["responseSchema"]["type"] == "OBJECT"


def test_reasoning_maps_to_effort_thinking_and_thinking_config():
    request = _request(reasoning={"effort": "high"}, max_tokens=1000)
    openai = _body("openai", "gpt-5-mini", request)
    assert openai["reasoning_effort"] == "high"
    assert openai["max_completion_tokens"] == 1000 + EFFORT_BUDGETS["high"]

    adaptive = _body("anthropic", "claude-sonnet-4-6", request)
    assert adaptive["thinking"] == {"type": "adaptive"}
    assert adaptive["output_config"] == {"effort": "high"}
    budgeted = _body("anthropic", "claude-sonnet-4-5", _request(reasoning={"budget_tokens": 2000}))
    assert budgeted["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert budgeted["max_tokens"] == 4096 + 2000

    level = _body("google", "gemini-3-pro-preview", request)["generationConfig"]
    assert level["thinkingConfig"] == {"thinkingLevel": "high", "includeThoughts": True}
    budget = _body("google", "gemini-2.5-flash", request)["generationConfig"]
    assert budget["thinkingConfig"]["thinkingBudget"] == EFFORT_BUDGETS["high"]


def test_automatic_caching_places_at_most_four_breakpoints():
    parts = [{"type": "text", "text": f"part {n}", "cache_control": {}} for n in range(3)]
    request = _request(
        messages=[{"role": "system", "content": "rules"}, {"role": "user", "content": parts}],
        tools=TOOLS,
        cache_prompt=True,
    )
    body = _body("anthropic", "claude-sonnet-4-6", request)
    marked = [b for turn in body["messages"] for b in turn["content"] if "cache_control" in b]
    marked += [b for b in body["system"] if "cache_control" in b]
    marked += [t for t in body["tools"] if "cache_control" in t]
    assert len(marked) == 4
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["tools"][-1]  # the tools come last in preference
    with pytest.raises(ValueError, match="at most 4"):
        _request(messages=[{"role": "user", "content": parts + parts}])


# --- the planner refuses what a provider cannot honour ----------------------------------------


def _planner(emulator: Any) -> Planner:
    from router.config import config_from_dict

    return Planner(config_from_dict(router_config(emulator)), CATALOG)


@pytest.mark.parametrize(
    ("model", "fields", "reason"),
    [
        ("gpt-4", {"response_format": SCHEMA}, "response_format: the model does not support"),
        ("gpt-4o", {"reasoning": "high"}, "reasoning: the model does not reason"),
        ("claude-sonnet-4-6", {"seed": 1}, "seed: Anthropic has no seed"),
        ("gemini-2.5-flash", {"logit_bias": {"1": 1}}, "logit_bias: google has no logit_bias"),
        (
            "claude-3-7-sonnet-20250219",
            {"response_format": SCHEMA, "reasoning": "high"},
            "forced tool, which Anthropic does not allow together with thinking",
        ),
        ("claude-sonnet-4-6", {"reasoning": "low", "temperature": 0.2}, "temperature"),
        (
            "claude-sonnet-4-6",
            {"reasoning": "low", "tools": TOOLS, "tool_choice": "required"},
            "tool_choice: Anthropic does not allow forcing a tool together with thinking",
        ),
    ],
)
def test_candidates_that_cannot_honour_a_parameter_are_refused(emulator, model, fields, reason):
    plan = _planner(emulator).plan(_request(model=model, **fields), None)
    assert plan.candidates == []
    (why,) = plan.reasons.values()
    assert why.startswith("cannot honour") and reason in why


def test_the_worst_case_includes_the_thinking_budget_and_cache_writes(emulator):
    planner = _planner(emulator)
    plain = planner.plan(_request(model="claude-sonnet-4-6", max_tokens=100), None)
    thinking = planner.plan(
        _request(model="claude-sonnet-4-6", max_tokens=100, reasoning={"budget_tokens": 5000}),
        None,
    )
    info = CATALOG.require("claude-sonnet-4-6")
    extra = thinking.candidates[0].estimated_cost - plain.candidates[0].estimated_cost
    assert extra == pytest.approx(5000 * info.output_price / 1e6)
    cached = planner.plan(
        _request(model="claude-sonnet-4-6", max_tokens=100, cache_prompt="1h"), None
    )
    assert cached.candidates[0].estimated_cost > plain.candidates[0].estimated_cost


def test_cache_writes_and_reads_are_priced_with_their_own_rates():
    info = CATALOG.require("claude-sonnet-4-6")
    usage = Usage(
        input_tokens=1000,
        cached_input_tokens=200,
        cache_write_tokens=500,
        cache_write_1h_tokens=100,
        output_tokens=10,
    )
    expected = (
        300 * info.input_price
        + 200 * info.cached_input_price
        + 400 * info.cache_write_price("5m")
        + 100 * info.cache_write_price("1h")
        + 10 * info.output_price
    ) / 1e6
    assert price(info, usage) == pytest.approx(expected)
    assert info.cache_write_price("5m") == 1.25 * info.input_price
    assert info.cache_write_price("1h") == 2 * info.input_price


# --- end to end through the emulator -----------------------------------------------------------

E2E = ["gpt-5-mini", "claude-sonnet-4-6", "claude-3-5-haiku-20241022", "gemini-2.5-flash"]


@pytest.mark.parametrize("model", [*E2E, "gemini-2.0-flash"])
def test_a_pydantic_format_comes_back_parsed(make_manager, model):
    manager = make_manager()
    response = manager.process_request(_request(model=model, response_format=Event))
    assert isinstance(response.parsed, Event)
    assert json.loads(response.content) == response.parsed.model_dump()
    assert response.finish_reason == "stop" and response.tool_calls == ()


@pytest.mark.parametrize("model", E2E)
def test_a_streamed_structured_answer_is_parsed_on_the_final_chunk(make_manager, model):
    manager = make_manager()
    chunks = list(manager.stream_request(_request(model=model, response_format=SCHEMA)))
    text = "".join(chunk.content or "" for chunk in chunks)
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "stop"
    assert final.parsed == json.loads(text) and set(final.parsed) == {"city", "population"}
    assert all(chunk.parsed is None for chunk in chunks[:-1])


@pytest.mark.parametrize("model", ["gpt-5-mini", "claude-sonnet-4-6", "gemini-2.5-flash"])
def test_an_answer_that_breaks_the_format_is_a_structured_output_error(make_manager, model):
    manager = make_manager()
    with pytest.raises(StructuredOutputError) as caught:
        manager.process_request(_request(model=model, response_format=SCHEMA, max_tokens=3))
    assert "max_tokens" in caught.value.message
    assert caught.value.raw_text and not caught.value.raw_text.endswith("}")
    records = manager.usage_records()
    assert records and records[-1].outcome == "error" and records[-1].output_tokens > 0


def test_a_broken_answer_fails_over_to_the_next_candidate(make_manager, emulator):
    config = router_config(
        emulator,
        model_groups={
            "json": [
                {"provider": "google", "model": "gemini-2.0-flash"},
                {"provider": "openai", "model": "gpt-5-mini"},
            ]
        },
        default_strategy="priority",
    )
    # Gemini 2.0 does not reason (dropped in best effort), so its answer is cut at 3 tokens;
    # OpenAI's limit grows by the thinking budget and its answer completes.
    request = _request(
        model="json", response_format=SCHEMA, max_tokens=3, reasoning={"budget_tokens": 1024}
    )
    manager = make_manager(config)
    response = manager.process_request(request.model_copy(update={"strict_params": False}))
    assert response.provider_name == "openai"
    assert set(response.parsed) == {"city", "population"}


def test_parameters_dropped_in_best_effort_are_named_in_the_answer(make_manager):
    manager = make_manager()
    request = _request(model="claude-sonnet-4-6", seed=3, user="u1", strict_params=False)
    response = manager.process_request(request)
    assert response.dropped_params == ("seed: Anthropic has no seed",)
    gemini = manager.process_request(_request(model="gemini-2.5-flash", user="u1"))
    assert gemini.dropped_params == ("user: Gemini takes no end-user id",)
    with pytest.raises(NoProviderAvailableError, match="seed"):
        manager.process_request(_request(model="claude-sonnet-4-6", seed=3))


def test_anthropic_thinking_survives_a_tool_loop(make_manager):
    manager = make_manager()
    request = _request(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Use get_weather for Paris"}],
        tools=TOOLS,
        reasoning={"budget_tokens": 2048},
    )
    first = manager.process_request(request)
    assert first.reasoning and first.tool_calls
    (block,) = first.provider_data["thinking_blocks"]
    assert block["signature"] and block["thinking"] == first.reasoning
    messages = [
        {"role": "user", "content": "Use get_weather for Paris"},
        first.to_message(),
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny"},
    ]
    loop = {"model": "claude-sonnet-4-5", "tools": TOOLS, "reasoning": {"budget_tokens": 2048}}
    second = manager.process_request(_request(messages=messages, **loop))
    assert second.content.startswith("Tool results: sunny")
    # Without the thinking block the emulator refuses the turn, as Anthropic does.
    messages[1] = {**first.to_message(), "provider_data": None}
    with pytest.raises(InvalidRequestError, match="thinking"):
        manager.process_request(_request(messages=messages, **loop))


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-2.5-flash", "gpt-5-mini"])
def test_reasoning_streams_apart_from_the_content(make_manager, model):
    manager = make_manager()
    request = _request(model=model, reasoning={"effort": "low"})
    chunks = list(manager.stream_request(request))
    thoughts = "".join(chunk.reasoning or "" for chunk in chunks)
    text = "".join(chunk.content or "" for chunk in chunks)
    final = chunks[-1]
    assert text == "Echo: Plan the launch party"
    assert final.usage.reasoning_tokens > 0
    assert final.usage.output_tokens > final.usage.reasoning_tokens
    if model.startswith("gpt"):
        assert thoughts == ""  # Chat Completions returns no reasoning text
    else:
        assert thoughts == "Thinking about: Plan the launch party"
        assert final.provider_data or model.startswith("gemini")
    whole = manager.process_request(request)
    assert whole.usage.reasoning_tokens == final.usage.reasoning_tokens
    assert (whole.reasoning or "") == thoughts


def test_anthropic_prompt_cache_writes_then_reads(make_manager):
    manager = make_manager()
    request = _request(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "system", "content": "You are a party planner. " * 20},
            {"role": "user", "content": "Plan it"},
        ],
        cache_prompt="1h",
    )
    first = manager.process_request(request)
    assert first.usage.cache_write_tokens > 0
    assert first.usage.cache_write_1h_tokens == first.usage.cache_write_tokens
    assert first.usage.cached_input_tokens == 0
    info = CATALOG.require("claude-sonnet-4-6")
    assert first.cost == pytest.approx(price(info, first.usage))
    assert first.cost > price(info, first.usage.model_copy(update={"cache_write_tokens": 0}))
    second = manager.process_request(request)
    assert second.usage.cached_input_tokens > 0
    assert second.cost < first.cost


@pytest.mark.parametrize("model", ["gpt-5-mini", "gemini-2.5-flash"])
def test_automatic_caching_is_reported(make_manager, model):
    manager = make_manager()
    messages = [
        {"role": "system", "content": "House rules. " * 30},
        {"role": "user", "content": "First"},
        {"role": "assistant", "content": "Echo: First"},
        {"role": "user", "content": "Second"},
    ]
    first = manager.process_request(_request(model=model, messages=messages))
    assert first.usage.cached_input_tokens == 0
    messages[-1] = {"role": "user", "content": "Third"}
    second = manager.process_request(_request(model=model, messages=messages))
    assert 0 < second.usage.cached_input_tokens < second.usage.input_tokens
