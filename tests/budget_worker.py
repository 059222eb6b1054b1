"""One router process for the shared-budget tests, driven over stdin/stdout.

Run as ``python tests/budget_worker.py '<settings JSON>'``. Settings: ``base_url`` (the
emulator's OpenAI URL), ``ledger`` (``{"type": "redis", "url", "key_prefix", "fail_open",
"journal_dir", "retry_interval"}`` or ``{"type": "sqlite", "path"}``), ``limit`` (the monthly
budget in dollars; no budget without it), ``callers`` (concurrent caller threads),
``reservation_ttl``; for the fleet tests also ``providers`` (provider entries replacing the one
OpenAI provider), ``strategy``, and ``fleet`` (``{"window": seconds}``: share rate windows,
circuits and health on the ledger's Redis with a short rate window).

It prints ``{"event": "ready", "pid": ...}`` once its :class:`AIProviderManager` has started,
then answers one JSON line per command line:

- ``{"cmd": "run", "n": N}``: N requests from ``callers`` threads at once; the outcome of each.
- ``{"cmd": "submit", "n": N}``: submit N requests and answer at once (they stay in flight);
  ``{"cmd": "collect"}`` waits for them and answers with their outcomes.
- ``{"cmd": "status"}``: the budget status (with the ledger's own stats).
- ``{"cmd": "fleet"}``: ``manager.fleet_status()``; ``{"cmd": "circuits"}``: each provider's
  circuit state as this process sees it.
- ``{"cmd": "quit"}``: stop the manager, close the ledger, exit.

Outcomes: ``{"ok": [provider request ids], "budget": n, "ledger": [messages], "other":
[messages], "by_provider": {provider name: answers}, "errors": {error type: count}}``. The test process computes the worst-case cost with :func:`make_request`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from router.errors import BudgetExceededError, LedgerUnavailableError
from router.models import AIRequest

MODEL = "gpt-4o-mini"
MAX_TOKENS = 40


def make_request() -> AIRequest:
    """The request every worker sends (the test prices its worst case from it)."""
    return AIRequest(
        model=MODEL,
        messages=[{"role": "user", "content": "Please answer briefly"}],
        max_tokens=MAX_TOKENS,
    )


def worst_case() -> float:
    """The reservation one request makes, in dollars."""
    from router.catalog import load_catalog
    from router.tokens import request_input_bound

    info = load_catalog().require(MODEL)
    bound = request_input_bound(make_request(), info.provider, MODEL)
    return (bound * info.input_price + MAX_TOKENS * info.output_price) / 1e6


def router_config(settings: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI provider on the emulator, one monthly budget, the given ledger (``redis``,
    ``sqlite`` or ``memory``)."""
    ledger = settings["ledger"]
    config_ledger: dict[str, Any] = {
        "type": ledger["type"],
        "reservation_ttl": settings.get("reservation_ttl", 600.0),
    }
    if ledger["type"] == "sqlite":
        config_ledger["path"] = ledger["path"]
    elif ledger["type"] == "redis":
        config_ledger.update(
            url=ledger["url"],
            key_prefix=ledger["key_prefix"],
            fail_open=ledger.get("fail_open", False),
        )
    providers = settings.get("providers") or [{"name": "openai", "base_url": settings["base_url"]}]
    config: dict[str, Any] = {
        "providers": [
            {
                "type": "openai",
                "api_key": "sk-test-openai-0123456789abcdefghij",
                "timeout": 30.0,
                "max_concurrency": settings.get("callers", 25),
                "max_retries": 0,
                **provider,
            }
            for provider in providers
        ],
        "ledger": config_ledger,
        "request_timeout": 60.0,
        "default_strategy": settings.get("strategy", "cost"),
    }
    if settings.get("limit") is not None:
        config["budgets"] = [{"name": "Shared", "monthly_limit": settings["limit"]}]
    return config


