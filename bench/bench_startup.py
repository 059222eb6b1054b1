"""Scenario 5: start-up time.

Wall time of fresh processes, interleaved over several rounds, median per command:

- ``python -c pass`` (the interpreter alone, for scale);
- importing the router's runtime dependencies alone (requests, pydantic, pykka, pyyaml, click,
  sseclient) — the yardstick of the targets;
- ``python -c "import router"`` (target: <= 1.25 x the dependencies);
- ``from router import AIProviderManager`` (the whole runtime, for information);
- ``router --help`` (the installed console script; target: <= 1.5 x the dependencies);
- ``import litellm`` once, when it is installed.

It also checks that nothing heavy (emulator, bridge server, prometheus, redis, waitress) is
imported by ``import router``, by the runtime, or by ``router --help``.

    python bench/bench_startup.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from common import ROOT, litellm_available, median, print_header, verdict

DEPS = "import requests, pydantic, pykka, yaml, click, sseclient"
HEAVY = (
    "router.emulator",
    "router.bridge",
    "router.server",
    "prometheus_client",
    "redis",
    "waitress",
    "litellm",
)


def router_script() -> list[str]:
    """The installed console script (not a pyenv shim, which adds its own start-up)."""
    candidate = os.path.join(os.path.dirname(sys.executable), "router")
    if os.path.exists(candidate):
        return [candidate]
    found = shutil.which("router")
    return [found] if found else [sys.executable, "-m", "router.cli"]


def wall(cmd: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def heavy_modules(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return [m for m in out.stdout.strip().split(",") if m]


def run(rounds: int = 10, litellm_python: str | None = None) -> dict[str, Any]:
    py = sys.executable
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "dependencies alone": [py, "-c", DEPS],
        "import router": [py, "-c", "import router"],
        "whole runtime": [py, "-c", "from router import AIProviderManager; AIProviderManager"],
        "router --help": [*router_script(), "--help"],
    }
    for cmd in commands.values():  # warm the OS file cache and .pyc files
        wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(rounds):
        names = list(commands)
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            times[name].append(wall(commands[name]))
    medians = {name: median(values) for name, values in times.items()}
    deps = medians["dependencies alone"]
    print(f"-- start-up wall time (median of {rounds} fresh processes)")
    for name, value in medians.items():
        print(f"   {name:<22} {value * 1000:8.1f} ms   {value / deps:5.2f} x dependencies")
    if litellm_python is None and litellm_available():
        litellm_python = py
    if litellm_python:
        value = min(wall([litellm_python, "-c", "import litellm"]) for _ in range(2))
        medians["import litellm"] = value
        print(
            f"   {'import litellm':<22} {value * 1000:8.1f} ms   {value / deps:5.2f} x dependencies"
        )
    r_import = medians["import router"] / deps
    r_help = medians["router --help"] / deps
    verdict("import router <= 1.25 x dependencies", r_import <= 1.25, f"{r_import:.2f} x")
    verdict("router --help <= 1.5 x dependencies", r_help <= 1.5, f"{r_help:.2f} x")
    heavy = {
        "import router": heavy_modules("import router"),
        "whole runtime": heavy_modules(
            "from router import AIProviderManager; import router.manager"
        ),
        "CLI loaded": heavy_modules("import router.cli"),
    }
    for label, modules in heavy.items():
        verdict(f"nothing heavy imported ({label})", not modules, ", ".join(modules) or "none")
    return {"medians_s": medians, "import_ratio": r_import, "help_ratio": r_help, "heavy": heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--litellm-python", help="an interpreter that has litellm, to time 'import litellm'"
    )
    args = parser.parse_args()
    print_header("scenario 5: start-up")
    run(args.rounds, args.litellm_python)


if __name__ == "__main__":
    main()
