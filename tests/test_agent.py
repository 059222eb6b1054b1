"""The agent loop: real MCP server processes, the three provider types behind the emulator,
and every fault ending in a clear result or error with nothing left running."""

from __future__ import annotations

import io
import json
import re
import sys
import threading

import pytest
import requests
import responses
import yaml
from click.testing import CliRunner
from mcp_support import (
    alive,
    calls,
    http_playground,
    mcp_children,
    mcp_threads,
    playground,
    time_server,
)
from support import MODELS, router_config

from router.agent import AgentEvent, AgentResult
from router.bridge import create_app
from router.cli import cli
from router.errors import (
    BudgetExceededError,
    InvalidRequestError,
    ManagerStoppedError,
    MaxTurnsExceededError,
    NoProviderAvailableError,
    RequestTimeoutError,
)
from router.manager import AIProviderManager
from router.models import StreamChunk


def ask(text: str, model: str = MODELS["openai"], **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="module")
def http_url(tmp_path_factory):
    with http_playground(tmp_path_factory.mktemp("http") / "calls.jsonl") as url:
        yield url


@pytest.fixture(scope="module")
def call_log(tmp_path_factory):
    return tmp_path_factory.mktemp("agent") / "calls.jsonl"


@pytest.fixture(scope="module")
def manager(emulator_server, call_log, http_url):
    """One manager for the module: its MCP servers stay connected between runs."""
    config = router_config(
        emulator_server,
        request_timeout=120.0,
        budgets=[{"name": "Daily", "daily_limit": 100.0}],
        mcp_servers=[
            playground(log=call_log, denied_tools=["3d_render"], max_result_chars=300),
            time_server(),
            {"name": "web", "url": http_url, "startup_timeout": 60},
        ],
    )
    manager = AIProviderManager(config).start()
    yield manager
    manager.stop()


def records_count(manager) -> int:
    return len(manager.usage_records())


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_the_loop_runs_the_third_party_time_server_through_each_provider(manager, provider):
    before = records_count(manager)
    result = manager.run_agent(
        ask("What time is it in New York? Use get_current_time", MODELS[provider]),
        mcp_servers=["time"],
    ).get(timeout=200)
    assert isinstance(result, AgentResult)
    first, last = result.turns
    assert first.response.provider_name == provider and first.response.finish_reason == "tool_calls"
    (call,) = first.tool_calls
    assert (call.tool, call.server, call.arguments) == (
        "get_current_time",
        "time",
        {"timezone": "America/New_York"},
    )
    answer = json.loads(call.result)  # mcp-server-time's own answer
    assert answer["timezone"] == "America/New_York" and not call.is_error
    assert last.tool_calls == () and result.response == last.response
    assert result.content.startswith("Tool results: ") and "America/New_York" in result.content
    # Every turn was a request of its own: reserved, settled, priced.
    assert records_count(manager) == before + 2
    assert result.cost == pytest.approx(first.response.cost + last.response.cost)
    assert result.usage.input_tokens == sum(t.response.usage.input_tokens for t in result.turns)
    assert manager.get_budget_status()["reserved"] == 0
    # The conversation can be continued: the tool message answers the call.
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2].tool_call_id == call.id


@pytest.mark.parametrize(("server", "provider"), [("play", "google"), ("web", "anthropic")])
def test_multi_turn_runs_and_parallel_calls(manager, call_log, server, provider):
    result = manager.run_agent(
        ask("Use meet_left and meet_right, then plan_trip", MODELS[provider]),
        mcp_servers=[server],
        tool_timeout=60,
    ).get(timeout=200)
    names = [[call.tool for call in turn.tool_calls] for turn in result.turns]
    # Turn 1: three calls at once (the meet tools only return if both run concurrently);
    # plan_trip's answer asks for get_weather, called in turn 2; turn 3 answers.
    assert names == [["meet_left", "meet_right", "plan_trip"], ["get_weather"], []]
    assert not any(call.is_error for turn in result.turns for call in turn.tool_calls)
    assert result.turns[1].tool_calls[0].result == "Sunny, 21 C in city"
    assert result.content == "Tool results: Sunny, 21 C in city"
    if server == "play":
        logged = [c["tool"] for c in calls(call_log)[-4:]]
        assert sorted(logged[:3]) == ["meet_left", "meet_right", "plan_trip"]
        assert logged[3] == "get_weather"


