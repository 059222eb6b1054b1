"""Secrets: with real-looking keys configured, no key shows up anywhere a user or an operator
can read — errors (message, repr, ``to_dict``, traceback), logs at DEBUG (the router's, pykka's,
urllib3's, cheroot's), stats, health, budget status, usage records, reprs, every bridge
endpoint and every CLI command — on the happy path and on every error path: a wrong key, a
provider that is down, a timeout, a budget exceeded, and a server that echoes the key it was
sent. ``/ai/configure`` without or with a wrong token changes nothing.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from remote_emulator import child_env
from support import MODELS

from router.cli import cli
from router.emulator import EmulatorServer
from router.errors import RouterError
from router.manager import AIProviderManager
from router.server import BridgeServer

# Invented keys, not real ones, shaped like the real thing (prefixes and lengths) so
# format-based redaction is exercised too; "local" is an OpenAI-compatible server whose key follows no known format.
SECRETS = {
    "openai": "sk-proj-FAKE-secrets-test-openai-not-a-real-key-01",
    "anthropic": "sk-ant-api03-FAKE-secrets-test-anthropic-not-a-real-key-01",
    "google": "AIzaFAKE-secrets-test-google-not-a-real-01",
    "local": "lc_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
}
WRONG = {
    "openai": "sk-proj-FAKE-secrets-test-wrong-key-not-real-02",
    "google": "AIzaFAKE-secrets-test-wrong-key-not-real-02",
}
ROTATED = "sk-proj-FAKE-secrets-test-rotated-not-real-03"
AUTH_TOKEN = "bridge-auth-7f3e9c1a5b2d8e4f6a0c"
CONFIGURE_TOKEN = "bridge-configure-2b8d4f6a0c1e3f5a7b9d"
ALL_SECRETS = {
    **{f"key:{name}": value for name, value in SECRETS.items()},
    **{f"wrong:{name}": value for name, value in WRONG.items()},
    "rotated": ROTATED,
    "auth-token": AUTH_TOKEN,
    "configure-token": CONFIGURE_TOKEN,
}
LOCAL_MODEL = "local-model"


def leaks(text: str) -> list[str]:
    """Which secrets (or their last 12 characters, as a masked echo would show) are in text."""
    return [name for name, value in ALL_SECRETS.items() if value in text or value[-12:] in text]


def assert_clean(texts: list[str]) -> None:
    found = {name: text[:300] for text in texts for name in leaks(text)}
    assert found == {}, found


# --- fixtures ------------------------------------------------------------------------------


class DebugLog(logging.Handler):
    """Every log record of the process, formatted with its traceback, from DEBUG up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._lock2:
            self.lines.append(text)


@pytest.fixture
def debug_log() -> Iterator[DebugLog]:
    root = logging.getLogger()
    handler = DebugLog()
    previous = root.level
    # Loggers given a level of their own (the CLI's demo quiets "router") are opened up too.
    quiet = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG
    }
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="module")
def secret_emulator() -> Iterator[EmulatorServer]:
    """An emulator that accepts only the configured keys (and the rotated one)."""
    keys = {
        "openai": [SECRETS["openai"], SECRETS["local"], ROTATED],
        "anthropic": [SECRETS["anthropic"]],
        "google": [SECRETS["google"]],
    }
    with EmulatorServer({"keys": keys, "pacing": {"ttft": 0.0, "token_delay": 0.0}}) as server:
        yield server


