"""Scenario 4: memory.

Each figure is measured in a fresh child process so one measurement cannot inflate another:

- RSS of a process with the manager started and 3 providers, and the increment per
  additional provider (managers with 3 and 13 provider instances; the difference / 10);
- RSS after 5,000 requests vs after 50,000 requests against nginx (no growth beyond 5 %).

    python bench/bench_memory.py [--requests 50000] [--callers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from common import HERE, ROOT, print_header, verdict

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
from common import *
mode, arg = sys.argv[1], int(sys.argv[2])
quiet_logging()
out = {{"rss_python": rss_mb()}}
from router import AIProviderManager
import router.manager  # the whole runtime imported
out["rss_imported"] = rss_mb()
if mode == "providers":
    kinds = ["openai", "anthropic", "google"]
    urls = {{k: "http://127.0.0.1:9/" + k for k in kinds}}
    config = router_config(urls, tuple(kinds), max_concurrency=16)
    for i in range(arg - 3):
        extra = dict(config["providers"][i % 3])
        extra["name"] = f"{{extra['type']}}-{{i}}"
        config["providers"].append(extra)
    with AIProviderManager(config):
        gc.collect(); time.sleep(0.2)
        out["rss_started"] = rss_mb()
else:
    import ctypes, ctypes.util
    try:  # SQLite's own heap (its page cache fills to its 2 MB default, then stays)
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite_mb = lambda: lib.sqlite3_memory_used() / 1048576
    except Exception:
        sqlite_mb = lambda: float("nan")
    callers, total = 4, arg
    checkpoints = sorted({{5000, 10000, total // 2, total}})
    with nginx_upstream() as upstream:
        with AIProviderManager(router_config(upstream.base_urls, ("openai",))) as manager:
            request = chat_request("openai")
            done = 0
            def call():
                return lambda: manager.process_request(request)
            for mark in checkpoints:
                per = (mark - done) // callers
                drive(call, callers=callers, per_caller=per, time_limit=600)
                done += per * callers
                gc.collect()
                out[f"rss_after_{{mark}}"] = rss_mb()
                out[f"sqlite_after_{{mark}}"] = sqlite_mb()
            out["checkpoints"] = checkpoints
            out["requests"] = done
print(json.dumps(out))
"""


def child(mode: str, arg: int) -> dict[str, Any]:
    code = CHILD.format(bench=str(HERE), root=str(ROOT))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-c", code, mode, str(arg)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    if run.returncode != 0:
        raise RuntimeError(f"child failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def run(requests: int = 50_000, repeats: int = 3) -> dict[str, Any]:
    three = [child("providers", 3) for _ in range(repeats)]
    thirteen = [child("providers", 13) for _ in range(repeats)]
    base = sorted(r["rss_started"] for r in three)[repeats // 2]
    big = sorted(r["rss_started"] for r in thirteen)[repeats // 2]
    imported = sorted(r["rss_imported"] for r in three)[repeats // 2]
    python = sorted(r["rss_python"] for r in three)[repeats // 2]
    per_provider = (big - base) / 10
    print("-- RSS with the manager started (median of child processes)")
    print(f"   python + bench helpers        {python:7.1f} MB")
    print(f"   + router runtime imported     {imported:7.1f} MB")
    print(f"   + manager with 3 providers    {base:7.1f} MB")
    print(f"   + manager with 13 providers   {big:7.1f} MB")
    print(f"   increment per extra provider  {per_provider:7.2f} MB")
    verdict("per-provider increment < 2 MB", per_provider < 2.0, f"{per_provider:.2f} MB")
    growth = child("requests", requests)
    first, last = growth["rss_after_5000"], growth[f"rss_after_{requests}"]
    change = (last - first) / first * 100
    print("-- RSS after requests (4 callers, nginx upstream, SQLite ledger)")
    for mark in growth["checkpoints"]:
        print(
            f"   after {mark:>6,}: RSS {growth[f'rss_after_{mark}']:6.1f} MB  "
            f"(SQLite's heap {growth[f'sqlite_after_{mark}']:.2f} MB)"
        )
    print(
        f"   after 5,000: {first:.1f} MB   after {growth['requests']:,}: {last:.1f} MB   ({change:+.1f} %)"
    )
    verdict("no RSS growth beyond 5 % from 5k to 50k requests", change <= 5.0, f"{change:+.1f} %")
    return {
        "rss_imported_mb": imported,
        "rss_3_providers_mb": base,
        "rss_13_providers_mb": big,
        "per_provider_mb": per_provider,
        "rss_after_5000_mb": first,
        "rss_after_total_mb": last,
        "requests": growth["requests"],
        "growth_pct": change,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_header("scenario 4: memory")
    run(args.requests, args.repeats)


if __name__ == "__main__":
    main()
