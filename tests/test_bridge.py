"""The WSGI bridge called directly with built environs (no server), against the emulator.

Every response goes through ``call``, which also checks that no configured API key appears
in any header or body.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import KEYS, router_config

from router.bridge import create_app
from router.bridge.errors import BodyError
from router.bridge.openai_chat import ChatStreamTranslator, chat_request
from router.models import StreamChunk, ToolCallDelta, Usage

CONFIGURE = "configure-token-0123456789"
ROTATED_KEY = "sk-test-rotated-0123456789abcdef"
SECRETS = [*KEYS.values(), ROTATED_KEY]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "inputSchema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


class Reply:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str, Any]]:
        out = []
        for block in self.body.decode().split("\n\n"):
            if not block.strip():
                continue
            name, data = "message", ""
            for line in block.splitlines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
            out.append((name, data if data == "[DONE]" else json.loads(data)))
        return out


class ExplodingInput:
    """A wsgi.input that fails the test if anything reads it."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")

    readline = read


def call(
    app: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    environ: dict[str, Any] | None = None,
) -> Reply:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": str(len(data)) if data else "",
    }
    if token is not None:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    env.update(environ or {})
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.append((status, headers))

    result = app(env, start_response)
    try:
        body_bytes = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    reply = Reply(seen[0][0], seen[0][1], body_bytes)
    text = body_bytes.decode("utf-8", "replace") + repr(seen[0][1])
    for secret in SECRETS:
        assert secret not in text, f"an API key leaked from {method} {path}"
    assert "Traceback" not in text
    return reply


def user(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def app(make_manager):
    return create_app(make_manager(), auth_token="", configure_token=CONFIGURE)


# --- health, routing -----------------------------------------------------------------------


def test_healthz_is_ok_while_the_manager_runs_and_503_after_it_stops(make_manager):
    manager = make_manager()
    app = create_app(manager, auth_token="secret-token")
    reply = call(app, "GET", "/healthz")  # no token needed
    assert (reply.status, reply.json()) == (200, {"status": "ok"})
    assert call(app, "HEAD", "/healthz").body == b""
    manager.stop()
    reply = call(app, "GET", "/healthz")
    assert (reply.status, reply.json()) == (503, {"status": "stopped"})
    assert call(app, "GET", "/ai/status", token="secret-token").status == 503


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(app):
    reply = call(app, "GET", "/nope")
    assert reply.status == 404 and reply.json()["error"]["type"] == "NotFound"
    reply = call(app, "GET", "/ai/generate")
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    reply = call(app, "DELETE", "/v1/models")
    assert reply.status == 405
    assert reply.json()["error"]["type"] == "invalid_request_error"  # OpenAI envelope on /v1


# --- /ai/generate ---------------------------------------------------------------------------


def test_generate_answers_with_the_response_json_without_raw(app):
    reply = call(app, "POST", "/ai/generate", user(model="fast", max_tokens=50), token=None)
    assert reply.status == 200
    body = reply.json()
    assert body["content"] == "Echo: Hello there"
    assert body["provider_name"] in ("openai", "anthropic", "google")
    assert body["usage"]["input_tokens"] > 0 and body["cost"] > 0
    assert "raw" not in body
    assert reply.headers["x-router-provider"] == body["provider_name"]


def test_generate_takes_strategy_selection_and_mcp_tools(app):
    request = user(
        "What is the weather? use get_weather",
        model="fast",
        strategy="priority",
        selection={"exclude_providers": ["openai"]},
        tools=[WEATHER_TOOL],
        timeout=10,
    )
    reply = call(app, "POST", "/ai/generate", request)
    body = reply.json()
    assert reply.status == 200, body
    assert body["provider_name"] == "anthropic"  # highest priority once openai is excluded
    assert body["finish_reason"] == "tool_calls"
    (tool_call,) = body["tool_calls"]
    assert tool_call["name"] == "get_weather" and "city" in tool_call["arguments"]
    # The result goes back as a tool message; the answer quotes it.
    followup = {
        "model": "claude-3-haiku-20240307",
        "tools": [WEATHER_TOOL],
        "messages": [
            request["messages"][0],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": tool_call["id"],
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": tool_call["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny, 21 C"},
        ],
    }
    reply = call(app, "POST", "/ai/generate", followup)
    assert reply.status == 200 and reply.json()["content"] == "Tool results: sunny, 21 C"


def test_generate_streams_chunk_events_then_done(app):
    reply = call(
        app, "POST", "/ai/generate", user("one two three", model="gpt-4o-mini", stream=True)
    )
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-accel-buffering"] == "no"
    events = reply.events()
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"chunk"} and len(names) > 2
    text = "".join(data.get("content") or "" for name, data in events)
    assert text == "Echo: one two three"
    final = events[-1][1]
    assert final["is_complete"] and final["finish_reason"] == "stop"
    assert final["usage"]["output_tokens"] > 0 and final["provider_name"] == "openai"