def test_the_stream_yields_chunks_and_tool_events_in_order(manager):
    items = []
    with manager.stream_agent(ask("Use get_weather please"), mcp_servers=["play"]) as stream:
        for item in stream:
            items.append(item)
        result = stream.result()
    kinds = [
        item.type if isinstance(item, AgentEvent) else ("final" if item.is_complete else "chunk")
        for item in items
    ]
    started, finished = kinds.index("tool_call_started"), kinds.index("tool_result")
    assert kinds[started - 1] == "final"  # turn 1's stream ended first
    assert started < finished and kinds[-1] == "final"
    text = "".join(i.content or "" for i in items[finished + 1 :] if isinstance(i, StreamChunk))
    assert text == result.content == "Tool results: Sunny, 21 C in city"
    event = items[finished]
    assert event.record is not None and event.record.result == "Sunny, 21 C in city"
    assert event.to_dict()["server"] == "play"
    assert [t.number for t in result.turns] == [1, 2]


def test_tool_errors_timeouts_and_huge_results_go_back_to_the_model(manager, call_log):
    result = manager.run_agent(
        ask("Use broken, hang and huge"), mcp_servers=["play"], tool_timeout=1.0
    ).get(timeout=200)
    broken, hang, huge = result.turns[0].tool_calls
    assert (broken.error, broken.is_error) == ("tool_error", True)
    assert broken.result == "Error executing tool broken: the database is down"
    assert hang.error == "timeout" and "did not answer within 1s" in hang.result
    assert huge.truncated and not huge.is_error and len(huge.result) < 400
    assert huge.result.startswith("0123456789" * 30)
    assert "the tool returned 200000 characters; the first 300 are shown" in huge.result
    # The model read all three and answered.
    assert "the database is down" in result.content and "[truncated by the router" in result.content
    # The server that timed out a call still answers the next one.
    assert manager.run_agent(ask("Use get_weather"), mcp_servers=["play"]).get(timeout=200).content


def test_a_server_crash_mid_call_is_reported_and_the_next_run_reconnects(manager, call_log):
    result = manager.run_agent(ask("Use crash"), mcp_servers=["play"]).get(timeout=200)
    (crash,) = result.turns[0].tool_calls
    assert crash.error == "server_error" and "closed the connection during the call" in crash.result
    old_pid = calls(call_log)[-1]["pid"]
    again = manager.run_agent(ask("Use get_weather"), mcp_servers=["play"]).get(timeout=200)
    assert again.turns[0].tool_calls[0].result == "Sunny, 21 C in city"
    assert calls(call_log)[-1]["pid"] != old_pid and not alive(old_pid)
    assert len(mcp_children()) == 2  # play (restarted) and time: one process each


def test_unknown_tools_and_refused_calls_are_error_results(manager, call_log):
    teleport = {"name": "teleport", "inputSchema": {"type": "object", "properties": {}}}
    logged = len(calls(call_log))
    result = manager.run_agent(
        ask("Use teleport and get_weather", tools=[teleport]),
        mcp_servers=["play"],
        approve=lambda call: call.tool != "get_weather",
    ).get(timeout=200)
    unknown, refused = result.turns[0].tool_calls
    assert (
        unknown.error == "unknown_tool" and "no MCP server of this run offers it" in unknown.result
    )
    assert refused.error == "refused" and "refused by the user" in refused.result
    assert len(calls(call_log)) == logged  # neither reached the server
    assert result.content.startswith("Tool results: Error: unknown tool 'teleport'")


