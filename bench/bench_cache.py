"""Scenario 7: the response cache's hit path — router CPU per hit (target: under 0.2 ms).

A hit runs entirely on the caller's thread (validate, key, store lookup, decode), so its cost is
the caller thread's CPU time (``time.thread_time``). Measured interleaved over several rounds:

- ``validate only``: ``coerce_request`` of the same dict (what any request pays; the floor),
- ``hit, memory store`` / ``hit, SQLite store`` (the default store) / ``hit, Redis store`` (when
  ``redis-server`` is installed): ``manager.process_request(dict)`` answered from the cache
  (a repeated hit: the answer is kept decoded in memory, ``recent_entries``),
- ``hit, <store>, read+decode``: the same with ``recent_entries: 0``, so every hit reads the
  store and checks and decodes the entry (the first hit on another process's entry),
- ``miss (cache: false)``: the same request sent to the in-process emulator (the caller thread's
  CPU only: the emulator's threads are not counted), what a hit saves.

    python bench/bench_cache.py [--rounds 5] [--hits 5000] [--misses 300]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from common import chat_request, emulator_upstream, print_header, quiet_logging, router_config


def measure(call: Callable[[], Any], count: int, time_limit: float) -> tuple[float, float]:
    """(thread CPU µs, wall µs) per call over up to ``count`` calls."""
    deadline = time.perf_counter() + time_limit
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    done = 0
    for _ in range(count):
        call()
        done += 1
        if time.perf_counter() > deadline:
            break
    return (
        (time.thread_time() - cpu0) / done * 1e6,
        (time.perf_counter() - wall0) / done * 1e6,
    )


@contextlib.contextmanager
def redis_url() -> Iterator[str | None]:
    if shutil.which("redis-server") is None:
        yield None
        return
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from redis_server import RedisServer

    server = RedisServer(tempfile.mkdtemp(prefix="router-bench-redis-")).start()
    try:
        yield server.url
    finally:
        server.stop(save=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hits", type=int, default=5000, help="hits per contender and round")
    parser.add_argument("--misses", type=int, default=300, help="misses per round")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per phase")
    args = parser.parse_args()
    quiet_logging()
    print_header("7. response cache: router CPU per hit")

    from router.manager import AIProviderManager, coerce_request

    request = chat_request("openai")
    with emulator_upstream() as emulator, redis_url() as url:
        managers: dict[str, AIProviderManager] = {}
        base = router_config(emulator.base_urls, ("openai",))
        stores = {"memory": "memory", "SQLite": "sqlite"}
        if url is not None:
            stores["Redis"] = "redis"
        for label, store in stores.items():
            for recent in (256, 0):
                cache = {"enabled": True, "store": store, "recent_entries": recent}
                config = dict(base, cache=cache)
                if store == "redis":
                    config["ledger"] = {"type": "redis", "url": url, "key_prefix": "bench"}
                name = f"hit, {label} store" + ("" if recent else ", read+decode")
                managers[name] = manager = AIProviderManager(config).start()
                manager.process_request(request)
                assert manager.process_request(request).cached
        uncached = {**request, "cache": False}
        contenders: dict[str, tuple[Callable[[], Any], int]] = {
            "validate only": (lambda: coerce_request(request), args.hits),
            **{
                name: (lambda m=m: m.process_request(request), args.hits)
                for name, m in managers.items()
            },
            "miss (cache: false)": (
                lambda: managers["hit, SQLite store"].process_request(uncached),
                args.misses,
            ),
        }
        if url is not None:  # what the Redis client alone costs per GET
            import redis

            client = redis.Redis.from_url(url)
            contenders["redis-py GET alone"] = (lambda: client.get("bench:cache:x"), args.hits)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                call, count = contenders[name]
                results[name].append(measure(call, count, args.time_limit))
        for manager in managers.values():
            manager.stop()

    floor = statistics.median(cpu for cpu, _ in results["validate only"])
    print(f"{'contender':<32} {'CPU µs/call':>12} {'wall µs/call':>13} {'over validation':>16}")
    for name in names:
        cpu = statistics.median(c for c, _ in results[name])
        wall = statistics.median(w for _, w in results[name])
        print(f"{name:<32} {cpu:>12.1f} {wall:>13.1f} {cpu - floor:>14.1f}µs")

    def cpu_of(name: str) -> float:
        return statistics.median(c for c, _ in results[name])

    repeated = max(cpu_of(n) for n in names if n.startswith("hit") and "read" not in n)
    first = max(cpu_of(n) for n in names if n.startswith("hit") and "read" in n)
    miss = cpu_of("miss (cache: false)")
    verdict = "met" if repeated < 200.0 else "NOT met"
    print(
        f"\nslowest repeated hit: {repeated:.0f} µs of router CPU (target < 200 µs: {verdict}); "
        f"slowest store read + decode: {first:.0f} µs; "
        f"a miss costs the caller's thread {miss:.0f} µs ({miss / repeated:.0f}x a hit)"
    )


if __name__ == "__main__":
    main()