def test_a_stream_that_fails_before_any_chunk_is_a_plain_json_error(app):
    reply = call(app, "POST", "/ai/generate", user(model="no-such-model", stream=True))
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["type"] == "ModelNotFoundError"


def test_a_stream_cut_after_the_first_chunk_ends_with_an_error_event(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["max_retries"] = 0
    app = create_app(make_manager(config), auth_token="")
    emulator.add_fault(provider="openai", kind="cut_stream", after_events=3)
    reply = call(
        app, "POST", "/ai/generate", user("a b c d e f g h", model="gpt-4o-mini", stream=True)
    )
    events = reply.events()
    assert reply.status == 200
    assert events[-1][0] == "error", events
    error = events[-1][1]["error"]
    assert error["type"] and error["message"]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "usr", "content": "x"}]}, "messages[0].role"),
        (user(temperature="hot"), "temperature"),
        (user(max_tokens=0), "max_tokens"),
        (user(strategy="cheapest"), "strategy"),
        (user(selection={"exclude_providers": 3}), "selection.exclude_providers"),
        (user(selection=[]), "selection"),
        (user(timeout="soon"), "timeout"),
        (user(timeout=-1), "timeout"),
        (user(tools=[{"description": "no name"}]), "tools[0].name"),
        (user(surprise=True), "surprise"),
    ],
)
def test_wrong_fields_are_400_naming_the_field(app, body, field):
    reply = call(app, "POST", "/ai/generate", body)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["type"] == "InvalidRequestError"
    assert error["field"] == field
    assert field.split("[")[0].split(".")[0] in error["message"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_bad_bodies_are_400(app, raw, words):
    reply = call(app, "POST", "/ai/generate", raw=raw)
    assert reply.status == 400 and words in reply.json()["error"]["message"]


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(make_manager):
    app = create_app(make_manager(), auth_token="", max_body_bytes=1000)
    environ = {"wsgi.input": ExplodingInput(), "CONTENT_LENGTH": "1001"}
    reply = call(app, "POST", "/ai/generate", environ=environ)
    assert reply.status == 413 and reply.json()["error"]["type"] == "PayloadTooLarge"
    reply = call(app, "POST", "/v1/chat/completions", environ=environ)
    assert reply.status == 413 and reply.json()["error"]["code"] == "request_too_large"


def test_a_chunked_body_is_cut_off_at_the_limit(make_manager):
    app = create_app(make_manager(), auth_token="", max_body_bytes=1000)

    class Endless:
        def __init__(self) -> None:
            self.read_bytes = 0

        def read(self, size: int = -1) -> bytes:
            assert size > 0, "an unbounded read of a chunked body"
            self.read_bytes += size
            return b" " * size

    stream = Endless()
    environ = {"wsgi.input": stream, "CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked"}
    reply = call(app, "POST", "/ai/generate", environ=environ)
    assert reply.status == 413
    assert stream.read_bytes <= 1001
    # A small chunked body is read whole.
    data = json.dumps(user(model="gpt-4o-mini")).encode()
    environ = {
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": "",
        "HTTP_TRANSFER_ENCODING": "chunked",
    }
    assert call(app, "POST", "/ai/generate", environ=environ).status == 200


# --- error statuses -------------------------------------------------------------------------


def test_budget_exceeded_is_402(make_manager, emulator):
    config = router_config(emulator, budgets=[{"name": "Tiny", "daily_limit": 1e-9}])
    app = create_app(make_manager(config), auth_token="")
    reply = call(app, "POST", "/ai/generate", user(model="gpt-4o-mini", max_tokens=100))
    assert reply.status == 402, reply.body
    assert reply.json()["error"]["type"] == "BudgetExceededError"
    reply = call(app, "POST", "/v1/chat/completions", user(model="gpt-4o-mini"))
    assert reply.status == 402
    assert reply.json()["error"]["code"] == "budget_exceeded"


def test_an_open_circuit_is_503_with_retry_after(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["max_retries"] = 0
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 1, "recovery_timeout": 30}
    app = create_app(make_manager(config), auth_token="")
    emulator.add_fault(provider="openai", kind="server_error")
    first = call(app, "POST", "/ai/generate", user(model="gpt-4o-mini"))
    assert first.status in (502, 503)
    reply = call(app, "POST", "/ai/generate", user(model="gpt-4o-mini"))
    assert reply.status == 503, reply.body
    assert reply.json()["error"]["type"] in ("CircuitOpenError", "NoProviderAvailableError")
    assert 1 <= int(reply.headers["retry-after"]) <= 30


def test_a_request_past_its_timeout_is_504(app, emulator):
    emulator.set_pacing("openai", ttft=1.0)
    reply = call(app, "POST", "/ai/generate", user(model="gpt-4o-mini", timeout=0.2))
    assert reply.status == 504 and reply.json()["error"]["type"] == "RequestTimeoutError"


def test_an_unexpected_exception_is_a_generic_500_and_is_logged(make_manager, caplog):
    manager = make_manager()

    class Broken:
        """The real manager with one method that fails unexpectedly."""

        config = manager.config
        running = True

        def get_manager_stats(self) -> dict[str, Any]:
            raise RuntimeError(f"boom {KEYS['openai']}")

    app = create_app(Broken(), auth_token="", metrics=False)
    reply = call(app, "GET", "/ai/status")
    assert reply.status == 500
    assert reply.json() == {
        "error": {"type": "InternalError", "message": "internal error; see the server log"}
    }
    assert "unexpected error on GET /ai/status: RuntimeError: boom [redacted]" in caplog.text
    assert KEYS["openai"] not in caplog.text


# --- /ai/status, /ai/recommendations --------------------------------------------------------


def test_status_shows_health_budget_and_usage_but_no_keys(app):
    call(app, "POST", "/ai/generate", user(model="gpt-4o-mini"))
    reply = call(app, "GET", "/ai/status")
    body = reply.json()
    assert reply.status == 200 and body["status"] == "ok"
    assert set(body["providers"]) == {"openai", "anthropic", "google"}
    assert body["providers"]["openai"]["circuit_state"] == "closed"
    assert body["usage_stats"]["total_requests"] == 1
    assert "providers" in body["budget"]


def test_recommendations_rank_candidates_by_cost(app):
    reply = call(app, "POST", "/ai/recommendations", user(model="fast", max_tokens=100))
    body = reply.json()
    assert reply.status == 200 and body["strategy"] == "cost"
    rows = body["recommendations"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    assert rows[0]["candidate"] == "google/gemini-1.5-flash"
    costs = [row["estimated_cost"] for row in rows]
    assert costs == sorted(costs)
    assert call(app, "POST", "/ai/recommendations", user(strategy="x")).status == 400


def test_recommendations_read_the_x_router_headers_like_every_door(app):
    def recommend(headers: dict[str, str], **fields: Any) -> Reply:
        environ = {
            "HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()
        }
        return call(
            app, "POST", "/ai/recommendations", user(model="fast", **fields), environ=environ
        )

    rows = recommend({"x-router-providers": "anthropic"}).json()["recommendations"]
    ranked = [row["provider"] for row in rows if row["rank"] is not None]
    assert ranked == ["anthropic"]  # the others are listed as unable to serve, with why
    assert all(row["reason"] for row in rows if row["provider"] != "anthropic")
    assert recommend({"x-router-strategy": "priority"}).json()["strategy"] == "priority"
    assert (
        recommend({"x-router-strategy": "priority"}, strategy="cost").json()["strategy"] == "cost"
    )
    refused = recommend({"x-router-strategy": "best"})
    assert refused.status == 400 and "x-router-strategy" in refused.body.decode()


# --- /ai/configure --------------------------------------------------------------------------


def test_configure_is_disabled_without_a_token(make_manager, monkeypatch):
    monkeypatch.delenv("ROUTER_CONFIGURE_TOKEN", raising=False)
    app = create_app(make_manager(), auth_token="")
    reply = call(app, "POST", "/ai/configure", {"provider": "openai", "priority": 9}, token="x")
    assert reply.status == 403 and reply.json()["error"]["type"] == "ConfigureDisabled"


def test_configure_refuses_a_missing_or_wrong_token_and_changes_nothing(make_manager):
    manager = make_manager()
    app = create_app(manager, auth_token="", configure_token=CONFIGURE)
    change = {"provider": "openai", "priority": 99, "enabled": False}
    for token in (None, "wrong-token", CONFIGURE + "x"):
        reply = call(app, "POST", "/ai/configure", change, token=token)
        assert reply.status == 401 and "bearer" in reply.headers["www-authenticate"].lower()
    health = manager.provider_health()["openai"]
    assert health.priority == 3 and health.enabled


def test_configure_changes_priority_and_enabled_and_rotates_a_key_without_echoing_it(
    make_manager, emulator
):
    config = router_config(emulator)
    config["providers"][0]["api_key"] = "invalid-key-0123456789"
    manager = make_manager(config)
    app = create_app(manager, auth_token="", configure_token=CONFIGURE)
    reply = call(
        app, "POST", "/ai/configure", {"provider": "anthropic", "priority": 10}, token=CONFIGURE
    )
    assert reply.status == 200
    assert reply.json()["updated"] == ["priority"]
    assert reply.json()["health"]["priority"] == 10
    generated = call(app, "POST", "/ai/generate", user(model="fast", strategy="priority"))
    assert generated.json()["provider_name"] == "anthropic"

    reply = call(
        app, "POST", "/ai/configure", {"provider": "anthropic", "enabled": False}, token=CONFIGURE
    )
    assert reply.json()["health"]["enabled"] is False
    assert call(app, "POST", "/ai/generate", user(model="claude-3-haiku-20240307")).status == 503

    assert call(app, "POST", "/ai/generate", user(model="gpt-4o-mini")).status == 502  # bad key
    reply = call(
        app,
        "POST",
        "/ai/configure",
        {"provider": "openai", "api_key": ROTATED_KEY},
        token=CONFIGURE,
    )
    assert reply.status == 200 and reply.json()["updated"] == ["api_key"]
    assert ROTATED_KEY not in reply.body.decode()  # also checked by call() for every reply
    assert call(app, "POST", "/ai/generate", user(model="gpt-4o-mini")).status == 200


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"provider": "openai", "monthly_limit": 5}, "monthly_limit", "changes a budget"),
        ({"provider": "nope", "priority": 1}, "provider", "unknown provider"),
        ({"priority": 1}, "provider", "provider"),
        ({"provider": "openai", "priority": "high"}, "priority", "integer"),
        ({"provider": "openai", "enabled": "yes"}, "enabled", "true or false"),
        ({"provider": "openai", "rpm": -1}, "rpm", ">= 0"),
        ({"provider": "openai", "api_key": ""}, "api_key", "non-empty"),
        ({"provider": "openai", "colour": "red"}, "colour", "unknown field"),
        ({"provider": "openai"}, None, "nothing to change"),
    ],
)
def test_configure_rejects_bad_changes_with_400(app, body, field, words):
    reply = call(app, "POST", "/ai/configure", body, token=CONFIGURE)
    assert reply.status == 400
    error = reply.json()["error"]
    assert error.get("field") == field and words in error["message"]


