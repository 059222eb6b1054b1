"""The command line, through click's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import KEYS, router_config

from router.cli import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_file(emulator, tmp_path: Path) -> Path:
    config = router_config(emulator, ledger={"type": "sqlite", "path": str(tmp_path / "l.db")})
    config["budgets"] = [{"name": "Monthly", "monthly_limit": 5.0}]
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for key in KEYS.values():
            assert key not in text


def test_version_and_help():
    result = run("--version")
    assert result.exit_code == 0 and "router" in result.output
    result = run("--help")
    assert result.exit_code == 0
    for command in (
        "generate",
        "status",
        "recommend",
        "budget",
        "models",
        "config",
        "serve",
        "emulate",
        "demo",
    ):
        assert command in result.output


def test_generate_prints_the_answer_and_details_on_stderr(config_file):
    result = run("--config", str(config_file), "generate", "Hello router", "--model", "gpt-4o-mini")
    assert result.exit_code == 0, result.output
    assert "Hello router" in result.stdout
    assert "provider=openai model=gpt-4o-mini" in result.stderr
    assert "cost=$" in result.stderr and "latency=" in result.stderr
    assert_no_secret(result.stdout, result.stderr)


def test_generate_json_is_the_response_shape(config_file):
    result = run(
        "--config",
        str(config_file),
        "generate",
        "Hi",
        "--model",
        "fast",
        "--strategy",
        "cost",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["provider_name"] == "google"
    assert set(data) >= {
        "content",
        "tool_calls",
        "finish_reason",
        "usage",
        "cost",
        "provider",
        "provider_name",
        "model",
        "latency_ms",
        "request_id",
    }
    assert data["usage"]["input_tokens"] > 0


def test_generate_streams_tokens_in_order(config_file, emulator):
    emulator.set_pacing("anthropic", token_delay=0.005)
    result = run(
        "--config",
        str(config_file),
        "generate",
        "alpha beta gamma",
        "--model",
        "claude-3-haiku-20240307",
        "--stream",
        "--system",
        "Be brief",
    )
    assert result.exit_code == 0, result.output
    assert "alpha beta gamma" in result.stdout
    assert result.stdout.index("alpha") < result.stdout.index("gamma")
    assert "provider=anthropic" in result.stderr


def test_generate_with_tools_file_prints_the_tool_call(config_file, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [
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
        )
    )
    result = run(
        "--config",
        str(config_file),
        "generate",
        "Use get_weather for Paris",
        "--model",
        "gpt-4o-mini",
        "--tools",
        str(tools),
    )
    assert result.exit_code == 0, result.output
    assert "[tool call] get_weather(" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["generate", "x", "--model", "no-such-model"], 1, "no configured provider serves model"),
        (["generate", "x", "--tools", "/nonexistent/tools.json"], 2, "--tools: cannot read"),
        (["generate", "x", "--max-tokens", "0"], 2, "max-tokens"),
    ],
)
def test_user_errors_are_one_line_without_traceback(config_file, args, code, fragment):
    result = run("--config", str(config_file), *args)
    assert result.exit_code == code
    text = result.stderr or result.output
    assert fragment in text
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if line.strip()]) <= 3


def test_a_bad_key_is_one_clear_line_and_the_key_is_not_shown(emulator, tmp_path):
    config = router_config(emulator)
    config["providers"][0]["api_key"] = "invalid-" + KEYS["openai"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run("--config", str(path), "generate", "hi", "--model", "gpt-4o-mini")
    assert result.exit_code == 1
    assert result.stderr.startswith("router: error: openai:")
    assert "Traceback" not in result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert "invalid-" not in result.stderr


def test_budget_exceeded_is_a_clear_error(emulator, tmp_path):
    config = router_config(emulator, budgets=[{"name": "Tiny", "daily_limit": 0.0000001}])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run("--config", str(path), "generate", "hi", "--model", "gpt-4o-mini")
    assert result.exit_code == 1
    assert "budget 'Tiny'" in result.stderr and "would be exceeded" in result.stderr


def test_status_budget_recommend_json(config_file):
    run("--config", str(config_file), "generate", "spend a little", "--model", "gpt-4o-mini")
    status = json.loads(run("--config", str(config_file), "status", "--json").stdout)
    assert set(status["providers"]) == {"openai", "anthropic", "google"}
    openai = status["providers"]["openai"]
    assert openai["status"] == "healthy" and openai["circuit_state"] == "closed"
    assert openai["spent_month"] > 0  # the ledger file keeps spend across invocations
    budget = json.loads(run("--config", str(config_file), "budget", "--json").stdout)
    monthly = next(b for b in budget["budgets"] if b["budget"] == "Monthly")
    assert monthly["spent"] > 0 and monthly["limit"] == 5.0 and monthly["reserved"] == 0
    recs = json.loads(
        run("--config", str(config_file), "recommend", "hi", "--model", "fast", "--json").stdout
    )
    assert set(recs) == {
        "openai/gpt-4o-mini",
        "anthropic/claude-3-haiku-20240307",
        "google/gemini-1.5-flash",
    }
    assert all(r["estimated_cost"] > 0 and r["available"] for r in recs.values())
    table = run("--config", str(config_file), "status").stdout
    assert "provider" in table and "circuit" in table and "openai" in table
    assert_no_secret(json.dumps(status), json.dumps(budget), table)


def test_models_lists_the_catalog():
    data = json.loads(run("models", "--json").stdout)
    ids = {m["id"] for m in data["models"]}
    assert {"gpt-4o-mini", "claude-3-haiku-20240307", "gemini-1.5-flash"} <= ids
    assert data["prices_as_of"]
    assert "gpt-4o" in run("models", "--provider", "openai").stdout


def test_config_check_explains_and_sets_the_exit_code(config_file, tmp_path):
    ok = run("config", "check", str(config_file))
    assert ok.exit_code == 0 and "valid" in ok.stdout and "provider openai" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  - type: openai\n    timeout: -1\n    colour: blue\n")
    result = run("config", "check", str(bad))
    assert result.exit_code == 1
    assert "timeout" in result.stderr and "colour" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_configuration_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AI_PROVIDER_CONFIG_PATH", raising=False)
    result = run("status")
    assert result.exit_code == 2
    assert "no configuration file found" in result.stderr


def test_subprocess_streams_and_exits_cleanly(config_file):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bin" / "router"),
            "--config",
            str(config_file),
            "generate",
            "one two three",
            "--model",
            "gpt-4o-mini",
            "--stream",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "one two three" in done.stdout
    assert "provider=openai" in done.stderr
    failed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bin" / "router"),
            "--config",
            str(config_file),
            "generate",
            "x",
            "--model",
            "nope-model",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("router: error:") and "Traceback" not in failed.stderr


def test_demo_json_shows_every_scenario():
    result = run("demo", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["strategy"] for row in data["strategies"]] == [
        "cost",
        "priority",
        "capability_based",
        "load_balanced",
        "failover",
        "round_robin",
    ]
    assert data["failover"]["answered_by"] != "openai"
    assert data["circuit"]["opened"] == "open" and data["circuit"]["after"] == "closed"
    assert data["tools"]["tool_call"]["name"] == "get_weather"
    assert data["agent"]["tool_calls"] == ["plan_trip", "get_weather"]
    assert data["agent"]["answer"] == "Tool results: Sunny, 21 C in city"
    assert data["budget"]["alerts"] and data["budget"]["refusal"]
    assert data["stream"]["first_chunk_s"] < data["stream"]["last_chunk_s"]
    assert [row["parsed"]["guests"] for row in data["structured"]] == [["guests"]] * 3
    assert all(row["reasoning_tokens"] > 0 for row in data["reasoning"])
    # A few seconds unloaded; the agent step starts a Python MCP server (~2 s of imports), and a
    # loaded 2-core machine can take ten times that.
    assert data["elapsed_s"] < 90


def test_serve_runs_the_bridge_until_terminated(config_file):
    import signal

    import requests

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bin" / "router"),
            "--config",
            str(config_file),
            "serve",
            "--port",
            "0",
            "--threads",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stderr.readline()  # blocks until the bridge listens (or exits)
        assert "router bridge listening on http://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[-1].strip()
        assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
        reply = requests.post(
            f"{url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}]},
            timeout=30,
        )
        assert reply.status_code == 200
        assert "hi there" in reply.json()["choices"][0]["message"]["content"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stderr.close()


@pytest.mark.parametrize("model", ["gpt-5-mini", "claude-3-5-haiku-20241022", "gemini-2.5-flash"])
def test_generate_with_a_schema_prints_json_that_follows_it(config_file, tmp_path, model):
    schema = tmp_path / "invite.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"guest": {"type": "string"}, "seats": {"type": "integer"}},
                "required": ["guest", "seats"],
            }
        )
    )
    args = ("--config", str(config_file), "generate", "Invite Ada", "--model", model)
    result = run(*args, "--schema", str(schema), "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["parsed"] == json.loads(answer["content"])
    assert set(answer["parsed"]) == {"guest", "seats"}
    schema.write_text("{not json")
    broken = run(*args, "--schema", str(schema))
    assert (
        broken.exit_code == 2 and "--schema" in broken.stderr and "not valid JSON" in broken.stderr
    )


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gemini-2.5-flash", "gpt-5-mini"])
def test_generate_with_reasoning_shows_the_thought_and_its_tokens(config_file, model):
    args = ("--config", str(config_file), "generate", "Why?", "--model", model)
    result = run(*args, "--reasoning", "high")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Echo: Why?"
    assert "reasoning=" in result.stderr
    if not model.startswith("gpt"):
        assert "[reasoning] Thinking about: Why?" in result.stderr
    refused = run(
        "--config",
        str(config_file),
        "generate",
        "Why?",
        "--model",
        "gpt-4o-mini",
        "--reasoning",
        "high",
    )
    assert refused.exit_code == 1 and "reasoning: the model does not reason" in refused.stderr
    dropped = run(
        "--config",
        str(config_file),
        "generate",
        "Why?",
        "--model",
        "gpt-4o-mini",
        "--reasoning",
        "high",
        "--best-effort",
    )
    assert dropped.exit_code == 0
    assert "[dropped] reasoning: the model does not reason" in dropped.stderr
