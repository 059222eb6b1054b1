"""Fault injection, counters, control endpoints and the server's lifecycle under load."""

from __future__ import annotations

import json
import threading
import time

import emulator_fixtures
import pytest
import requests
from emulator_fixtures import (
    anthropic_headers,
    google_headers,
    openai_headers,
    sse_events,
    wait_until,
)

from router.emulator import EmulatorServer, serve_forever

emu_server = emulator_fixtures.emu_server
emu = emulator_fixtures.emu

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
GEN = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def ask(emu, provider, text="hello there", stream=False, prefix="", model=None, timeout=10):
    """One raw request to the emulator in the provider's own format."""
    if provider == "openai":
        body = {
            "model": model or "gpt-4o-mini",
            "messages": [{"role": "user", "content": text}],
            "stream": stream,
        }
        return requests.post(
            emu.url + prefix + CHAT,
            json=body,
            headers=openai_headers(),
            stream=stream,
            timeout=timeout,
        )
    if provider == "anthropic":
        body = {
            "model": model or "claude-haiku-4-5",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": text}],
            "stream": stream,
        }
        return requests.post(
            emu.url + prefix + MESSAGES,
            json=body,
            headers=anthropic_headers(),
            stream=stream,
            timeout=timeout,
        )
    path = STREAM if stream else GEN
    if model:
        path = path.replace("gemini-2.5-flash", model)
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    return requests.post(
        emu.url + prefix + path, json=body, headers=google_headers(), stream=stream, timeout=timeout
    )


PROVIDERS = ["openai", "anthropic", "google"]


# -- error kinds -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("rate_limit", {"openai": 429, "anthropic": 429, "google": 429}),
        ("insufficient_quota", {"openai": 429, "anthropic": 400, "google": 429}),
        ("server_error", {"openai": 500, "anthropic": 500, "google": 500}),
        ("unavailable", {"openai": 503, "anthropic": 503, "google": 503}),
        ("overloaded", {"openai": 503, "anthropic": 529, "google": 503}),
        ("auth", {"openai": 401, "anthropic": 401, "google": 400}),
    ],
)
def test_error_faults_answer_with_each_providers_status(emu, kind, expected):
    emu.add_fault(kind=kind)
    statuses = {p: ask(emu, p).status_code for p in PROVIDERS}
    assert statuses == expected
    assert all(emu.counters()[p][kind] == 1 for p in PROVIDERS)


