"""Fuzzing with hypothesis: bad input gets a typed error, never a crash, a dead actor or a hang.

- configuration files: random text and bytes, random documents, near-valid configurations
  (a valid one with keys deleted, replaced by random values or added);
- ``AIRequest`` payloads: validation alone, then near-valid requests through a running manager;
- provider answers: random and mutated recorded bodies through each adapter's
  ``parse_response``, stream parser and ``classify_error``, then random bytes on a real socket
  (truncated bodies, wrong types, invalid UTF-8, unexpected SSE events) through a manager.

Each property is checked on a modest number of examples so the suite stays fast; raise
``ROUTER_FUZZ_EXAMPLES`` for a longer hunt.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pykka
import pytest
import wire
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support import KEYS, MODELS, router_config

from router.config import RouterConfig, config_from_dict, load_config
from router.errors import ConfigError, InvalidRequestError, RouterError
from router.manager import AIProviderManager, coerce_request
from router.models import AIRequest, AIResponse, ProviderType, StreamChunk
from router.providers import get_adapter

EXAMPLES = int(os.environ.get("ROUTER_FUZZ_EXAMPLES", "0")) or None


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- building blocks -------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=24)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=24,
)


def paths(document: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path into ``document`` (dict keys and list indexes)."""
    if prefix:
        yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, prefix + (index,))


@st.composite
def mutations_of(draw: st.DrawFn, document: Any, *, at_most: int = 3) -> Any:
    """``document`` with 1..``at_most`` random edits: a value replaced, a key deleted, a key
    added, a string cut short, a list emptied."""
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, at_most))):
        candidates = list(paths(result))
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = result
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "cut", "empty"]))
        value = parent[key]
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(value, dict):
            value[draw(st.text(max_size=8))] = draw(json_values)
        elif action == "cut" and isinstance(value, str):
            parent[key] = value[: draw(st.integers(0, len(value)))]
        elif action == "empty" and isinstance(value, list | dict):
            parent[key] = type(value)()
    return result


# --- configuration ---------------------------------------------------------------------------

# An invented key, shaped like a real one.
SECRET = "sk-proj-FAKE-fuzz-not-a-real-key-0000000000"
VALID_CONFIG: dict[str, Any] = {
    "providers": [
        {
            "name": "openai",
            "type": "openai",
            "api_key": SECRET,
            "base_url": "http://127.0.0.1:9/v1",
            "priority": 2,
            "timeout": 10,
            "retry": {"base_delay": 0.01, "max_delay": 0.1, "strategy": "exponential_backoff"},
            "circuit_breaker": {"failure_threshold": 3, "recovery_timeout": 5},
            "models": ["gpt-4o-mini"],
        },
        {"type": "anthropic", "api_key": "sk-ant-api03-FAKE-fuzz-not-a-real-key-000000"},
    ],
    "budgets": [{"name": "Monthly", "monthly_limit": 10, "alert_thresholds": [0.5, 0.9]}],
    "model_groups": {"fast": [{"provider": "openai", "model": "gpt-4o-mini"}]},
    "ledger": {"type": "memory"},
    "default_strategy": "cost",
    "request_timeout": 10,
}


def test_the_base_configuration_of_the_config_fuzzer_is_valid():
    assert isinstance(config_from_dict(VALID_CONFIG, environ={}), RouterConfig)


@fuzz_settings(300)
@given(mutations_of(VALID_CONFIG))
def test_near_valid_configurations_validate_or_raise_config_error(document):
    try:
        config = config_from_dict(document, environ={})
    except ConfigError as error:
        assert SECRET not in str(error)
        assert str(error).strip()
        return
    assert isinstance(config, RouterConfig)
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())


@fuzz_settings(200)
@given(json_values)
def test_any_document_is_a_config_or_a_config_error(document):
    try:
        config_from_dict(document, environ={})
    except ConfigError:
        pass


yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "providers:",
                "- type: openai",
                "  api_key: x",
                "budgets: [",
                "{",
                "}",
                "&a",
                "*a",
                "!!python/object:os.system",
                "\t",
                "  - ",
                "ledger: {type: sqlite}",
                ": :",
                "'",
                "${OPENAI_API_KEY",
                "%YAML 1.1",
                "---",
                "...",
            ]
        ),
        max_size=12,
    ).map("\n".join),
)


@fuzz_settings(200)
@given(yaml_text)
def test_random_yaml_files_give_config_errors(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, environ={})
    except ConfigError as error:
        assert str(path) in str(error)


@fuzz_settings(100)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_config_file_give_config_errors(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    try:
        load_config(path, environ={})
    except ConfigError as error:
        assert str(path) in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000 + "]" * 5000,  # nests deeper than any parser's stack
        "a: " + "{b: " * 3000 + "1" + "}" * 3000,
        # "Billion laughs": aliases of aliases; expanded it has 9**9 values.
        "\n".join(
            ["a: &a [x, x, x, x, x, x, x, x, x]"]
            + [
                f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
                for i in range(8)
            ]
            + ["providers: *i"]
        ),
    ],
    ids=["deep-list", "deep-map", "alias-bomb"],
)
def test_hostile_yaml_is_refused_quickly(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply|nests more than|too large"):
        load_config(path, environ={})


# --- AIRequest payloads ----------------------------------------------------------------------

# Any code point, lone surrogates included (hypothesis leaves those out of st.text by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot", ""])
content = st.one_of(
    st.text(max_size=40),
    any_text,
    st.none(),
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url", "audio"])},
            optional={
                "text": st.text(max_size=20) | json_values,
                "image_url": st.fixed_dictionaries({"url": st.text(max_size=30)}) | json_values,
            },
        ),
        max_size=3,
    ),
    json_values,
)
tool_call = st.fixed_dictionaries(
    {
        "id": st.text(max_size=8),
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {
                "name": st.sampled_from(["lookup", "get_weather", ""]),
                "arguments": st.text(max_size=30),
            }
        ),
    }
)
message = st.fixed_dictionaries(
    {"role": roles},
    optional={
        "content": content,
        "tool_calls": st.lists(tool_call, max_size=2),
        "tool_call_id": st.text(max_size=8),
        "name": st.text(max_size=8),
    },
)
schema = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "bogus"])}
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.sampled_from(["object", "array"])},
        optional={
            "properties": st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
            "items": inner,
            "required": st.lists(st.text(max_size=6), max_size=2),
            "anyOf": st.lists(inner, max_size=2),
            "$ref": st.sampled_from(["#/$defs/a", "#", "#/nowhere"]),
            "$defs": st.dictionaries(st.just("a"), inner, max_size=1),
            "additionalProperties": st.booleans(),
        },
    ),
    max_leaves=10,
)
tool = st.fixed_dictionaries(
    {"name": st.sampled_from(["lookup", "get_weather", "x" * 200, ""])},
    optional={"description": st.text(max_size=20) | st.none(), "inputSchema": schema | json_values},
)
request_payload = st.fixed_dictionaries(
    {"messages": st.lists(message, min_size=0, max_size=4)},
    optional={
        "model": st.sampled_from(["fast", *MODELS.values(), "no-such-model", "", "gpt-4o-mini"]),
        "tools": st.lists(tool, max_size=3),
        "tool_choice": st.sampled_from(["auto", "none", "required", "lookup", "nope"])
        | json_values,
        "max_tokens": st.integers(min_value=-5, max_value=10**12) | json_values,
        "temperature": st.floats() | json_values,
        "top_p": st.floats(),
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=3),
        "stream": st.booleans() | json_values,
        "metadata": json_values,
        "unexpected": json_values,
    },
)
valid_payload = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["fast", *MODELS.values()]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.just("user"), "content": st.text(min_size=1, max_size=60) | any_text}
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "tools": st.lists(tool, max_size=2, unique_by=lambda t: t["name"]),
        "max_tokens": st.integers(min_value=1, max_value=64),
        "temperature": st.floats(min_value=0, max_value=2),
        "stop": st.lists(st.text(min_size=1, max_size=4), max_size=2),
    },
)


