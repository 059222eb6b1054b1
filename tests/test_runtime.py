"""The actor runtime against the emulator over real sockets."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import router_config, router_threads

from router.errors import (
    AuthenticationError,
    BudgetExceededError,
    CircuitOpenError,
    ManagerStoppedError,
    NoProviderAvailableError,
    RequestCancelledError,
)
from router.models import AIRequest


def ask(text: str = "Hello there", model: str | None = "fast", **extra) -> AIRequest:
    return AIRequest(model=model, messages=[{"role": "user", "content": text}], **extra)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- strategies --------------------------------------------------------------------------------


def test_cost_strategy_picks_the_cheapest_model_of_the_group(make_manager):
    manager = make_manager()
    response = manager.process_request(ask(max_tokens=50), strategy="cost")
    assert response.provider_name == "google"  # gemini-1.5-flash is the cheapest of the group
    assert response.model == "gemini-1.5-flash"
    assert response.content
    assert response.cost > 0
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


def test_priority_strategy_picks_the_highest_priority(make_manager):
    manager = make_manager()
    assert manager.process_request(ask(), strategy="priority").provider_name == "openai"


def test_round_robin_cycles_through_every_provider(make_manager):
    manager = make_manager()
    seen = [manager.process_request(ask(), strategy="round_robin").provider_name for _ in range(3)]
    assert sorted(seen) == ["anthropic", "google", "openai"]


def test_load_balanced_spreads_requests_in_flight(make_manager, emulator):
    emulator.set_pacing(None, ttft=0.3)  # keep the first requests in flight
    manager = make_manager()
    futures = [manager.submit(ask(), strategy="load_balanced") for _ in range(3)]
    assert sorted(f.get(timeout=30).provider_name for f in futures) == [
        "anthropic",
        "google",
        "openai",
    ]


def test_failover_strategy_avoids_an_unreliable_provider(make_manager, emulator):
    manager = make_manager()
    emulator.add_fault(provider="openai", kind="server_error", count=1)
    manager.process_request(ask(), strategy="priority")  # openai fails once, then anthropic
    response = manager.process_request(ask(), strategy="failover")
    assert response.provider_name != "openai"


def test_a_concrete_model_pins_its_provider(make_manager):
    manager = make_manager()
    response = manager.process_request(ask(model="claude-3-haiku-20240307"), strategy="cost")
    assert response.provider_name == "anthropic"
    assert response.content


# --- failover, retry, breaker --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["server_error", "unavailable", "overloaded", "reset"])
def test_fails_over_when_the_first_provider_keeps_failing(make_manager, emulator, kind):
    config = router_config(emulator)
    config["providers"][0]["max_retries"] = 1
    manager = make_manager(config)
    emulator.add_fault(provider="openai", kind=kind)
    response = manager.process_request(ask(), strategy="priority")
    assert response.provider_name == "anthropic"
    assert emulator.counters()["openai"]["requests"] == 2  # first try + one retry


def test_retry_after_is_honoured(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["retry"] = {"base_delay": 0.01, "max_delay": 0.05}
    manager = make_manager(config)
    emulator.add_fault(provider="openai", kind="rate_limit", retry_after=1, count=1)
    started = time.monotonic()
    response = manager.process_request(ask(model="gpt-4o-mini"))
    assert response.provider_name == "openai"
    assert time.monotonic() - started >= 1.0
    assert emulator.counters()["openai"]["requests"] == 2


def test_authentication_errors_are_not_retried_and_take_the_provider_out(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["api_key"] = "invalid-key-0123456789"
    manager = make_manager(config)
    with pytest.raises(AuthenticationError) as caught:
        manager.process_request(ask(model="gpt-4o-mini"))
    assert "invalid-key-0123456789" not in str(caught.value)
    assert emulator.counters()["openai"]["requests"] == 1
    health = manager.provider_health()["openai"]
    assert health.status.value == "disabled" and "AuthenticationError" in health.disabled_reason
    # The group fails over without calling openai again.
    assert manager.process_request(ask(), strategy="priority").provider_name == "anthropic"
    assert emulator.counters()["openai"]["requests"] == 1
    # A rotated key brings it back.
    manager.update_provider("openai", api_key="sk-test-rotated-0123456789")
    assert manager.process_request(ask(), strategy="priority").provider_name == "openai"


def test_breaker_opens_skips_half_opens_and_recovers(make_manager, emulator):
    clock = FakeClock()
    config = router_config(emulator)
    config["providers"][0]["max_retries"] = 0
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 3, "recovery_timeout": 30}
    manager = make_manager(config, clock=clock)
    emulator.add_fault(provider="openai", kind="server_error")
    for _ in range(3):
        assert manager.process_request(ask(), strategy="priority").provider_name == "anthropic"
    assert manager.provider_health()["openai"].circuit_state == "open"
    for _ in range(5):  # open: skipped at once, no traffic
        assert manager.process_request(ask(), strategy="priority").provider_name == "anthropic"
    assert emulator.counters()["openai"]["requests"] == 3
    with pytest.raises(CircuitOpenError) as caught:  # pinned to the open provider alone
        manager.process_request(ask(model="gpt-4o-mini"))
    assert caught.value.retry_after == pytest.approx(30, abs=1)
    emulator.clear_faults()
    clock.now += 31  # past the recovery timeout: exactly one trial, which succeeds
    assert manager.process_request(ask(), strategy="priority").provider_name == "openai"
    assert manager.provider_health()["openai"].circuit_state == "closed"
    assert emulator.counters()["openai"]["requests"] == 4


# --- concurrency and budgets ---------------------------------------------------------------


def test_two_hundred_concurrent_callers_get_every_future_resolved_once(make_manager):
    manager = make_manager()
    futures = []
    lock = threading.Lock()

    def call(i: int) -> None:
        future = manager.submit(ask(f"request {i}"), strategy="round_robin")
        with lock:
            futures.append(future)

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(call, range(200)))
    responses = [f.get(timeout=60) for f in futures]
    assert len(responses) == 200
    assert all(r.content for r in responses)
    stats = manager.get_manager_stats()["usage_stats"]
    assert stats["total_requests"] == 200
    assert stats["successful_requests"] == 200
    assert stats["pending_requests"] == 0


def test_a_budget_is_never_overspent_by_concurrent_requests(make_manager, emulator):
    from router.catalog import load_catalog
    from router.tokens import request_input_bound

    request = ask("Please answer briefly", model="gpt-4o-mini", max_tokens=40)
    info = load_catalog().require("gpt-4o-mini")
    bound = request_input_bound(request, "openai", "gpt-4o-mini")
    worst = (bound * info.input_price + 40 * info.output_price) / 1e6
    limit = worst * 50
    config = router_config(emulator, budgets=[{"name": "Monthly", "monthly_limit": limit}])
    manager = make_manager(config)
    futures = [manager.submit(request) for _ in range(100)]
    ok, refused = 0, 0
    for future in futures:
        try:
            future.get(timeout=60)
            ok += 1
        except (BudgetExceededError, NoProviderAvailableError):
            refused += 1
    assert ok + refused == 100
    assert ok >= 50 and refused > 0
    status = manager.get_budget_status()
    monthly = next(b for b in status["budgets"] if b["budget"] == "Monthly")
    assert monthly["spent"] <= limit + 1e-12
    assert monthly["reserved"] == pytest.approx(0.0, abs=1e-12)
    records = manager.usage_records()
    assert len(records) == ok
    assert len({r.request_id for r in records}) == ok
    assert sum(r.cost for r in records) == pytest.approx(monthly["spent"])


# --- streaming -----------------------------------------------------------------------------


def test_streaming_delivers_the_first_chunk_long_before_the_last(make_manager, emulator):
    emulator.set_pacing("openai", token_delay=0.03)
    manager = make_manager()
    times, text = [], []
    request = ask("one two three four five six seven eight nine ten", model="gpt-4o-mini")
    for chunk in manager.stream_request(request):
        times.append(time.monotonic())
        if chunk.content:
            text.append(chunk.content)
        last = chunk
    assert last.is_complete and last.finish_reason == "stop"
    assert last.usage is not None and last.usage.output_tokens > 0 and last.cost > 0
    assert len(times) > 5
    assert times[-1] - times[0] > 0.15  # chunks were spread out, not buffered
    assert "".join(text)


def test_an_abandoned_stream_is_billed_and_frees_its_worker(make_manager, emulator):
    emulator.set_pacing("openai", token_delay=0.05)
    config = router_config(emulator)
    config["providers"][0]["max_concurrency"] = 1
    manager = make_manager(config)
    long_prompt = " ".join(f"word{i}" for i in range(200))
    stream = manager.stream_request(ask(long_prompt, model="gpt-4o-mini"))
    received = [next(stream), next(stream), next(stream)]
    assert any(c.content for c in received)
    stream.close()
    with pytest.raises(RequestCancelledError):
        stream.future.get(timeout=5)
    emulator.set_pacing("openai", token_delay=0.0)
    # The single worker is free again only after the abandoned stream was settled.
    assert manager.process_request(ask(model="gpt-4o-mini")).provider_name == "openai"
    records = manager.usage_records()
    partial = [r for r in records if r.outcome == "partial"]
    assert len(partial) == 1 and partial[0].output_tokens > 0 and partial[0].cost > 0


# --- lifecycle -----------------------------------------------------------------------------


def test_stop_resolves_requests_in_flight_and_leaves_no_actor_thread(make_manager, emulator):
    emulator.set_pacing(None, ttft=0.5)
    manager = make_manager()
    futures = [manager.submit(ask()) for _ in range(10)]
    manager.stop()
    for future in futures:
        with pytest.raises(ManagerStoppedError):
            future.get(timeout=5)
    leftover = [t for t in router_threads() if t.is_alive()]
    assert leftover == []
    with pytest.raises(ManagerStoppedError):
        manager.submit(ask())


def test_content_is_stored_only_in_the_opt_in_audit_log(make_manager, emulator, tmp_path):
    import json

    quiet = make_manager(
        router_config(emulator, ledger={"type": "sqlite", "path": str(tmp_path / "a.db")})
    )
    quiet.process_request(ask("secret plans for tuesday", model="gpt-4o-mini"))
    quiet.stop()
    assert b"secret plans" not in (tmp_path / "a.db").read_bytes()
    audit = tmp_path / "audit.jsonl"
    manager = make_manager(router_config(emulator, audit_log=str(audit)))
    manager.process_request(ask("audited question", model="gpt-4o-mini"))
    for _ in manager.stream_request(ask("audited stream", model="claude-3-haiku-20240307")):
        pass
    manager.stop()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["messages"][0]["content"] for line in lines] == [
        "audited question",
        "audited stream",
    ]
    assert all(line["content"] and line["cost"] > 0 for line in lines)


def test_every_streamed_chunk_names_who_answers(make_manager):
    manager = make_manager()
    chunks = list(manager.stream_request(ask("who are you"), strategy="priority"))
    assert len(chunks) > 2
    assert {(c.provider_name, c.model) for c in chunks} == {("openai", "gpt-4o-mini")}


def test_recommendation_input_errors_are_typed(make_manager):
    from router.errors import InvalidRequestError

    manager = make_manager()
    with pytest.raises(InvalidRequestError, match="selection|max_cost_per_request"):
        manager.get_cost_recommendations(ask(), selection={"max_cost_per_request": -1})
    with pytest.raises(InvalidRequestError, match="name"):
        manager.get_cost_recommendations(ask(), tools=[{"description": "no name"}])


def test_a_failing_told_message_fails_its_request_not_the_actor():
    from typing import NamedTuple

    from router.actors.base import RouterActor
    from router.errors import RouterError
    from router.jobs import Job, JobRegistry

    class Poke(NamedTuple):
        job: Job

    class Fragile(RouterActor):
        def handle(self, message):
            if isinstance(message, Poke):
                raise KeyError("a bug")
            if message == "ask-bug":
                raise ValueError("asked")
            return "alive"

    ref = Fragile.start()
    try:
        job = Job(ask(), strategy="cost", selection=None, timeout=5, registry=JobRegistry())
        ref.tell(Poke(job))
        with pytest.raises(RouterError, match="internal error"):
            job.future.get(timeout=5)
        assert ref.ask("ping", timeout=5) == "alive"
        with pytest.raises(ValueError, match="asked"):  # an ask still raises to its caller
            ref.ask("ask-bug", timeout=5)
    finally:
        ref.stop()


def test_a_pathologically_deep_tool_schema_is_an_invalid_request(make_manager):
    from router.errors import InvalidRequestError

    schema: dict = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"a": schema}}
    manager = make_manager()
    with pytest.raises(InvalidRequestError, match="nested deeper than 128 levels"):
        manager.process_request(ask(), tools=[{"name": "deep", "inputSchema": schema}])


def test_a_client_side_rate_limit_sends_the_next_request_elsewhere(make_manager, emulator):
    config = router_config(emulator)
    config["providers"][0]["rpm"] = 1
    manager = make_manager(config)
    assert manager.process_request(ask(), strategy="priority").provider_name == "openai"
    # openai has used its one request this minute: the next goes to the next candidate.
    assert manager.process_request(ask(), strategy="priority").provider_name == "anthropic"
    assert emulator.counters()["openai"]["requests"] == 1