def test_configure_changes_a_budget_limit_at_run_time(make_manager, emulator):
    config = router_config(emulator, budgets=[{"name": "Daily", "daily_limit": 0.0000001}])
    app = create_app(make_manager(config), auth_token="", configure_token=CONFIGURE)
    assert call(app, "POST", "/ai/generate", user(model="gpt-4o-mini")).status == 402
    reply = call(
        app, "POST", "/ai/configure", {"budget": "Daily", "daily_limit": 5.0}, token=CONFIGURE
    )
    assert reply.status == 200
    assert reply.json()["updated"] == ["daily_limit"]
    assert reply.json()["config"]["daily_limit"] == 5.0
    assert call(app, "POST", "/ai/generate", user(model="gpt-4o-mini")).status == 200
    for body, words in (
        ({"budget": "Nope", "daily_limit": 1.0}, "unknown budget"),
        ({"budget": "Daily", "daily_limit": -1}, "greater than 0"),
        ({"budget": "Daily"}, "nothing to change"),
        ({"budget": "Daily", "colour": "red"}, "unknown field"),
    ):
        reply = call(app, "POST", "/ai/configure", body, token=CONFIGURE)
        assert reply.status == 400, body
        assert words in reply.json()["error"]["message"], body
    # Without the token nothing changes.
    reply = call(app, "POST", "/ai/configure", {"budget": "Daily", "daily_limit": 0.0000001})
    assert reply.status == 401
    assert call(app, "POST", "/ai/generate", user(model="gpt-4o-mini")).status == 200