class _Echo(BaseHTTPRequestHandler):
    """A hostile upstream: answers every call with an error that quotes the key it got."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        header = (
            self.headers.get("Authorization")
            or self.headers.get("x-api-key")
            or self.headers.get("x-goog-api-key")
            or ""
        )
        key = header.split()[-1] if header else ""
        status = int(self.path.rsplit("status=", 1)[-1]) if "status=" in self.path else 401
        message = f"Incorrect API key provided: {key} (you sent '{header}')"
        body = json.dumps({"error": {"message": message, "code": "invalid_api_key"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def secret_config(base: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """Four providers with real-looking keys: ``base`` maps each name to its base URL."""
    providers = []
    for priority, name in enumerate(("openai", "anthropic", "google", "local")):
        provider: dict[str, Any] = {
            "name": name,
            "type": "openai_compatible" if name == "local" else name,
            "api_key": SECRETS[name],
            "base_url": base[name],
            "priority": 10 - priority,
            "max_retries": 1,
            "timeout": 5.0,
            "retry": {"base_delay": 0.01, "max_delay": 0.02},
        }
        if name == "local":
            provider["models"] = [LOCAL_MODEL]
        providers.append(provider)
    config: dict[str, Any] = {
        "providers": providers,
        "model_groups": {
            "fast": [{"provider": kind, "model": MODELS[kind]} for kind in MODELS],
        },
        "ledger": {"type": "memory"},
        "request_timeout": 10.0,
    }
    config.update(overrides)
    return config


def emulator_urls(emulator: EmulatorServer) -> dict[str, str]:
    return {
        **{kind: emulator.base_urls[kind] for kind in ("openai", "anthropic", "google")},
        "local": emulator.base_url("openai", prefix="/local"),
    }


def pinned(name: str, text: str = "hello") -> dict[str, Any]:
    """A request only provider ``name`` can serve."""
    model = LOCAL_MODEL if name == "local" else MODELS[name]
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def only(name: str) -> dict[str, Any]:
    return {"exclude_providers": [p for p in SECRETS if p != name]}


class Collected:
    """Everything the tests read back; checked for secrets at the end."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, *values: Any) -> None:
        for value in values:
            self.texts.append(value if isinstance(value, str) else repr(value))
            if not isinstance(value, str):
                self.texts.append(json.dumps(value, default=str))

    def error(self, error: BaseException) -> None:
        self.texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        if isinstance(error, RouterError):
            self.texts.append(json.dumps(error.to_dict(), default=str))
            for nested in getattr(error, "errors", {}).values():
                self.error(nested)

    def outcome(self, manager: AIProviderManager, payload: Any, **options: Any) -> Any:
        """Run one request both ways (plain, streamed); keep the answers and errors."""
        results: list[Any] = []
        try:
            response = manager.submit(payload, **options).get(timeout=30)
            self.add(response.model_dump_json(), response)
            results.append(response)
        except RouterError as error:
            self.error(error)
            results.append(error)
        try:
            chunks = list(manager.stream_request(payload, **options))
            self.add(*[chunk.model_dump_json() for chunk in chunks])
            results.append(chunks[-1])
        except RouterError as error:
            self.error(error)
            results.append(error)
        return results

    def insight(self, manager: AIProviderManager) -> None:
        """Every read-out a manager offers, and the reprs of what it is built from."""
        health = manager.provider_health()
        self.add(
            manager.get_manager_stats(),
            manager.get_budget_status(),
            manager.get_budget_alerts(),
            [record.to_dict() for record in manager.usage_records()],
            manager.usage_records(),
            {name: snap.to_dict() for name, snap in health.items()},
            health,
            manager.get_cost_recommendations({"messages": [{"role": "user", "content": "x"}]}),
            manager,
            manager.config,
            str(manager.config),
            manager.config.model_dump(),
            manager.config.model_dump_json(),
            list(manager.config.providers),
        )


# --- the Python face -------------------------------------------------------------------------


