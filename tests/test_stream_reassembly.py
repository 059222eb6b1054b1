"""A streamed answer reassembles to the same answer as the non-streamed one, for every provider.

The stream bodies follow the recorded framing of each provider (OpenAI ``data:`` chunks with
argument fragments and ``[DONE]``; Anthropic ``event:`` blocks where text blocks count in the
block index and arguments arrive as ``input_json_delta`` fragments; Gemini CRLF events with
whole ``functionCall`` parts and no end marker). No recording holds two parallel calls for
OpenAI or Gemini, so those are written by hand in the same framing; Anthropic's come from the
recorded simonw parallel-tools cassette.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from wire import load, run_stream, sse

from router.errors import MalformedResponseError
from router.models import ProviderType, StreamChunk, ToolCall, ToolCallDelta, Usage
from router.providers import StreamAccumulator, assemble_stream, get_adapter

CALLS = [
    ("call_weather_paris", "get_weather", {"city": "Paris", "units": "metric"}),
    (
        "call_weather_tokyo",
        "get_weather",
        {"city": "Tokyo", "days": [1, 2], "detail": {"hourly": True}},
    ),
]
TEXT = "Let me check both cities."
USAGE = {"input": 120, "output": 48}


def _fragments(arguments: dict[str, Any], size: int = 5) -> list[str]:
    text = json.dumps(arguments)
    return [text[i : i + size] for i in range(0, len(text), size)]


# --- OpenAI --------------------------------------------------------------------------------


def _openai_pair() -> tuple[dict[str, Any], bytes]:
    message = {
        "role": "assistant",
        "content": TEXT,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in CALLS
        ],
    }
    usage = {"prompt_tokens": USAGE["input"], "completion_tokens": USAGE["output"]}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": usage,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    events: list[Any] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in ("Let me", " check both", " cities.")]
    for number, (call_id, name, arguments) in enumerate(CALLS):
        first = {
            "index": number,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        events.append(chunk({"tool_calls": [first]}))
        events += [
            chunk({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
            for piece in _fragments(arguments)
        ]
    events.append(chunk({}, "tool_calls"))
    events.append(
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    )
    events.append("[DONE]")
    return body, sse(*((None, e) for e in events))


# --- Anthropic -----------------------------------------------------------------------------


def _anthropic_pair() -> tuple[dict[str, Any], bytes]:
    content: list[dict[str, Any]] = [{"type": "text", "text": TEXT}]
    content += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in CALLS]
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": "tool_use",
        "usage": {"input_tokens": USAGE["input"], "output_tokens": USAGE["output"]},
    }
    events: list[tuple[str, Any]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "content": [],
                    "usage": {"input_tokens": USAGE["input"], "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for word in ("Let me", " check both", " cities."):
        delta = {"type": "text_delta", "text": word}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    for block, (call_id, name, arguments) in enumerate(CALLS, start=1):
        start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": block, "content_block": start},
            )
        )
        for piece in ["", *_fragments(arguments, 7)]:
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": block, "delta": delta},
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": block}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": USAGE["output"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return body, sse(*events)


# --- Gemini --------------------------------------------------------------------------------


def _gemini_pair() -> tuple[dict[str, Any], bytes]:
    def part(number: int) -> dict[str, Any]:
        _, name, arguments = CALLS[number]
        out: dict[str, Any] = {"functionCall": {"name": name, "args": arguments}}
        if number == 0:
            out["thoughtSignature"] = "CiQBcsjafA=="  # Gemini 3 signs the first call of a turn
        return out

    usage = {
        "promptTokenCount": USAGE["input"],
        "candidatesTokenCount": USAGE["output"],
        "totalTokenCount": 168,
    }
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": TEXT}, part(0), part(1)]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage,
        "responseId": "resp-1",
    }
    early = {"promptTokenCount": USAGE["input"] + 3, "totalTokenCount": USAGE["input"] + 3}
    events = [
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "Let me check"}]}, "index": 0}
            ],
            "usageMetadata": early,
            "responseId": "resp-1",
        },
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": " both cities."}]}, "index": 0}
            ],
            "usageMetadata": early,
            "responseId": "resp-1",
        },
        {
            "candidates": [{"content": {"role": "model", "parts": [part(0)]}, "index": 0}],
            "usageMetadata": early,
            "responseId": "resp-1",
        },
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [part(1)]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "responseId": "resp-1",
        },
    ]
    return body, sse(*((None, e) for e in events), newline="\r\n")


PAIRS = {
    ProviderType.OPENAI: _openai_pair,
    ProviderType.ANTHROPIC: _anthropic_pair,
    ProviderType.GOOGLE: _gemini_pair,
}


@pytest.mark.parametrize("provider", list(PAIRS), ids=lambda p: p.value)
@pytest.mark.parametrize("piece_size", [None, 1, 3, 64])
def test_streamed_and_whole_answers_are_equal(provider, piece_size):
    adapter = get_adapter(provider)
    body, stream = PAIRS[provider]()

    whole = adapter.parse_response(body, model="m")
    streamed = assemble_stream(run_stream(adapter.new_stream_parser(model="m"), stream, piece_size))

    assert len(whole.tool_calls) == 2
    assert streamed.tool_calls == whole.tool_calls
    assert [call.arguments for call in whole.tool_calls] == [arguments for _, _, arguments in CALLS]
    assert streamed.content == whole.content == TEXT
    assert streamed.finish_reason == whole.finish_reason == "tool_calls"
    assert (
        streamed.usage
        == whole.usage
        == Usage(input_tokens=USAGE["input"], output_tokens=USAGE["output"])
    )
    assert streamed.provider is whole.provider is provider
    assert streamed.request_id == whole.request_id


@pytest.mark.parametrize("provider", list(PAIRS), ids=lambda p: p.value)
def test_tool_call_deltas_have_stable_indexes_and_ids_only_first(provider):
    adapter = get_adapter(provider)
    _, stream = PAIRS[provider]()
    deltas = [
        d
        for c in run_stream(adapter.new_stream_parser(model="m"), stream)
        for d in c.tool_call_deltas
    ]

    seen: list[int] = []
    for delta in deltas:
        if delta.index not in seen:
            assert delta.id and delta.name, "the first delta of a call names it"
            seen.append(delta.index)
        else:
            assert delta.id is None and delta.name is None
    assert seen == [0, 1]


def test_gemini_sends_one_delta_per_whole_call_with_its_signature():
    _, stream = _gemini_pair()
    deltas = [
        d
        for c in run_stream(get_adapter(ProviderType.GOOGLE).new_stream_parser(model="m"), stream)
        for d in c.tool_call_deltas
    ]
    assert [json.loads(d.arguments) for d in deltas] == [CALLS[0][2], CALLS[1][2]]
    assert deltas[0].provider_data == {"thoughtSignature": "CiQBcsjafA=="}
    assert deltas[1].provider_data is None


def test_recorded_anthropic_parallel_stream_equals_its_whole_form():
    interaction = load(
        "anthropic", "simonw-llm-anthropic__tools_stream_parallel_roundtrip_raw_gzip__test_tools"
    )[0]
    adapter = get_adapter(ProviderType.ANTHROPIC)
    streamed = assemble_stream(run_stream(adapter.new_stream_parser(model="m"), interaction.body))
    # The same answer as Anthropic returns it without streaming (ids from the recording).
    whole = adapter.parse_response(
        {
            "id": "msg_01V2noLbAb2NgKnjaNw6Cn3w",
            "type": "message",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01LtHJmixrs9NcWQkK8hu8hj",
                    "name": "pelican_name_generator",
                    "input": {},
                    "caller": {"type": "direct"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01N8a4jWyf116qKTMqKKmjyt",
                    "name": "pelican_name_generator",
                    "input": {},
                    "caller": {"type": "direct"},
                },
            ],
            "stop_reason": "tool_use",
            "usage": {
                "input_tokens": 542,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 62,
            },
        },
        model="m",
    )
    assert streamed.tool_calls == whole.tool_calls
    assert streamed.usage == whole.usage
    assert streamed.request_id == whole.request_id


def test_accumulator_rules():
    accumulator = StreamAccumulator()
    accumulator.add(StreamChunk(content="a"))
    accumulator.add(StreamChunk(tool_call_deltas=(ToolCallDelta(index=1, id="t2", name="g"),)))
    accumulator.add(
        StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, id="t1", name="f", arguments='{"x"'),))
    )
    accumulator.add(StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, arguments=": 1}"),)))
    assert accumulator.content == "a"
    assert accumulator.tool_calls() == (
        ToolCall(id="t1", name="f", arguments={"x": 1}),
        ToolCall(id="t2", name="g", arguments={}),
    )
    # A stream with no final chunk was cut: its answer is marked as an error.
    assert accumulator.response().finish_reason == "error"
    accumulator.add(
        StreamChunk(is_complete=True, finish_reason="tool_calls", usage=Usage(input_tokens=1))
    )
    response = accumulator.response(model="x")
    assert (response.finish_reason, response.usage.input_tokens, response.model) == (
        "tool_calls",
        1,
        "x",
    )


def test_accumulator_refuses_unparseable_arguments():
    accumulator = StreamAccumulator()
    accumulator.add(
        StreamChunk(
            tool_call_deltas=(ToolCallDelta(index=0, id="t", name="f", arguments='{"x": '),)
        )
    )
    with pytest.raises(MalformedResponseError, match="'f'"):
        accumulator.tool_calls()
