"""Scenario 3: 500 concurrent streams through one manager.

500 caller threads each open a stream at once against the paced emulator (in a child process,
10 ms per event, ~45 events per stream) and read it to the end. Every stream must complete;
the router's own thread count stays at its configured bound (actors + worker pool, whatever
the number of callers) and RSS is sampled throughout.

    python bench/bench_concurrent_streams.py [--streams 500] [--max-concurrency 128]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from common import (
    chat_request,
    emulator_process,
    print_header,
    quiet_logging,
    router_config,
    rss_mb,
    verdict,
)

ROUTER_THREAD_PREFIXES = ("router-", "SupervisorActor", "ProviderActor", "BudgetActor")


def router_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(ROUTER_THREAD_PREFIXES))


def run(
    streams: int = 500,
    max_concurrency: int = 128,
    token_delay: float = 0.01,
    time_limit: float = 180.0,
) -> dict[str, Any]:
    from router import AIProviderManager

    quiet_logging()
    with emulator_process(token_delay=token_delay) as emulator:
        config = router_config(emulator.base_urls, ("openai",), max_concurrency=max_concurrency)
        config["providers"][0]["timeout"] = 120.0
        config["request_timeout"] = time_limit
        with AIProviderManager(config) as manager:
            request = chat_request("openai", stream=True)
            list(manager.stream_request(request))  # warm-up: one stream end to end
            rss_start = rss_mb()
            threads_start = router_threads()
            start = threading.Barrier(streams + 1)
            done = threading.Semaphore(0)
            lock = threading.Lock()
            results = {"complete": 0, "errors": 0, "chunks": 0}
            errors: list[str] = []

            def caller() -> None:
                chunks = 0
                complete = False
                try:
                    start.wait(timeout=60)
                    for chunk in manager.stream_request(request):
                        chunks += 1
                        if chunk.is_complete and chunk.error is None:
                            complete = True
                except Exception as exc:  # counted, and the first few shown
                    with lock:
                        if len(errors) < 3:
                            errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    with lock:
                        results["complete" if complete else "errors"] += 1
                        results["chunks"] += chunks
                    done.release()

            callers = [
                threading.Thread(target=caller, daemon=True, name=f"caller-{i}")
                for i in range(streams)
            ]
            for thread in callers:
                thread.start()
            t0 = time.perf_counter()
            start.wait(timeout=60)
            peak_rss, peak_threads, finished = rss_start, threads_start, 0
            deadline = time.monotonic() + time_limit
            while finished < streams and time.monotonic() < deadline:
                if done.acquire(timeout=0.2):
                    finished += 1
                peak_rss = max(peak_rss, rss_mb())
                peak_threads = max(peak_threads, router_threads())
            elapsed = time.perf_counter() - t0
            for thread in callers:
                thread.join(timeout=5)
            rss_end = rss_mb()
    figures = {
        "streams": streams,
        "complete": results["complete"],
        "errors": results["errors"],
        "elapsed_s": elapsed,
        "chunks": results["chunks"],
        "router_threads_start": threads_start,
        "router_threads_peak": peak_threads,
        "thread_bound": max_concurrency + 4,  # workers, 3 actors, the scheduler
        "rss_start_mb": rss_start,
        "rss_peak_mb": peak_rss,
        "rss_end_mb": rss_end,
    }
    print(
        f"-- {streams} concurrent streams (emulator {token_delay * 1000:.0f} ms/event, "
        f"max_concurrency {max_concurrency})"
    )
    print(
        f"   complete {results['complete']}/{streams}, errors {results['errors']}, "
        f"{results['chunks']} chunks in {elapsed:.1f} s"
    )
    print(
        f"   router threads: {threads_start} before, peak {peak_threads} "
        f"(bound {figures['thread_bound']}; {streams} caller threads are the benchmark's own)"
    )
    print(f"   RSS: {rss_start:.1f} MB before, peak {peak_rss:.1f} MB, after {rss_end:.1f} MB")
    for line in errors:
        print(f"   error: {line}")
    verdict("all streams complete", results["complete"] == streams, f"{results['complete']}")
    verdict(
        "router threads bounded",
        peak_threads <= figures["thread_bound"],
        f"peak {peak_threads} <= {figures['thread_bound']}",
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--max-concurrency", type=int, default=128)
    parser.add_argument("--token-delay", type=float, default=0.01)
    parser.add_argument("--time-limit", type=float, default=180.0)
    args = parser.parse_args()
    print_header("scenario 3: concurrent streams through one manager")
    run(args.streams, args.max_concurrency, args.token_delay, args.time_limit)


if __name__ == "__main__":
    main()
