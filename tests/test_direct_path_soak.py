"""The direct path under concurrency and faults: callers that plan, admit themselves through the
open door and run their attempts on their own threads, with retries handed back by the actor.

One provider, no budget: a first attempt crosses no actor while the door is open; a retry is
admitted by the provider actor and handed to the same waiting caller.
Bounded in count (16 callers x 40 requests) and time (every join has a timeout).
"""

from __future__ import annotations

import threading
from typing import Any

from support import router_config

from router.errors import RouterError

CALLERS = 16
PER_CALLER = 40


def one_provider_config(emulator: Any) -> dict[str, Any]:
    config = router_config(emulator)
    config["providers"] = [config["providers"][0]]  # openai only: one candidate per request
    config["model_groups"] = {}
    # A breaker that seldom opens: with one candidate an open circuit answers at once, and the
    # callers would run through their requests in a few milliseconds (the breaker's own
    # behaviour under concurrency is tested in test_open_door and test_runtime).
    config["providers"][0]["circuit_breaker"] = {"failure_threshold": 12, "recovery_timeout": 0.05}
    config["providers"][0]["max_retries"] = 2
    config["providers"][0]["max_concurrency"] = 8  # fewer slots than callers: some wait
    return config


def test_direct_path_soak_books_every_answer_once_and_leaves_nothing_in_flight(
    make_manager, emulator
):
    for kind, probability in (
        ("server_error", 0.12),
        ("reset", 0.06),
        ("malformed", 0.04),
        ("cut_stream", 0.10),
    ):
        emulator.add_fault(provider="openai", kind=kind, probability=probability, seed=7)
    manager = make_manager(one_provider_config(emulator))
    lock = threading.Lock()
    answers: list[Any] = []
    errors: list[RouterError] = []
    unexpected: list[BaseException] = []

    def caller(index: int) -> None:
        for number in range(PER_CALLER):
            request = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"soak {index} {number}"}],
                "max_tokens": 16,
            }
            try:
                if number % 2:
                    stream = manager.stream_request(request)
                    chunks = list(stream)
                    if chunks and chunks[-1].error is None:
                        answer = stream.future.get(timeout=30)
                        with lock:
                            answers.append(answer)
                    else:
                        with lock:
                            errors.append(RouterError(chunks[-1].error if chunks else "empty"))
                else:
                    answer = manager.process_request(request)
                    with lock:
                        answers.append(answer)
            except RouterError as error:
                with lock:
                    errors.append(error)
            except BaseException as error:  # reported below: only typed errors are allowed
                with lock:
                    unexpected.append(error)

    threads = [
        threading.Thread(target=caller, args=(i,), name=f"direct-soak-{i}") for i in range(CALLERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a caller hung"

    assert not unexpected, unexpected[:3]
    assert len(answers) + len(errors) == CALLERS * PER_CALLER
    assert len(answers) > CALLERS * PER_CALLER // 2  # faults are the minority
    health = manager.provider_health()["openai"]
    assert health.in_flight == 0
    assert health.successes >= len(answers)

    records = manager.usage_records(limit=10_000)
    successes = [r for r in records if r.outcome == "success"]
    # Exactly one success record per answer, and the same cost.
    assert sorted(r.provider_request_id for r in successes) == sorted(a.request_id for a in answers)
    assert len({r.request_id for r in records}) == len(records)
    booked = sum(r.cost for r in successes)
    assert abs(booked - sum(a.cost for a in answers)) < 1e-9
    usage = manager.get_manager_stats()["usage_stats"]
    assert usage["total_requests"] == CALLERS * PER_CALLER
    assert usage["pending_requests"] == 0
