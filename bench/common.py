"""Shared pieces of the benchmark scripts: machine header, upstreams, contenders, statistics.

Every scenario runs the router and a *baseline* in the same process and run, interleaved over
several rounds, and prints medians and the ratio router/baseline. The baseline is what a caller
without the router would write: a ``requests.Session`` POST to the same upstream doing the same
JSON work (build the body, ``json.dumps`` it, parse the answer and pull out content and usage).
When LiteLLM is importable its ``Router`` runs against the same upstream in the same rounds.

Every loop is bounded twice: by a count and by a wall-clock limit.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
# ROUTER_BENCH_SRC points at another checkout (e.g. a git worktree of an older commit) to
# measure that version of the router with these same scripts: an A/B comparison.
ROOT = pathlib.Path(os.environ.get("ROUTER_BENCH_SRC") or HERE.parent).resolve()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import requests  # noqa: E402

KEYS = {
    "openai": "sk-bench-openai-0123456789abcdef",
    "anthropic": "sk-ant-bench-0123456789abcdef",
    "google": "AIza-bench-0123456789abcdef",
}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-haiku-20240307",
    "google": "gemini-1.5-flash",
}
PROMPT = " ".join(f"word{i}" for i in range(40))


# --- machine -------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    versions = {}
    for name in ("requests", "pydantic", "pykka", "urllib3"):
        with contextlib.suppress(Exception):
            versions[name] = __import__(name).__version__
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def print_header(title: str) -> None:
    info = machine()
    print(f"== {title}")
    print(
        f"   {info['date']} | {info['nproc']} CPU ({info['cpu']}) | Python {info['python']} | "
        + " ".join(f"{k} {info[k]}" for k in ("requests", "pydantic", "pykka") if k in info)
    )


def litellm_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("litellm") is not None
    except Exception:
        return False


# --- upstreams -----------------------------------------------------------------------------------


@contextlib.contextmanager
def nginx_upstream() -> Iterator[Any]:
    """The fixed-body nginx (bench/nginx); raises with the install hint when nginx is missing."""
    from nginx.nginx import Nginx

    with Nginx() as server:
        yield server


@contextlib.contextmanager
def emulator_upstream(**pacing: float) -> Iterator[Any]:
    """The in-process emulator, optionally paced (``ttft=``, ``token_delay=`` seconds)."""
    from router.emulator import EmulatorServer

    with EmulatorServer() as server:
        if pacing:
            server.set_pacing(None, **pacing)
        yield server


@contextlib.contextmanager
def emulator_process(ttft: float = 0.0, token_delay: float = 0.0) -> Iterator[Any]:
    """The emulator in a child process (its threads must not share our GIL), paced.

    Yields an object with ``base_urls`` like :class:`router.emulator.EmulatorServer`.
    """
    import subprocess
    import types

    code = (
        "import sys, threading\n"
        "from router.emulator import EmulatorServer\n"
        "server = EmulatorServer().start()\n"
        f"server.set_pacing(None, ttft={ttft!r}, token_delay={token_delay!r})\n"
        "print(server.url, flush=True)\n"
        "sys.stdin.read()\n"
        "server.stop()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the emulator process did not start")
        yield types.SimpleNamespace(
            url=url,
            base_urls={"openai": url + "/v1", "anthropic": url, "google": url},
            pid=child.pid,
        )
    finally:
        if child.stdin is not None:
            child.stdin.close()  # EOF: the child stops its server and exits
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def router_config(
    base_urls: dict[str, str],
    providers: tuple[str, ...] = ("openai",),
    *,
    max_concurrency: int = 64,
    ledger_path: str | None = None,
) -> dict[str, Any]:
    """A config with ``providers`` pointed at ``base_urls``; SQLite ledger (the default store)
    in a temp file unless ``ledger_path`` says otherwise (``":memory:"`` allowed)."""
    if ledger_path is None:
        ledger_path = os.path.join(tempfile.mkdtemp(prefix="router-bench-"), "ledger.db")
    return {
        "providers": [
            {
                "name": kind,
                "type": kind,
                "api_key": KEYS[kind],
                "base_url": base_urls[kind],
                "max_concurrency": max_concurrency,
                "timeout": 30.0,
            }
            for kind in providers
        ],
        "ledger": {"type": "sqlite", "path": ledger_path},
        "request_timeout": 60.0,
    }


def chat_request(provider: str = "openai", *, stream: bool = False) -> dict[str, Any]:
    """The request every contender sends, as the dict a caller would write."""
    request: dict[str, Any] = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 256,
    }
    if stream:
        request["stream"] = True
    return request


# --- the direct baseline -------------------------------------------------------------------------


def baseline_request(
    provider: str, base_url: str, *, stream: bool
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body the way a direct client builds them."""
    messages = [{"role": "user", "content": PROMPT}]
    if provider == "openai":
        body: dict[str, Any] = {
            "model": MODELS[provider],
            "messages": messages,
            "max_completion_tokens": 256,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"content-type": "application/json", "authorization": f"Bearer {KEYS[provider]}"}
        return base_url + "/chat/completions", headers, body
    if provider == "anthropic":
        body = {"model": MODELS[provider], "max_tokens": 256, "messages": messages}
        if stream:
            body["stream"] = True
        headers = {
            "content-type": "application/json",
            "x-api-key": KEYS[provider],
            "anthropic-version": "2023-06-01",
        }
        return base_url + "/v1/messages", headers, body
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "generationConfig": {"maxOutputTokens": 256},
    }
    headers = {"content-type": "application/json", "x-goog-api-key": KEYS[provider]}
    return f"{base_url}/v1beta/models/{MODELS[provider]}:{method}", headers, body