# --- the optional token for every endpoint --------------------------------------------------


def test_an_auth_token_guards_every_endpoint_but_healthz(make_manager, monkeypatch):
    monkeypatch.setenv("ROUTER_AUTH_TOKEN", "env-token-0123")
    app = create_app(make_manager())  # the token comes from the environment
    paths = [
        ("GET", "/ai/status", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/models", None),
        ("POST", "/ai/generate", user(model="gpt-4o-mini")),
        ("POST", "/ai/recommendations", user(model="gpt-4o-mini")),
        ("POST", "/v1/chat/completions", user(model="gpt-4o-mini")),
    ]
    for method, path, body in paths:
        assert call(app, method, path, body).status == 401, path
        assert call(app, method, path, body, token="wrong").status == 401, path
        assert call(app, method, path, body, token="env-token-0123").status == 200, path
    assert call(app, "GET", "/healthz").status == 200
    reply = call(app, "GET", "/v1/models")
    assert reply.json()["error"]["type"] == "authentication_error"


# --- /v1 ------------------------------------------------------------------------------------


def test_v1_models_lists_catalog_models_and_group_aliases(app):
    reply = call(app, "GET", "/v1/models")
    body = reply.json()
    assert reply.status == 200 and body["object"] == "list"
    ids = {entry["id"]: entry for entry in body["data"]}
    assert {"gpt-4o-mini", "claude-3-haiku-20240307", "gemini-1.5-flash", "fast"} <= set(ids)
    assert ids["fast"]["owned_by"] == "router"
    assert ids["gpt-4o-mini"] == {
        "id": "gpt-4o-mini",
        "object": "model",
        "created": ids["gpt-4o-mini"]["created"],
        "owned_by": "openai",
    }
    assert call(app, "GET", "/v1/models/gpt-4o-mini").json()["id"] == "gpt-4o-mini"
    missing = call(app, "GET", "/v1/models/gpt-0")
    assert missing.status == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_chat_completions_answers_in_openai_format(app):
    reply = call(app, "POST", "/v1/chat/completions", user(model="fast", max_tokens=50))
    body = reply.json()
    assert reply.status == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Echo: Hello there"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_chat_completions_errors_use_openai_envelope(app):
    reply = call(app, "POST", "/v1/chat/completions", user(n=2))
    assert reply.status == 400
    assert reply.json() == {
        "error": {
            "message": "only n=1 is supported",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_request",
        }
    }
    reply = call(app, "POST", "/v1/chat/completions", user(model="gpt-0"))
    assert reply.status == 404
    assert reply.json()["error"]["param"] == "model"


def test_chat_completions_stream_in_openai_chunks(app):
    body = user("one two", model="gpt-4o-mini", stream=True, stream_options={"include_usage": True})
    reply = call(app, "POST", "/v1/chat/completions", body)
    events = reply.events()
    assert events[-1] == ("message", "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: one two"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


# --- /metrics -------------------------------------------------------------------------------


def samples(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = call(app, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_with_requests(make_manager, emulator):
    manager = make_manager()
    app = create_app(manager, auth_token="")
    before = samples(app)
    assert value(before, "router_up") == 1.0
    assert value(before, "router_circuit_state", provider="openai") == 0.0
    call(app, "POST", "/ai/generate", user(model="gpt-4o-mini"))
    call(app, "POST", "/v1/chat/completions", user(model="gpt-4o-mini", stream=True))
    call(app, "POST", "/ai/generate", user(model="gpt-0"))
    after = samples(app)
    ok = {"provider": "openai", "model": "gpt-4o-mini", "outcome": "success"}
    assert value(after, "router_requests_total", endpoint="generate", **ok) == 1
    assert value(after, "router_requests_total", endpoint="chat_completions", **ok) == 1
    assert value(after, "router_errors_total", endpoint="generate", type="ModelNotFoundError") == 1
    assert (
        value(after, "router_tokens_total", provider="openai", model="gpt-4o-mini", kind="output")
        > 0
    )
    assert value(after, "router_cost_usd_total", provider="openai", model="gpt-4o-mini") > 0
    assert (
        value(
            after,
            "router_request_duration_seconds_count",
            endpoint="generate",
            provider="openai",
            model="gpt-4o-mini",
        )
        == 1
    )
    assert value(after, "router_budget_spend_usd", provider="openai", period="month") > 0
    assert (
        value(
            after, "router_http_requests_total", route="/ai/generate", method="POST", status="404"
        )
        == 1
    )


def test_two_apps_in_one_process_keep_separate_metrics(make_manager):
    manager = make_manager()
    first, second = create_app(manager, auth_token=""), create_app(manager, auth_token="")
    call(first, "POST", "/ai/generate", user(model="gpt-4o-mini"))
    ok = {
        "endpoint": "generate",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "outcome": "success",
    }
    assert value(samples(first), "router_requests_total", **ok) == 1
    assert value(samples(second), "router_requests_total", **ok) == 0
    assert call(create_app(manager, auth_token="", metrics=False), "GET", "/metrics").status == 404


# --- OpenAI translation (pure) --------------------------------------------------------------


def test_chat_request_translates_every_openai_message_shape():
    body = {
        "model": "fast",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image? "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "look", "arguments": '{"x": 1}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "a cat"}],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "look",
                    "description": "Look",
                    "parameters": {"type": "object"},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "look"}},
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "someone",
        "strategy": "cost",
    }
    request, options = chat_request(body)
    assert request.model == "fast" and request.max_tokens == 64 and request.stop == ("END",)
    assert request.tool_choice == "look" and request.tools[0].inputSchema == {"type": "object"}
    assert request.messages[1].has_images()
    assert request.messages[2].tool_calls[0].function.arguments == '{"x": 1}'
    assert request.messages[3].content == "a cat"
    assert request.stream and options.include_usage and options.strategy == "cost"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"functions": []}, "functions"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"stop": [1]}, "stop"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"model": 4}, "model"),
    ],
)
def test_chat_request_names_the_unsupported_field(change, param):
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(BodyError) as caught:
        chat_request(body)
    assert caught.value.param == param


