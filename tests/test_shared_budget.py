"""One budget shared by several router processes: Redis (and SQLite) as the common ledger.

Each router is a real process (``tests/budget_worker.py``: an ``AIProviderManager`` with 25
concurrent callers) talking to the emulator in this process and to one redis-server started
here. The test drives the workers over stdin/stdout and checks the ledger afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from budget_worker import make_request, router_config, worst_case
from redis_server import SKIP_REASON, RedisServer
from router_processes import Worker

from router.ledger import SQLiteLedger

redis_only = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def redis_ledger(server: RedisServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "type": "redis",
        "url": server.url,
        "key_prefix": "shared",
        "journal_dir": str(tmp_path / "journal"),
        "retry_interval": 0.05,
        **extra,
    }


def request_cost(emulator: Any) -> float:
    """What one request really costs (the emulator answers the same prompt alike)."""
    from router.manager import AIProviderManager

    settings = {"base_url": emulator.base_urls["openai"], "ledger": {"type": "memory"}}
    manager = AIProviderManager(router_config({**settings, "limit": 1.0})).start()
    try:
        return manager.submit(make_request()).get(timeout=30).cost
    finally:
        manager.stop()


def month_key() -> str:
    return f"budget:Shared:month:{time.strftime('%Y-%m', time.gmtime())}"


def merge(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"ok": [], "budget": 0, "ledger": [], "other": []}
    for outcome in outcomes:
        for name in ("ok", "ledger", "other"):
            merged[name] += outcome[name]
        merged["budget"] += outcome["budget"]
    return merged


def run_everywhere(workers: list[Worker], n: int) -> dict[str, Any]:
    """``run n`` on every worker at once; the merged outcome."""
    for worker in workers:
        worker.send(cmd="run", n=n)
    return merge([worker.answer(timeout=120) for worker in workers])


def journaled(worker: Worker) -> int:
    return worker.ask(cmd="status")["ledger"]["journaled"]


def serve_again(worker: Worker, polls: int = 500) -> dict[str, Any]:
    """One request at a time until one is served (bounded); the served one's outcome."""
    for _ in range(polls):
        outcome = worker.ask(cmd="run", n=1)
        if outcome["ok"]:
            return outcome
        assert outcome["ledger"], outcome  # only the outage may refuse
        time.sleep(0.004)
    raise AssertionError("the worker never recovered")


def poll(condition: Any, *, what: str, polls: int = 2500, every: float = 0.004) -> None:
    """Wait (bounded: ``polls`` checks ``every`` seconds apart) until ``condition()``."""
    for _ in range(polls):
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def check_ledger(store: Any, ok_ids: list[str], limit: float | None = None) -> None:
    """Every served request has exactly one record, spend equals the records, nothing held."""
    records = store.records()
    assert sorted(r.provider_request_id for r in records) == sorted(ok_ids)
    assert len({r.request_id for r in records}) == len(records)
    spent, reserved = store.totals([month_key()])[month_key()]
    assert reserved == 0.0
    assert spent == pytest.approx(sum(r.cost for r in records), abs=1e-12)
    if limit is not None:
        assert spent <= limit + 1e-12


def budget_scenario(workers: list[Worker], emulator: Any, per_worker: int) -> dict[str, Any]:
    outcome = run_everywhere(workers, per_worker)
    assert outcome["other"] == [] and outcome["ledger"] == []
    total = per_worker * len(workers)
    assert len(outcome["ok"]) + outcome["budget"] == total
    assert outcome["ok"] and outcome["budget"], outcome  # the limit really bound
    return outcome


# --- Redis ------------------------------------------------------------------------------------


@redis_only
def test_four_processes_share_one_monthly_budget(emulator, redis_server, start_workers, tmp_path):
    from router.ledger.redis import RedisLedger

    per_worker = 50
    limit = request_cost(emulator) * per_worker * 4 / 2  # about half the requests
    settings = {
        "base_url": emulator.base_urls["openai"],
        "ledger": redis_ledger(redis_server, tmp_path),
        "limit": limit,
        "callers": 25,
    }
    workers = start_workers(*[settings] * 4)
    outcome = budget_scenario(workers, emulator, per_worker)
    for worker in workers:
        assert worker.quit()["ledger"]["journal_pending"] == 0

    store = RedisLedger(redis_server.url, key_prefix="shared", journal_dir=str(tmp_path / "j"))
    try:
        check_ledger(store, outcome["ok"], limit)
    finally:
        store.close()


@redis_only
def test_a_killed_processs_reservations_expire_and_the_others_continue(
    emulator, redis_server, start_workers, tmp_path
):
    from router.ledger.redis import RedisLedger

    settings = {
        "base_url": emulator.base_urls["openai"],
        "ledger": redis_ledger(redis_server, tmp_path),
        "limit": worst_case() * 100,
        "callers": 25,
        "reservation_ttl": 1.0,  # also the survivors' expiry tick: every second
    }
    victim, *survivors = start_workers(*[settings] * 3)
    store = RedisLedger(redis_server.url, key_prefix="shared", journal_dir=str(tmp_path / "j"))
    client = redis_server.client()
    try:
        emulator.set_pacing("openai", ttft=3.0)  # the victim's requests stay in flight
        victim.ask(cmd="submit", n=10)
        poll(lambda: client.zcard("shared:reservations:expiry") == 10, what="10 reservations")
        victim.kill()
        held = store.totals([month_key()])[month_key()][1]
        assert held == pytest.approx(10 * worst_case())

        emulator.set_pacing("openai", ttft=0.0)
        outcome = run_everywhere(survivors, 20)
        assert len(outcome["ok"]) == 40, outcome

        poll(lambda: client.zcard("shared:reservations:expiry") == 0, what="expiry")
        assert int(client.hget("shared:stats", "expired")) >= 10
        for worker in survivors:
            worker.quit()
        check_ledger(store, outcome["ok"])
    finally:
        client.close()
        store.close()


