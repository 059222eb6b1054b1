"""The emulator's pure parts: tokenizer, answer rules, argument generation, fault rules, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.emulator import count_tokens, load_config, reply_text
from router.emulator.answers import Conversation, ToolSpec, answer, tool_result_text
from router.emulator.arguments import example_arguments
from router.emulator.faults import FaultBook, FaultRule
from router.emulator.tokenizer import pieces, truncate

MCP_TOOLS = Path(__file__).parent / "fixtures" / "mcp_tools"
WEATHER = ToolSpec(
    "get_weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec("get_time", {"type": "object", "properties": {}})


# -- tokenizer -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("hello", 1),
        ("Hello, world!", 4),
        ("don't", 3),
        ("  spaced   out  ", 2),
        ("naïve café", 2),
    ],
)
def test_a_token_is_a_word_or_a_punctuation_mark(text, tokens):
    assert count_tokens(text) == tokens


@pytest.mark.parametrize("text", ["", "Echo: hello world", "  lead and trail  ", "a\nb\tc", "!!"])
def test_stream_pieces_rebuild_the_text_exactly(text):
    assert "".join(pieces(text)) == text


def test_each_stream_piece_carries_one_token():
    assert pieces("Echo: hi there") == ["Echo", ":", " hi", " there"]


def test_truncate_cuts_after_the_nth_token_and_says_so():
    assert truncate("Echo: one two", 3) == ("Echo: one", True)
    assert truncate("Echo: one two", 4) == ("Echo: one two", False)
    assert truncate("Echo: one two", None) == ("Echo: one two", False)


# -- answer rules ----------------------------------------------------------------------------
def test_reply_text_echoes_the_prompt_cut_to_max_tokens():
    assert reply_text("hello world") == "Echo: hello world"
    assert reply_text("hello world", 3) == "Echo: hello"


def test_plain_answer_echoes_the_last_user_text():
    result = answer(Conversation(last_user_text="What is up?"))
    assert (result.text, result.finish, result.output_tokens) == ("Echo: What is up?", "stop", 6)


def test_answer_cut_by_max_tokens_finishes_with_length():
    result = answer(Conversation(last_user_text="one two three", max_tokens=2))
    assert (result.text, result.finish) == ("Echo:", "length")


def test_tools_named_in_the_prompt_are_called_in_order_of_mention():
    conv = Conversation(last_user_text="Use get_time, then get_weather.", tools=(WEATHER, TIME))
    result = answer(conv)
    assert result.finish == "tool_calls"
    assert [(c.name, c.arguments) for c in result.calls] == [
        ("get_time", {}),
        ("get_weather", {"city": "city"}),
    ]


def test_without_parallel_calls_only_the_first_named_tool_is_called():
    conv = Conversation(
        last_user_text="get_weather and get_time", tools=(WEATHER, TIME), parallel=False
    )
    assert [c.name for c in answer(conv).calls] == ["get_weather"]


def test_a_tool_name_inside_another_word_does_not_count():
    conv = Conversation(last_user_text="my_get_weather_thing", tools=(WEATHER,))
    assert answer(conv).calls == ()


def test_required_tool_choice_calls_the_first_tool_when_none_is_named():
    conv = Conversation(last_user_text="hi", tools=(WEATHER, TIME), tool_choice="required")
    assert [c.name for c in answer(conv).calls] == ["get_weather"]


def test_forced_tool_choice_calls_the_forced_tool():
    conv = Conversation(
        last_user_text="get_weather please",
        tools=(WEATHER, TIME),
        tool_choice="named",
        forced=("get_time",),
    )
    assert [c.name for c in answer(conv).calls] == ["get_time"]


def test_tool_choice_none_answers_text_even_when_a_tool_is_named():
    conv = Conversation(last_user_text="get_weather", tools=(WEATHER,), tool_choice="none")
    assert answer(conv).text == "Echo: get_weather"


def test_tool_results_are_quoted():
    conv = Conversation(
        last_user_text="get_weather", tools=(WEATHER,), tool_results=("Sunny", "12:00")
    )
    assert answer(conv).text == "Tool results: Sunny; 12:00"


def test_tool_result_text_unwraps_blocks_and_single_string_objects():
    assert tool_result_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a b"
    assert tool_result_text({"result": "London"}) == "London"
    assert tool_result_text({"b": 1, "a": [2]}) == '{"a":[2],"b":1}'


# -- arguments from schemas ------------------------------------------------------------------
def test_arguments_fill_required_properties_with_the_simplest_valid_values():
    schema = {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 3, "maximum": 9},
            "ratio": {"type": "number", "exclusiveMinimum": 2},
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "minLength": 6},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "nested": {
                "type": "object",
                "properties": {"flag": {"type": "boolean"}, "skip": {"type": "string"}},
                "required": ["flag"],
            },
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "ref": {"$ref": "#/$defs/Point"},
            "optional": {"type": "string"},
        },
        "required": ["unit", "days", "ratio", "when", "code", "tags", "nested", "maybe", "ref"],
        "$defs": {
            "Point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
        },
    }
    assert example_arguments(schema) == {
        "unit": "celsius",
        "days": 3,
        "ratio": 2.5,
        "when": "2024-01-01T00:00:00Z",
        "code": "codexx",
        "tags": ["tags", "tags"],
        "nested": {"flag": True},
        "maybe": 1,
        "ref": {"x": 1},
    }


def test_arguments_accept_gemini_upper_case_types():
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]}
    assert example_arguments(schema) == {"n": 1}


def test_recursive_schemas_terminate():
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/Node"}},
                "required": ["next"],
            }
        },
    }
    assert isinstance(example_arguments(schema), dict)


@pytest.mark.parametrize("path", sorted(MCP_TOOLS.glob("*.json")), ids=lambda p: p.stem)
def test_arguments_validate_against_real_mcp_tool_schemas(path):
    jsonschema = pytest.importorskip("jsonschema")
    tool = json.loads(path.read_text())
    schema = tool.get("inputSchema") or tool.get("input_schema") or tool.get("parameters") or {}
    validator = jsonschema.Draft202012Validator
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError:
        validator = jsonschema.Draft4Validator  # boolean exclusiveMinimum: a draft-4 schema
    validator(schema).validate(example_arguments(schema))


# -- fault rules -----------------------------------------------------------------------------
def test_count_rule_fires_for_the_next_n_matching_requests_then_is_spent():
    book = FaultBook([{"provider": "openai", "kind": "rate_limit", "count": 2}])
    picks = [book.pick("openai", "", "m") for _ in range(3)]
    assert [p.kind if p else None for p in picks] == ["rate_limit", "rate_limit", None]
    assert book.pick("anthropic", "", "m") is None
    assert book.to_list()[0]["spent"] is True


def test_schedule_rule_follows_its_list_per_matching_request():
    book = FaultBook([{"kind": "server_error", "schedule": [True, False, True]}])
    assert [bool(book.pick("google", "", None)) for _ in range(5)] == [
        True,
        False,
        True,
        False,
        False,
    ]


def test_probability_rule_is_reproducible_with_a_seed():
    rule = {"kind": "unavailable", "probability": 0.5, "seed": 7}
    first, second = FaultBook([rule]), FaultBook([rule])
    run1 = [bool(first.pick("openai", "", None)) for _ in range(40)]
    run2 = [bool(second.pick("openai", "", None)) for _ in range(40)]
    assert run1 == run2
    assert 5 < sum(run1) < 35


def test_rules_match_on_prefix_and_model_glob():
    book = FaultBook([{"prefix": "/p/b", "model": "gpt-4o*", "kind": "overloaded"}])
    assert book.pick("openai", "", "gpt-4o") is None
    assert book.pick("openai", "/p/b", "claude") is None
    assert book.pick("openai", "/p/b", "gpt-4o-mini").kind == "overloaded"


def test_first_firing_rule_wins_and_fault_parameters_have_defaults():
    book = FaultBook([{"kind": "timeout", "count": 1}, {"kind": "rate_limit", "retry_after": 3}])
    assert book.pick("openai", "", None).params == {"delay": 30.0}
    assert book.pick("openai", "", None).params == {"retry_after": 3}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "explode"}, "kind 'explode'"),
        ({"kind": "reset", "colour": 1}, "unknown key(s) colour"),
        ({"kind": "reset", "probability": 2}, "probability"),
        ({"kind": "reset", "provider": "azure"}, "unknown provider 'azure'"),
        ({"kind": "reset", "count": 1, "schedule": [True]}, "either count or schedule"),
    ],
)
def test_bad_rules_are_refused_with_the_problem_named(rule, message):
    with pytest.raises(ValueError, match="fault rule|provider") as info:
        FaultRule.from_dict(rule)
    assert message in str(info.value)


# -- config ----------------------------------------------------------------------------------
def test_config_file_is_read_from_yaml(tmp_path):
    path = tmp_path / "emu.yaml"
    path.write_text(
        "faults:\n  - {provider: gemini, kind: unavailable, count: 1}\n"
        "pacing: {anthropic: {ttft: 0.1}}\nkeys: {openai: [sk-pinned]}\nmodels: [m1, m2]\n"
    )
    config = load_config(path)
    assert config.faults[0]["kind"] == "unavailable"
    assert config.pacing == {"anthropic": (0.1, 0.0)}
    assert config.keys == {"openai": frozenset({"sk-pinned"})}
    assert config.models["google"] == ("m1", "m2")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fault": []}, "unknown key(s) fault"),
        ({"faults": [{"kind": "nope"}]}, "faults[0]"),
        ({"pacing": {"ttft": -1}}, "pacing.ttft"),
        ({"keys": {"openai": [""]}}, "keys.openai"),
        ({"models": {"bard": ["x"]}}, "unknown provider 'bard'"),
    ],
)
def test_config_errors_name_the_key(raw, message):
    with pytest.raises(ValueError) as info:
        load_config(raw)
    assert message in str(info.value)


def test_config_errors_never_show_key_values():
    with pytest.raises(ValueError) as info:
        load_config({"keys": {"openai": ["sk-secret-value", 3]}})
    assert "sk-secret-value" not in str(info.value)