@fuzz_settings(400)
@given(request_payload | json_values)
def test_request_payloads_validate_or_raise_invalid_request_error(payload):
    try:
        request = coerce_request(payload)
    except InvalidRequestError as error:
        assert str(error).startswith("invalid request")
        return
    assert isinstance(request, AIRequest)
    assert AIRequest.model_validate(payload) == request
    with pytest.raises(ValidationError):
        AIRequest.model_validate({**request.model_dump(), "unknown_field": 1})


@pytest.fixture(scope="module")
def fuzz_manager(emulator_server) -> Iterator[AIProviderManager]:
    emulator_server.reset()
    emulator_server.set_pacing(None, ttft=0.0, token_delay=0.0)
    config = router_config(emulator_server, request_timeout=10.0)
    for provider in config["providers"]:
        provider["circuit_breaker"] = {"failure_threshold": 1000, "recovery_timeout": 0.1}
    with AIProviderManager(config) as manager:
        yield manager
    pykka.ActorRegistry.stop_all()


def all_actors_alive(manager: AIProviderManager) -> bool:
    """Every actor of ``manager`` answers (a dead one raises ``ActorDeadError``)."""
    health = manager.provider_health()  # each provider actor
    manager.get_budget_status()  # the budget actor
    manager.get_cost_recommendations({"messages": [{"role": "user", "content": "x"}]})  # supervisor
    return len(health) == len(manager.config.providers)


def outcome(manager: AIProviderManager, payload: Any, *, stream: bool) -> Any:
    """The typed result of one request: an AIResponse or the RouterError; anything else fails."""
    try:
        if stream:
            chunks = list(manager.stream_request(payload, timeout=10))
            assert chunks and chunks[-1].is_complete
            assert all(isinstance(c, StreamChunk) for c in chunks)
            return chunks[-1]
        return manager.submit(payload, timeout=10).get(timeout=40)
    except RouterError as error:
        assert str(error)
        return error


@fuzz_settings(150)
@given(payload=request_payload | valid_payload, stream=st.booleans())
def test_requests_through_a_manager_end_typed_and_leave_every_actor_alive(
    fuzz_manager, payload, stream
):
    result = outcome(fuzz_manager, payload, stream=stream)
    assert isinstance(result, AIResponse | StreamChunk | RouterError)
    assert all_actors_alive(fuzz_manager)


def test_text_that_is_not_unicode_is_the_callers_mistake_and_trips_no_breaker(fuzz_manager):
    payload = {"model": "fast", "messages": [{"role": "user", "content": "hi \ud800 there"}]}
    before = {name: s.consecutive_failures for name, s in fuzz_manager.provider_health().items()}
    for _ in range(12):
        with pytest.raises(InvalidRequestError, match="not valid Unicode"):
            fuzz_manager.submit(payload, strategy="round_robin").get(timeout=10)
    health = fuzz_manager.provider_health()
    assert {name: s.consecutive_failures for name, s in health.items()} == before


