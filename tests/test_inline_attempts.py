"""``process_request`` runs its HTTP attempt on the caller's own thread (commit 6e00d84).

What is checked here, without mocking anything inside the router:

- where the HTTP call runs: the caller's thread for ``process_request`` (retries included),
  a ``router-<name>`` worker for ``submit(...).get()`` (HTTP through ``responses``);
- the headers a ``Session`` used to add are still sent through the shared adapter;
- a caller's deadline shorter than the provider's timeout bounds the read, and running out
  of it is not a provider failure (real sockets to the emulator);
- short-lived caller threads share one keep-alive connection of the provider's pool;
- ``stop()`` waits for an attempt running on a caller's thread, so its usage record lands.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pykka
import pytest
import responses
from support import CHAT_URL, FAKE_OPENAI, KEYS, completion, router_config
from support import ask_model as ask

from router.actors.supervisor import SupervisorActor
from router.errors import ManagerStoppedError, RequestTimeoutError
from router.ledger.memory import MemoryLedger

# Nothing listens here: every call to it is answered by ``responses``.


def server_error() -> str:
    return json.dumps(
        {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    )


class Recorder:
    """A ``responses`` callback that notes which thread sent each request, then answers."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        with self._lock:
            self.calls.append(
                {
                    "ident": threading.get_ident(),
                    "thread": threading.current_thread().name,
                    "headers": dict(request.headers),
                }
            )
            status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return status, {"x-request-id": "req-inline"}, body


def mocked_config(emulator: Any) -> dict[str, Any]:
    """The usual config with openai pointed at the ``responses`` host."""
    config = router_config(emulator)
    config["providers"][0]["base_url"] = FAKE_OPENAI
    return config


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Bounded poll for a state that has no event to wait on."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        tick.wait(0.002)


# --- where the HTTP call runs ----------------------------------------------------------------


def test_process_request_sends_its_http_from_the_calling_thread(make_manager, emulator):
    manager = make_manager(mocked_config(emulator))
    recorder = Recorder((200, completion()))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        response = manager.process_request(ask())
    assert response.provider_name == "openai"
    assert response.content == "Hello from the mock"
    assert len(recorder.calls) == 1
    assert recorder.calls[0]["ident"] == threading.get_ident()
    assert recorder.calls[0]["thread"] == threading.current_thread().name


def test_submit_still_sends_its_http_from_a_provider_worker(make_manager, emulator):
    manager = make_manager(mocked_config(emulator))
    recorder = Recorder((200, completion()))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        response = manager.submit(ask()).get(timeout=10)
    assert response.content == "Hello from the mock"
    assert len(recorder.calls) == 1
    assert recorder.calls[0]["ident"] != threading.get_ident()
    assert recorder.calls[0]["thread"].startswith("router-openai")


def test_a_retry_after_a_server_error_also_runs_on_the_calling_thread(make_manager, emulator):
    manager = make_manager(mocked_config(emulator))  # retry base_delay 0.01 s
    recorder = Recorder((500, server_error()), (200, completion()))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        response = manager.process_request(ask())
    assert response.provider_name == "openai"
    assert response.content == "Hello from the mock"
    assert len(recorder.calls) == 2  # the 500, then the retry
    assert {call["ident"] for call in recorder.calls} == {threading.get_ident()}
    health = manager.provider_health()["openai"]
    assert health.successes == 1 and health.failures == 1


def test_the_shared_adapter_still_sends_the_default_and_auth_headers(make_manager, emulator):
    manager = make_manager(mocked_config(emulator))
    recorder = Recorder((200, completion()))
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        manager.process_request(ask())
    headers = {key.lower(): value for key, value in recorder.calls[0]["headers"].items()}
    assert headers["user-agent"].startswith("python-requests/")
    assert "gzip" in headers["accept-encoding"]
    assert headers["accept"]
    assert headers["connection"].lower() == "keep-alive"
    assert headers["authorization"] == f"Bearer {KEYS['openai']}"
    assert headers["content-type"] == "application/json"


