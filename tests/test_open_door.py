"""The provider's open door (commits fb089d8, 6755d1d), checked through the public API only.

A waiting caller whose request has one candidate and no budget admits itself through its
provider's door and runs the attempt on its own thread, with no actor hop. The door is open
only while admitting is a formality (breaker closed, provider usable, no client-side rpm/tpm)
and carries the provider's current key. So, seen from outside:

- once the breaker opens, the very next request is refused with ``CircuitOpenError`` and the
  emulator never sees it (repeated in fresh managers to catch a late-closing door), streams too;
  once it half-opens, one trial goes to the provider, not every caller at once;
- a client-side ``rpm`` limit is still counted: the second request in the minute is refused
  with the same error as before the door existed, also when the limit is set at run time;
- a rotated key is the key the next request sends;
- ``provider_health`` counts self-admitted requests (requests, successes, nothing in flight);
- a disabled provider is not entered: same error as before, no traffic.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import responses
from support import CHAT_URL, FAKE_OPENAI, KEYS, completion, router_config
from support import ask_model as ask

from router.errors import (
    CircuitOpenError,
    NoProviderAvailableError,
    RateLimitError,
    RouterError,
    ServiceUnavailableError,
)

# Nothing listens here: every call to it is answered by ``responses``.


def openai_requests(emulator: Any) -> int:
    return emulator.counters()["openai"]["requests"]


def breaker_config(emulator: Any) -> dict[str, Any]:
    config = router_config(emulator)
    config["providers"][0]["max_retries"] = 0
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 2, "recovery_timeout": 30}
    return config


def sse() -> str:
    """A minimal OpenAI chat stream: one content chunk, the finish, usage and ``[DONE]``."""
    base = {"id": "chatcmpl-door-s", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
        },
    ]
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"


class KeyRecorder:
    """A ``responses`` callback noting the Authorization header of every request."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        with self._lock:
            self.keys.append(request.headers.get("Authorization", ""))
        if json.loads(request.body).get("stream"):
            return 200, {"content-type": "text/event-stream"}, sse()
        return 200, {"x-request-id": "req-door"}, completion()


# --- the breaker closes the door before anyone hears of the failure ---------------------------


@pytest.mark.parametrize("round_", range(5))
def test_the_request_after_the_breaker_opens_is_refused_without_traffic(
    make_manager, emulator, round_
):
    manager = make_manager(breaker_config(emulator))
    emulator.add_fault(provider="openai", kind="server_error")
    for expected in (1, 2):
        with pytest.raises(ServiceUnavailableError):
            manager.process_request(ask())
        assert openai_requests(emulator) == expected
    # Immediately: the failure that opened the breaker closed the door before the caller
    # got its error, so this request is refused at once and never reaches the provider.
    with pytest.raises(CircuitOpenError) as caught:
        manager.process_request(ask())
    assert caught.value.retry_after == pytest.approx(30, abs=1)
    assert openai_requests(emulator) == 2
    health = manager.provider_health()["openai"]
    assert health.circuit_state == "open"
    assert health.requests == 2 and health.failures == 2 and health.in_flight == 0
    for _ in range(3):  # and it stays shut
        with pytest.raises(CircuitOpenError):
            manager.process_request(ask())
    assert openai_requests(emulator) == 2


def test_a_stream_after_the_breaker_opens_is_refused_without_traffic(make_manager, emulator):
    manager = make_manager(breaker_config(emulator))
    emulator.add_fault(provider="openai", kind="server_error")
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            list(manager.stream_request(ask()))
    assert openai_requests(emulator) == 2
    with pytest.raises(CircuitOpenError):
        list(manager.stream_request(ask()))
    with pytest.raises(CircuitOpenError):
        manager.process_request(ask())
    assert openai_requests(emulator) == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_half_open_breaker_admits_one_trial_not_everyone_at_the_door(make_manager, emulator):
    clock = FakeClock()
    manager = make_manager(breaker_config(emulator), clock=clock)
    emulator.add_fault(provider="openai", kind="server_error", count=2)
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            manager.process_request(ask())
    clock.now += 31  # past the recovery timeout: the next attempt is the one trial
    emulator.set_pacing("openai", ttft=0.5)  # keep the trial in flight while the others come
    start = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        start.wait(timeout=5)
        try:
            outcome = manager.process_request(ask()).provider_name
        except RouterError as error:
            outcome = type(error).__name__
        with lock:
            outcomes.append(outcome)

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=15)
    assert sorted(outcomes) == ["CircuitOpenError"] * 3 + ["openai"]
    assert openai_requests(emulator) == 3  # two failures, one trial
    assert manager.provider_health()["openai"].circuit_state == "closed"
    emulator.set_pacing("openai", ttft=0.0)
    for _ in range(3):  # the trial closed the breaker: the door is open again
        assert manager.process_request(ask()).provider_name == "openai"
    assert openai_requests(emulator) == 6