def test_the_fuzzed_manager_still_serves_plain_requests(fuzz_manager):
    response = fuzz_manager.process_request(
        {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.content
    stats = fuzz_manager.get_manager_stats()["usage_stats"]
    assert stats["pending_requests"] == 0


# --- provider answers through the adapters ----------------------------------------------------

ADAPTER_TYPES = [ProviderType.OPENAI, ProviderType.ANTHROPIC, ProviderType.GOOGLE]
WIRE_DIRS = {
    ProviderType.OPENAI: "openai",
    ProviderType.ANTHROPIC: "anthropic",
    ProviderType.GOOGLE: "gemini",
}


@cache
def recorded(
    provider_type: ProviderType,
) -> tuple[list[dict[str, Any]], list[list[tuple[str, str]]]]:
    """The recorded 2xx JSON bodies and SSE event lists of one provider."""
    bodies: list[dict[str, Any]] = []
    streams: list[list[tuple[str, str]]] = []
    directory = wire.WIRE / WIRE_DIRS[provider_type]
    for path in sorted(directory.glob("*.yaml")):
        for interaction in wire.load(WIRE_DIRS[provider_type], path.stem):
            if interaction.status != 200:
                continue
            if "event-stream" in interaction.content_type:
                streams.append(wire.sse_events(interaction.body))
            else:
                body = interaction.json()
                if isinstance(body, dict):
                    bodies.append(body)
    return bodies, streams


@st.composite
def response_bodies(draw: st.DrawFn) -> tuple[ProviderType, Any]:
    provider_type = draw(st.sampled_from(ADAPTER_TYPES))
    bodies, _ = recorded(provider_type)
    body = draw(st.sampled_from(bodies))
    return provider_type, draw(
        mutations_of(body) | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
    )


@fuzz_settings(400)
@given(response_bodies())
def test_mutated_response_bodies_parse_or_raise_typed_errors(case):
    provider_type, body = case
    try:
        response = get_adapter(provider_type).parse_response(body, model="m")
    except RouterError:
        return
    assert isinstance(response, AIResponse)


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[ProviderType, list[tuple[str, str]]]:
    provider_type = draw(st.sampled_from(ADAPTER_TYPES))
    _, streams = recorded(provider_type)
    events = list(draw(st.sampled_from(streams)))
    for _ in range(draw(st.integers(0, 4))):
        if not events:
            break
        index = draw(st.integers(0, len(events) - 1))
        name, data = events[index]
        action = draw(st.sampled_from(["drop", "cut", "data", "json", "rename", "repeat", "stop"]))
        if action == "drop":
            del events[index]
        elif action == "cut":
            events[index] = (name, data[: draw(st.integers(0, len(data)))])
        elif action == "data":
            events[index] = (name, draw(st.text(max_size=40)))
        elif action == "json":
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data
            events[index] = (
                name,
                json.dumps(
                    draw(mutations_of(parsed) if isinstance(parsed, dict | list) else json_values)
                ),
            )
        elif action == "rename":
            events[index] = (
                draw(st.sampled_from(["error", "ping", "message", "unknown", ""])),
                data,
            )
        elif action == "repeat":
            events.insert(index, (name, data))
        else:
            events = events[:index]
    return provider_type, events


@fuzz_settings(400)
@given(event_streams())
def test_mutated_streams_give_chunks_or_typed_errors(case):
    provider_type, events = case
    parser = get_adapter(provider_type).new_stream_parser(model="m", provider="p")
    try:
        for name, data in events:
            assert all(isinstance(c, StreamChunk) for c in parser.feed(name, data))
        assert all(isinstance(c, StreamChunk) for c in parser.finish())
    except RouterError:
        pass
    usage = parser.usage  # a cut stream is billed by what was seen: always computable
    assert usage.input_tokens >= 0 and usage.output_tokens >= 0


error_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["message", "code", "status", "type", "details", "reason", "param"]),
        json_values,
    ).map(lambda e: json.dumps({"error": e}).encode()),
)


@fuzz_settings(400)
@given(
    st.sampled_from(ADAPTER_TYPES),
    st.integers(min_value=100, max_value=599),
    st.dictionaries(
        st.sampled_from(
            ["retry-after", "content-type", "x-request-id", "request-id", "retry-after-ms"]
        ),
        st.text(max_size=30),
    ),
    error_bodies,
)
def test_any_error_answer_is_classified_without_raising(provider_type, status, headers, body):
    error = get_adapter(provider_type).classify_error(status, headers, body, provider="p")
    assert isinstance(error, RouterError)
    assert error.retry_after is None or error.retry_after >= 0


# --- provider answers on the wire --------------------------------------------------------------


