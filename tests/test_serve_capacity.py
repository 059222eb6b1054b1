"""The bridge's server under pressure, over real sockets: backpressure past ``max_in_flight``
(503 with Retry-After at once, never a queue), slow clients holding only their own connection,
a pool that grows with demand, and ``router serve --workers`` supervising its processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import yaml
from support import router_config

from router.server import BridgeServer, default_max_in_flight

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition the test cannot be told about (another process's state)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        tick.wait(0.01)


@pytest.fixture
def serve(start_server, engine) -> Callable[..., BridgeServer]:
    """Start a server of each ``engine`` for a manager (default config)."""
    return lambda manager=None, **kwargs: start_server(engine, manager, **kwargs)


def post(server: BridgeServer, path: str = "/v1/chat/completions", **kwargs: Any) -> Any:
    return requests.post(server.url + path, json=kwargs.pop("body", CHAT), timeout=30, **kwargs)


def test_past_max_in_flight_the_bridge_answers_503_at_once_and_never_queues(serve, emulator):
    emulator.set_pacing("openai", ttft=3.0)
    server = serve(threads=16, max_in_flight=3)
    assert server.app.max_in_flight == 3
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(post, server) for _ in range(3)]
        wait_until(lambda: emulator.counters()["openai"]["in_flight"] == 3)
        started = time.monotonic()
        refused = post(server)
        ai_refused = post(server, "/ai/generate")
        elapsed = time.monotonic() - started
        health = requests.get(server.url + "/healthz", timeout=10)
        metrics = requests.get(server.url + "/metrics", timeout=10)
        assert [f.result().status_code for f in held] == [200, 200, 200]
    # Refused while the three were held upstream (3 s), not queued behind them.
    assert elapsed < 2.5
    assert refused.status_code == 503 and ai_refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert ai_refused.json()["error"]["type"] == "Overloaded"
    assert health.status_code == 200 and metrics.status_code == 200  # probes still answered
    assert emulator.counters()["openai"]["requests"] == 3  # the refused ones never went upstream
    assert server.app.in_flight == 0
    emulator.set_pacing("openai", ttft=0.0)
    assert post(server).status_code == 200


def test_a_stream_holds_its_place_until_it_ends(serve, emulator):
    emulator.set_pacing("openai", token_delay=0.05)
    server = serve(threads=8, max_in_flight=1)
    body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "one two three"}]}
    with requests.post(
        server.url + "/v1/chat/completions", json=body, stream=True, timeout=30
    ) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines).startswith(b"data: ")
        assert server.app.in_flight == 1
        assert post(server).status_code == 503  # the stream is still open
        rest = b"\n".join(lines)
    assert rest.rstrip().endswith(b"data: [DONE]")
    wait_until(lambda: server.app.in_flight == 0)  # released when the server closes the body
    emulator.set_pacing("openai", token_delay=0.0)
    assert post(server).status_code == 200


def test_slow_senders_hold_only_their_own_connection_until_the_timeout(serve, emulator):
    server = serve(threads=64, timeout=1.0)
    slow = []
    for _ in range(8):  # each has sent half its headers and then stalls
        sock = socket.create_connection((server.host, server.port), timeout=20)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        slow.append(sock)
    # A stream nobody reads also holds just its own thread.
    stalled = socket.create_connection((server.host, server.port), timeout=20)
    payload = json.dumps({**CHAT, "stream": True}).encode()
    stalled.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(server).status_code, range(8)))
        assert answers == [200] * 8
        # The server gives up on each slow sender after its timeout: the connection is closed.
        for sock in slow:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data == b"" or data.startswith(b"HTTP/1.1 408")
    finally:
        for sock in [*slow, stalled]:
            sock.close()


def test_the_pool_grows_with_demand_past_its_first_threads(make_manager, emulator):
    emulator.set_pacing("openai", ttft=1.5)
    # The threads engine only: the loop engine has no request threads to grow.
    server = BridgeServer(make_manager(), threads=200, auth_token="").start()
    callers = 60  # more than the 16 threads the pool starts with
    start = threading.Barrier(callers)

    def call(_: int) -> int:
        start.wait()
        return post(server).status_code

    try:
        with ThreadPoolExecutor(callers) as pool:
            assert list(pool.map(call, range(callers))) == [200] * callers
    finally:
        server.stop()
    assert emulator.counters()["openai"]["peak_in_flight"] == callers


def test_default_max_in_flight_leaves_threads_to_refuse():
    assert default_max_in_flight(2048) == 2000
    assert default_max_in_flight(4) == 4
    assert default_max_in_flight(64) == 56


# --- router serve --workers ------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.add(int(entry))
    return kids


def _start_serve(config: dict[str, Any], tmp_path: Any, *options: str) -> tuple[Any, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    process = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "--config", str(path), "serve", "--port", "0"]
        + ["--threads", "32", *options],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    if "listening on http://127.0.0.1:" not in line:
        process.kill()
        raise AssertionError(line + process.communicate(timeout=30)[1])
    return process, line.rsplit(" ", 1)[1].strip()


def _stop_serve(process: Any) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        rest = process.communicate(timeout=90)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, rest
    assert "Traceback" not in rest, rest
    return rest


def test_serve_workers_share_a_port_and_are_restarted_and_stopped(emulator, tmp_path):
    config = router_config(emulator)
    config["ledger"] = {"type": "sqlite", "path": str(tmp_path / "ledger.db")}
    process, url = _start_serve(config, tmp_path, "--workers", "2")
    try:
        workers = _children(process.pid)
        assert len(workers) == 2
        for _ in range(4):
            assert requests.post(url + "/v1/chat/completions", json=CHAT, timeout=30).ok
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_children(process.pid) - {victim}) == 2)
        for _ in range(4):  # the port is served throughout
            assert requests.post(url + "/v1/chat/completions", json=CHAT, timeout=30).ok
    finally:
        rest = _stop_serve(process)
    assert "exited" in rest and "starting it again" in rest
    assert emulator.counters()["openai"]["ok"] == 8  # each request went upstream once


# A fresh interpreter (signals reach only the main thread): SIGTERM lands at random moments
# while the main thread polls its stop flag, as `router serve`'s loops do.
_SIGTERM_WHILE_WAITING = """
import os, random, signal, sys, threading, time
from router.server import _stop_on_signals