# --- deadlines, pooling and stop() against the emulator ------------------------------------


def test_a_short_caller_deadline_bounds_the_read_and_is_no_provider_failure(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["timeout"] = 30.0
    manager = make_manager(config)
    emulator.add_fault(provider="openai", kind="timeout", delay=30.0, count=1)
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        manager.process_request(ask(), timeout=0.3)
    # Not the 30 s stall (nor the 30 s read timeout): room for a loaded machine.
    assert time.monotonic() - started < 15.0
    assert emulator.counters()["openai"]["timeout"] == 1
    # The attempt has already ended and was reported as cancelled, not as a failure: nothing
    # is left waiting on the stalled answer, the breaker counted nothing.
    health = manager.provider_health()["openai"]
    assert health.in_flight == 0
    assert health.consecutive_failures == 0
    assert health.failures == 0
    assert health.circuit_state == "closed"
    # And the provider serves the next request as usual.
    assert manager.process_request(ask()).provider_name == "openai"


def test_short_lived_caller_threads_share_one_pooled_connection(make_manager, emulator):
    manager = make_manager()
    answers: list[str] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            answers.append(manager.process_request(ask(f"request {i}")).provider_name)
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    for i in range(20):  # one thread per request, each gone before the next starts
        thread = threading.Thread(target=call, args=(i,), name=f"caller-{i}")
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert errors == []
    assert answers == ["openai"] * 20
    assert emulator.counters()["openai"]["ok"] == 20
    # One pool for the provider, shared by every thread: the callers' threads came and went
    # but the keep-alive connection was opened once and reused by all of them.
    pools = manager._clients["openai"]._adapter.poolmanager.pools
    assert len(pools) == 1
    (key,) = pools.keys()  # the container refuses plain iteration
    pool = pools[key]
    assert pool.port == emulator.port
    assert pool.num_connections == 1


def test_stop_waits_for_an_attempt_on_a_callers_thread_and_its_usage_lands(make_manager, emulator):
    ledger = MemoryLedger()
    manager = make_manager(mocked_config(emulator), ledger=ledger)
    received = threading.Event()
    release = threading.Event()
    threads: list[int] = []

    def slow_answer(request: Any) -> tuple[int, dict[str, str], str]:
        threads.append(threading.get_ident())
        received.set()
        assert release.wait(10)
        return 200, {}, completion("chatcmpl-during-stop")

    outcome: Future = Future()
    caller_ident: Future = Future()

    def caller() -> None:
        caller_ident.set_result(threading.get_ident())
        try:
            outcome.set_result(manager.process_request(ask()))
        except BaseException as error:
            outcome.set_exception(error)

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=slow_answer)
        calling = threading.Thread(target=caller, name="inline-caller")
        calling.start()
        assert received.wait(10)
        stopping = threading.Thread(target=manager.stop, name="stopper")
        stopping.start()
        # stop() has failed the pending jobs and stopped the supervisor: it is about to wait
        # for the attempt (or, without that wait, to stop the budget actor under it).
        wait_until(lambda: not pykka.ActorRegistry.get_by_class(SupervisorActor))
        release.set()
        stopping.join(timeout=15)
        calling.join(timeout=15)
    assert not stopping.is_alive() and not calling.is_alive()
    assert threads == [caller_ident.result(timeout=0)]  # the attempt ran on the caller's thread
    try:
        answer = outcome.result(timeout=0)
    except ManagerStoppedError:
        answer = None
    else:
        assert answer.request_id == "chatcmpl-during-stop"
    # The provider answered: its usage was settled before the budget actor stopped.
    records = ledger.records()
    assert [(r.provider, r.outcome) for r in records] == [("openai", "success")]
    assert records[0].provider_request_id == "chatcmpl-during-stop"
    assert records[0].input_tokens == 8 and records[0].output_tokens == 5
