"""Capacity: the router adds no cap of its own on calls in flight, and the emulator counts them.

The upstream (the emulator, over real sockets) holds every answer for a while; the callers
start together, so the number answered at once is what the router let through.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support import router_config

from router.models import AIRequest

CALLERS = 120  # well past the old hidden default of 16 per provider


def _ask() -> AIRequest:
    return AIRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_many_waiting_callers_keep_as_many_calls_in_flight_by_default(make_manager, emulator):
    emulator.set_pacing("openai", ttft=2.0)
    manager = make_manager()
    assert manager.config.providers[0].max_concurrency is None
    start = threading.Barrier(CALLERS)

    def call(_: int) -> str:
        start.wait()
        return manager.process_request(_ask(), timeout=60).provider_name

    with ThreadPoolExecutor(CALLERS) as pool:
        served = list(pool.map(call, range(CALLERS)))
    assert served == ["openai"] * CALLERS
    counters = emulator.counters()["openai"]
    assert counters["ok"] == CALLERS and counters["in_flight"] == 0
    # Held 2 s each and started together: all of them were answered at the same time.
    assert counters["peak_in_flight"] == CALLERS
    assert manager.provider_health()["openai"].max_concurrency is None


def test_a_max_concurrency_the_user_sets_is_still_a_cap(make_manager, emulator):
    emulator.set_pacing("openai", ttft=0.3)
    config = router_config(emulator)
    config["providers"][0]["max_concurrency"] = 3
    manager = make_manager(config)
    start = threading.Barrier(12)

    def call(_: int) -> str:
        start.wait()
        return manager.process_request(_ask(), timeout=60).provider_name

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(call, range(12))) == ["openai"] * 12
    assert emulator.counters()["openai"]["peak_in_flight"] == 3