def test_no_key_in_errors_logs_stats_health_records_or_reprs(
    secret_emulator, echo_server, debug_log, tmp_path
):
    seen = Collected()
    config = secret_config(
        emulator_urls(secret_emulator),
        budgets=[{"name": "Monthly", "monthly_limit": 100.0}],
        ledger={"type": "sqlite", "path": str(tmp_path / "ledger.sqlite3")},
    )
    config["providers"][3]["enabled"] = False  # no catalog price under a budget; tested below
    with AIProviderManager(config) as manager:
        for name in ("openai", "anthropic", "google"):  # the happy path
            results = seen.outcome(manager, pinned(name), selection=only(name))
            assert all(not isinstance(r, RouterError) for r in results), results
        # A wrong key: OpenAI's 401, Gemini's 400 API_KEY_INVALID; then the key is rotated.
        for name in ("openai", "google"):
            manager.update_provider(name, api_key=WRONG[name])
            results = seen.outcome(manager, pinned(name), selection=only(name))
            assert all(isinstance(r, RouterError) for r in results), results
            seen.insight(manager)
        manager.update_provider("openai", api_key=ROTATED)
        manager.update_provider("google", api_key=SECRETS["google"])
        assert seen.outcome(manager, pinned("openai"))[0].provider_name == "openai"
        # A provider that times out, then one that is overloaded for good.
        secret_emulator.add_fault(provider="anthropic", kind="timeout", delay=1.0, count=2)
        seen.outcome(manager, pinned("anthropic"), selection=only("anthropic"), timeout=3)
        secret_emulator.add_fault(provider="anthropic", kind="overloaded")
        seen.outcome(manager, pinned("anthropic"), selection=only("anthropic"))
        secret_emulator.clear_faults()
        seen.insight(manager)

    # The budget is exceeded.
    tiny = secret_config(
        emulator_urls(secret_emulator), budgets=[{"name": "Tiny", "monthly_limit": 1e-9}]
    )
    tiny["providers"][3]["enabled"] = False
    with AIProviderManager(tiny) as manager:
        results = seen.outcome(manager, pinned("openai"))
        assert all(isinstance(r, RouterError) for r in results)
        seen.insight(manager)

    # Every provider is down (nothing listens there).
    with socket_nobody_listens() as dead:
        down = secret_config(
            {name: dead + ("/v1" if name in ("openai", "local") else "") for name in SECRETS}
        )
        with AIProviderManager(down) as manager:
            for name in SECRETS:
                results = seen.outcome(manager, pinned(name), selection=only(name))
                assert all(isinstance(r, RouterError) for r in results)
            seen.insight(manager)

    # A server that echoes the key it was sent in its error bodies, with several statuses.
    for status in (401, 400, 429, 500):
        echo = {
            name: f"{echo_server}/status={status}" + ("/v1" if name in ("openai", "local") else "")
            for name in SECRETS
        }
        with AIProviderManager(secret_config(echo)) as manager:
            for name in SECRETS:
                results = seen.outcome(manager, pinned(name), selection=only(name))
                assert all(isinstance(r, RouterError) for r in results)
            seen.insight(manager)

    assert any("urllib3" in line for line in debug_log.lines), "DEBUG logs were not captured"
    assert any("taken out of rotation" in line for line in debug_log.lines)
    assert_clean(seen.texts + debug_log.lines)


class socket_nobody_listens:  # noqa: N801 - a context manager used like a function
    """A loopback URL whose port is bound but never accepts (connections are refused)."""

    def __enter__(self) -> str:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))  # bound, not listening: connect() is refused
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


# --- the bridge ------------------------------------------------------------------------------