@redis_only
def test_fail_closed_refuses_during_an_outage_and_recovers_without_loss(
    emulator, redis_server, start_workers, tmp_path
):
    from router.ledger.redis import RedisLedger

    settings = {
        "base_url": emulator.base_urls["openai"],
        "ledger": redis_ledger(redis_server, tmp_path),
        "limit": worst_case() * 200,
        "callers": 25,
    }
    workers = start_workers(*[settings] * 2)
    client = redis_server.client()
    emulator.set_pacing("openai", ttft=0.5)
    for worker in workers:
        worker.ask(cmd="submit", n=5)
    poll(lambda: client.zcard("shared:reservations:expiry") == 10, what="10 reservations")
    client.close()
    redis_server.stop()  # mid-run: ten requests in flight, to be settled during the outage
    served = merge([worker.ask(cmd="collect") for worker in workers])
    assert len(served["ok"]) == 10, served
    for worker in workers:  # settlements trail the answers a little
        poll(lambda w=worker: journaled(w) == 5, what="five journaled settlements", every=0.01)
    emulator.set_pacing("openai", ttft=0.0)

    refused = run_everywhere(workers, 5)
    assert refused["ok"] == [] and len(refused["ledger"]) == 10, refused
    assert all(f"127.0.0.1:{redis_server.port}" in message for message in refused["ledger"])

    redis_server.start()
    # Refusals continue until each worker's retry interval (50 ms) has passed; then its first
    # write replays the journal and requests are served again.
    resumed = merge([serve_again(worker) for worker in workers])
    resumed = merge([resumed, run_everywhere(workers, 5)])
    assert len(resumed["ok"]) == 12 and resumed["budget"] == 0, resumed
    for worker in workers:
        stats = worker.quit()["ledger"]
        assert stats["journaled"] == 5 and stats["journal_pending"] == 0

    store = RedisLedger(redis_server.url, key_prefix="shared", journal_dir=str(tmp_path / "j"))
    try:
        check_ledger(store, served["ok"] + resumed["ok"])
    finally:
        store.close()


@redis_only
def test_fail_open_keeps_serving_and_replays_its_journal(
    emulator, redis_server, start_workers, tmp_path
):
    from router.ledger.redis import RedisLedger

    settings = {
        "base_url": emulator.base_urls["openai"],
        "ledger": redis_ledger(redis_server, tmp_path, fail_open=True),
        "limit": worst_case() * 200,
        "callers": 25,
    }
    workers = start_workers(*[settings] * 2)
    before = run_everywhere(workers, 5)
    client = redis_server.client()
    # Settlements trail the answers a little: let these land before the outage.
    poll(lambda: client.hlen("shared:usage") == 10, what="ten records")
    client.close()
    redis_server.stop()
    during = run_everywhere(workers, 10)
    assert len(during["ok"]) == 20, during
    for worker in workers:
        ledger = worker.ask(cmd="status")["ledger"]
        assert ledger["available"] is False
        assert ledger["fail_open_grants"] == 10 and ledger["journal_pending"] == 10

    redis_server.start()
    after = run_everywhere(workers, 5)  # fail-open: served whether Redis is back yet or not
    assert len(after["ok"]) == 10, after
    # Replay happens on the first write after the retry interval; the last ones may still
    # have found Redis within that interval, so give each worker one request more.
    after = merge([after, *(serve_again(worker) for worker in workers)])
    for worker in workers:
        stats = worker.quit()["ledger"]
        # More than the outage's ten if Redis was back but the retry interval not yet over.
        assert stats["replayed"] == stats["journaled"] >= 10 and stats["journal_pending"] == 0

    store = RedisLedger(redis_server.url, key_prefix="shared", journal_dir=str(tmp_path / "j"))
    try:
        check_ledger(store, before["ok"] + during["ok"] + after["ok"])
    finally:
        store.close()


# --- SQLite -----------------------------------------------------------------------------------


def test_two_processes_share_one_budget_in_one_sqlite_file(emulator, start_workers, tmp_path):
    per_worker = 50
    limit = request_cost(emulator) * per_worker * 2 / 2
    path = tmp_path / "ledger.sqlite3"
    SQLiteLedger(path).close()  # the schema once, up front
    settings = {
        "base_url": emulator.base_urls["openai"],
        "ledger": {"type": "sqlite", "path": str(path)},
        "limit": limit,
        "callers": 25,
    }
    workers = start_workers(*[settings] * 2)
    outcome = budget_scenario(workers, emulator, per_worker)
    for worker in workers:
        worker.quit()

    store = SQLiteLedger(path)
    try:
        check_ledger(store, outcome["ok"], limit)
    finally:
        store.close()