class _Replies(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.close_connection = True
        try:
            self.wfile.write(self.server.reply)  # type: ignore[attr-defined]
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def raw_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    server.daemon_threads = True
    server.reply = b""  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def raw_manager(raw_server) -> Iterator[AIProviderManager]:
    url = f"http://127.0.0.1:{raw_server.server_address[1]}"
    providers = [
        {
            "name": kind,
            "type": kind,
            "api_key": KEYS[kind],
            "base_url": url + ("/v1" if kind == "openai" else ""),
            "max_retries": 0,
            "timeout": 2.0,
            "circuit_breaker": {"failure_threshold": 100000, "recovery_timeout": 0.1},
        }
        for kind in ("openai", "anthropic", "google")
    ]
    with AIProviderManager(
        {"providers": providers, "ledger": {"type": "memory"}, "request_timeout": 10}
    ) as manager:
        yield manager
    pykka.ActorRegistry.stop_all()


def http_reply(status: int, content_type: str, body: bytes, framing: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", "Connection: close"]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
    elif framing == "short":  # promises more than it sends
        head.append(f"Content-Length: {len(body) + 10}")
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        body = (b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@st.composite
def wire_answers(draw: st.DrawFn) -> tuple[str, bool, bytes]:
    kind = draw(st.sampled_from(["openai", "anthropic", "google"]))
    provider_type = ProviderType(kind)
    stream = draw(st.booleans())
    bodies, streams = recorded(provider_type)
    if stream:
        _, events = draw(event_streams().filter(lambda c: c[0] is provider_type))
        body = wire.sse(*[(name if name != "message" else None, data) for name, data in events])
        content_type = "text/event-stream"
    else:
        body = json.dumps(draw(mutations_of(draw(st.sampled_from(bodies))))).encode()
        content_type = "application/json"
    garble = draw(st.sampled_from(["none", "cut", "invalid-utf8", "random"]))
    if garble == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif garble == "invalid-utf8":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + b"\xff\xfe\xc3(" + body[at:]
    elif garble == "random":
        body = draw(st.binary(max_size=200))
    status = draw(st.sampled_from([200, 200, 200, 400, 401, 404, 429, 500, 503, 529]))
    framing = draw(st.sampled_from(["length", "short", "chunked", "close"]))
    return kind, stream, http_reply(status, content_type, body, framing)


@fuzz_settings(120)
@given(wire_answers())
def test_garbled_answers_on_the_wire_end_in_typed_errors(raw_server, raw_manager, case):
    kind, stream, reply = case
    raw_server.reply = reply
    # A 401 (or a quota answer) takes a provider out of rotation until its key is rotated;
    # rotate it so every example reaches the wire.
    raw_manager.update_provider(kind, api_key=KEYS[kind])
    payload = {"model": MODELS[kind], "messages": [{"role": "user", "content": "hi"}]}
    result = outcome(raw_manager, payload, stream=stream)
    assert isinstance(result, AIResponse | StreamChunk | RouterError)
    assert all_actors_alive(raw_manager)


def test_the_garbled_manager_still_answers(raw_server, raw_manager):
    bodies, _ = recorded(ProviderType.OPENAI)
    raw_server.reply = http_reply(200, "application/json", json.dumps(bodies[0]).encode(), "length")
    raw_manager.update_provider("openai", api_key=KEYS["openai"])
    response = raw_manager.process_request(
        {"model": MODELS["openai"], "messages": [{"role": "user", "content": "hi"}]}, timeout=10
    )
    assert response.provider_name == "openai"
    assert raw_manager.get_manager_stats()["usage_stats"]["pending_requests"] == 0


# --- bridge request bodies -------------------------------------------------------------------

CONFIGURE_TOKEN = "fuzz-configure-token-0123456789"
BRIDGE_LIMIT = 200_000
VALID_BODIES: dict[str, dict[str, Any]] = {
    "/ai/generate": {
        "model": "fast",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": False,
        "strategy": "cost",
        "selection": {"preferred_providers": ["google"]},
        "timeout": 10,
        "tools": [{"name": "lookup", "inputSchema": {"type": "object", "properties": {}}}],
    },
    "/ai/recommendations": {"model": "fast", "messages": [{"role": "user", "content": "x"}]},
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": False,
        "max_tokens": 20,
        "tools": [
            {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
        ],
        "stream_options": {"include_usage": True},
    },
    "/ai/configure": {"provider": "google", "priority": 3, "enabled": True, "rpm": 0},
    "/v1/messages": {
        "model": "fast",
        "max_tokens": 20,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ],
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
    },
    "/v1/responses": {
        "model": "fast",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "x"},
        ],
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
        "max_output_tokens": 20,
    },
    "/v1beta/models/fast:generateContent": {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "lookup", "parameters": {"type": "OBJECT"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"maxOutputTokens": 20, "stopSequences": ["x"]},
    },
}
VALID_BODIES["/v1/messages/count_tokens"] = {
    k: v for k, v in VALID_BODIES["/v1/messages"].items() if k != "max_tokens"
}
VALID_BODIES["/v1beta/models/fast:streamGenerateContent"] = VALID_BODIES[
    "/v1beta/models/fast:generateContent"
]
VALID_BODIES["/v1/models/fast:countTokens"] = VALID_BODIES["/v1beta/models/fast:generateContent"]
ROUTES = [
    ("GET", "/healthz"),
    ("GET", "/ai/status"),
    ("POST", "/ai/generate"),
    ("POST", "/ai/recommendations"),
    ("POST", "/ai/configure"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/gpt-4o-mini"),
    ("GET", "/metrics"),
    ("PUT", "/ai/generate"),
    ("POST", "/nowhere"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("POST", "/v1beta/models/fast:generateContent"),
    ("POST", "/v1beta/models/fast:streamGenerateContent"),
    ("POST", "/v1/models/fast:countTokens"),
    ("GET", "/v1beta/models/fast"),
]


def wsgi_call(
    app: Any, method: str, path: str, data: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """Call the WSGI app directly; the status and the whole body (streams drained)."""
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "fuzz",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": str(len(data)) if data else "",
    }
    environ.update(headers)
    seen: list[str] = []
    result = app(environ, lambda status, _headers, exc_info=None: seen.append(status))
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return int(seen[0].split()[0]), body


def deep(levels: int) -> bytes:
    return (
        b'{"messages": [{"role": "user", "content": "x"}], "metadata": '
        + b'{"a": ' * levels
        + b"1"
        + b"}" * levels
        + b"}"
    )


@st.composite
def bridge_requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str]]:
    method, path = draw(st.sampled_from(ROUTES))
    valid = VALID_BODIES.get(path, VALID_BODIES["/ai/generate"])
    kind = draw(st.sampled_from(["mutated", "mutated", "json", "bytes", "deep", "huge", "empty"]))
    if kind == "mutated":
        data = json.dumps(draw(mutations_of(valid)), allow_nan=True).encode()
    elif kind == "json":
        data = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        data = draw(st.binary(max_size=300))
    elif kind == "deep":
        data = deep(draw(st.sampled_from([50, 99, 101, 1000, 20000])))
    elif kind == "huge":  # around the bridge's limit
        size = draw(st.sampled_from([BRIDGE_LIMIT - 100, BRIDGE_LIMIT + 1, 5 * BRIDGE_LIMIT]))
        filler = "x" * max(0, size - 80)
        data = json.dumps({"messages": [{"role": "user", "content": filler}]}).encode()
    else:
        data = b""
    headers = {"CONTENT_TYPE": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if path == "/ai/configure":
        headers["HTTP_AUTHORIZATION"] = "Bearer " + CONFIGURE_TOKEN
    if path.startswith("/v1/messages"):
        headers["HTTP_ANTHROPIC_VERSION"] = "2023-06-01"
    return method, path, data, headers


@pytest.fixture(scope="module")
def bridge_app(fuzz_manager) -> Any:
    from router.bridge import create_app

    return create_app(
        fuzz_manager, auth_token="", configure_token=CONFIGURE_TOKEN, max_body_bytes=BRIDGE_LIMIT
    )


@fuzz_settings(250)
@given(bridge_requests())
def test_bridge_bodies_get_json_answers_and_never_a_500(bridge_app, fuzz_manager, case):
    method, path, data, headers = case
    status, body = wsgi_call(bridge_app, method, path, data, headers)
    assert status != 500, body[:300]
    if status >= 400:
        error = json.loads(body)["error"]
        assert error.get("type") != "InternalError" and error.get("code") != "internal_error"
    if len(data) > BRIDGE_LIMIT and method == "POST" and path in VALID_BODIES:
        assert status == 413  # the endpoints that read a body refuse it


def test_the_fuzzed_bridge_still_answers(bridge_app, fuzz_manager):
    for name in ("openai", "anthropic", "google"):  # /ai/configure may have switched one off
        fuzz_manager.update_provider(name, enabled=True, api_key=KEYS[name], rpm=0, tpm=0)
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, reply = wsgi_call(bridge_app, "POST", "/ai/generate", body, {})
    assert status == 200, reply
    assert json.loads(reply)["content"]
    assert all_actors_alive(fuzz_manager)


# --- slow clients, disconnects, oversized bodies over a real socket ----------------------------


def eventually(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll a condition of the server's progress (it offers no event to wait on)."""
    import time

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.01)
    return predicate()


@pytest.fixture
def limited_bridge(make_manager, emulator) -> Iterator[tuple[Any, AIProviderManager]]:
    from router.server import BridgeServer

    config = router_config(emulator, budgets=[{"name": "Monthly", "monthly_limit": 100.0}])
    config["providers"][0]["max_concurrency"] = 2
    manager = make_manager(config)
    server = BridgeServer(manager, threads=4, auth_token="", max_body_bytes=100_000).start()
    yield server, manager
    server.stop()


def open_stream(server: Any, prompt: str) -> socket.socket:
    body = json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /ai/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return sock


def settled(manager: AIProviderManager) -> bool:
    return (
        manager.provider_health()["openai"].in_flight == 0
        and manager.get_budget_status()["reserved"] == 0.0
    )


LONG_PROMPT = " ".join(f"word{i}" for i in range(200))


def test_a_client_that_disconnects_mid_stream_frees_its_slot_and_its_reservation(
    limited_bridge, emulator
):
    server, manager = limited_bridge
    emulator.set_pacing("openai", token_delay=0.05)  # ~10 s of stream left after the cut
    sock = open_stream(server, LONG_PROMPT)
    received = b""
    while received.count(b"event: chunk") < 2:
        received += sock.recv(65536)
    assert manager.get_budget_status()["reserved"] > 0  # held while the stream runs
    sock.close()
    assert eventually(lambda: settled(manager), timeout=5)
    partial = [r for r in manager.usage_records() if r.outcome == "partial"]
    assert len(partial) == 1 and partial[0].cost > 0  # the tokens seen are billed


def test_a_client_that_reads_slowly_does_not_hold_a_slot_or_reservation(limited_bridge, emulator):
    server, manager = limited_bridge
    emulator.set_pacing("openai", token_delay=0.002)
    sock = open_stream(server, LONG_PROMPT)
    # The client reads nothing; the provider's stream still finishes and is settled.
    assert eventually(lambda: settled(manager) and len(manager.usage_records()) == 1)
    assert manager.usage_records()[0].outcome == "success"
    received = b""
    while b"event: done" not in received:
        piece = sock.recv(65536)
        assert piece, "the stream ended without its final event"
        received += piece
    sock.close()


def test_an_oversized_body_is_refused_at_its_headers(limited_bridge):
    server, manager = limited_bridge
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /ai/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    answer = sock.recv(65536)  # not one byte of the 50 MB was sent
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


def test_an_endless_chunked_body_is_cut_off_near_the_limit(limited_bridge):
    import select

    server, _ = limited_bridge
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /ai/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    sent = 0
    answer = b""
    while sent < 200_000_000:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            answer = sock.recv(65536)
            break
        try:
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
        except OSError:  # the server closed the connection after answering
            break
        sent += len(piece)
    if not answer:
        answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    # What was sent before the refusal is the limit plus what the sockets buffer, not 200 MB.
    assert sent < 20_000_000, sent