def open_store(settings: dict[str, Any]) -> Any:
    """The ledger store, built here so the test can pass a short Redis retry interval."""
    ledger = settings["ledger"]
    if ledger["type"] == "sqlite":
        from router.ledger import SQLiteLedger

        return SQLiteLedger(ledger["path"])
    from router.ledger.redis import RedisLedger

    return RedisLedger(
        ledger["url"],
        key_prefix=ledger["key_prefix"],
        fail_open=ledger.get("fail_open", False),
        journal_dir=ledger.get("journal_dir"),
        retry_interval=ledger.get("retry_interval", 1.0),
    )


def open_fleet(settings: dict[str, Any]) -> Any:
    """The shared fleet store with the test's short rate window, or ``None`` (the manager
    then opens the default one for a Redis ledger)."""
    fleet = settings.get("fleet")
    if fleet is None:
        return None
    from router.fleet.redis import RedisFleet

    ledger = settings["ledger"]
    return RedisFleet(
        ledger["url"],
        key_prefix=ledger["key_prefix"],
        window=fleet.get("window", 60.0),
        retry_interval=ledger.get("retry_interval", 1.0),
    )


class Worker:
    def __init__(self, settings: dict[str, Any]) -> None:
        from router.manager import AIProviderManager

        self.callers = int(settings.get("callers", 25))
        self.store = open_store(settings)
        self.fleet = open_fleet(settings)
        self.manager = AIProviderManager(
            router_config(settings), ledger=self.store, fleet=self.fleet
        ).start()
        self.in_flight: list[Any] = []

    def outcome(self, futures: list[Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ok": [],
            "budget": 0,
            "ledger": [],
            "other": [],
            "by_provider": {},
            "errors": {},
        }
        for future in futures:
            try:
                response = future.get(timeout=120)
            except BudgetExceededError:
                result["budget"] += 1
            except LedgerUnavailableError as error:
                result["ledger"].append(str(error))
            except Exception as error:
                result["other"].append(f"{type(error).__name__}: {error}")
                kind = type(error).__name__
                result["errors"][kind] = result["errors"].get(kind, 0) + 1
            else:
                result["ok"].append(response.request_id)
                name = response.provider_name
                result["by_provider"][name] = result["by_provider"].get(name, 0) + 1
        return result

    def run(self, n: int) -> dict[str, Any]:
        """``n`` requests from ``callers`` threads, each waiting for its answer before its next
        request: at most ``callers`` in flight from this process."""
        request = make_request()
        futures: list[Any] = []
        lock = threading.Lock()

        def call(_: int) -> None:
            future = self.manager.submit(request)
            with lock:
                futures.append(future)
            try:
                future.get(timeout=120)
            except Exception:
                pass  # classified below, with the others

        with ThreadPoolExecutor(max_workers=self.callers) as pool:
            list(pool.map(call, range(n)))
        return self.outcome(futures)

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command["cmd"]
        if cmd == "run":
            return self.run(int(command["n"]))
        if cmd == "submit":
            request = make_request()
            self.in_flight += [self.manager.submit(request) for _ in range(int(command["n"]))]
            return {"submitted": len(self.in_flight)}
        if cmd == "collect":
            futures, self.in_flight = self.in_flight, []
            return self.outcome(futures)
        if cmd == "fleet":
            return self.manager.fleet_status()
        if cmd == "circuits":
            return {n: s.circuit_state for n, s in self.manager.provider_health().items()}
        if cmd == "status":
            try:
                return {"status": self.manager.get_budget_status()}
            except LedgerUnavailableError as error:
                return {"error": str(error), "ledger": self.store.stats()}
        raise ValueError(f"unknown command {cmd!r}")

    def stop(self) -> dict[str, Any]:
        self.manager.stop()
        stats = self.store.stats() if hasattr(self.store, "stats") else {}
        self.store.close()
        if self.fleet is not None:
            self.fleet.close()
        return {"stopped": True, "ledger": stats}


def main() -> None:
    # Warnings and errors on stderr, which the test leaves attached to its own.
    logging.basicConfig(level=logging.WARNING, format=f"worker {os.getpid()} %(name)s: %(message)s")
    settings = json.loads(sys.argv[1])
    worker = Worker(settings)
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            print(json.dumps(worker.stop()), flush=True)
            return
        print(json.dumps(worker.handle(command)), flush=True)
    worker.stop()  # stdin closed: the test went away


if __name__ == "__main__":
    main()
