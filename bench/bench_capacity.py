"""Scenario 8: capacity of ``router serve`` with its default settings, against a slow upstream.

- Open loop: ``--rate`` requests/s for ``--duration`` s, on schedule whatever the answers do,
  against an upstream that answers after ``--latency`` s (500/s x 1.5 s: ~750 calls in
  flight). Success rate, achieved throughput, gateway overhead (latency minus the upstream's)
  p50/p99, the gateway's CPU per request.
- Concurrent streams: ``--streams`` streams held open at once (each ``--stream-seconds`` long),
  all read to their end. How many complete, time to first byte vs the upstream's own, RSS
  growth per open stream.
- Library (``--only library``): ``--callers`` threads of one process each call
  ``manager.process_request`` at once against the same upstream, as a thread-based server
  embedding the manager does: how many calls the upstream held at once (``GET /peak``), all
  answered, overhead p50/p99 from each call's own start, and the wall time until the last
  answer (the burst's CPU: a thousand calls start at the same instant on one GIL).

Each scenario first runs a **calibration**: the same load generator against the upstream alone,
which shows what the generator and the upstream add by themselves (they must not be what is
measured). Then ``router serve`` (a child process, default options, one provider on the slow
upstream, SQLite ledger), then LiteLLM's proxy when ``--litellm-python`` points at an
environment that has ``litellm[proxy]``. The load average is printed next to every phase: the
machine is shared.

    python bench/bench_capacity.py                         # both scenarios, full size
    python bench/bench_capacity.py --quick                 # smaller
    python bench/bench_capacity.py --only open --rate 500 --duration 30 --rounds 2
    python bench/bench_capacity.py --only library --callers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from common import KEYS, PROMPT, ROOT, percentile, print_header, rss_mb, verdict
from loadgen import Result, concurrent_streams, open_loop

HERE = pathlib.Path(__file__).resolve().parent


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and its children so far (Linux /proc)."""
    total = 0.0
    for task in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            fields = pathlib.Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out += [int(entry), *children(int(entry))]
    return out


