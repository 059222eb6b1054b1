"""The status page's server side (/, /ui, /ui/data), the activity recorder and --watch."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from support import KEYS, router_config

from router.activity import Activity, RequestSummary
from router.cli import cli
from router.errors import RouterError
from router.server import BridgeServer

TOKEN = "ui-token-0123456789"


def ask(text: str = "Hello status", model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20}


def status_config(emulator: Any) -> dict[str, Any]:
    config = router_config(emulator)
    config["budgets"] = [{"name": "Daily", "daily_limit": 1.0, "alert_thresholds": [0.5]}]
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 2, "recovery_timeout": 60}
    config["providers"][0]["max_retries"] = 0
    return config


@pytest.fixture
def bridge(make_manager, emulator):
    manager = make_manager(status_config(emulator))
    with BridgeServer(manager, auth_token=TOKEN) as server:
        yield manager, server


def get(server: Any, path: str, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(server.url + path, headers=headers, timeout=10)


def test_the_page_and_its_files_need_no_token_and_hold_no_data(bridge):
    _, server = bridge
    for path, kind in (("/", "text/html"), ("/ui", "text/html"), ("/ui/app.js", "javascript")):
        reply = get(server, path, token=None)
        assert reply.status_code == 200 and kind in reply.headers["Content-Type"]
        assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    page = get(server, "/ui", token=None).text
    assert 'src="/ui/app.js"' in page and "openai" not in page
    assert get(server, "/ui/data", token=None).status_code == 401
    assert get(server, "/ui/data", token="wrong-token").status_code == 401


def test_the_data_shows_providers_budgets_groups_and_recent_requests_without_content(
    bridge, emulator
):
    manager, server = bridge
    manager.process_request(ask())
    manager.process_request(ask(model="claude-3-haiku-20240307"))
    emulator.add_fault(provider="openai", kind="server_error", count=2)
    for _ in range(2):
        with pytest.raises(RouterError):
            manager.process_request(ask("fail"))
    data = get(server, "/ui/data").json()
    providers = {p["name"]: p for p in data["providers"]}
    assert set(providers) == {"openai", "anthropic", "google"}
    openai = providers["openai"]
    assert openai["circuit_state"] == "open" and 55 < openai["retry_in"] <= 60
    assert openai["errors"] == {"ServiceUnavailableError": 2}
    assert openai["requests_per_min"] == 3
    assert openai["latency"][-1]["p50"] > 0
    assert data["budgets"][0]["budget"] == "Daily" and data["budgets"][0]["spent"] > 0
    assert data["model_groups"]["fast"][0] == "openai/gpt-4o-mini"
    recent = data["recent"]
    assert [r["outcome"] for r in recent] == ["error", "error", "success", "success"]
    assert recent[2]["provider"] == "anthropic" and recent[2]["output_tokens"] > 0
    text = json.dumps(data)
    assert "Hello status" not in text and "Echo" not in text
    assert not any(key in text for key in KEYS.values())


def test_activity_buckets_count_requests_errors_and_latency_per_provider():
    now = [1000.0]
    activity = Activity(recent=3, bucket_seconds=10, window_seconds=60, clock=lambda: now[0])

    def summary(at: float, outcome: str = "success", **extra: Any) -> RequestSummary:
        fields = dict(provider="openai", model="m", input_tokens=1, output_tokens=2, cost=0.1)
        fields.update(extra)
        return RequestSummary(at, "r", latency_ms=at - 990, outcome=outcome, **fields)

    activity.record(summary(991.0))
    activity.record(summary(995.0))
    activity.record(summary(1000.0, "error", error_type="ServerError"))
    activity.record(summary(1000.0, failed=(("anthropic", "RateLimitError"),)))
    figures = activity.providers()
    openai = figures["openai"]
    assert openai["requests_per_min"] == 4 and openai["errors"] == {"ServerError": 1}
    assert [b["requests"] for b in openai["latency"]] == [2, 2]
    assert openai["latency"][0]["p95"] == 5.0
    assert figures["anthropic"]["errors"] == {"RateLimitError": 1}
    assert len(activity.recent()) == 3  # bounded, newest first
    now[0] = 1200.0
    assert activity.providers()["openai"]["latency"] == []
    assert activity.providers()["openai"]["requests_per_min"] == 0


def test_status_and_budget_watch_locally_and_against_a_bridge(bridge, emulator, tmp_path):
    manager, server = bridge
    manager.process_request(ask())
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(status_config(emulator)))
    runner = CliRunner()
    local = runner.invoke(cli, ["--config", str(path), "status", "--watch", "--count", "2"])
    assert local.exit_code == 0, local.output
    assert "openai" in local.output and "anthropic" in local.output and "healthy" in local.output
    remote = runner.invoke(
        cli, ["status", "--watch", "--count", "1", "--url", server.url, "--token", TOKEN]
    )
    assert remote.exit_code == 0, remote.output
    assert "openai" in remote.output and "1" in remote.output  # one request a minute
    budget = runner.invoke(
        cli, ["budget", "--watch", "--count", "1", "--url", server.url, "--token", TOKEN]
    )
    assert budget.exit_code == 0 and "Daily" in budget.output and "spent today" in budget.output
    refused = runner.invoke(cli, ["status", "--watch", "--count", "1", "--url", server.url])
    assert "refused the token" in refused.output
    once = runner.invoke(cli, ["status", "--json", "--url", server.url, "--token", TOKEN])
    assert once.exit_code == 0 and "openai" in json.loads(once.output)["providers"]


def test_status_output_says_until_when_a_provider_is_rate_limited(bridge, emulator, tmp_path):
    manager, server = bridge
    emulator.add_fault(provider="openai", kind="rate_limit", retry_after=10, count=1)
    before = time.time()
    response = manager.process_request(ask(model="fast"), strategy="priority")
    assert response.provider_name == "anthropic"  # openai's 429 sent it on
    after = time.time()

    def until(providers: dict[str, Any]) -> dict[str, Any]:
        return {name: row["rate_limited_until"] for name, row in providers.items()}

    # Unix time (Retry-After: 10 from the 429), null for the providers that are not limited.
    status = get(server, "/ai/status").json()["providers"]
    seen = until(status)
    assert seen["anthropic"] is None and seen["google"] is None
    assert before + 9 <= seen["openai"] <= after + 11
    runner = CliRunner()
    remote = runner.invoke(cli, ["status", "--json", "--url", server.url, "--token", TOKEN])
    assert remote.exit_code == 0, remote.output
    assert until(json.loads(remote.output)["providers"]) == pytest.approx(seen, abs=1)

    # A router of its own (status --json on the configuration): nothing is limited.
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(status_config(emulator)))
    local = runner.invoke(cli, ["--config", str(path), "status", "--json"])
    assert local.exit_code == 0, local.output
    assert until(json.loads(local.output)["providers"]) == dict.fromkeys(seen)