def test_a_tool_gemini_cannot_express(manager):
    # "web" lists 3d_render (no denied_tools): Gemini alone cannot take the request...
    with pytest.raises(NoProviderAvailableError) as error:
        manager.run_agent(ask("Use get_weather", MODELS["google"]), mcp_servers=["web"]).get(
            timeout=200
        )
    assert "tool '3d_render' cannot be expressed for google" in str(error.value)
    assert error.value.agent_result is not None and error.value.agent_result.turns == ()
    # ...a model group fails over to a provider that can...
    result = manager.run_agent(
        ask("Use get_weather", "fast"),
        mcp_servers=["web"],
        selection={"preferred_providers": ["google"]},
    ).get(timeout=200)
    assert {t.response.provider_name for t in result.turns} <= {"openai", "anthropic"}
    # ...and hiding the tool (denied_tools, as "play" does) lets Gemini run it.
    result = manager.run_agent(ask("Use get_weather", MODELS["google"]), mcp_servers=["play"]).get(
        timeout=200
    )
    assert result.turns[0].response.provider_name == "google"


def test_max_turns_stops_with_the_last_answer(manager, call_log):
    before, logged = records_count(manager), len(calls(call_log))
    with pytest.raises(MaxTurnsExceededError) as error:
        manager.run_agent(ask("Use loop_forever"), mcp_servers=["play"], max_turns=2).get(
            timeout=200
        )
    assert error.value.last_response.tool_calls[0].name == "loop_forever"
    partial = error.value.agent_result
    assert len(partial.turns) == 2 and partial.response == error.value.last_response
    assert partial.turns[1].tool_calls[0].error == "not_run"
    assert records_count(manager) == before + 2  # two model calls, no more
    assert [c["tool"] for c in calls(call_log)[logged:]] == ["loop_forever"]


def test_the_budget_runs_out_on_turn_3(manager):
    def spend_the_rest(call):
        if call.turn == 2:  # after two settled turns, leave no room for a third
            spent = manager.get_budget_status()["spent_today"]
            manager.update_budget("Daily", daily_limit=spent + 1e-9)
        return True

    try:
        with pytest.raises(BudgetExceededError) as error:
            manager.run_agent(
                ask("Use loop_forever"), mcp_servers=["play"], approve=spend_the_rest
            ).get(timeout=200)
    finally:
        manager.update_budget("Daily", daily_limit=100.0)
    assert error.value.budget == "Daily"
    assert [t.number for t in error.value.agent_result.turns] == [1, 2]
    assert manager.get_budget_status()["reserved"] == 0


def test_the_deadline_is_a_typed_error(manager):
    with pytest.raises(RequestTimeoutError, match="did not finish within 1.5s") as error:
        manager.run_agent(ask("Use hang"), mcp_servers=["play"], tool_timeout=60, timeout=1.5).get(
            timeout=200
        )
    assert error.value.agent_result is not None
    assert manager.get_budget_status()["reserved"] == 0


def test_bad_arguments_are_refused_in_the_callers_thread(manager):
    with pytest.raises(InvalidRequestError, match="unknown MCP server 'nope'"):
        manager.run_agent(ask("hi"), mcp_servers=["nope"])
    with pytest.raises(InvalidRequestError, match="max_turns must be >= 1"):
        manager.run_agent(ask("hi"), mcp_servers=["play"], max_turns=0)
    with pytest.raises(InvalidRequestError, match="invalid MCP server: command"):
        manager.run_agent(ask("hi"), mcp_servers=[{"name": "x", "command": " "}])