def terminate_soon():
    time.sleep(random.random() * 0.0005)
    os.kill(os.getpid(), signal.SIGTERM)

for _ in range(int(sys.argv[1])):
    with _stop_on_signals() as stop:
        threading.Thread(target=terminate_soon).start()
        while not stop.wait(0.0):
            pass
print("stopped every time")
"""


def test_a_signal_during_the_stop_wait_stops_the_server_and_never_deadlocks():
    # With a threading.Event the handler's set() waited for the lock its own thread held in
    # wait(): a supervisor stuck for ever on SIGTERM (about once in a few hundred signals).
    done = subprocess.run(
        [sys.executable, "-c", _SIGTERM_WHILE_WAITING, "2000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "stopped every time", done.stderr


# --- --workers auto, and limits split among workers -------------------------------------------


def test_serve_runs_one_worker_per_cpu_by_default_with_a_shared_ledger(emulator, tmp_path):
    from router.worker_plan import available_cpus

    config = router_config(emulator)
    config["ledger"] = {"type": "sqlite", "path": str(tmp_path / "ledger.db")}
    process, url = _start_serve(config, tmp_path)
    try:
        workers = _children(process.pid)
        expected = available_cpus()
        assert len(workers) == (expected if expected > 1 else 0)  # one: served in-process
        assert requests.post(url + "/v1/chat/completions", json=CHAT, timeout=30).ok
    finally:
        _stop_serve(process)


def test_serve_runs_one_process_by_default_with_a_memory_ledger(emulator, tmp_path):
    process, url = _start_serve(router_config(emulator), tmp_path)
    try:
        assert _children(process.pid) == set()
        assert requests.post(url + "/v1/chat/completions", json=CHAT, timeout=30).ok
    finally:
        _stop_serve(process)


def test_workers_without_redis_together_stay_within_one_rpm_limit(emulator, tmp_path):
    # rpm 4 over 2 workers: each enforces 2, so 8 requests send at most 4 upstream. Before the
    # split each worker enforced the whole 4: up to 8 went upstream, twice the provider's limit.
    config = router_config(emulator, request_timeout=1.5)
    config["providers"] = [dict(config["providers"][0], rpm=4, max_retries=0)]
    config.pop("model_groups")
    config["ledger"] = {"type": "sqlite", "path": str(tmp_path / "ledger.db")}
    process, url = _start_serve(config, tmp_path, "--workers", "2")
    try:

        def one(_: int) -> int:  # a new connection each: the kernel spreads them over both
            return requests.post(url + "/v1/chat/completions", json=CHAT, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(8)))
    finally:
        _stop_serve(process)
    assert emulator.counters()["openai"]["ok"] <= 4
    assert statuses.count(200) == emulator.counters()["openai"]["ok"] >= 1
    assert set(statuses) <= {200, 429, 503, 504}, statuses


def test_auto_workers_and_the_share_of_each_limit():
    from router.config import config_from_dict
    from router.worker_plan import auto_workers, config_for_worker

    def config(ledger: dict[str, Any]) -> Any:
        provider = {"name": "p", "type": "openai", "api_key": "sk-test-0123456789abcdefghij"}
        return config_from_dict(
            {
                "providers": [dict(provider, rpm=500, tpm=3, max_concurrency=64)],
                "ledger": ledger,
            }
        )

    sqlite = config({"type": "sqlite", "path": "/tmp/unused.db"})
    redis = config({"type": "redis", "url": "redis://127.0.0.1:1/0"})
    assert auto_workers(sqlite, configure_enabled=False, cpus=4)[0] == 4
    assert auto_workers(redis, configure_enabled=False, cpus=4)[0] == 4
    assert auto_workers(sqlite, configure_enabled=False, cpus=1)[0] == 1
    assert auto_workers(sqlite, configure_enabled=True, cpus=4)[0] == 1
    assert auto_workers(config({"type": "memory"}), configure_enabled=False, cpus=4)[0] == 1
    private = config({"type": "sqlite", "path": ":memory:"})
    assert auto_workers(private, configure_enabled=False, cpus=4)[0] == 1

    share = config_for_worker(sqlite, 4).providers[0]
    assert (share.rpm, share.tpm, share.max_concurrency) == (125, 1, 16)  # never below 1
    assert config_for_worker(redis, 4) is redis  # shared through Redis: each sees the whole
    assert config_for_worker(sqlite, 1) is sqlite
