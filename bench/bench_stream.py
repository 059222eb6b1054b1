"""Scenario 2: streaming — time to first chunk, full-stream throughput, inter-chunk fidelity.

- Unpaced: nginx serves a fixed ~40-event SSE body; every contender streams it whole.
  Time to first content chunk and streams/s, router vs the direct baseline (same parsing work),
  one caller, then ``--callers`` (32) callers at once (CPU-bound: streams per CPU).
- Paced: the emulator (in a child process) sends one event every 20 ms; the gaps between the
  content chunks the caller sees must match the gaps the upstream sent.

    python bench/bench_stream.py [--rounds 5] [--streams 200] [--paced-streams 8]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from typing import Any

from common import (
    MODELS,
    PROMPT,
    Phase,
    baseline_stream,
    chat_request,
    drive,
    emulator_process,
    interleave,
    litellm_router,
    median,
    nginx_upstream,
    percentile,
    print_header,
    quiet_logging,
    router_config,
    summarize_throughput,
    verdict,
)

PACING = 0.020  # seconds between events from the paced upstream


def timed_streams(
    open_stream: Callable[[], Iterator[str]], *, count: int, time_limit: float
) -> Phase:
    """Run up to ``count`` streams one after another; record TTFC and the inter-chunk gaps."""
    phase = Phase(extra={"ttfc": [], "gaps": [], "chunks": []})
    deadline = time.perf_counter() + time_limit
    cpu0 = time.process_time()
    t_start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        first = last = None
        chunks = 0
        try:
            for _piece in open_stream():
                now = time.perf_counter()
                if first is None:
                    first = now
                else:
                    phase.extra["gaps"].append(now - last)  # type: ignore[operator]
                last = now
                chunks += 1
        except Exception:
            phase.errors += 1
            continue
        phase.latencies.append(time.perf_counter() - t0)
        phase.extra["ttfc"].append((first or time.perf_counter()) - t0)
        phase.extra["chunks"].append(float(chunks))
        if time.perf_counter() > deadline:
            break
    phase.elapsed = time.perf_counter() - t_start
    phase.cpu = time.process_time() - cpu0
    phase.count = len(phase.latencies)
    return phase


def stream_contenders(
    provider: str, base_url: str, manager: Any, llm: Any, *, count: int, time_limit: float
) -> dict[str, Callable[[], Phase]]:
    import requests

    session = requests.Session()
    request = chat_request(provider, stream=True)

    def router_stream() -> Iterator[str]:
        for chunk in manager.stream_request(request):
            if chunk.content:
                yield chunk.content

    def baseline() -> Iterator[str]:
        yield from baseline_stream(session, provider, base_url)

    def litellm_stream() -> Iterator[str]:
        reply = llm.completion(
            model=MODELS[provider],
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=256,
            stream=True,
        )
        for chunk in reply:
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                yield text

    out = {
        "router": lambda: timed_streams(router_stream, count=count, time_limit=time_limit),
        "baseline": lambda: timed_streams(baseline, count=count, time_limit=time_limit),
    }
    if llm is not None:
        out["litellm"] = lambda: timed_streams(
            litellm_stream, count=max(5, count // 10), time_limit=time_limit
        )
    return out


def parallel_contenders(
    provider: str, base_url: str, manager: Any, *, callers: int, count: int, time_limit: float
) -> dict[str, Callable[[], Phase]]:
    """Whole streams read by ``callers`` threads at once (each caller its own session)."""
    import requests

    request = chat_request(provider, stream=True)

    def router_call() -> Callable[[], Any]:
        def call() -> None:
            for _chunk in manager.stream_request(request):
                pass

        return call

    def baseline_call() -> Callable[[], Any]:
        session = requests.Session()

        def call() -> None:
            for _piece in baseline_stream(session, provider, base_url):
                pass

        return call

    per_caller = max(1, count // callers)
    return {
        "router": lambda: drive(
            router_call, callers=callers, per_caller=per_caller, time_limit=time_limit
        ),
        "baseline": lambda: drive(
            baseline_call, callers=callers, per_caller=per_caller, time_limit=time_limit
        ),
    }


def ttfc_table(title: str, results: dict[str, list[Phase]]) -> dict[str, float]:
    print(f"-- {title}: time to first content chunk")
    out = {}
    for name, phases in results.items():
        values = [x for p in phases for x in p.extra["ttfc"]]
        out[name] = median(values) * 1000
        print(
            f"   {name:<10} median {out[name]:8.3f} ms   p95 {percentile(values, 0.95) * 1000:8.3f} ms"
        )
    return out


def gap_table(results: dict[str, list[Phase]]) -> dict[str, dict[str, float]]:
    print(f"-- paced upstream ({PACING * 1000:.0f} ms per event): gaps between content chunks")
    out = {}
    for name, phases in results.items():
        gaps = [x for p in phases for x in p.extra["gaps"]]
        dev = [abs(g - PACING) for g in gaps]
        row = {
            "median_gap_ms": median(gaps) * 1000,
            "p95_gap_ms": percentile(gaps, 0.95) * 1000,
            "median_dev_ms": median(dev) * 1000,
            "p95_dev_ms": percentile(dev, 0.95) * 1000,
            "gaps": float(len(gaps)),
        }
        out[name] = row
        print(
            f"   {name:<10} median gap {row['median_gap_ms']:6.2f} ms  p95 gap "
            f"{row['p95_gap_ms']:6.2f} ms  |gap-pacing| median {row['median_dev_ms']:5.2f} ms "
            f"p95 {row['p95_dev_ms']:5.2f} ms  ({int(row['gaps'])} gaps)"
        )
    return out


def run(
    rounds: int = 5,
    streams: int = 200,
    paced_streams: int = 8,
    time_limit: float = 20.0,
    provider: str = "openai",
    with_litellm: bool = True,
    callers: int = 32,
) -> dict[str, Any]:
    from router import AIProviderManager

    quiet_logging()
    figures: dict[str, Any] = {}
    with nginx_upstream() as upstream:
        config = router_config(upstream.stream_base_urls, (provider,))
        llm = litellm_router(upstream.stream_base_urls, provider) if with_litellm else None
        with AIProviderManager(config) as manager:
            contenders = stream_contenders(
                provider,
                upstream.stream_base_urls[provider],
                manager,
                llm,
                count=streams,
                time_limit=time_limit,
            )
            results = interleave(contenders, rounds=rounds)
            many = interleave(
                parallel_contenders(
                    provider,
                    upstream.stream_base_urls[provider],
                    manager,
                    callers=callers,
                    count=streams,
                    time_limit=time_limit,
                ),
                rounds=rounds,
            )
        rows = summarize_throughput(f"streaming from nginx, {provider}: whole streams", results)
        ttfc = ttfc_table("streaming from nginx", results)
        figures["nginx"] = {"throughput": rows, "ttfc_ms": ttfc}
        ratio = rows["router"]["ratio"]
        verdict("stream throughput >= 0.9 x baseline, 1 caller", ratio >= 0.9, f"{ratio:.2f}x")
        many_rows = summarize_throughput(
            f"streaming from nginx, {provider}: whole streams, {callers} callers", many
        )
        figures["nginx_parallel"] = {"throughput": many_rows}
        ratio = many_rows["router"]["ratio"]
        verdict(
            f"stream throughput >= 0.9 x baseline, {callers} callers", ratio >= 0.9, f"{ratio:.2f}x"
        )
        diff = ttfc["router"] - ttfc["baseline"]
        verdict("time to first chunk within 1 ms of baseline", diff <= 1.0, f"{diff:+.3f} ms")
        if "litellm" in rows:
            vs = rows["router"]["throughput"] / rows["litellm"]["throughput"]
            verdict(">= 8 x LiteLLM stream throughput", vs >= 8, f"{vs:.1f}x")

    with emulator_process(ttft=0.05, token_delay=PACING) as emulator:
        config = router_config(emulator.base_urls, (provider,))
        llm = litellm_router(emulator.base_urls, provider) if with_litellm else None
        with AIProviderManager(config) as manager:
            contenders = stream_contenders(
                provider,
                emulator.base_urls[provider],
                manager,
                llm,
                count=paced_streams,
                time_limit=time_limit,
            )
            if "litellm" in contenders:
                contenders["litellm"] = stream_contenders(
                    provider,
                    emulator.base_urls[provider],
                    manager,
                    llm,
                    count=paced_streams,
                    time_limit=time_limit,
                )["litellm"]
            results = interleave(contenders, rounds=max(2, rounds // 2), warmup=False)
        ttfc = ttfc_table("paced emulator (50 ms to first byte)", results)
        gaps = gap_table(results)
        figures["paced"] = {"ttfc_ms": ttfc, "gaps": gaps}
        diff = ttfc["router"] - ttfc["baseline"]
        verdict(
            "paced: time to first chunk within 1 ms of baseline", diff <= 1.0, f"{diff:+.3f} ms"
        )
        dev = gaps["router"]["p95_dev_ms"]
        verdict(
            "paced: inter-chunk gaps within 5 ms of the pacing (p95)", dev <= 5.0, f"{dev:.2f} ms"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=200, help="nginx streams per round")
    parser.add_argument("--paced-streams", type=int, default=6, help="paced streams per round")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--provider", default="openai")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--callers", type=int, default=32, help="callers of the parallel phase")
    args = parser.parse_args()
    print_header("scenario 2: streaming")
    run(
        rounds=args.rounds,
        streams=args.streams,
        paced_streams=args.paced_streams,
        time_limit=args.time_limit,
        provider=args.provider,
        with_litellm=not args.no_litellm,
        callers=args.callers,
    )


if __name__ == "__main__":
    main()