def tree_rss(pid: int) -> float:
    return sum(rss_mb(p) for p in [pid, *children(pid)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, path: str, timeout: float = 120.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if requests.get(url + path, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def slow_upstream(latency: float, stream_ttft: float, stream_seconds: float) -> Iterator[Any]:
    child = subprocess.Popen(
        [sys.executable, str(HERE / "slow_upstream.py"), "--latency", str(latency)]
        + ["--stream-ttft", str(stream_ttft), "--stream-duration", str(stream_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        yield url, child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def upstream_config(upstream: str, ledger: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI provider on the slow upstream, every other setting the router's default."""
    return {
        "providers": [
            {
                "name": "openai",
                "type": "openai",
                "api_key": KEYS["openai"],
                "base_url": upstream + "/v1",
                "timeout": 60.0,
            }
        ],
        "ledger": ledger,
        "request_timeout": 60.0,
    }


@contextlib.contextmanager
def router_serve(upstream: str, extra: list[str]) -> Iterator[tuple[str, int]]:
    """``router serve`` with its defaults in a child process."""
    import yaml

    folder = tempfile.mkdtemp(prefix="router-capacity-")
    config = upstream_config(
        upstream, {"type": "sqlite", "path": os.path.join(folder, "ledger.db")}
    )
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "--config", path, "serve", "--port", str(port)]
        + extra,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, "/healthz")
        yield url, child.pid
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def litellm_proxy(python: str, upstream: str) -> Iterator[tuple[str, int]]:
    """LiteLLM's proxy (``litellm --config``) on the same upstream, from another environment."""
    import yaml

    folder = tempfile.mkdtemp(prefix="litellm-capacity-")
    config = {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_key": KEYS["openai"],
                    "api_base": upstream + "/v1",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "num_retries": 0, "request_timeout": 60},
        # The proxy refuses to start without one; the load generator sends it as its bearer.
        "general_settings": {"master_key": KEYS["openai"]},
    }
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    port = free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    env.pop("PYTHONPATH", None)
    executable = str(pathlib.Path(python).parent / "litellm")
    child = subprocess.Popen(
        [executable, "--config", path, "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, "/health/liveliness", timeout=180)
        yield url, child.pid
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        shutil.rmtree(folder, ignore_errors=True)


def run_loop(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def body(stream: bool) -> bytes:
    payload: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEYS['openai']}"}


# --- open loop -----------------------------------------------------------------------------


def open_phase(name: str, url: str, pid: int | None, args: argparse.Namespace) -> dict[str, float]:
    cpu0 = process_cpu(pid) if pid else 0.0
    results, facts = run_loop(
        open_loop(
            url + "/v1/chat/completions",
            body(False),
            HEADERS,
            rate=args.rate,
            duration=args.duration,
            warm=int(args.rate * args.latency * 1.1),
        )
    )
    cpu = process_cpu(pid) - cpu0 if pid else 0.0
    ok = [r for r in results if r.status == 200]
    overhead = [(r.latency - args.latency) * 1000 for r in ok]
    first = min(r.scheduled for r in results)
    last = max((r.scheduled + r.latency for r in ok), default=first)
    achieved = len(ok) / max(1e-9, last - first - args.latency)
    statuses: dict[str, int] = {}
    for r in results:
        key = str(r.status) if r.status else (r.error or "error")
        statuses[key] = statuses.get(key, 0) + 1
    row = {
        "success": 100.0 * len(ok) / len(results),
        "achieved": achieved,
        "achieved_pct": 100.0 * achieved / args.rate,
        "p50": percentile(overhead, 0.5),
        "p99": percentile(overhead, 0.99),
        "max": max(overhead, default=float("nan")),
        "cpu_us": cpu / len(results) * 1e6 if pid else float("nan"),
        "gen_us": facts["cpu"] / len(results) * 1e6,
        "lag_p99": facts["lag_p99"] * 1000,
    }
    print(
        f"   {name:<12} {row['success']:7.2f}% {achieved:8.1f}/s {row['achieved_pct']:6.1f}% "
        f"{row['p50']:8.1f} {row['p99']:8.1f} {row['max']:8.1f} {row['cpu_us']:9.0f} "
        f"{row['gen_us']:8.0f} {row['lag_p99']:7.1f}  {load_average()}  {statuses}"
    )
    return row


def run_contenders(phase: Any, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """``phase(name, url, pid, args)`` for each round: the upstream alone (the calibration),
    then ``router serve``, then LiteLLM's proxy when it is available; rows per contender."""
    rows: dict[str, list[dict[str, float]]] = {}
    with slow_upstream(args.latency, args.stream_ttft, args.stream_seconds) as (upstream, _):
        with router_serve(upstream, args.serve_args) as (url, pid):
            for _ in range(args.rounds):
                rows.setdefault("upstream", []).append(phase("upstream", upstream, None, args))
                rows.setdefault("router", []).append(phase("router", url, pid, args))
        if args.litellm_python:
            try:
                with litellm_proxy(args.litellm_python, upstream) as (url, pid):
                    for _ in range(args.rounds):
                        rows.setdefault("litellm", []).append(phase("litellm", url, pid, args))
            except Exception as error:  # noqa: BLE001 - reported, the rest still counts
                print(f"   litellm proxy: {type(error).__name__}: {error}")
    return rows


def open_scenario(args: argparse.Namespace) -> list[str]:
    print(
        f"-- open loop: {args.rate:g} req/s for {args.duration:g} s, upstream answers after "
        f"{args.latency:g} s (~{args.rate * args.latency:.0f} in flight)"
    )
    print(
        f"   {'contender':<12} {'success':>8} {'achieved':>10} {'of off.':>7} {'ovh p50':>8} "
        f"{'ovh p99':>8} {'ovh max':>8} {'cpu us/r':>9} {'gen us/r':>8} {'lag p99':>7}"
    )
    rows = run_contenders(open_phase, args)
    out = []
    for row in rows["router"]:
        good = row["success"] >= 99.9 and row["achieved_pct"] >= 95 and row["p99"] <= 50
        out.append(
            verdict(
                "open loop (>= 99.9 % success, >= 95 % achieved, overhead p99 <= 50 ms)",
                good,
                f"{row['success']:.2f} %, {row['achieved_pct']:.1f} %, p99 {row['p99']:.1f} ms",
            )
        )
    return out


# --- concurrent streams --------------------------------------------------------------------


def stream_phase(
    name: str, url: str, pid: int | None, args: argparse.Namespace
) -> dict[str, float]:
    rss: dict[str, float] = {}
    if pid:
        rss["before"] = tree_rss(pid)

    def all_open() -> None:
        if pid:
            rss["open"] = tree_rss(pid)

    results: list[Result]
    results, facts = run_loop(
        concurrent_streams(
            url + "/v1/chat/completions",
            body(True),
            HEADERS,
            count=args.streams,
            ramp=args.ramp,
            timeout=args.stream_seconds * 4 + 30,
            on_all_open=all_open,
        )
    )
    if pid:
        rss["after"] = tree_rss(pid)
    # Read to the end, and ended with OpenAI's end marker (not an error event).
    complete = [r for r in results if r.status == 200 and r.tail.rstrip().endswith(b"[DONE]")]
    ttfb = [r.first_byte * 1000 for r in complete]
    per_stream = (rss.get("open", 0) - rss.get("before", 0)) * 1024 / max(1, args.streams)
    row = {
        "complete": float(len(complete)),
        "ttfb_p50": percentile(ttfb, 0.5),
        "ttfb_p99": percentile(ttfb, 0.99),
        "duration_p50": percentile([r.latency for r in complete], 0.5),
        "rss_before": rss.get("before", float("nan")),
        "rss_open": rss.get("open", float("nan")),
        "rss_after": rss.get("after", float("nan")),
        "kib_per_stream": per_stream if pid else float("nan"),
    }
    errors: dict[str, int] = {}
    for r in results:
        if r not in complete:
            key = str(r.status) if r.status else (r.error or "error")
            errors[key] = errors.get(key, 0) + 1
    print(
        f"   {name:<12} {len(complete):5d}/{args.streams:<5d} {row['ttfb_p50']:9.1f} "
        f"{row['ttfb_p99']:9.1f} {row['duration_p50']:8.2f} "
        f"{row['rss_before']:7.1f} {row['rss_open']:7.1f} {row['rss_after']:7.1f} "
        f"{row['kib_per_stream']:8.1f}  {load_average()}  {errors or ''}"
    )
    return row


def stream_scenario(args: argparse.Namespace) -> list[str]:
    print(
        f"-- {args.streams} concurrent streams ({args.stream_seconds:g} s each, first event after "
        f"{args.stream_ttft:g} s), opened over {args.ramp:g} s"
    )
    print(
        f"   {'contender':<12} {'complete':>11} {'ttfb p50':>9} {'ttfb p99':>9} {'dur p50':>8} "
        f"{'RSS MB':>7} {'@open':>7} {'after':>7} {'KiB/str':>8}"
    )
    rows = run_contenders(stream_phase, args)
    out = []
    for base, row in zip(rows["upstream"], rows["router"], strict=True):
        extra = row["ttfb_p99"] - base["ttfb_p99"]
        good = row["complete"] == args.streams and extra <= 50
        out.append(
            verdict(
                "concurrent streams (all complete, first byte p99 within 50 ms of upstream's)",
                good,
                f"{row['complete']:.0f}/{args.streams}, p99 +{extra:.1f} ms, "
                f"{row['kib_per_stream']:.0f} KiB RSS per open stream",
            )
        )
    return out


# --- the library: a thread-based server embedding the manager ------------------------------


def library_scenario(args: argparse.Namespace) -> list[str]:
    from router.manager import AIProviderManager

    callers = args.callers
    print(
        f"-- library: {callers} threads call manager.process_request at once, upstream answers "
        f"after {args.latency:g} s (default provider settings)"
    )
    request = json.loads(body(False))
    with slow_upstream(args.latency, args.stream_ttft, args.stream_seconds) as (upstream, _):

        def peak() -> int:
            with urllib.request.urlopen(upstream + "/peak", timeout=10) as answer:
                return int(json.load(answer)["peak"])

        with AIProviderManager(upstream_config(upstream, {"type": "memory"})) as manager:
            manager.process_request(request)  # warm: imports, the first connection
            peak()
            start = threading.Barrier(callers + 1)
            latencies: list[float] = []
            errors: dict[str, int] = {}

            def call() -> None:
                start.wait()
                began = time.perf_counter()
                try:
                    manager.process_request(request, timeout=60)
                    latencies.append(time.perf_counter() - began)
                except Exception as error:  # noqa: BLE001 - counted and printed
                    name = type(error).__name__
                    errors[name] = errors.get(name, 0) + 1

            threading.stack_size(256 * 1024)  # a server's request threads need little
            pool = [threading.Thread(target=call) for _ in range(callers)]
            threading.stack_size(0)
            for thread in pool:
                thread.start()
            cpu0 = time.process_time()
            start.wait()
            began = time.perf_counter()
            for thread in pool:
                thread.join(120)
            wall = time.perf_counter() - began
            cpu = time.process_time() - cpu0
            held = peak()
    overhead = sorted((t - args.latency) * 1000 for t in latencies)
    print(
        f"   {'callers':>7} {'answered':>8} {'upstream peak':>13} {'ovh p50':>8} {'ovh p99':>8} "
        f"{'wall s':>7} {'cpu us/call':>11}"
    )
    print(
        f"   {callers:7d} {len(latencies):8d} {held:13d} {percentile(overhead, 0.5):8.1f} "
        f"{percentile(overhead, 0.99):8.1f} {wall:7.2f} {cpu * 1e6 / callers:11.0f}  "
        f"{load_average()}  {errors or ''}"
    )
    good = len(latencies) == callers and held == callers
    return [
        verdict(
            f"library: {callers} request threads keep {callers} calls in flight",
            good,
            f"{len(latencies)}/{callers} answered, upstream held {held} at once, overhead p99 "
            f"{percentile(overhead, 0.99):.0f} ms",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", default="open,streams,library", help="open, streams, library, or a list"
    )
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=1.5)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--stream-ttft", type=float, default=0.5)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to open the streams")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--callers", type=int, default=1000, help="library: request threads")
    parser.add_argument("--quick", action="store_true", help="rate 200 for 10 s, 300 streams")
    parser.add_argument(
        "--serve-args", default="", help="extra `router serve` options, e.g. '--workers 2'"
    )
    parser.add_argument(
        "--litellm-python", default=None, help="python of an environment with litellm[proxy]"
    )
    args = parser.parse_args()
    if args.quick:
        args.rate, args.duration, args.streams, args.callers = 200.0, 10.0, 300, 300
    args.serve_args = args.serve_args.split()
    print_header("bench_capacity: router serve (defaults) against a slow upstream")
    print(f"   serve options: {args.serve_args or '(defaults)'} | {load_average()}")
    lines = []
    if "open" in args.only:
        lines += open_scenario(args)
    if "streams" in args.only:
        lines += stream_scenario(args)
    if "library" in args.only:
        lines += library_scenario(args)
    print("-- verdicts")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