def baseline_parse(provider: str, payload: dict[str, Any]) -> tuple[str, int, int]:
    """Content, input and output tokens from a non-streamed answer."""
    if provider == "openai":
        usage = payload["usage"]
        content = payload["choices"][0]["message"]["content"]
        return content, usage["prompt_tokens"], usage["completion_tokens"]
    if provider == "anthropic":
        usage = payload["usage"]
        content = "".join(b.get("text", "") for b in payload["content"] if b["type"] == "text")
        return content, usage["input_tokens"], usage["output_tokens"]
    usage = payload["usageMetadata"]
    parts = payload["candidates"][0]["content"]["parts"]
    content = "".join(p.get("text", "") for p in parts)
    return content, usage["promptTokenCount"], usage.get("candidatesTokenCount", 0)


def baseline_call(session: requests.Session, provider: str, base_url: str) -> str:
    """One direct non-streamed call; returns the content."""
    url, headers, body = baseline_request(provider, base_url, stream=False)
    response = session.post(url, data=json.dumps(body).encode(), headers=headers, timeout=30)
    response.raise_for_status()
    content, _, _ = baseline_parse(provider, json.loads(response.content))
    return content


def _raw_chunks(response: requests.Response) -> Iterator[bytes]:
    raw = response.raw
    if getattr(raw, "chunked", False):
        yield from raw.read_chunked(decode_content=True)
        return
    while True:
        data = raw.read1(65536)
        if not data:
            return
        yield data


def baseline_stream(session: requests.Session, provider: str, base_url: str) -> Iterator[str]:
    """One direct streamed call: yields each content delta as its SSE event arrives."""
    url, headers, body = baseline_request(provider, base_url, stream=True)
    response = session.post(
        url, data=json.dumps(body).encode(), headers=headers, timeout=30, stream=True
    )
    response.raise_for_status()
    buffer = b""
    try:
        for data in _raw_chunks(response):
            buffer += data.replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    text = line[5:].strip()
                    if text == b"[DONE]":
                        return
                    payload = json.loads(text)
                    piece = _delta_text(provider, payload)
                    if piece:
                        yield piece
    finally:
        response.close()


def _delta_text(provider: str, payload: dict[str, Any]) -> str:
    if provider == "openai":
        choices = payload.get("choices") or ()
        return (choices[0].get("delta") or {}).get("content") or "" if choices else ""
    if provider == "anthropic":
        if payload.get("type") == "content_block_delta":
            return payload["delta"].get("text", "")
        return ""
    candidates = payload.get("candidates") or ()
    if not candidates:
        return ""
    return "".join(p.get("text", "") for p in candidates[0]["content"].get("parts", ()))


# --- LiteLLM -------------------------------------------------------------------------------------


def litellm_router(base_urls: dict[str, str], provider: str = "openai") -> Any:
    """A LiteLLM ``Router`` with one deployment on the same upstream, or None."""
    if not litellm_available():
        return None
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    prefix = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}[provider]
    params: dict[str, Any] = {
        "model": f"{prefix}/{MODELS[provider]}",
        "api_key": KEYS[provider],
        "api_base": base_urls[provider],
    }
    return litellm.Router(
        model_list=[{"model_name": MODELS[provider], "litellm_params": params}],
        num_retries=0,
    )