# --- a client-side rate limit keeps the door shut ----------------------------------------------


def test_rpm_one_refuses_the_second_request_of_the_minute(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["rpm"] = 1
    manager = make_manager(config)
    assert manager.process_request(ask()).provider_name == "openai"
    with pytest.raises(RateLimitError) as caught:
        manager.process_request(ask())
    assert caught.value.provider == "openai"
    assert 0 < caught.value.retry_after <= 60
    assert openai_requests(emulator) == 1
    health = manager.provider_health()["openai"]
    assert health.requests == 1 and health.successes == 1 and health.in_flight == 0


def test_an_rpm_limit_set_at_run_time_shuts_the_door_and_lifting_it_opens_it(
    make_manager, emulator
):
    manager = make_manager()
    for _ in range(3):  # through the door
        assert manager.process_request(ask()).provider_name == "openai"
    manager.update_provider("openai", rpm=1)
    # The limit counts from now on: one request passes, the next in the minute is refused.
    assert manager.process_request(ask()).provider_name == "openai"
    with pytest.raises(RateLimitError):
        manager.process_request(ask())
    assert openai_requests(emulator) == 4
    manager.update_provider("openai", rpm=0)  # 0 lifts the limit
    for _ in range(3):
        assert manager.process_request(ask()).provider_name == "openai"
    assert openai_requests(emulator) == 7


# --- the door carries the current key ----------------------------------------------------------


def test_a_rotated_key_is_sent_by_the_next_request(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["base_url"] = FAKE_OPENAI
    manager = make_manager(config)
    recorder = KeyRecorder()
    rotated = [f"sk-test-rotated-{i}-0123456789abcdef" for i in range(3)]
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        manager.process_request(ask())
        for key in rotated:
            manager.update_provider("openai", api_key=key)
            manager.process_request(ask())  # at once, without waiting for anything else
            manager.process_request(ask())
        list(manager.stream_request(ask()))  # a self-admitted stream too
    assert recorder.keys == [
        f"Bearer {KEYS['openai']}",
        *[f"Bearer {key}" for key in rotated for _ in range(2)],
        f"Bearer {rotated[-1]}",
    ]


# --- the provider counts what came through the door --------------------------------------------


def test_provider_health_counts_self_admitted_requests(make_manager, emulator):
    manager = make_manager()
    for i in range(20):
        assert manager.process_request(ask(f"request {i}")).provider_name == "openai"
    health = manager.provider_health()["openai"]
    assert health.requests == 20
    assert health.successes == 20
    assert health.failures == 0
    assert health.in_flight == 0
    assert health.input_tokens > 0 and health.output_tokens > 0 and health.cost > 0
    assert openai_requests(emulator) == 20


# --- a disabled provider is not entered -----------------------------------------------------


def test_a_disabled_provider_is_not_entered_through_the_door(make_manager, emulator):
    manager = make_manager()
    assert manager.process_request(ask()).provider_name == "openai"  # the door was open
    manager.set_provider_enabled("openai", False)
    for _ in range(3):
        with pytest.raises(NoProviderAvailableError):
            manager.process_request(ask())
        with pytest.raises(NoProviderAvailableError):
            list(manager.stream_request(ask()))
    assert openai_requests(emulator) == 1
    manager.set_provider_enabled("openai", True)
    assert manager.process_request(ask()).provider_name == "openai"
    assert openai_requests(emulator) == 2
    assert isinstance(NoProviderAvailableError("x"), RouterError)