def test_stream_translator_sends_role_content_tool_deltas_finish_and_usage():
    translator = ChatStreamTranslator(include_usage=True, model="fast")
    out = translator.translate(StreamChunk(content="Hi"))
    assert [o["choices"][0]["delta"] for o in out] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
    ]
    assert out[0]["model"] == "fast" and out[0]["usage"] is None
    out = translator.translate(
        StreamChunk(
            tool_call_deltas=(ToolCallDelta(index=0, id="call_9", name="look", arguments='{"a"'),)
        )
    )
    assert out[0]["choices"][0]["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_9",
            "type": "function",
            "function": {"name": "look", "arguments": '{"a"'},
        }
    ]
    out = translator.translate(
        StreamChunk(tool_call_deltas=(ToolCallDelta(index=0, arguments=":1}"),))
    )
    assert out[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "function": {"arguments": ":1}"}}
    ]
    final = StreamChunk(
        is_complete=True,
        finish_reason="tool_calls",
        usage=Usage(input_tokens=5, output_tokens=7),
        model="gpt-4o-mini",
    )
    finish, usage = translator.translate(final)
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert finish["model"] == "gpt-4o-mini"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 12


def test_content_events_rendered_from_a_frame_are_the_general_path_byte_for_byte():
    from router.bridge.openai_chat import ChatEvents

    class NoSecrets:
        def scrub(self, text: str) -> str:
            return text

    for usage in (False, True):
        fast_side = ChatStreamTranslator(model="gpt-4o-mini", include_usage=usage)
        general = ChatStreamTranslator(model="gpt-4o-mini", include_usage=usage)
        general.completion_id, general.created = fast_side.completion_id, fast_side.created
        events = ChatEvents(NoSecrets(), fast_side)
        events.prelude(None)
        general.opening()
        for text, model in [("Hello", None), (' "q" \\ é \n \x00', "gpt-4o-mini"), ("x", None)]:
            chunk = StreamChunk(content=text, model=model)
            expected = "".join(
                f"data: {events.dumps(o)}\n\n" for o in general.translate(chunk)
            ).encode()
            assert events.chunk(chunk) == expected