# --- load driving and statistics ----------------------------------------------------------------


@dataclass
class Phase:
    """One contender's share of one round."""

    count: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # process CPU seconds (all threads): robust on a busy machine
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    extra: dict[str, list[float]] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_us(self) -> float:
        """Process CPU microseconds per completed call."""
        return self.cpu / self.count * 1e6 if self.count else float("nan")


def drive(
    make_call: Callable[[], Callable[[], Any]],
    *,
    callers: int,
    per_caller: int,
    time_limit: float,
) -> Phase:
    """Run ``callers`` threads, each making up to ``per_caller`` calls or until ``time_limit``.

    ``make_call`` runs once per caller thread (before the clock starts) and returns the call,
    so each thread can own its session. One caller runs on the current thread.
    """
    phase = Phase()
    lock = threading.Lock()
    start = threading.Barrier(callers + 1) if callers > 1 else None
    deadline_box: list[float] = [0.0]

    def worker(call: Callable[[], Any]) -> None:
        local: list[float] = []
        errors = 0
        if start is not None:
            start.wait()
        deadline = deadline_box[0]
        for _ in range(per_caller):
            t0 = time.perf_counter()
            try:
                call()
            except Exception:
                errors += 1
            local.append(time.perf_counter() - t0)
            if t0 > deadline:
                break
        with lock:
            phase.latencies.extend(local)
            phase.errors += errors

    cpu0 = 0.0
    if callers == 1:
        call = make_call()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline_box[0] = t0 + time_limit
        worker(call)
        phase.elapsed = time.perf_counter() - t0
    else:
        calls = [make_call() for _ in range(callers)]
        threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in calls]
        for thread in threads:
            thread.start()
        deadline_box[0] = time.perf_counter() + time_limit
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        start.wait()  # type: ignore[union-attr]
        for thread in threads:
            thread.join(time_limit + 60)
        phase.elapsed = time.perf_counter() - t0
    phase.cpu = time.process_time() - cpu0
    phase.count = len(phase.latencies) - phase.errors
    return phase


def interleave(
    contenders: dict[str, Callable[[], Phase]], *, rounds: int, warmup: bool = True
) -> dict[str, list[Phase]]:
    """Run each contender once per round, rotating the order so none always goes first."""
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name]()
    results: dict[str, list[Phase]] = {name: [] for name in names}
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            gc.collect()
            results[name].append(contenders[name]())
    return results


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize_throughput(
    title: str, results: dict[str, list[Phase]], *, baseline: str = "baseline"
) -> dict[str, dict[str, float]]:
    """Print req/s (median of rounds) and latency percentiles per contender, and the ratios."""
    print(f"-- {title}")
    print(
        f"   {'contender':<10} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'cpu us/req':>10} {'errors':>6} {'vs baseline':>11}"
    )
    base = median([p.throughput for p in results[baseline]])
    out: dict[str, dict[str, float]] = {}
    for name, phases in results.items():
        latencies = [x for p in phases for x in p.latencies]
        thr = median([p.throughput for p in phases])
        row = {
            "throughput": thr,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p95_ms": percentile(latencies, 0.95) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "cpu_us": median([p.cpu_us for p in phases]),
            "errors": float(sum(p.errors for p in phases)),
            "ratio": thr / base if base else float("nan"),
        }
        out[name] = row
        print(
            f"   {name:<10} {thr:9.0f} {row['p50_ms']:8.3f} {row['p95_ms']:8.3f} "
            f"{row['p99_ms']:8.3f} {row['cpu_us']:10.0f} {int(row['errors']):6d} "
            f"{row['ratio']:10.2f}x"
        )
    if "router" in out and "litellm" in out and out["litellm"]["throughput"]:
        print(
            f"   router / litellm throughput: "
            f"{out['router']['throughput'] / out['litellm']['throughput']:.1f}x"
        )
    return out


def verdict(label: str, ok: bool, detail: str) -> str:
    line = f"   [{'PASS' if ok else 'MISS'}] {label}: {detail}"
    print(line)
    return line


def rss_mb(pid: int | None = None) -> float:
    """Resident set size in MiB (Linux /proc)."""
    path = f"/proc/{pid or 'self'}/status"
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def quiet_logging() -> None:
    """Benchmarks measure the hot path, not a log handler."""
    import logging

    logging.getLogger("router").setLevel(logging.WARNING)
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.ERROR)