def bridge_calls() -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) for every endpoint, plain and streamed, good and bad."""
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
    return [
        ("GET", "/healthz", None),
        ("GET", "/ai/status", None),
        ("POST", "/ai/generate", pinned("openai")),
        ("POST", "/ai/generate", {**pinned("anthropic"), "stream": True}),
        ("POST", "/ai/generate", {**pinned("google"), "selection": only("google")}),
        ("POST", "/ai/generate", {"messages": "not a list"}),
        ("POST", "/ai/recommendations", {"messages": [{"role": "user", "content": "x"}]}),
        ("POST", "/v1/chat/completions", chat),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}),
        ("POST", "/v1/chat/completions", {**chat, "model": "no-such-model"}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/gpt-4o-mini", None),
        ("GET", "/metrics", None),
        ("GET", "/no/such/endpoint", None),
        # The SDK doors: answers, streams and errors in each protocol's own shape.
        ("POST", "/v1/messages", {**chat, "max_tokens": 20}),
        ("POST", "/v1/messages", {**chat, "max_tokens": 20, "stream": True}),
        ("POST", "/v1/messages", {**chat, "model": "no-such-model", "max_tokens": 20}),
        ("POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
        ("POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "stream": True}),
        ("POST", "/v1/responses", {"model": "no-such-model", "input": "hi"}),
        ("POST", "/v1beta/models/gemini-1.5-flash:generateContent", gemini),
        ("POST", "/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse", gemini),
        ("POST", "/v1beta/models/no-such-model:generateContent", gemini),
    ]


def http(url: str, method: str, path: str, body: Any, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path.startswith("/v1/messages"):
        headers["anthropic-version"] = "2023-06-01"
    return requests.request(method, url + path, json=body, headers=headers, timeout=30)


def response_text(response: requests.Response) -> str:
    return response.text + repr(sorted(response.headers.items()))


def test_no_key_at_any_bridge_endpoint_on_any_path(secret_emulator, debug_log):
    config = secret_config(
        emulator_urls(secret_emulator), budgets=[{"name": "Monthly", "monthly_limit": 100.0}]
    )
    config["providers"][3]["enabled"] = False
    texts: list[str] = []
    with AIProviderManager(config) as manager:
        server = BridgeServer(
            manager, threads=4, auth_token=AUTH_TOKEN, configure_token=CONFIGURE_TOKEN
        ).start()
        try:
            url = server.url

            def every_endpoint() -> None:
                for method, path, body in bridge_calls():
                    texts.append(response_text(http(url, method, path, body, AUTH_TOKEN)))

            every_endpoint()
            # Without the bridge token, or with a key in its place: 401, the token not echoed.
            for token in (None, "wrong-token-0123456789", SECRETS["openai"]):
                reply = http(url, "POST", "/ai/generate", pinned("openai"), token)
                assert reply.status_code == 401
                texts.append(response_text(reply))
            # Rotate a key through /ai/configure, to a wrong one: the answer does not echo it
            # and every endpoint (now also on the 401 path) still hides it.
            reply = http(
                url,
                "POST",
                "/ai/configure",
                {"provider": "openai", "api_key": WRONG["openai"]},
                CONFIGURE_TOKEN,
            )
            assert reply.status_code == 200, reply.text
            texts.append(response_text(reply))
            every_endpoint()
            reply = http(url, "POST", "/ai/generate", pinned("openai"), AUTH_TOKEN)
            assert reply.status_code in (401, 403, 502, 503), reply.text
            # The budget exceeded, through /ai/configure's budget change.
            reply = http(
                url,
                "POST",
                "/ai/configure",
                {"budget": "Monthly", "monthly_limit": 1e-9},
                CONFIGURE_TOKEN,
            )
            assert reply.status_code == 200, reply.text
            reply = http(url, "POST", "/ai/generate", pinned("anthropic"), AUTH_TOKEN)
            assert reply.status_code == 402, reply.text
            texts.append(response_text(reply))
            every_endpoint()
        finally:
            server.stop()
    assert any("cheroot" in line or "router.bridge" in line for line in debug_log.lines)
    assert_clean(texts + debug_log.lines)


def test_configure_without_or_with_a_wrong_token_changes_nothing(secret_emulator):
    config = secret_config(
        emulator_urls(secret_emulator), budgets=[{"name": "Monthly", "monthly_limit": 100.0}]
    )
    config["providers"][3]["enabled"] = False
    changes = [
        {"provider": "openai", "api_key": WRONG["openai"]},
        {"provider": "openai", "enabled": False},
        {"provider": "openai", "priority": -50, "rpm": 1},
        {"budget": "Monthly", "monthly_limit": 1e-9},
    ]
    with AIProviderManager(config) as manager:

        def state() -> Any:
            health = {n: s.to_dict() for n, s in manager.provider_health().items()}
            for snap in health.values():  # what requests and time change, not configuration
                for moving in ("requests", "successes", "input_tokens", "output_tokens", "cost"):
                    snap.pop(moving, None)
                for key in list(snap):
                    if "latency" in key or key in ("uptime_percentage", "health_score"):
                        snap.pop(key)
            limits = [(b["budget"], b["limit"]) for b in manager.get_budget_status()["budgets"]]
            return health, limits

        before = state()
        for configure_token, bearer, expected in (
            (CONFIGURE_TOKEN, None, 401),
            (CONFIGURE_TOKEN, "wrong-token-0123456789", 401),
            (CONFIGURE_TOKEN, AUTH_TOKEN, 401),  # the other token is not this one
            (CONFIGURE_TOKEN, CONFIGURE_TOKEN[:-1], 401),
            (None, CONFIGURE_TOKEN, 403),  # configure switched off: no token opens it
        ):
            server = BridgeServer(
                manager, threads=2, auth_token="", configure_token=configure_token or ""
            ).start()
            try:
                for change in changes:
                    reply = http(server.url, "POST", "/ai/configure", change, bearer)
                    assert reply.status_code == expected, reply.text
                    assert not leaks(response_text(reply))
            finally:
                server.stop()
        assert state() == before
        # The key was not replaced: openai still answers with its own key.
        response = manager.process_request(pinned("openai"), selection=only("openai"))
        assert response.provider_name == "openai"


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli_config(secret_emulator, tmp_path) -> Path:
    config = secret_config(
        emulator_urls(secret_emulator),
        budgets=[{"name": "Monthly", "monthly_limit": 100.0}],
        ledger={"type": "sqlite", "path": str(tmp_path / "ledger.sqlite3")},
    )
    config["providers"][3]["enabled"] = False
    # One key from the environment, as a deployment would do it.
    config["providers"][2]["api_key"] = "${ROUTER_TEST_GOOGLE_KEY}"
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


CLI_ENV = {"ROUTER_TEST_GOOGLE_KEY": SECRETS["google"]}


def run_cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["--log-level", "debug", *args], env=CLI_ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_no_key_in_any_cli_command_output_or_debug_log(cli_config, tmp_path, debug_log):
    config = str(cli_config)
    broken = tmp_path / "broken.yaml"
    data = yaml.safe_load(cli_config.read_text())
    data["providers"][0]["timeout"] = "soon"  # an error message about the provider holding it
    data["providers"][1]["api_key"] = {"nested": SECRETS["anthropic"]}
    broken.write_text(yaml.safe_dump(data))
    wrong = tmp_path / "wrong.yaml"
    data = yaml.safe_load(cli_config.read_text())
    data["providers"][0]["api_key"] = WRONG["openai"]
    wrong.write_text(yaml.safe_dump(data))
    invocations = [
        ("--config", config, "generate", "hello", "--model", "gpt-4o-mini"),
        ("--config", config, "generate", "hello", "--model", "fast", "--stream"),
        ("--config", config, "generate", "hello", "--json"),
        ("--config", str(wrong), "generate", "hello", "--model", "gpt-4o-mini"),  # 401
        ("--config", str(wrong), "generate", "hello", "--model", "gpt-4o-mini", "--stream"),
        ("--config", config, "status"),
        ("--config", config, "status", "--json"),
        ("--config", config, "recommend", "hello"),
        ("--config", config, "recommend", "hello", "--json"),
        ("--config", config, "budget"),
        ("--config", config, "budget", "--json"),
        ("--config", config, "models"),
        ("--config", config, "models", "--json"),
        ("--config", config, "config", "check"),
        ("--config", config, "config", "check", "--json"),
        ("--config", str(broken), "config", "check"),
        ("--config", str(broken), "config", "check", "--json"),
        ("--config", str(broken), "status"),
        ("demo", "--json"),
    ]
    texts: list[str] = []
    for args in invocations:
        result = run_cli(*args)
        texts += [result.stdout, result.stderr]
    assert (
        run_cli("--config", str(wrong), "generate", "hi", "--model", "gpt-4o-mini").exit_code == 1
    )
    assert any("DEBUG" in line for line in debug_log.lines)
    assert_clean(texts + debug_log.lines)


def test_no_key_from_router_serve_and_emulate_processes(cli_config):
    """``router serve`` and ``router emulate`` as real processes, logging at DEBUG."""
    command = [sys.executable, "-c", "import sys; from router.cli import main; sys.exit(main())"]
    env = {**child_env(), **CLI_ENV}
    serve = subprocess.Popen(
        [
            *command,
            "--config",
            str(cli_config),
            "--log-level",
            "debug",
            "serve",
            "--port",
            "0",
            "--auth-token",
            AUTH_TOKEN,
            "--configure-token",
            CONFIGURE_TOKEN,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stderr_lines: list[str] = []
    listening = threading.Event()

    def read_stderr() -> None:  # drained all along: a full pipe would block the server
        assert serve.stderr is not None
        for line in serve.stderr:
            stderr_lines.append(line)
            if "listening on" in line:
                listening.set()
        listening.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert listening.wait(30)
        started = [line for line in stderr_lines if "listening on" in line]
        assert started, "router serve did not start: " + "".join(stderr_lines)
        url = started[0].rsplit(" ", 1)[-1].strip()
        texts = [
            response_text(http(url, method, path, body, AUTH_TOKEN))
            for method, path, body in bridge_calls()
        ]
        reply = http(
            url,
            "POST",
            "/ai/configure",
            {"provider": "openai", "api_key": ROTATED},
            CONFIGURE_TOKEN,
        )
        assert reply.status_code == 200
        texts.append(response_text(reply))
        texts.append(response_text(http(url, "POST", "/ai/generate", pinned("openai"), AUTH_TOKEN)))
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=30)
        reader.join(timeout=10)
    err = "".join(stderr_lines)
    assert serve.returncode == 0, err
    texts += [out, err]
    assert "DEBUG" in err

    emulate = subprocess.Popen(
        [*command, "--log-level", "debug", "emulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert emulate.stdout is not None
    emulator_url = emulate.stdout.readline().strip()
    assert emulator_url.startswith("http://")
    requests.post(
        emulator_url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {SECRETS['openai']}"},
        timeout=10,
    )
    emulate.send_signal(signal.SIGINT)
    out, err = emulate.communicate(timeout=30)
    texts += [out, err]
    assert_clean(texts)