@pytest.mark.parametrize("streamed", [False, True])
def test_thinking_blocks_and_their_signatures_go_back_between_turns(manager, streamed):
    # With thinking on, the emulator (as Anthropic) refuses a tool loop whose assistant turn
    # does not start with its thinking block, signature intact.
    request = ask(
        "What time is it? Use get_current_time",
        "claude-haiku-4-5",
        reasoning={"budget_tokens": 1024},
        max_tokens=2048,
    )
    if streamed:
        with manager.stream_agent(request, mcp_servers=["time"]) as stream:
            thoughts = [i.reasoning for i in stream if isinstance(i, StreamChunk) and i.reasoning]
            result = stream.result()
        assert thoughts
    else:
        result = manager.run_agent(request, mcp_servers=["time"]).get(timeout=200)
    first, last = result.turns
    assert first.response.reasoning and "signature" in json.dumps(first.response.provider_data)
    assert first.tool_calls[0].tool == "get_current_time" and not first.tool_calls[0].is_error
    assert last.response.content.startswith("Tool results: ")


def test_provider_opaque_data_goes_back_on_the_next_turn(http_url):
    base = "https://gemini.test"
    config = {
        "providers": [{"type": "google", "api_key": "AIza-test", "base_url": base}],
        "ledger": {"type": "memory"},
        "mcp_servers": [
            {"name": "web", "url": http_url, "startup_timeout": 60, "denied_tools": ["3d_render"]}
        ],
    }
    first = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                            "thoughtSignature": "c2lnbmF0dXJlLTE=",
                        },
                        # A tool no server offers (a model making one up).
                        {"functionCall": {"name": "book_flight", "args": {"to": "Oslo"}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 4, "totalTokenCount": 16},
    }
    final = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "It is sunny."}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 4, "totalTokenCount": 34},
    }
    url = re.compile(re.escape(base) + r"/v1beta/models/gemini-1\.5-flash:generateContent")
    with (
        AIProviderManager(config) as manager,
        responses.RequestsMock(assert_all_requests_are_fired=True) as mock,
    ):
        mock.add(responses.POST, url, json=first)
        mock.add(responses.POST, url, json=final)
        result = manager.run_agent(
            ask("weather in Oslo?", "gemini-1.5-flash"), mcp_servers=["web"]
        ).get(timeout=200)
        second = json.loads(mock.calls[1].request.body)
    assert result.content == "It is sunny."
    model_turn, tool_turn = second["contents"][1:]
    assert model_turn["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJlLTE="
    assert model_turn["parts"][0]["functionCall"]["name"] == "get_weather"
    response = tool_turn["parts"][0]["functionResponse"]
    assert response["name"] == "get_weather" and "Sunny, 21 C in Oslo" in json.dumps(response)
    made_up = tool_turn["parts"][1]["functionResponse"]
    assert made_up["name"] == "book_flight" and "unknown tool 'book_flight'" in json.dumps(made_up)
    assert result.turns[0].tool_calls[1].error == "unknown_tool"


def post(app, body):
    """POST ``body`` to ``/ai/generate`` through the WSGI app: (status, headers, body bytes)."""
    data = json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/ai/generate",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": str(len(data)),
    }
    seen = []
    result = app(environ, lambda status, headers, exc_info=None: seen.append((status, headers)))
    try:
        payload = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return int(seen[0][0].split()[0]), dict(seen[0][1]), payload


