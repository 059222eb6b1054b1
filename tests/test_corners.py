"""Issue 12's runtime corners, each reproduced against the emulator over real sockets.

- a stream cut right after its first tool-call delta (no usage seen) still ends its
  reservation and leaves a usage record;
- a cancelled straggler (admitted before the breaker opened) cannot end the half-open trial;
- a stream that is the half-open trial and is never iterated gives back everything it held at
  its deadline (trial, reservation, in-flight count);
- Retry-After is honoured on 503/529, not only on 429;
- a 429 with a long Retry-After fails over at once when another candidate exists, and the
  provider is avoided until then;
- the error chunk of a failed stream names the provider that failed.

Each test failed on the main branch before its fix. Synchronisation is by futures and by the
order in which one actor handles its messages (an ``ask`` to a provider returns after every
message told to it before); nothing sleeps.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import responses
from emulator_fixtures import wait_until
from support import CHAT_URL, FAKE_OPENAI, completion, router_config

from router.errors import (
    CircuitOpenError,
    ManagerStoppedError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from router.ledger.memory import MemoryLedger
from router.models import AIRequest, ProviderType
from router.providers import get_adapter

LOOKUP = {
    "name": "lookup",
    "description": "Look a word up",
    "inputSchema": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(text: str = "Hello there", model: str | None = "gpt-4o-mini", **extra: Any) -> AIRequest:
    return AIRequest(model=model, messages=[{"role": "user", "content": text}], **extra)


def reserved(manager: Any) -> float:
    return sum(b["reserved"] for b in manager.get_budget_status()["budgets"])


def budgeted(emulator: Any, **provider: Any) -> dict[str, Any]:
    config = router_config(emulator, budgets=[{"name": "Monthly", "monthly_limit": 10.0}])
    config["providers"][0].update(provider)
    return config


def trip_once(emulator: Any, **provider: Any) -> dict[str, Any]:
    """openai opens its breaker on its first provider-side failure and stays open 30 s."""
    config = budgeted(emulator, max_retries=0, **provider)
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 1, "recovery_timeout": 30}
    return config


def open_breaker(manager: Any, emulator: Any) -> None:
    emulator.add_fault(provider="openai", kind="server_error", count=1)
    with pytest.raises(ServiceUnavailableError):
        manager.process_request(ask())
    assert manager.provider_health()["openai"].circuit_state == "open"


def openai_requests(emulator: Any) -> int:
    return emulator.counters()["openai"]["requests"]


# --- item 2: every reservation ends, and a partial stream leaves a record -------------------


def test_a_stream_cut_after_its_first_tool_call_delta_ends_its_reservation(make_manager, emulator):
    manager = make_manager(budgeted(emulator))
    # The first event names the tool with empty arguments; then the connection is cut.
    emulator.add_fault(provider="openai", kind="cut_stream", after_events=1, count=1)
    stream = manager.stream_request(ask("Please lookup the word apple"), tools=[LOOKUP])
    chunks = list(stream)
    assert chunks[0].tool_call_deltas and chunks[0].tool_call_deltas[0].name == "lookup"
    last = chunks[-1]
    assert last.is_complete and last.finish_reason == "error"
    assert reserved(manager) == 0.0
    [record] = manager.usage_records()
    assert record.outcome == "partial" and record.provider == "openai"
    # The provider saw the whole prompt and began to answer: the record bills an estimate.
    assert record.input_tokens > 0 and record.output_tokens > 0 and record.cost > 0
    spent = manager.get_budget_status()["budgets"][0]["spent"]
    assert spent == pytest.approx(record.cost)


# --- item 3: a cancelled straggler cannot end the trial -------------------------------------


def test_a_cancelled_straggler_does_not_free_the_half_open_trial(make_manager, emulator):
    clock = FakeClock()
    config = trip_once(emulator)
    config["budgets"] = []  # the direct path: the straggler admits itself through the door
    manager = make_manager(config, clock=clock)
    straggler = manager.stream_request(ask("one two three four five six"))
    assert next(straggler).content is not None  # admitted while the breaker was closed
    open_breaker(manager, emulator)
    clock.now += 31
    trial = manager.stream_request(ask("seven eight nine ten"))
    assert next(trial).content is not None  # the one half-open trial, in flight
    assert manager.provider_health()["openai"].circuit_state == "half_open"
    before = openai_requests(emulator)
    straggler.close()  # cancelled: says nothing about the provider, and is not the trial
    with pytest.raises(CircuitOpenError):
        manager.process_request(ask())
    assert openai_requests(emulator) == before  # no second trial reached the provider
    assert list(trial)[-1].finish_reason == "stop"  # the trial's own success closes
    assert manager.provider_health()["openai"].circuit_state == "closed"
    assert manager.process_request(ask()).provider_name == "openai"


# --- item 4: a deadline releases everything the job held ------------------------------------


def test_a_never_iterated_trial_stream_gives_everything_back_at_its_deadline(
    make_manager, emulator
):
    clock = FakeClock()
    manager = make_manager(trip_once(emulator), clock=clock)
    open_breaker(manager, emulator)
    clock.now += 31
    idle = manager.stream_request(ask(), timeout=0.3)  # admitted as the trial, never iterated
    with pytest.raises(RequestTimeoutError):
        idle._job.future.get(timeout=10)  # the stream's deadline (reading it would end it)
    health = manager.provider_health()["openai"]
    assert health.in_flight == 0
    assert reserved(manager) == 0.0
    # The trial slot is free: the next request is the trial, and it closes the breaker.
    assert manager.process_request(ask()).provider_name == "openai"
    assert manager.provider_health()["openai"].circuit_state == "closed"
    with pytest.raises(RequestTimeoutError):
        list(idle)  # iterating it later raises its error and sends nothing
    del idle


def test_stop_releases_the_reservation_of_a_retry_still_waiting_for_its_timer(
    make_manager, emulator
):
    ledger = MemoryLedger()
    manager = make_manager(budgeted(emulator), ledger=ledger)
    emulator.add_fault(provider="openai", kind="rate_limit", retry_after=0.8, count=1)
    future = manager.submit(ask())  # one candidate: it waits 0.8 s for its retry
    assert wait_until(lambda: manager.provider_health()["openai"].failures == 1)  # the 429 is in
    assert reserved(manager) > 0
    manager.stop()  # the retry's timer dies with the scheduler
    with pytest.raises(ManagerStoppedError):
        future.get(timeout=5)
    assert ledger.expire(time.time() + 10**6) == 0  # no reservation was left open


# --- item 5: Retry-After on every status that carries it -------------------------------------


@responses.activate
@pytest.mark.parametrize("status", [503, 529, 500])
def test_retry_after_is_a_floor_on_any_retryable_status(make_manager, emulator, status):
    config = router_config(emulator)
    config["providers"][0]["base_url"] = FAKE_OPENAI
    config["providers"][0]["retry"] = {"base_delay": 0.001, "max_delay": 0.002}
    manager = make_manager(config)
    responses.add(
        responses.POST,
        CHAT_URL,
        status=status,
        headers={"Retry-After": "0.4"},
        json={"error": {"message": "overloaded", "type": "server_error"}},
    )
    responses.add(responses.POST, CHAT_URL, body=completion(), content_type="application/json")
    started = time.monotonic()
    assert manager.process_request(ask()).provider_name == "openai"
    assert time.monotonic() - started >= 0.4  # a lower bound: holds on any machine
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    "kind, status",
    [
        (ProviderType.OPENAI, 503),
        (ProviderType.OPENAI, 500),
        (ProviderType.ANTHROPIC, 529),
        (ProviderType.ANTHROPIC, 503),
        (ProviderType.GOOGLE, 503),
        (ProviderType.GOOGLE, 500),
    ],
)
def test_every_adapter_reads_retry_after_on_retryable_statuses(kind, status):
    bodies = {
        ProviderType.OPENAI: {"error": {"message": "busy", "type": "server_error"}},
        ProviderType.ANTHROPIC: {"type": "error", "error": {"type": "overloaded_error"}},
        ProviderType.GOOGLE: {"error": {"code": status, "status": "UNAVAILABLE"}},
    }
    body = json.dumps(bodies[kind]).encode()
    error = get_adapter(kind).classify_error(status, {"retry-after": "7"}, body, provider="p")
    assert error.retryable and error.retry_after == 7.0


# --- item 6: a long Retry-After fails over at once and is remembered -------------------------


def test_a_long_retry_after_fails_over_at_once_and_the_provider_is_avoided(make_manager, emulator):
    manager = make_manager()
    emulator.add_fault(provider="openai", kind="rate_limit", retry_after=10, count=1)
    before = time.monotonic()
    response = manager.process_request(ask(model="fast"), strategy="priority")
    assert response.provider_name == "anthropic"  # not parked 10 s on openai
    assert openai_requests(emulator) == 1
    until = manager.provider_health()["openai"].rate_limited_until
    assert until is not None and until >= before + 10
    # Until then the strategies send priority traffic elsewhere, without trying openai.
    for _ in range(3):
        response = manager.process_request(ask(model="fast"), strategy="priority")
        assert response.provider_name == "anthropic"
    assert openai_requests(emulator) == 1


# --- item 9: a failed stream's error chunk names its provider --------------------------------


def test_the_error_chunk_of_a_failed_stream_names_the_provider(make_manager, emulator):
    manager = make_manager()
    emulator.add_fault(provider="anthropic", kind="stream_error", after_events=6, count=1)
    text = "one two three four five six seven eight nine ten"
    chunks = list(manager.stream_request(ask(text, model="claude-3-haiku-20240307")))
    assert any(chunk.content for chunk in chunks[:-1])  # failed after delivering
    last = chunks[-1]
    assert last.finish_reason == "error" and last.error
    assert last.provider_name == "anthropic"
    assert last.provider is not None and last.provider.value == "anthropic"
    assert last.model == "claude-3-haiku-20240307"
