"""Scenario 1: non-streamed requests, 1 caller and 32 callers.

Throughput and p50/p95/p99 latency of ``manager.process_request`` against a direct
``requests.Session`` POST to the same nginx upstream doing the same JSON work, interleaved over
several rounds (and LiteLLM's ``Router`` when it is installed).

    python bench/bench_nonstream.py [--rounds 5] [--requests 2000] [--providers openai,...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from common import (
    MODELS,
    PROMPT,
    Phase,
    baseline_call,
    chat_request,
    drive,
    interleave,
    litellm_router,
    nginx_upstream,
    print_header,
    quiet_logging,
    router_config,
    summarize_throughput,
    verdict,
)


def contenders_for(
    provider: str,
    base_url: str,
    manager: Any,
    llm: Any,
    *,
    callers: int,
    per_caller: int,
    time_limit: float,
) -> dict[str, Callable[[], Phase]]:
    """The phase functions of one (provider, callers) comparison."""
    import requests

    def router_call() -> Callable[[], str]:
        request = chat_request(provider)
        return lambda: manager.process_request(request).content

    def baseline() -> Callable[[], str]:
        session = requests.Session()
        return lambda: baseline_call(session, provider, base_url)

    def litellm_call() -> Callable[[], str]:
        messages = [{"role": "user", "content": PROMPT}]

        def call() -> str:
            reply = llm.completion(model=MODELS[provider], messages=messages, max_tokens=256)
            return reply.choices[0].message.content

        return call

    def phase(factory: Callable[[], Callable[[], Any]], count: int) -> Callable[[], Phase]:
        return lambda: drive(factory, callers=callers, per_caller=count, time_limit=time_limit)

    out = {"router": phase(router_call, per_caller), "baseline": phase(baseline, per_caller)}
    if llm is not None:
        # LiteLLM is far slower: fewer calls per round keep the run short.
        out["litellm"] = phase(litellm_call, max(20, per_caller // 10))
    return out


def run(
    rounds: int = 5,
    requests_1: int = 2000,
    requests_32: int = 200,
    time_limit: float = 10.0,
    providers: tuple[str, ...] = ("openai",),
    callers_list: tuple[int, ...] = (1, 32),
    with_litellm: bool = True,
) -> dict[str, Any]:
    from router import AIProviderManager

    quiet_logging()
    figures: dict[str, Any] = {}
    with nginx_upstream() as upstream:
        for provider in providers:
            config = router_config(upstream.base_urls, (provider,))
            llm = litellm_router(upstream.base_urls, provider) if with_litellm else None
            with AIProviderManager(config) as manager:
                for callers in callers_list:
                    contenders = contenders_for(
                        provider,
                        upstream.base_urls[provider],
                        manager,
                        llm,
                        callers=callers,
                        per_caller=requests_1 if callers == 1 else requests_32,
                        time_limit=time_limit,
                    )
                    results = interleave(contenders, rounds=rounds)
                    title = f"non-streaming, {provider}, {callers} caller(s)"
                    rows = summarize_throughput(title, results)
                    figures[f"{provider}/{callers}"] = rows
                    ratio = rows["router"]["ratio"]
                    verdict(
                        f"throughput >= 0.8 x baseline ({callers} caller(s))",
                        ratio >= 0.8,
                        f"{ratio:.2f}x",
                    )
                    if "litellm" in rows:
                        vs = rows["router"]["throughput"] / rows["litellm"]["throughput"]
                        verdict(">= 8 x LiteLLM throughput", vs >= 8, f"{vs:.1f}x")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="per round at 1 caller")
    parser.add_argument("--requests-32", type=int, default=200, help="per caller per round")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--providers", default="openai")
    parser.add_argument("--callers", default="1,32")
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    print_header("scenario 1: non-streaming throughput and latency")
    run(
        rounds=args.rounds,
        requests_1=args.requests,
        requests_32=args.requests_32,
        time_limit=args.time_limit,
        providers=tuple(args.providers.split(",")),
        callers_list=tuple(int(c) for c in args.callers.split(",")),
        with_litellm=not args.no_litellm,
    )


if __name__ == "__main__":
    main()
