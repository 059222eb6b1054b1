"""Rate limits, circuits and health shared by several router processes on one Redis.

The store's scripts are checked on a real ``redis-server``; the fleet itself by four real
router processes (``tests/budget_worker.py``) against the emulator: they share one rpm limit
(beyond it requests go to the next candidate, or wait), one circuit (opened by one, seen by
all, one half-open trial across the fleet) and one budget.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from redis_server import SKIP_REASON
from router_processes import Worker
from test_shared_budget import merge, poll, redis_ledger

from router.fleet import RemoteCircuit
from router.fleet.sync import fleet_totals

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def fleet(server: Any, worker: str, key_prefix: str = "f", **kw: Any) -> Any:
    from router.fleet.redis import RedisFleet

    return RedisFleet(server.url, key_prefix=key_prefix, worker=worker, retry_interval=0.05, **kw)


# --- the store ----------------------------------------------------------------------------------


def test_one_rate_window_across_stores(redis_server):
    a, b = fleet(redis_server, "a"), fleet(redis_server, "b")
    try:
        assert [a.take_rate("p", 3, None, 10) for _ in range(2)] == [0.0, 0.0]
        assert b.take_rate("p", 3, None, 10) == 0.0
        wait = b.take_rate("p", 3, None, 10)
        assert 59.0 < wait <= 60.0  # until the oldest of the three leaves the minute
        assert a.take_rate("other", 3, None, 10) == 0.0  # per provider
        # tpm: the first request always fits; then the tokens of the window count.
        assert a.take_rate("t", None, 100, 150) == 0.0
        assert b.take_rate("t", None, 100, 1) > 0.0
        assert a.take_rate("none", None, None, 10**6) == 0.0
    finally:
        a.close()
        b.close()


def test_the_rate_window_slides(redis_server):
    a = fleet(redis_server, "a", window=0.3)
    try:
        assert a.take_rate("p", 2, 50, 20) == 0.0
        assert a.take_rate("p", 2, 50, 20) == 0.0
        wait = a.take_rate("p", 2, 50, 20)
        assert 0.0 < wait <= 0.3
        poll(lambda: a.take_rate("p", 2, 50, 20) == 0.0, what="the window to slide")
        client = redis_server.client()
        # The tokens of requests that left the window left with them.
        assert int(client.get("f:rate:p:tokens")) == 20 * client.zcard("f:rate:p")
        client.close()
    finally:
        a.close()


def test_one_circuit_and_one_trial_across_stores(redis_server):
    a, b, c = fleet(redis_server, "a"), fleet(redis_server, "b"), fleet(redis_server, "c")
    try:
        assert a.read_circuits(["p"]) == {"p": RemoteCircuit("closed", 0.0)}
        assert b.take_trial("p", 5) is None  # closed: nothing to claim
        assert a.publish_circuit("p", "open", 0.2)
        state, retry_in = b.read_circuits(["p"])["p"]
        assert state == "open" and 0.0 < retry_in <= 0.2
        assert 0.0 < (b.take_trial("p", 5) or 0.0) <= 0.2  # the timer runs
        poll(lambda: b.take_trial("p", 5) is None, what="b's trial")
        assert 4.0 < (c.take_trial("p", 5) or 0.0) <= 5.0  # b's trial runs: nobody else's
        assert a.read_circuits(["p"])["p"].retry_in > 4.0
        assert a.publish_circuit("p", "closed", 0.0)  # not a's trial: ignored
        assert c.read_circuits(["p"])["p"].state == "open"
        assert b.publish_circuit("p", "open", 0.2)  # b's trial failed: a fresh timer
        state, retry_in = c.read_circuits(["p"])["p"]
        assert state == "open" and retry_in <= 0.2
        poll(lambda: c.take_trial("p", 5) is None, what="c's trial")
        assert a.publish_circuit("p", "released", 0.0)  # not a's trial: nothing happens
        assert b.take_trial("p", 5) > 4.0
        assert c.publish_circuit("p", "released", 0.0)  # c's trial ended without a verdict
        assert b.take_trial("p", 5) is None  # so b may run the next one
        assert b.publish_circuit("p", "closed", 0.0)  # b's trial succeeded
        assert a.read_circuits(["p"]) == {"p": RemoteCircuit("closed", 0.0)}
    finally:
        for store in (a, b, c):
            store.close()


def test_health_of_live_workers_and_their_totals(redis_server):
    a, b = fleet(redis_server, "a"), fleet(redis_server, "b")
    try:
        a.publish_health({"p": {"requests": 3, "in_flight": 1, "circuit_state": "closed"}})
        b.publish_health({"p": {"requests": 4, "in_flight": 2, "circuit_state": "open"}})
        workers = a.read_health()
        assert set(workers) == {"a", "b"}
        totals = fleet_totals(workers)["p"]
        assert (totals["requests"], totals["in_flight"], totals["workers"]) == (7, 3, 2)
        assert totals["circuit_state"] == "open"
        client = redis_server.client()
        client.delete("f:worker:b")  # b stopped publishing and its figures expired
        client.close()
        assert set(a.read_health()) == {"a"}
    finally:
        a.close()
        b.close()


def test_an_unreachable_redis_falls_back_to_this_process(redis_server, caplog):
    a = fleet(redis_server, "a")
    try:
        assert a.take_rate("p", 1, None, 1) == 0.0
        redis_server.stop(save=False)
        with caplog.at_level(logging.WARNING, logger="router.fleet.redis"):
            # A limit of its own (this process had counted nothing locally yet).
            assert a.take_rate("p", 1, None, 1) == 0.0
            assert a.take_rate("p", 1, None, 1) > 0.0
            assert a.take_trial("p", 5) is None  # this process's breaker decides
            assert a.read_circuits(["p"]) is None
            assert a.publish_circuit("p", "open", 1.0) is False
        assert "FLEET STATE UNAVAILABLE" in caplog.text
        stats = a.stats()
        assert stats["shared"] is False and "per process" in stats["warning"]
        assert "FLEET STATE UNAVAILABLE" in caplog.text
        redis_server.start()
        poll(lambda: a.read_circuits(["p"]) is not None, what="Redis back")
        assert a.stats()["shared"] is True and "warning" not in a.stats()
    finally:
        a.close()


# --- four router processes ---------------------------------------------------------------------

KEY = "sk-test-openai-0123456789abcdefghij"


def settings_for(redis_server: Any, tmp_path: Any, providers: list[dict[str, Any]], **kw: Any):
    return {
        "ledger": redis_ledger(redis_server, tmp_path),
        "providers": providers,
        "callers": 5,
        "strategy": "priority",
        **kw,
    }


def run_on(workers: list[Worker], n: int) -> dict[str, Any]:
    for worker in workers:
        worker.send(cmd="run", n=n)
    return merge_all([worker.answer(timeout=120) for worker in workers])


def merge_all(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    merged = merge(outcomes)
    for name in ("by_provider", "errors"):
        merged[name] = {}
        for outcome in outcomes:
            for key, count in outcome[name].items():
                merged[name][key] = merged[name].get(key, 0) + count
    return merged


def test_four_workers_share_one_rpm_limit_and_one_budget(
    emulator, redis_server, start_workers, tmp_path
):
    from router.ledger.redis import RedisLedger

    providers = [
        {"name": "primary", "base_url": emulator.base_url("openai", "/p/a"), "rpm": 20},
        {"name": "backup", "base_url": emulator.base_url("openai", "/p/b"), "priority": -1},
    ]
    settings = settings_for(redis_server, tmp_path, providers, limit=100.0)
    workers = start_workers(*[settings] * 4)
    outcome = run_on(workers, 15)
    assert outcome["other"] == [] and outcome["budget"] == 0, outcome
    # 60 requests, 15 from each process: the primary's 20 per minute hold for the fleet (each
    # process alone would have sent all its 15 there); the rest went to the next candidate.
    assert outcome["by_provider"] == {"primary": 20, "backup": 40}
    prefixes = emulator.counters()["prefixes"]
    assert prefixes["/p/a"]["openai"]["requests"] == 20
    assert prefixes["/p/b"]["openai"]["requests"] == 40
    fleet_status = workers[0].ask(cmd="fleet")
    assert fleet_status["shared"] is True
    for worker in workers:
        worker.quit()
    store = RedisLedger(redis_server.url, key_prefix="shared", journal_dir=str(tmp_path / "j"))
    try:  # one budget: every answer booked once
        assert sorted(r.provider_request_id for r in store.records()) == sorted(outcome["ok"])
    finally:
        store.close()


def test_the_last_candidate_waits_for_the_fleet_window(
    emulator, redis_server, start_workers, tmp_path
):
    providers = [{"name": "only", "base_url": emulator.base_url("openai", "/p/w"), "rpm": 8}]
    # A one-second window stands in for the minute (RedisFleet's window).
    settings = settings_for(redis_server, tmp_path, providers, fleet={"window": 1.0})
    workers = start_workers(*[settings] * 2)
    started = time.monotonic()
    outcome = run_on(workers, 12)
    elapsed = time.monotonic() - started
    # 24 requests, 8 per window across the fleet: all served, in at least three windows.
    assert outcome["other"] == [] and len(outcome["ok"]) == 24, outcome
    assert elapsed >= 2.0


def circuits(worker: Worker) -> str:
    return worker.ask(cmd="circuits")["only"]


def test_one_circuit_and_one_half_open_trial_across_four_workers(
    emulator, redis_server, start_workers, tmp_path
):
    prefix = "/p/c"
    providers = [
        {
            "name": "only",
            "base_url": emulator.base_url("openai", prefix),
            "circuit_breaker": {"failure_threshold": 2, "recovery_timeout": 1.0},
        }
    ]
    settings = settings_for(redis_server, tmp_path, providers)
    opener, *others = workers = start_workers(*[settings] * 4)

    def sent() -> int:
        return emulator.counters()["prefixes"].get(prefix, {}).get("openai", {}).get("requests", 0)

    emulator.add_fault(provider="openai", prefix=prefix, kind="server_error")
    failed = opener.ask(cmd="run", n=2)
    assert sum(failed["errors"].values()) == 2 and "CircuitOpenError" not in failed["errors"]
    assert circuits(opener) == "open"
    opened = time.monotonic()
    for worker in others:
        poll(lambda w=worker: circuits(w) == "open", what="the circuit seen by every worker")
    seen_after = time.monotonic() - opened
    assert seen_after < 1.0, f"seen after {seen_after:.2f}s"
    refused = run_on(others, 2)  # fail fast everywhere: nothing reaches the provider
    assert refused["errors"] == {"CircuitOpenError": 6}, refused
    assert sent() == 2

    # Recovery: a slow provider, so every worker asks while the one trial is running.
    emulator.clear_faults()
    emulator.set_pacing("openai", ttft=1.5)
    # Every worker's timer, and the fleet's, has run out: each would send a trial on its own.
    for worker in workers:
        poll(lambda w=worker: circuits(w) == "half_open", what="the recovery timeout")
    store = fleet(redis_server, "observer", key_prefix="shared")
    poll(lambda: store.read_circuits(["only"])["only"].retry_in == 0.0, what="the fleet's timer")
    store.close()
    for worker in workers:
        worker.send(cmd="run", n=3)
    trial = merge_all([worker.answer(timeout=60) for worker in workers])
    assert len(trial["ok"]) == 1 and trial["errors"] == {"CircuitOpenError": 11}, trial
    assert sent() == 3  # one half-open trial across the fleet

    emulator.set_pacing("openai", ttft=0.0)
    for worker in workers:  # the trial's success closed the fleet's circuit
        poll(lambda w=worker: circuits(w) == "closed", what="the circuit closed everywhere")
    after = run_on(workers, 2)
    assert len(after["ok"]) == 8, after
    status = opener.ask(cmd="fleet")
    assert len(status["workers"]) == 4
    assert status["providers"]["only"]["workers"] == 4


# --- one process's view: status, metrics, an outage --------------------------------------------


def ask(text: str = "Hello there") -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


def test_status_and_metrics_show_every_worker_of_the_fleet(make_manager, emulator, redis_server):
    from prometheus_client.parser import text_string_to_metric_families
    from support import router_config
    from test_bridge import call

    from router.bridge import create_app

    # Two managers on one Redis stand for two processes (each its own worker id).
    here = make_manager(router_config(emulator), fleet=fleet(redis_server, "host:1"))
    there = make_manager(router_config(emulator), fleet=fleet(redis_server, "host:2"))
    for _ in range(3):
        there.process_request(ask())
    app = create_app(here, auth_token="")

    def fleet_view() -> dict[str, Any]:
        return call(app, "GET", "/ai/status").json()["fleet"]

    poll(
        lambda: fleet_view()["providers"].get("openai", {}).get("requests") == 3,
        what="the other worker's heartbeat",
        every=0.02,
    )
    view = fleet_view()
    assert view["shared"] is True and set(view["workers"]) == {"host:1", "host:2"}
    assert view["workers"]["host:2"]["providers"]["openai"]["successes"] == 3
    assert view["providers"]["openai"]["workers"] == 2

    text = call(app, "GET", "/metrics").body.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("router_fleet_shared", ())] == 1.0
    assert samples[("router_fleet_workers", ())] == 2.0
    labels = (("provider", "openai"), ("worker", "host:2"))
    assert samples[("router_fleet_provider_requests", labels)] == 3.0
    assert samples[("router_fleet_circuit_state", labels)] == 0.0


def test_without_redis_limits_and_circuits_are_per_process(
    make_manager, emulator, redis_server, caplog
):
    from support import router_config

    from router.errors import CircuitOpenError, RateLimitError

    config = router_config(emulator)
    openai = config["providers"][0]
    openai.update(rpm=2, circuit_breaker={"failure_threshold": 1, "recovery_timeout": 30})
    store = fleet(redis_server, "alone")
    manager = make_manager(config, fleet=store)
    with caplog.at_level(logging.WARNING, logger="router.fleet.redis"):
        redis_server.stop(save=False)
        # The rpm limit still holds, counted by this process alone ...
        manager.process_request(ask())
        manager.process_request(ask())
        with pytest.raises(RateLimitError, match="client-side rate limit"):
            manager.process_request(ask(), timeout=2)
        status = manager.get_manager_stats()["fleet"]
    assert status["shared"] is False and "per process" in status["warning"]
    assert "FLEET STATE UNAVAILABLE" in caplog.text
    assert list(status["workers"]) == ["alone"]  # its own figures, read locally

    # ... and so does the breaker: a failure opens it here, with nobody to tell.
    manager.update_provider("openai", rpm=0)
    emulator.add_fault(provider="openai", kind="server_error", count=1)
    with pytest.raises(Exception) as failed:
        manager.process_request(ask())
    assert not isinstance(failed.value, CircuitOpenError)
    with pytest.raises(CircuitOpenError):
        manager.process_request(ask())


def test_a_trial_that_ends_without_a_verdict_frees_the_fleets_trial(
    make_manager, emulator, redis_server
):
    from support import router_config

    from router.errors import ProviderError, RequestTimeoutError, RouterError

    config = router_config(emulator)
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 1, "recovery_timeout": 1.0}
    here = make_manager(config, fleet=fleet(redis_server, "host:1"))
    there = make_manager(config, fleet=fleet(redis_server, "host:2"))
    client = redis_server.client()

    def circuit(manager: Any) -> str:
        return manager.provider_health()["openai"].circuit_state

    emulator.add_fault(provider="openai", kind="server_error", count=1)
    with pytest.raises(ProviderError):
        here.process_request(ask())
    poll(lambda: circuit(there) != "closed", what="the circuit seen by the other manager")
    poll(lambda: circuit(here) == "half_open", what="the recovery timeout")
    emulator.set_pacing("openai", ttft=2.0)
    with pytest.raises(RequestTimeoutError):  # the trial: its caller gives up
        here.process_request(ask(), timeout=0.3)
    # The lease is dropped (expiring would leave the field in place, only past its time).
    poll(lambda: client.hget("f:circuit:openai", "trial") is None, what="the lease released")
    emulator.set_pacing("openai", ttft=0.0)

    def served() -> bool:
        try:
            there.process_request(ask())
        except RouterError:
            return False
        return True

    poll(served, what="the other manager's trial", every=0.05)
    poll(lambda: circuit(here) == "closed", what="the circuit closed everywhere")
    client.close()