def sse(payload: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in payload.decode().split("\n\n"):
        if block.strip():
            name, data = block.split("\n", 1)
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_the_bridge_runs_the_loop_and_streams_tool_events(manager):
    app = create_app(manager, auth_token="")
    body = ask("Use get_current_time", MODELS["anthropic"], mcp_servers=["time"])
    status, headers, payload = post(app, body)
    assert status == 200, payload
    answer = json.loads(payload)
    assert answer["content"].startswith("Tool results: ") and answer["provider_name"] == "anthropic"
    (turn1, turn2) = answer["agent"]["turns"]
    assert turn1["tool_calls"][0]["tool"] == "get_current_time"
    assert json.loads(turn1["tool_calls"][0]["result"])["timezone"] == "America/New_York"

    status, headers, payload = post(app, {**body, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    names = [name for name, _ in sse(payload)]
    assert names.index("turn") < names.index("tool_call_started") < names.index("tool_result")
    assert names[-1] == "done" and "chunk" in names[names.index("tool_result") :]
    done = sse(payload)[-1][1]
    assert done["content"].startswith("Tool results: ") and len(done["turns"]) == 2

    # Names only: a request cannot start processes.
    status, _, payload = post(app, {**body, "mcp_servers": [{"command": "rm"}]})
    assert status == 400 and b"configured MCP server names" in payload
    status, _, payload = post(app, {**body, "mcp_servers": ["nope"]})
    assert status == 400 and b"unknown MCP server 'nope'" in payload
    body = ask("Use loop_forever", mcp_servers=["play"], max_turns=1, stream=True)
    status, _, payload = post(app, body)
    name, data = sse(payload)[-1]
    assert name == "error" and data["error"]["type"] == "MaxTurnsExceededError"
    assert len(data["transcript"]["turns"]) == 1


def test_an_agent_waiting_on_a_tool_does_not_hold_up_the_loop_engine(manager):
    from router.green_server import GreenBridgeServer

    # /ai/generate runs as a greenlet; its agent loop is offloaded to a thread, so a tool that
    # hangs holds that thread only, not the loop every other request runs on. (Not
    # start_server: make_manager's teardown would stop the module's manager.)
    body = ask("Use hang", mcp_servers=["play"], tool_timeout=4.0, stream=True)
    with (
        GreenBridgeServer(manager, auth_token="") as server,
        requests.post(server.url + "/ai/generate", json=body, stream=True, timeout=60) as agent,
    ):
        assert agent.status_code == 200
        lines = (line for line in agent.iter_lines() if line.startswith(b"event: "))
        assert next(line for line in lines if line != b"event: chunk") == b"event: turn"
        assert next(lines) == b"event: tool_call_started"
        # The tool hangs for 4 s from here: a loop held by it would not answer this in 2 s.
        chat = requests.post(server.url + "/v1/chat/completions", json=ask("Hi"), timeout=2)
        assert chat.status_code == 200, chat.text
        status = requests.get(server.url + "/ai/status", timeout=2)
        assert status.status_code == 200
        rest = [line.removeprefix(b"event: ") for line in lines]
    assert rest[0] == b"tool_result" and rest[-1] == b"done"


def test_the_agent_path_honours_the_x_router_headers_like_the_plain_path(emulator, engine):
    # 3d_render is denied: Gemini cannot express its name, and all three must be able to serve.
    servers = [playground(denied_tools=["3d_render"])]
    config = router_config(emulator, request_timeout=120.0, mcp_servers=servers)
    plain = ask("Hello", "fast")
    agent = ask("Use get_weather", "fast", mcp_servers=["play"])

    # A manager of its own, stopped by itself: make_manager's teardown stops every actor,
    # the module's manager's too.
    with AIProviderManager(config) as manager, engine(manager, auth_token="") as server:
        url = server.url + "/ai/generate"

        def served(body, **headers):
            """The names of the providers that served the request's model calls."""
            reply = requests.post(url, json=body, headers=headers, timeout=200)
            assert reply.status_code == 200, reply.text
            if body.get("stream"):
                (done,) = [b for b in reply.text.split("\n\n") if b.startswith("event: done")]
                turns = json.loads(done.split("data: ", 1)[1])["turns"]
            elif "mcp_servers" in body:
                turns = reply.json()["agent"]["turns"]
            else:
                return {reply.json()["provider_name"]}
            assert len(turns) == 2  # the tool call, then the answer
            return {turn["provider"] for turn in turns}

        for body in (plain, agent):
            # The configured cost strategy picks the cheapest of the group; each header moves it.
            assert served(body) == {"google"}
            assert served(body, **{"x-router-strategy": "priority"}) == {"openai"}
            assert served(body, **{"x-router-providers": "anthropic"}) == {"anthropic"}
            # What the body says wins over a header, on both paths.
            assert served({**body, "strategy": "cost"}, **{"x-router-strategy": "priority"}) == {
                "google"
            }
            reply = requests.post(url, json=body, headers={"x-router-strategy": "best"}, timeout=60)
            assert reply.status_code == 400 and "x-router-strategy" in reply.text
        streamed = {**agent, "stream": True}
        assert served(streamed, **{"x-router-providers": "anthropic"}) == {"anthropic"}


def test_the_cli_streams_the_answer_and_the_tool_calls(manager, emulator_server, tmp_path):
    running = set(mcp_children())  # the module manager's servers
    config = router_config(emulator_server, mcp_servers=[time_server()])
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["--config", str(path), "agent", "Use get_current_time", "--model", MODELS["google"]],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == '[tool call] get_current_time({"timezone": "America/New_York"}) [time]'
    assert lines[1].startswith("[tool result] get_current_time: {")
    assert lines[2].startswith("Tool results: ") and "America/New_York" in lines[2]
    assert "turns=2 tool_calls=1" in result.stderr

    command = f"{sys.executable} -m mcp_server_time --local-timezone UTC"
    result = runner.invoke(
        cli,
        [
            "--config",
            str(path),
            "agent",
            "Use get_current_time",
            "--mcp-command",
            command,
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    transcript = json.loads(result.stdout)
    (call,) = transcript["turns"][0]["tool_calls"]
    assert (call["tool"], call["server"], call["is_error"]) == (
        "get_current_time",
        "command",
        False,
    )
    assert transcript["content"].startswith("Tool results: ")

    result = runner.invoke(
        cli, ["--config", str(path), "agent", "hi", "--mcp-command", "/nonexistent/server"]
    )
    assert result.exit_code == 1
    assert "command not found: /nonexistent/server" in result.stderr
    assert set(mcp_children()) == running  # the CLI's managers stopped their servers


def test_stop_during_a_run_ends_it_and_leaves_nothing_running(manager, call_log):
    asked = threading.Event()

    def approve(call):
        asked.set()
        return True

    future = manager.run_agent(
        ask("Use hang"), mcp_servers=["play"], tool_timeout=60, approve=approve
    )
    assert asked.wait(200)
    pids = {c["pid"] for c in calls(call_log)}
    manager.stop()
    with pytest.raises((ManagerStoppedError, RequestTimeoutError)):
        future.get(timeout=30)
    assert not [pid for pid in pids if alive(pid)]
    assert not mcp_children()
    assert not mcp_threads()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_every_face_runs_the_third_party_server_through_each_provider(
    emulator_server, tmp_path, provider
):
    """The CLI and the bridge, like the Python API, run mcp-server-time through each provider."""
    config = router_config(emulator_server, mcp_servers=[time_server()])
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(
        cli,
        ["--config", str(path), "agent", "Use get_current_time", "--model", MODELS[provider]],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == '[tool call] get_current_time({"timezone": "America/New_York"}) [time]'
    assert lines[1].startswith("[tool result] get_current_time: ")
    answer_text = result.stdout.split("\nTool results: ", 1)[1]  # may span lines (JSON)
    assert "America/New_York" in answer_text

    with AIProviderManager(config) as manager:
        app = create_app(manager, auth_token="")
        request = ask("Use get_current_time", MODELS[provider], mcp_servers=["time"])
        status, _, payload = post(app, request)
    assert status == 200, payload
    answer = json.loads(payload)
    assert answer["provider_name"] == provider
    (call,) = answer["agent"]["turns"][0]["tool_calls"]
    assert call["tool"] == "get_current_time"
    assert json.loads(call["result"])["timezone"] == "America/New_York"
