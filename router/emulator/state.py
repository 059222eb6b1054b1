"""Shared, lock-guarded state of a running emulator: counters, request log and pacing."""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from .faults import KINDS, PROVIDERS, normalize_provider

#: Outcomes counted per provider besides the fault kinds.
OUTCOMES = ("ok", "auth", "invalid_request", "not_found", *[k for k in KINDS if k != "auth"])
_LOG_SIZE = 1000


def _empty() -> dict[str, Any]:
    return {"requests": 0, "streams": 0, **dict.fromkeys(OUTCOMES, 0), "models": {}}


class Counters:
    """Requests seen per provider (and per base-URL prefix), by outcome and model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_provider: dict[str, dict[str, Any]] = {}
        self._by_prefix: dict[str, dict[str, dict[str, Any]]] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_SIZE)
        # Generation requests being answered now (not reset: they are still open), and the
        # most answered at once since the last reset: how much concurrency a client achieved.
        self._in_flight = dict.fromkeys(PROVIDERS, 0)
        self._peak = dict.fromkeys(PROVIDERS, 0)
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._by_provider = {p: _empty() for p in PROVIDERS}
            self._by_prefix = {}
            self._log.clear()
            self._peak = dict(self._in_flight)

    def enter(self, provider: str) -> None:
        """A generation request starts being answered."""
        with self._lock:
            now = self._in_flight[provider] = self._in_flight[provider] + 1
            if now > self._peak[provider]:
                self._peak[provider] = now

    def leave(self, provider: str) -> None:
        """Its answer is sent (or the connection failed)."""
        with self._lock:
            self._in_flight[provider] -= 1

    def record(
        self,
        provider: str,
        prefix: str,
        model: str | None,
        stream: bool,
        outcome: str,
        body: Any = None,
    ) -> None:
        """Count one request and keep it (body included, no headers) in the recent log."""
        with self._lock:
            buckets = [self._by_provider[provider]]
            if prefix:
                per = self._by_prefix.setdefault(prefix, {})
                buckets.append(per.setdefault(provider, _empty()))
            for bucket in buckets:
                bucket["requests"] += 1
                bucket["streams"] += int(stream)
                bucket[outcome] = bucket.get(outcome, 0) + 1
                if model:
                    bucket["models"][model] = bucket["models"].get(model, 0) + 1
            self._log.append(
                {
                    "provider": provider,
                    "prefix": prefix,
                    "model": model,
                    "stream": stream,
                    "outcome": outcome,
                    "body": body,
                }
            )

    def snapshot(self) -> dict[str, Any]:
        """``{"openai": {...}, "anthropic": {...}, "google": {...}, "prefixes": {...}}``."""
        with self._lock:
            out: dict[str, Any] = copy.deepcopy(self._by_provider)
            for provider in PROVIDERS:
                out[provider]["in_flight"] = self._in_flight[provider]
                out[provider]["peak_in_flight"] = self._peak[provider]
            out["prefixes"] = copy.deepcopy(self._by_prefix)
            return out

    def recent(self) -> list[dict[str, Any]]:
        """The most recent requests (up to 1000), oldest first."""
        with self._lock:
            return list(self._log)


@dataclass(frozen=True)
class Pace:
    """Time to first byte and delay per streamed token, in seconds."""

    ttft: float = 0.0
    token_delay: float = 0.0


class Pacing:
    """Pacing per provider with a default for all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._default = Pace()
        self._per: dict[str, Pace] = {}

    def set(self, provider: str | None, ttft: float = 0.0, token_delay: float = 0.0) -> None:
        """Set the pace for one provider, or for all (``None``, which also clears overrides)."""
        for name, value in (("ttft", ttft), ("token_delay", token_delay)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"pacing: {name} must be a number >= 0, got {value!r}")
        pace = Pace(float(ttft), float(token_delay))
        key = normalize_provider(provider)
        with self._lock:
            if key is None:
                self._default, self._per = pace, {}
            else:
                self._per[key] = pace

    def get(self, provider: str) -> Pace:
        """The pace that applies to a provider."""
        with self._lock:
            return self._per.get(provider, self._default)

    def snapshot(self) -> dict[str, Any]:
        """The pacing as JSON."""
        with self._lock:
            out = {"default": vars(self._default).copy()}
            out.update({k: vars(v).copy() for k, v in self._per.items()})
            return out
