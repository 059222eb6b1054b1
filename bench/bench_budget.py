"""Scenario 6: the budget actor alone — reserve + settle operations per second.

A ``BudgetActor`` with a monthly budget and a per-provider limit (so every reservation checks
limits) receives N ``Reserve`` messages, each forwarded to a sink actor as the provider would
receive it, and N ``Settle`` messages for the same reservations; the clock stops when an ask
queued behind them returns. The "store alone" rows call the same ledger store directly on one
thread (no actor, no messages): the floor the actor adds its messaging to. Both the in-memory
and the SQLite (default) stores, interleaved over several rounds.

    python bench/bench_budget.py [--rounds 5] [--pairs 5000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from common import Phase, interleave, median, print_header, quiet_logging, verdict


def setup() -> dict[str, Any]:
    from router.config import config_from_dict
    from router.jobs import Job, JobRegistry
    from router.models import AIRequest
    from router.strategies import Candidate

    config = config_from_dict(
        {
            "providers": [{"name": "openai", "type": "openai", "api_key": "sk-bench-0123456789"}],
            "budgets": [
                {
                    "name": "Monthly",
                    "monthly_limit": 1e9,
                    "provider_limits": {"openai": 1e9},
                }
            ],
            "ledger": {"type": "memory"},
        }
    )
    request = AIRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    job = Job(request, strategy="priority", selection=None, timeout=3600, registry=JobRegistry())
    candidate = Candidate("openai", "openai", "gpt-4o-mini", 0.0001)
    return {"config": config, "job": job, "candidate": candidate}


def make_store(kind: str) -> Any:
    from router.ledger import MemoryLedger, SQLiteLedger

    if kind == "memory":
        return MemoryLedger()
    return SQLiteLedger(os.path.join(tempfile.mkdtemp(prefix="router-bench-"), "ledger.db"))


def record(rid: str) -> Any:
    from router.ledger.base import UsageRecord

    return UsageRecord(
        request_id=rid,
        timestamp=time.time(),
        provider="openai",
        provider_type="openai",
        model="gpt-4o-mini",
        input_tokens=12,
        output_tokens=34,
        cached_input_tokens=0,
        cost=0.00004,
        outcome="success",
        provider_request_id=None,
    )


class Sink:
    """Stands in for the provider actor: counts the attempts the budget forwards."""

    @staticmethod
    def start() -> Any:
        import pykka

        class _Sink(pykka.ThreadingActor):
            def __init__(self) -> None:
                super().__init__()
                self.count = 0

            def on_receive(self, message: Any) -> Any:
                if message == "count":
                    return self.count
                self.count += 1
                return None

        return _Sink.start()


def actor_phase(kind: str, state: dict[str, Any], pairs: int, time_limit: float) -> Phase:
    from router.actors.budget import BudgetActor
    from router.actors.messages import Attempt, Reserve, Settle

    config = state["config"]
    store = make_store(kind)
    budget = BudgetActor.start(config.budgets, store, provider_types={"openai": "openai"})
    sink = Sink.start()
    run_id = f"{time.monotonic_ns():x}"
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + time_limit
        sent = 0
        for i in range(pairs):
            rid = f"{run_id}-{i}"
            attempt = Attempt(state["job"], state["candidate"], rid, False)
            budget.tell(Reserve(attempt, 0.0001, sink, sink))
            budget.tell(Settle(rid, record(rid)))
            sent += 1
            if i % 256 == 0 and time.perf_counter() > deadline:
                break
        budget.ask("status", timeout=600)
        elapsed = time.perf_counter() - t0
        forwarded = sink.ask("count", timeout=60)
        return Phase(
            count=sent,
            elapsed=elapsed,
            cpu=time.process_time() - cpu0,
            errors=sent - forwarded,
        )
    finally:
        budget.stop()
        sink.stop()


def store_phase(kind: str, state: dict[str, Any], pairs: int, time_limit: float) -> Phase:
    from router.budget import applicable_limits, periods_at, tracking_keys

    config = state["config"]
    store = make_store(kind)
    run_id = f"{time.monotonic_ns():x}"
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + time_limit
        sent = 0
        for i in range(pairs):
            rid = f"{run_id}-{i}"
            periods = periods_at(time.time(), "UTC")
            limits = applicable_limits(
                config.budgets, provider_name="openai", provider_type="openai", periods=periods
            )
            keys = tracking_keys(provider_name="openai", periods=periods)
            store.reserve(rid, 0.0001, limits, keys=keys, expires_at=time.time() + 600)
            store.settle(rid, record(rid), keys=[limit.key for limit in limits] + keys)
            sent += 1
            if i % 256 == 0 and time.perf_counter() > deadline:
                break
        return Phase(count=sent, elapsed=time.perf_counter() - t0, cpu=time.process_time() - cpu0)
    finally:
        store.close()


def run(rounds: int = 5, pairs: int = 5000, time_limit: float = 30.0) -> dict[str, Any]:
    quiet_logging()
    state = setup()
    contenders = {}
    for kind in ("memory", "sqlite"):
        contenders[f"actor/{kind}"] = (
            lambda kind=kind: actor_phase(kind, state, pairs, time_limit)  # type: ignore[misc]
        )
        contenders[f"store/{kind}"] = (
            lambda kind=kind: store_phase(kind, state, pairs, time_limit)  # type: ignore[misc]
        )
    results = interleave(contenders, rounds=rounds, warmup=False)
    print(f"-- reserve + settle pairs per second (median of {rounds} rounds, {pairs} pairs each)")
    out = {}
    for name, phases in results.items():
        rate = median([p.throughput for p in phases])
        cpu = median([p.cpu_us for p in phases])
        errors = sum(p.errors for p in phases)
        out[name] = {"pairs_per_s": rate, "cpu_us_per_pair": cpu}
        print(
            f"   {name:<14} {rate:9.0f} pairs/s  ({2 * rate:9.0f} ops/s)  "
            f"{cpu:7.1f} us CPU per pair  lost {errors}"
        )
    for kind in ("memory", "sqlite"):
        ratio = out[f"actor/{kind}"]["pairs_per_s"] / out[f"store/{kind}"]["pairs_per_s"]
        print(f"   actor / store alone ({kind}): {ratio:.2f}x")
    verdict(
        "every reservation forwarded",
        all(p.errors == 0 for name, ps in results.items() if name.startswith("actor") for p in ps),
        "yes",
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--time-limit", type=float, default=30.0)
    args = parser.parse_args()
    print_header("scenario 6: budget actor throughput")
    run(args.rounds, args.pairs, args.time_limit)


if __name__ == "__main__":
    main()
