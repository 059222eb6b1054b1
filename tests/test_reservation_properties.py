"""Reserve / settle / release over random interleavings, through the real runtime (issue 12).

hypothesis draws a fault plan for two of the emulator's providers (server errors, overload,
429 with a short Retry-After, streams cut or failed after a few events, stalls past the read
timeout, resets, truncated bodies) and a handful of concurrent requests, each plain, submitted,
streamed to the end, closed after a few chunks, or streamed and never iterated, some with a
deadline shorter than a stall. The monthly limit is set a few worst cases above what is already
spent, so some requests are refused. Whatever happens:

- every request ends with an answer, an error chunk or a ``RouterError``;
- spend never exceeds the limit (looked at while the reservations drain, and after);
- the reserved total returns to zero — every reservation ended in a settlement or a release;
- every settled dollar is in a usage record.

One manager serves every example (its spend accumulates; each example raises the limit from
there), so an example costs its requests, not a start-up.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import router_config

from router.errors import RouterError
from router.models import AIRequest

EXAMPLES = int(os.environ.get("ROUTER_FUZZ_EXAMPLES", "0")) or 8
SHORT_DEADLINE = 0.25  # shorter than a stall (0.5 s), longer than a healthy answer
MODELS = ["fast", "gpt-4o-mini", "claude-3-haiku-20240307"]
MODES = ["call", "submit", "stream", "close", "idle"]

FAULTS = st.sampled_from(
    [
        {"kind": "server_error"},
        {"kind": "overloaded"},
        {"kind": "rate_limit", "retry_after": 0.05},
        {"kind": "cut_stream", "after_events": 1},
        {"kind": "cut_stream", "after_events": 3},
        {"kind": "stream_error", "after_events": 2},
        {"kind": "timeout", "delay": 0.5},
        {"kind": "reset"},
        {"kind": "malformed"},
    ]
)


@st.composite
def fault_plans(draw: Any) -> list[dict[str, Any]]:
    rules = []
    for provider in ("openai", "anthropic"):
        for fault in draw(st.lists(FAULTS, max_size=3)):
            probability = draw(st.sampled_from([0.3, 0.6, 1.0]))
            seed = draw(st.integers(0, 1000))
            rules.append({"provider": provider, "probability": probability, "seed": seed, **fault})
    return rules


requests_ = st.lists(
    st.fixed_dictionaries(
        {
            "mode": st.sampled_from(MODES),
            "model": st.sampled_from(MODELS),
            "strategy": st.sampled_from(["priority", "round_robin"]),
            "short": st.booleans(),
            "take": st.integers(0, 3),
        }
    ),
    min_size=1,
    max_size=6,
)


def run_one(manager: Any, spec: dict[str, Any], index: int) -> str:
    """One request as drawn; returns how it ended (a RouterError is an ending too)."""
    request = AIRequest(
        model=spec["model"],
        messages=[{"role": "user", "content": f"request {index}: one two three four five"}],
        max_tokens=16,
    )
    timeout = SHORT_DEADLINE if spec["short"] or spec["mode"] == "idle" else None
    options = {"strategy": spec["strategy"], "timeout": timeout}
    try:
        if spec["mode"] == "call":
            manager.process_request(request, **options)
        elif spec["mode"] == "submit":
            manager.submit(request, **options).get(timeout=30)
        elif spec["mode"] == "stream":
            chunks = list(manager.stream_request(request, **options))
            assert chunks and chunks[-1].is_complete
        elif spec["mode"] == "close":
            stream = manager.stream_request(request, **options)
            for _ in range(spec["take"]):
                if next(stream, None) is None:
                    break
            stream.close()
        else:  # streamed and never iterated: its deadline ends it
            stream = manager.stream_request(request, **options)
            stream._job.future.get(timeout=30)  # reading the stream would end it otherwise
    except RouterError as error:
        return type(error).__name__
    return "ok"


def budget(manager: Any) -> dict[str, Any]:
    return next(b for b in manager.get_budget_status()["budgets"] if b["budget"] == "Monthly")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_reservations_always_end_and_spend_stays_within_the_limit(make_manager, emulator):
    config = router_config(emulator, budgets=[{"name": "Monthly", "monthly_limit": 1.0}])
    for provider in config["providers"]:
        provider["timeout"] = 0.3  # a stall (0.5 s) is a provider timeout
        provider["max_retries"] = 1
        provider["retry"] = {"base_delay": 0.005, "max_delay": 0.01}
    manager = make_manager(config)
    probe = AIRequest(
        model="fast",
        messages=[{"role": "user", "content": "request 0: one two three four five"}],
        max_tokens=16,
    )
    worst = max(row["estimated_cost"] for row in manager.get_cost_recommendations(probe).values())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(rules=fault_plans(), specs=requests_, room=st.sampled_from([1.5, 3.0, 8.0]))
    def interleaving(rules: list[dict[str, Any]], specs: list[dict[str, Any]], room: float):
        emulator.set_faults(rules)
        limit = budget(manager)["spent"] + room * worst
        manager.update_budget("Monthly", monthly_limit=limit)
        with ThreadPoolExecutor(len(specs)) as pool:
            endings = list(pool.map(run_one, [manager] * len(specs), specs, range(len(specs))))
        assert len(endings) == len(specs)
        # Failures are told, settlements batched for up to 10 ms and retries scheduled: the
        # reservations drain shortly after the last caller returns. Spend is checked at
        # every look, not only at the end.
        deadline = time.monotonic() + 10.0
        while True:
            status = budget(manager)
            assert status["spent"] <= limit + 1e-12, (status, endings)
            if status["reserved"] == 0.0 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert status["reserved"] == 0.0, (status, rules, specs, endings)
        records = manager.usage_records()
        assert sum(r.cost for r in records) == pytest.approx(status["spent"], abs=1e-12)
        emulator.clear_faults()

    interleaving()
