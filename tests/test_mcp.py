"""MCP sessions against real server processes: configuration, listing, calls, faults, cleanup,
and ``router mcp list``."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from mcp_support import (
    alive,
    calls,
    env_server,
    http_playground,
    mcp_children,
    mcp_threads,
    playground,
    time_server,
)
from support import MODELS, router_config

from router.cli import cli
from router.config import MCPServerConfig, config_from_dict
from router.errors import ConfigError, MCPServerError
from router.mcp import MCPServers


def _config(emulator, servers):
    return config_from_dict(router_config(emulator, mcp_servers=servers))


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ({"name": "a"}, "mcp_servers[0]: needs 'command' (stdio) or 'url'"),
        ({"name": "a", "command": "x", "url": "http://h/mcp"}, "has both 'command' and 'url'"),
        ({"name": "a", "url": "ftp://h"}, "mcp_servers[0].url: must be an http://"),
        ({"name": "a", "command": "x", "args": "-m x"}, "mcp_servers[0].args: must be a list"),
        ({"name": "a", "command": "x", "headers": {"a": "b"}}, "headers: is only used with 'url'"),
        ({"name": "a", "url": "http://h/mcp", "cwd": "/"}, "cwd: is only used with 'command'"),
        ({"name": "a b", "command": "x"}, "mcp_servers[0].name: must contain only"),
        ({"name": "a", "command": "x", "timeout": 0}, "mcp_servers[0].timeout: must be > 0"),
        ({"name": "a", "command": "x", "bogus": 1}, "mcp_servers[0]: unknown key 'bogus'"),
    ],
)
def test_bad_server_configuration_names_the_key(emulator, server, words):
    with pytest.raises(ConfigError) as error:
        _config(emulator, [server])
    assert words in str(error.value)


def test_server_configuration_values(emulator, tmp_path):
    config = config_from_dict(
        router_config(
            emulator,
            mcp_servers=[
                {"name": "a", "command": "x", "cwd": "sub", "env": {"TOKEN": "${MCP_T}"}},
                {"name": "b", "url": "https://user:pw@h.example/mcp", "headers": {"X": "secret"}},
                {"name": "a", "command": "y"},
            ][:2],
        ),
        base_dir=tmp_path,
        environ={"MCP_T": "tok-123"},
    )
    a, b = config.mcp_servers
    assert a.cwd == str(tmp_path / "sub") and a.env == {"TOKEN": "tok-123"}
    assert a.transport == "stdio" and b.transport == "http"
    assert b.display_target == "https://h.example/mcp"  # no credentials when printed
    assert "secret" not in repr(b) and "tok-123" not in repr(a)
    with pytest.raises(ConfigError, match=r"mcp_servers\[1\].name: duplicate MCP server name"):
        _config(emulator, [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}])
    only = MCPServerConfig(name="f", command="x", allowed_tools=["a", "b"], denied_tools=["b"])
    assert [only.offers(t) for t in ("a", "b", "c")] == [True, False, False]


@pytest.fixture(scope="module")
def http_url(tmp_path_factory):
    with http_playground(tmp_path_factory.mktemp("http") / "calls.jsonl") as url:
        yield url


@pytest.fixture(scope="module")
def call_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "calls.jsonl"


@pytest.fixture(scope="module")
def servers(call_log, http_url):
    configs = [
        MCPServerConfig(
            **playground(log=call_log, denied_tools=["3d_render"], max_result_chars=500)
        ),
        MCPServerConfig(**time_server()),
        MCPServerConfig(name="web", url=http_url, startup_timeout=60),
    ]
    servers = MCPServers(configs)
    yield servers
    servers.close()


def _call(servers, name, tool, arguments=None, timeout=30.0):
    config = next(c for c in servers.configured if c.name == name)
    session = servers.session(config)
    return servers.submit(
        session.call(tool, arguments or {}, timeout, config.max_result_chars)
    ).result(timeout=200)


def test_lists_each_servers_tools_over_stdio_and_http(servers):
    listing = servers.list_tools(servers.configured, timeout=200)
    play = {tool.name for tool in listing["play"]}
    assert {"get_weather", "crash", "hang", "broken", "huge", "grow"} <= play
    assert "3d_render" not in play  # denied_tools
    assert {tool.name for tool in listing["time"]} == {"get_current_time", "convert_time"}
    assert "3d_render" in {tool.name for tool in listing["web"]}
    weather = next(tool for tool in listing["play"] if tool.name == "get_weather")
    assert weather.inputSchema["required"] == ["city"]
    assert weather.description == "Get the current weather for a city."


def test_calls_reach_the_server_and_errors_are_results(servers, call_log):
    ok = _call(servers, "play", "get_weather", {"city": "Oslo"})
    assert (ok.text, ok.error) == ("Sunny, 21 C in Oslo", None)
    over_http = _call(servers, "web", "get_weather", {"city": "Rome"})
    assert over_http.text == "Sunny, 21 C in Rome" and not over_http.is_error
    now = _call(servers, "time", "get_current_time", {"timezone": "Europe/Paris"})
    assert not now.is_error and json.loads(now.text)["timezone"] == "Europe/Paris"
    failed = _call(servers, "play", "broken")
    assert failed.error == "tool_error" and "the database is down" in failed.text
    big = _call(servers, "play", "huge")
    assert big.truncated and big.original_chars == 200_000
    assert big.text.startswith("0123456789" * 50)
    assert "the tool returned 200000 characters; the first 500 are shown" in big.text
    recorded = [(c["tool"], c["arguments"]) for c in calls(call_log)]
    assert ("get_weather", {"city": "Oslo"}) in recorded and ("huge", {"size": 200000}) in recorded


def test_a_hanging_tool_times_out_and_the_server_stays_usable(servers, call_log):
    hung = _call(servers, "play", "hang", timeout=0.5)
    assert hung.error == "timeout" and "did not answer within 0.5s" in hung.text
    pids = {c["pid"] for c in calls(call_log)}
    assert _call(servers, "play", "get_weather", {"city": "Lima"}).text.endswith("Lima")
    assert {c["pid"] for c in calls(call_log)} == pids  # the same process


def test_list_changed_refreshes_the_tool_list(servers):
    config = next(c for c in servers.configured if c.name == "play")
    before = {t.name for t in servers.list_tools([config], timeout=200)["play"]}
    assert "late_tool" not in before
    assert _call(servers, "play", "grow").text == "added late_tool"
    after = {t.name for t in servers.list_tools([config], timeout=200)["play"]}  # no refresh=
    assert after == before | {"late_tool"}
    assert _call(servers, "play", "late_tool").text == "late tool answered"


def test_a_crash_mid_call_is_an_error_result_and_one_new_process_follows(servers, call_log):
    config = next(c for c in servers.configured if c.name == "play")
    session = servers.session(config)
    _call(servers, "play", "get_weather", {"city": "A"})
    connections = session.connections
    crashed = _call(servers, "play", "crash")
    assert crashed.error == "server_error" and "closed the connection" in crashed.text
    old_pid = calls(call_log)[-1]["pid"]
    # Four callers at once after the crash: one new process serves all of them.
    results: list = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                _call(servers, "play", "get_weather", {"city": f"c{i}"})
            )
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.text for r in results) == [f"Sunny, 21 C in c{i}" for i in range(4)]
    new_pids = {c["pid"] for c in calls(call_log)[-4:]}
    assert len(new_pids) == 1 and old_pid not in new_pids
    assert session.connections == connections + 1
    assert not alive(old_pid)


def test_servers_that_cannot_start_are_typed_errors():
    missing = MCPServerConfig(name="missing", command="/nonexistent/mcp-server")
    dying = MCPServerConfig(
        name="dying",
        command=sys.executable,
        args=["-c", "import sys; print('no database configured', file=sys.stderr); sys.exit(3)"],
    )
    servers = MCPServers([missing, dying])
    try:
        with pytest.raises(MCPServerError, match="command not found: /nonexistent/mcp-server"):
            servers.list_tools([missing], timeout=60)
        with pytest.raises(MCPServerError) as error:
            servers.list_tools([dying], timeout=60)
        assert "exited during start-up" in str(error.value)
        assert "no database configured" in str(error.value)
        assert error.value.server == "dying"
    finally:
        servers.close()


def test_close_stops_every_process_and_the_loop_thread(servers, call_log):
    pids = {c["pid"] for c in calls(call_log)}
    servers.close()
    assert not [pid for pid in pids if alive(pid)]
    assert not mcp_children()
    assert not mcp_threads()


def test_router_mcp_list(emulator, tmp_path):
    config = router_config(
        emulator,
        mcp_servers=[
            playground(denied_tools=["hang"]),
            {"name": "off", "command": "whatever", "enabled": False},
            {"name": "missing", "command": "/nonexistent/server"},
        ],
    )
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(path), "mcp", "list"], catch_exceptions=False)
    assert result.exit_code == 1  # one server could not be reached
    out = result.output
    assert "play (stdio: " in out and "connected, router-playground 1.0" in out
    assert "get_weather  providers: openai anthropic google" in out
    assert "parameters: city*: string" in out
    assert "3d_render  providers: openai anthropic" in out
    assert "not for google: name is not a valid Gemini function name" in out
    assert "hang [not offered: allowed/denied_tools]" in out
    assert "off (stdio: whatever): disabled" in out
    assert "error: MCP server 'missing' could not be started (command not found" in out

    result = runner.invoke(
        cli, ["--config", str(path), "mcp", "list", "--server", "play", "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["servers"]
    tools = {tool["name"]: tool for tool in row["tools"]}
    assert tools["get_weather"]["input_schema"]["properties"]["city"]["type"] == "string"
    assert tools["3d_render"]["providers"] == {"openai": True, "anthropic": True, "google": False}
    assert tools["hang"]["offered"] is False
    assert not mcp_children() and not mcp_threads()


# --- the environment a stdio server starts with --------------------------------------------

# In the router's environment: the provider key variables, and one a key is interpolated from.
ROUTER_SECRETS = {
    "OPENAI_API_KEY": "sk-env-openai-must-not-leak",
    "ANTHROPIC_API_KEY": "sk-ant-env-must-not-leak",
    "GEMINI_API_KEY": "AIza-env-must-not-leak",
    "ROUTER_TEST_OPENAI_KEY": "sk-interpolated-must-not-leak",
}


def _server_environment(path: Path, *args: str) -> dict[str, str]:
    """``router agent`` calls ``report_environment``; the environment the server answered."""
    result = CliRunner().invoke(
        cli,
        ["--config", str(path), "agent", "Use report_environment", "--json", *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    transcript = json.loads(result.stdout)
    (call,) = transcript["turns"][0]["tool_calls"]
    assert call["tool"] == "report_environment" and not call["is_error"], call
    return json.loads(call["result"])


def test_stdio_servers_never_get_the_provider_keys_unless_their_env_names_them(
    emulator, tmp_path, monkeypatch
):
    for name, value in ROUTER_SECRETS.items():
        monkeypatch.setenv(name, value)
    explicit = {"EXPLICIT_TOKEN": "for-this-server", "GOOGLE_API_KEY": "given-on-purpose"}
    config = router_config(emulator, mcp_servers=[env_server(env=explicit)])
    openai = next(p for p in config["providers"] if p["type"] == "openai")
    openai["api_key"] = "${ROUTER_TEST_OPENAI_KEY}"
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    model = ["--model", MODELS["openai"]]  # served with the interpolated key

    # A configured server: the minimal environment plus its own env, nothing else.
    seen = _server_environment(path, "--mcp", "env", *model)
    assert not set(ROUTER_SECRETS) & set(seen)
    assert {k: seen.get(k) for k in explicit} == explicit  # what the user passed, even a key
    assert seen["PATH"] == os.environ["PATH"]

    # An ad-hoc --mcp-command server: the minimal environment, not the caller's.
    command = f"{sys.executable} {env_server()['args'][0]}"
    seen = _server_environment(path, "--mcp-command", command, *model)
    assert not set(ROUTER_SECRETS) & set(seen)
    assert "EXPLICIT_TOKEN" not in seen and "GOOGLE_API_KEY" not in seen
    assert seen["PATH"] == os.environ["PATH"]

    # ... plus what --mcp-env names, and still nothing else of the caller's.
    given = ["--mcp-env", "EXPLICIT_TOKEN=for-this-server", "--mcp-env", "EMPTY="]
    seen = _server_environment(path, "--mcp-command", command, *given, *model)
    assert (seen.get("EXPLICIT_TOKEN"), seen.get("EMPTY")) == ("for-this-server", "")
    assert not set(ROUTER_SECRETS) & set(seen)
    assert not mcp_children() and not mcp_threads()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mcp-env", "sk-secret-value"], "expected NAME=VALUE (no '=' given)"),
        (["--mcp-env", "1BAD=x"], "'1BAD' is not an environment variable name"),
        (["--mcp-env", "=x"], "'' is not an environment variable name"),
    ],
)
def test_a_bad_mcp_env_is_a_config_error_that_never_echoes_a_value(tmp_path, args, message):
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({"providers": []}))
    result = CliRunner().invoke(
        cli, ["--config", str(path), "agent", "hi", "--mcp-command", "server", *args]
    )
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "secret" not in result.output and "Traceback" not in result.output


def test_mcp_env_without_an_adhoc_server_is_refused(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({"providers": []}))
    result = CliRunner().invoke(cli, ["--config", str(path), "agent", "hi", "--mcp-env", "A=1"])
    assert result.exit_code == 2
    assert "--mcp-env applies to --mcp-command servers only" in result.stderr
