"""Run every benchmark scenario and print the figures (one child process per scenario).

    python bench/run_all.py                       # the defaults used for docs/performance.md
    python bench/run_all.py --quick               # smaller counts, for a smoke run
    python bench/run_all.py --litellm-python /path/to/venv/bin/python

LiteLLM is not a dependency of the router. To include it without touching this environment,
install it into a virtualenv that sees the system packages and pass that interpreter:

    python -m venv --system-site-packages /tmp/litellm-venv
    /tmp/litellm-venv/bin/pip install litellm
    python bench/run_all.py --litellm-python /tmp/litellm-venv/bin/python

Scenarios 1 and 2 then run under that interpreter (router, baseline and LiteLLM in the same
process and rounds); the others always run under this one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import HERE, litellm_available, print_header


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--litellm-python", help="interpreter with litellm for scenarios 1-2")
    parser.add_argument("--only", help="comma-separated scenario numbers, e.g. 1,2")
    args = parser.parse_args()
    py = sys.executable
    compare = args.litellm_python or (py if litellm_available() else None)
    lite = [] if compare else ["--no-litellm"]
    quick = args.quick
    scenarios = {
        "1": (
            compare or py,
            "bench_nonstream.py",
            (["--rounds", "3", "--requests", "500", "--requests-32", "30"] if quick else []) + lite,
        ),
        "2": (
            compare or py,
            "bench_stream.py",
            (["--rounds", "3", "--streams", "60", "--paced-streams", "3"] if quick else []) + lite,
        ),
        "3": (py, "bench_concurrent_streams.py", ["--streams", "200"] if quick else []),
        "4": (py, "bench_memory.py", ["--requests", "20000", "--repeats", "1"] if quick else []),
        "5": (
            py,
            "bench_startup.py",
            (["--rounds", "5"] if quick else [])
            + (["--litellm-python", args.litellm_python] if args.litellm_python else []),
        ),
        "6": (py, "bench_budget.py", ["--rounds", "2", "--pairs", "2000"] if quick else []),
        "7": (py, "bench_cache.py", ["--rounds", "2", "--hits", "1000"] if quick else []),
        "8": (
            py,
            "bench_capacity.py",
            (["--quick"] if quick else [])
            + (["--litellm-python", args.litellm_python] if args.litellm_python else []),
        ),
    }
    wanted = args.only.split(",") if args.only else list(scenarios)
    print_header("router benchmarks" + (" (quick)" if quick else ""))
    print(f"   LiteLLM: {'compared (' + compare + ')' if compare else 'not installed'}")
    failures = 0
    for number in wanted:
        interpreter, script, extra = scenarios[number]
        print(flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([interpreter, str(HERE / script), *extra])
        print(f"   ({script} took {time.perf_counter() - t0:.0f} s, exit {code})", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