def test_rate_limit_carries_the_retry_delay_each_provider_uses(emu):
    emu.add_fault(kind="rate_limit", retry_after=4)
    openai_reply, anthropic_reply, google_reply = (ask(emu, p) for p in PROVIDERS)
    assert openai_reply.headers["retry-after"] == "4"
    assert openai_reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert anthropic_reply.headers["retry-after"] == "4"
    assert anthropic_reply.json()["error"]["type"] == "rate_limit_error"
    details = google_reply.json()["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "4s"} in details


def test_insufficient_quota_is_openais_own_429(emu):
    emu.add_fault(provider="openai", kind="insufficient_quota")
    error = ask(emu, "openai").json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")


def test_overloaded_is_anthropics_529_overloaded_error(emu):
    emu.add_fault(provider="anthropic", kind="overloaded")
    reply = ask(emu, "anthropic")
    assert reply.status_code == 529
    assert reply.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert reply.headers["x-should-retry"] == "true"


# -- timing, connection and body faults ------------------------------------------------------
def test_timeout_fault_answers_only_after_its_delay(emu):
    emu.add_fault(provider="openai", kind="timeout", delay=0.3, count=1)
    started = time.monotonic()
    reply = ask(emu, "openai")
    assert time.monotonic() - started >= 0.3
    assert reply.json()["choices"][0]["message"]["content"] == "Echo: hello there"
    with pytest.raises(requests.ReadTimeout):
        emu.add_fault(provider="openai", kind="timeout", delay=5, count=1)
        ask(emu, "openai", timeout=0.2)


def test_stop_interrupts_a_request_stuck_in_a_timeout_fault():
    server = EmulatorServer({"faults": [{"kind": "timeout", "delay": 60}]}).start()
    outcome: list[BaseException | int] = []

    def client():
        try:
            outcome.append(ask(server, "openai", timeout=30).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    assert wait_until(lambda: server.counters()["openai"]["timeout"] == 1)
    started = time.monotonic()
    server.stop()
    thread.join(5)
    # Not kept waiting for the 30 s stall nor for stop()'s 10 s thread join: a bound with room
    # for a loaded machine that still tells the two apart.
    assert time.monotonic() - started < 8
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)


def test_reset_closes_the_connection_without_a_response(emu):
    emu.add_fault(provider="anthropic", kind="reset", count=1)
    with pytest.raises(requests.ConnectionError) as info:
        ask(emu, "anthropic")
    assert "reset" in str(info.value).lower() or "aborted" in str(info.value).lower()
    assert ask(emu, "anthropic").status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_fault_sends_200_with_invalid_json(emu, provider):
    emu.add_fault(provider=provider, kind="malformed")
    reply = ask(emu, provider)
    assert reply.status_code == 200
    with pytest.raises(ValueError):
        json.loads(reply.content)


def test_malformed_fault_in_a_stream_sends_an_unparseable_event(emu):
    emu.add_fault(provider="openai", kind="malformed")
    events = sse_events(ask(emu, "openai", stream=True))
    with pytest.raises(ValueError):
        json.loads(events[0][1])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cut_stream_ends_the_body_after_n_events_without_an_end_marker(emu, provider):
    emu.add_fault(provider=provider, kind="cut_stream", after_events=3)
    reply = ask(emu, provider, text="a b c d e f g", stream=True)
    received = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in reply.iter_content(chunk_size=None):
            received.append(chunk)
    raw = b"".join(received)
    separator = b"\r\n\r\n" if provider == "google" else b"\n\n"
    assert raw.count(separator) == 3
    assert b"[DONE]" not in raw and b"message_stop" not in raw


def test_cut_stream_on_a_plain_request_truncates_the_body(emu):
    emu.add_fault(provider="google", kind="cut_stream")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        ask(emu, "google").content  # noqa: B018


@pytest.mark.parametrize(
    ("provider", "marker"),
    [
        ("openai", 'data: {"error":{"message":"The server had an error'),
        ("anthropic", 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"'),
        ("google", 'data: {"error": {"code": 503'),
    ],
)
def test_stream_error_fault_sends_an_error_event_after_n_events(emu, provider, marker):
    emu.add_fault(provider=provider, kind="stream_error", after_events=2)
    raw = ask(emu, provider, text="a b c d", stream=True).content.decode()
    separator = "\r\n\r\n" if provider == "google" else "\n\n"
    events = raw.split(separator)
    assert events[2].startswith(marker.split(separator)[0])
    assert len([e for e in events if e]) == 3
    assert "[DONE]" not in raw and "message_stop" not in raw


def test_stream_error_fault_on_a_plain_request_is_an_overload_error(emu):
    emu.add_fault(provider="anthropic", kind="stream_error")
    assert ask(emu, "anthropic").status_code == 529


# -- selecting requests ----------------------------------------------------------------------
def test_schedule_set_through_the_control_endpoint_applies_per_matching_request(emu):
    rules = [{"provider": "openai", "kind": "server_error", "schedule": [True, False, True]}]
    assert requests.post(emu.url + "/_emulator/faults", json=rules, timeout=5).status_code == 200
    statuses = [ask(emu, "openai").status_code for _ in range(4)]
    assert statuses == [500, 200, 500, 200]
    assert ask(emu, "anthropic").status_code == 200
    counters = requests.get(emu.url + "/_emulator/counters", timeout=5).json()
    assert (
        counters["openai"]["requests"],
        counters["openai"]["ok"],
        counters["openai"]["server_error"],
    ) == (4, 2, 2)


def test_probability_with_a_seed_gives_the_same_sequence_every_run():
    config = {
        "faults": [{"provider": "google", "kind": "unavailable", "probability": 0.5, "seed": 42}]
    }
    runs = []
    for _ in range(2):
        with EmulatorServer(config) as server:
            runs.append([ask(server, "google").status_code for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


def test_instances_under_a_prefix_are_counted_and_faulted_separately(emu):
    assert emu.base_url("openai", "/p/b") == emu.url + "/p/b/v1"
    emu.add_fault(provider="openai", prefix="/p/b", kind="server_error")
    assert ask(emu, "openai", prefix="/p/b").status_code == 500
    assert ask(emu, "openai").status_code == 200
    counters = emu.counters()
    assert counters["openai"]["requests"] == 2
    assert counters["prefixes"]["/p/b"]["openai"]["server_error"] == 1
    assert "openai" in counters["prefixes"]["/p/b"] and "" not in counters["prefixes"]


def test_faults_can_target_one_model(emu):
    emu.add_fault(model="claude-opus-*", kind="overloaded")
    assert ask(emu, "anthropic", model="claude-opus-4-1").status_code == 529
    assert ask(emu, "anthropic", model="claude-haiku-4-5").status_code == 200
    assert emu.counters()["anthropic"]["models"] == {"claude-opus-4-1": 1, "claude-haiku-4-5": 1}


# -- control endpoints -----------------------------------------------------------------------
def test_control_endpoints_manage_faults_pacing_and_counters(emu):
    base = emu.url + "/_emulator"
    added = requests.post(base + "/faults", json={"kind": "reset", "count": 2}, timeout=5).json()
    assert added["faults"][0]["kind"] == "reset" and added["faults"][0]["spent"] is False
    assert (
        len(requests.post(base + "/faults", json={"kind": "malformed"}, timeout=5).json()["faults"])
        == 2
    )
    assert requests.delete(base + "/faults", timeout=5).json() == {"faults": []}
    bad = requests.post(base + "/faults", json=[{"kind": "meltdown"}], timeout=5)
    assert bad.status_code == 400 and "meltdown" in bad.json()["error"]
    pacing = requests.post(
        base + "/pacing", json={"provider": "gemini", "ttft": 0.01}, timeout=5
    ).json()
    assert pacing["google"] == {"ttft": 0.01, "token_delay": 0.0}
    ask(emu, "openai")
    log = requests.get(base + "/requests", timeout=5).json()["requests"]
    assert log[-1]["body"]["messages"][0]["content"] == "hello there"
    assert emulator_fixtures.KEYS["openai"] not in json.dumps(log)
    assert requests.post(base + "/reset", timeout=5).json() == {"status": "ok"}
    assert requests.get(base + "/counters", timeout=5).json()["openai"]["requests"] == 0
    assert requests.get(base + "/nothing", timeout=5).status_code == 404


def test_python_controls_mirror_the_endpoints(emu):
    emu.set_faults([{"kind": "server_error", "count": 1}])
    emu.add_fault(kind="unavailable", count=1)
    assert [r["kind"] for r in emu.faults()] == ["server_error", "unavailable"]
    assert [ask(emu, "openai").status_code for _ in range(3)] == [500, 503, 200]
    emu.add_fault(kind="auth")
    emu.clear_faults()
    assert ask(emu, "openai").status_code == 200
    emu.reset()
    assert emu.counters()["openai"]["requests"] == 0 and emu.faults() == []


# -- lifecycle and load ----------------------------------------------------------------------
def test_hundreds_of_concurrent_keep_alive_clients_are_served(emu):
    clients, rounds = 200, 3
    barrier = threading.Barrier(clients)
    failures: list[object] = []

    def client(n: int) -> None:
        with requests.Session() as session:
            try:
                barrier.wait(10)
                for i in range(rounds):
                    body = {"model": "m", "messages": [{"role": "user", "content": f"c{n} r{i}"}]}
                    reply = session.post(
                        emu.url + CHAT, json=body, headers=openai_headers(), timeout=20
                    )
                    if reply.json()["choices"][0]["message"]["content"] != f"Echo: c{n} r{i}":
                        failures.append(reply.text)
            except Exception as exc:  # collected and asserted below
                failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert emu.counters()["openai"]["ok"] == clients * rounds


def test_stop_closes_idle_keep_alive_connections_and_joins_its_threads():
    before = set(threading.enumerate())
    server = EmulatorServer().start()
    sessions = [requests.Session() for _ in range(5)]
    for session in sessions:
        session.post(
            server.url + CHAT,
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers=openai_headers(),
            timeout=5,
        )
    started = time.monotonic()
    server.stop()
    # An idle keep-alive connection left open would hold its thread until stop()'s 10 s join
    # timeout (and still be alive below); the bound leaves room for a loaded machine.
    assert time.monotonic() - started < 8
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/_emulator/health", timeout=2)
    for session in sessions:
        session.close()


def test_serve_forever_reports_its_url_and_stops_on_keyboard_interrupt():
    seen: list[str] = []

    def ready(url: str) -> None:
        seen.append(url)
        seen.append(requests.get(url + "/_emulator/health", timeout=5).json()["status"])
        raise KeyboardInterrupt

    serve_forever("127.0.0.1", 0, {"pacing": {"ttft": 0}}, ready=ready)
    assert seen[0].startswith("http://127.0.0.1:") and seen[1] == "ok"
    with pytest.raises(requests.ConnectionError):
        requests.get(seen[0] + "/_emulator/health", timeout=2)


def test_bad_configuration_is_refused_before_binding():
    with pytest.raises(ValueError, match="unknown key"):
        EmulatorServer({"fautls": []})
