"""The bridge on a real server, on both engines (the event loop and cheroot's threads): the
official OpenAI SDK, SSE timing on a raw socket, client disconnects, the server's lifecycle."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from support import KEYS, router_config

from router.server import BridgeServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
LONG_PROMPT = " ".join(f"word{i}" for i in range(200))


@pytest.fixture
def serve(start_server, engine) -> Any:
    """Start a server of each ``engine`` for a manager (default config)."""
    return lambda manager=None, **kwargs: start_server(engine, manager, threads=4, **kwargs)


def client(server: BridgeServer, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=20)


# --- the official OpenAI SDK ----------------------------------------------------------------


def test_openai_sdk_plain_completion(serve):
    server = serve(auth_token="bridge-token-0123")
    completion = client(server, "bridge-token-0123").chat.completions.create(
        model="fast",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=50,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: Hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    assert completion.model in ("gpt-4o-mini", "claude-3-haiku-20240307", "gemini-1.5-flash")
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong").chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}]
        )
    models = {m.id for m in client(server, "bridge-token-0123").models.list()}
    assert {"fast", "gpt-4o-mini"} <= models


def test_openai_sdk_streamed_completion(serve):
    server = serve()
    stream = client(server).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_tool_call_round_trip(serve):
    sdk = client(serve())
    messages: list[Any] = [{"role": "user", "content": "What is the weather? Use get_weather."}]
    first = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)  # a JSON string, as OpenAI sends it
    assert isinstance(arguments["city"], str)
    messages.append(choice.message)  # the SDK's own message object goes back unchanged
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
    final = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    assert final.choices[0].message.content == "Tool results: sunny, 21 C"
    assert final.choices[0].finish_reason == "stop"


def test_openai_sdk_streamed_tool_call_reassembles(serve):
    stream = client(serve()).chat.completions.create(
        model="claude-3-haiku-20240307",
        messages=[{"role": "user", "content": "Call get_weather please"}],
        tools=[WEATHER],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or ():
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = delta.id or entry["id"]
            entry["name"] = (delta.function.name or "") or entry["name"]
            entry["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert "city" in json.loads(calls[0]["arguments"])


def test_openai_sdk_sees_router_errors_as_api_errors(serve, emulator, make_manager):
    config = router_config(emulator, budgets=[{"name": "Tiny", "daily_limit": 1e-9}])
    sdk = client(serve(make_manager(config)))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "budget_exceeded"
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-0", messages=[{"role": "user", "content": "x"}])


# --- SSE through a raw socket ---------------------------------------------------------------


def raw_stream(server: BridgeServer, path: str, body: dict[str, Any]) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection((server.host, server.port), timeout=20)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    return sock


def event_times(sock: socket.socket) -> tuple[bytes, list[float]]:
    """Everything the server sent, and the arrival time of each SSE ``data:`` line."""
    received, times = b"", []
    while True:
        data = sock.recv(65536)
        if not data:
            return received, times
        now = time.monotonic()
        received += data
        times.extend([now] * (received.count(b"data: ") - len(times)))


@pytest.mark.parametrize("path", ["/ai/generate", "/v1/chat/completions"])
def test_sse_events_reach_a_socket_one_by_one(serve, emulator, path):
    emulator.set_pacing("openai", token_delay=0.05)
    server = serve()
    prompt = "one two three four five six seven eight nine ten"
    sock = raw_stream(
        server,
        path,
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": prompt}]},
    )
    with sock:
        received, times = event_times(sock)
    head = received.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.startswith("http/1.1 200")
    assert "content-type: text/event-stream" in head
    assert "cache-control: no-cache" in head and "x-accel-buffering: no" in head
    assert len(times) >= 10
    # ~12 tokens paced 50 ms apart: unbuffered, the first event lands long before the last.
    assert times[-1] - times[0] > 0.4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert sum(1 for gap in gaps if gap > 0.02) >= 8  # events arrived apart, not in a lump
    terminator = b"event: done" if path == "/ai/generate" else b"data: [DONE]"
    assert terminator in received


def test_a_client_disconnect_mid_stream_cancels_the_upstream_stream(serve, emulator, make_manager):
    emulator.set_pacing("openai", token_delay=0.05)
    config = router_config(emulator)
    config["providers"][0]["max_concurrency"] = 1
    manager = make_manager(config)
    server = serve(manager)
    sock = raw_stream(
        server,
        "/ai/generate",
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": LONG_PROMPT}],
        },
    )
    received = b""
    while received.count(b"event: chunk") < 2:
        received += sock.recv(65536)
    sock.close()  # ~200 tokens (10 s) still to come
    emulator.set_pacing("openai", token_delay=0.0)
    # The only openai worker frees up only once the abandoned stream was cancelled; without
    # that the next request would wait ~10 s and run into its 5 s timeout.
    reply = requests.post(
        server.url + "/ai/generate",
        json={
            "model": "gpt-4o-mini",
            "timeout": 5,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=20,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["provider_name"] == "openai"
    partial = [r for r in manager.usage_records() if r.outcome == "partial"]
    assert len(partial) == 1 and partial[0].output_tokens > 0
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'outcome="cancelled"' in metrics


# --- the server -----------------------------------------------------------------------------


def test_a_large_body_gets_a_json_413_over_the_wire(serve, make_manager):
    server = serve(make_manager(), max_body_bytes=1000)
    reply = requests.post(server.url + "/ai/generate", data=b"x" * 5000, timeout=10)
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "PayloadTooLarge"

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(10):
            yield b"y" * 500

    reply = requests.post(server.url + "/ai/generate", data=chunks(), timeout=10)
    assert reply.status_code == 413


def test_no_key_appears_in_any_response_over_the_wire(serve, emulator, make_manager):
    config = router_config(emulator)
    config["providers"][0]["api_key"] = KEYS["openai"] + "-wrong"
    server = serve(make_manager(config), configure_token="cfg-token-0123")
    texts = [
        requests.get(server.url + path, timeout=10).text
        for path in ("/ai/status", "/v1/models", "/metrics", "/healthz")
    ]
    for body in (
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ):
        texts.append(requests.post(server.url + "/ai/generate", json=body, timeout=10).text)
        texts.append(requests.post(server.url + "/v1/chat/completions", json=body, timeout=10).text)
    texts.append(requests.get(server.url + "/ai/status", timeout=10).text)  # after the 401s
    for text in texts:
        for key in (*KEYS.values(), KEYS["openai"] + "-wrong"):
            assert key not in text


def test_stop_closes_the_socket_and_the_workers(engine, make_manager):
    server = engine(make_manager(), auth_token="").start()
    url = server.url
    assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("router-bridge-")]
    assert not [t for t in threading.enumerate() if t.name.startswith("router-bridge-worker")]


def test_server_options_need_a_manager_not_a_ready_app(engine):
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with engine(app) as server:
        assert requests.get(server.url, timeout=5).text == "ok"
    with pytest.raises(TypeError):
        engine(app, auth_token="x")


SERVE_SCRIPT = """
import logging, sys
sys.path.insert(0, sys.argv[1])
from support import router_config
from router.emulator import EmulatorServer
from router.manager import AIProviderManager
from router.server import serve

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
with EmulatorServer() as emulator:
    manager = AIProviderManager(router_config(emulator))
    serve(manager, port=0, threads=2, auth_token="")
    print("manager running after serve:", manager.running, flush=True)
"""


def test_serve_runs_until_sigterm_and_stops_the_manager_it_started(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    tests_dir = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(tests_dir)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, tests_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = None
        for line in process.stdout:
            if "serving on " in line:
                url = line.split("serving on ")[1].split()[0]
                break
        assert url and url.startswith("http://127.0.0.1:")
        reply = requests.post(
            url + "/ai/generate",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 200
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=20)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "manager running after serve: False" in rest
    assert "Traceback" not in rest, rest
