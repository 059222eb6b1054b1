"""The response cache's policy: what is cached, under which key, and how an entry is checked.

The key is a SHA-256 of the canonical request: the model (or model group) as requested, falling
back to the configuration's ``default_model``; the messages, tools, ``tool_choice`` and every
sampling parameter (``max_tokens``, ``temperature``, ``top_p``, ``stop``, and any field a later
version adds); and the provider selection when one is given. Left out, because they do not
change the answer: ``stream`` (a streamed request is answered by a replay of the same entry),
``budget_limit``, ``metadata``, ``cache``, the prompt-caching hints (``cache_prompt``,
``prompt_cache_key``, ``prompt_cache_retention``), the strategy and the timeout. ``parsed``
(a structured answer) is not stored: the manager parses the cached content again, so a
pydantic ``response_format`` class gets its own instance back.

An entry is ``RC1 <blake2b of the payload> <payload JSON>``; the payload repeats the key and
when the answer was stored. An entry that fails any check (prefix, digest, JSON, key, response
fields) is logged, deleted and treated as a miss: a corrupt entry is never served. A store that
fails (Redis down, SQLite locked) is a miss too, and is left alone for ``retry_interval``
seconds.

The last ``recent_entries`` answers this process stored or read are also kept decoded in memory
until their entry expires, so a repeated hit reads neither the store nor JSON (a Redis hit costs
a network round trip otherwise). Entries are never changed once written, so this copy is never
stale; an entry deleted from the shared store by hand is still served here until it expires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from router.cache.stores import CacheStore
from router.models import AIRequest, AIResponse, ProviderSelection

__all__ = ["ResponseCache", "CACHEABLE_FINISH_REASONS"]

logger = logging.getLogger(__name__)

_MAGIC = b"RC1 "
_KEY_VERSION = 1
# Fields of AIRequest that do not change the answer (see the module docstring); the
# provider-side prompt-caching hints only change what the provider bills.
_NOT_IN_KEY = frozenset(
    {
        "model",
        "stream",
        "budget_limit",
        "metadata",
        "cache",
        "cache_prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
#: Answers worth replaying; a filtered or failed one is asked again.
CACHEABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls"})
# The parts of an answer an entry keeps: who served it, what it said, what it used.
_STORED_FIELDS = {
    "content",
    "tool_calls",
    "finish_reason",
    "usage",
    "cost",
    "provider",
    "provider_name",
    "model",
    "request_id",
    "provider_data",
    "reasoning",
    "dropped_params",
}


class ResponseCache:
    """Exact-match answers over a :class:`~router.cache.stores.CacheStore`; thread-safe."""

    def __init__(
        self,
        store: CacheStore,
        *,
        ttl: float = 3600.0,
        max_entry_bytes: int = 1_000_000,
        any_temperature: bool = False,
        default_model: str | None = None,
        retry_interval: float = 1.0,
        recent_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.max_entry_bytes = max_entry_bytes
        self.any_temperature = any_temperature
        self.default_model = default_model
        self.retry_interval = retry_interval
        self.recent_entries = recent_entries
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        # key -> (monotonic expiry, the stored answer already flagged cached and free)
        self._recent: OrderedDict[str, tuple[float, AIResponse]] = OrderedDict()
        self._down_until = 0.0
        self._last_warning = -1e9
        self.hits = 0
        self.misses = 0
        self.bypassed = 0
        self.stored = 0
        self.rejected = 0  # corrupt or unreadable entries
        self.errors = 0  # store failures

    # --- policy ------------------------------------------------------------------------------

    def key_for(self, request: AIRequest, selection: ProviderSelection | None = None) -> str | None:
        """The entry key for ``request``, or None when it bypasses the cache."""
        if request.cache is False or (
            request.cache is not True
            and not self.any_temperature
            and (request.temperature or 0.0) > 0.0
        ):
            self._count("bypassed")
            return None
        canonical: dict[str, Any] = {
            "v": _KEY_VERSION,
            "model": request.model or self.default_model or "",
            "request": request.model_dump(mode="json", exclude=_NOT_IN_KEY),
        }
        if selection is not None:
            canonical["selection"] = selection.model_dump(mode="json")
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    # --- reading ------------------------------------------------------------------------------

    def lookup(self, key: str) -> AIResponse | None:
        """The cached answer under ``key`` (``cached=True``, ``cost=0``), or None."""
        started = time.perf_counter()
        now = self._clock()
        recent = self._recent.get(key)
        if recent is not None and recent[0] > now:
            answer = recent[1]
        else:
            answer = self._read(key, now)
            if answer is None:
                self._count("misses")
                return None
        self._count("hits")
        return answer.model_copy(update={"latency_ms": (time.perf_counter() - started) * 1e3})

    def _read(self, key: str, now: float) -> AIResponse | None:
        if now < self._down_until:
            return None
        try:
            value = self.store.get(key)
        except Exception as error:
            self._store_failed("read", error)
            return None
        if value is None:
            return None
        return self._decode(key, value, now)

    def _decode(self, key: str, value: bytes, now: float) -> AIResponse | None:
        problem = None
        if not isinstance(value, bytes) or not value.startswith(_MAGIC):
            problem = "unknown format"
        else:
            digest, _, payload = value[len(_MAGIC) :].partition(b" ")
            if digest != _digest(payload):
                problem = "checksum mismatch"
            else:
                try:
                    entry = json.loads(payload)
                    if not isinstance(entry, dict) or entry.get("key") != key:
                        problem = "entry belongs to another key"
                    else:
                        left = float(entry["stored"]) + self.ttl - self._wall()
                        if left <= 0:
                            return None  # expired (the store may keep it a little longer)
                        fields = entry["response"]
                        fields.update(cached=True, cost=0.0)
                        answer = AIResponse.model_validate(fields)
                        self._remember(key, answer, now + left)
                        return answer
                except (ValueError, KeyError, TypeError, ValidationError) as error:
                    problem = f"unreadable entry ({type(error).__name__})"
        self._count("rejected")
        logger.warning("response cache: ignored a corrupt entry %s…: %s", key[:12], problem)
        try:
            self.store.delete(key)
        except Exception as error:
            self._store_failed("delete", error)
        return None

    def _remember(self, key: str, answer: AIResponse, expires: float) -> None:
        if self.recent_entries <= 0:
            return
        with self._lock:
            recent = self._recent
            recent.pop(key, None)
            recent[key] = (expires, answer)
            while len(recent) > self.recent_entries:
                recent.popitem(last=False)

    # --- writing ------------------------------------------------------------------------------

    def store_response(self, key: str, response: AIResponse) -> bool:
        """Store a fresh answer under ``key``; False when it is not worth or fit to keep."""
        if response.cached or response.finish_reason not in CACHEABLE_FINISH_REASONS:
            return False
        if self._clock() < self._down_until:
            return False
        fields = response.model_dump(mode="json", include=_STORED_FIELDS)
        payload = json.dumps(
            {"key": key, "stored": self._wall(), "response": fields},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        if len(payload) > self.max_entry_bytes:
            return False
        try:
            self.store.put(key, _MAGIC + _digest(payload) + b" " + payload, self.ttl)
        except Exception as error:
            self._store_failed("write", error)
            return False
        self._count("stored")
        fields.update(cached=True, cost=0.0)
        self._remember(key, AIResponse.model_validate(fields), self._clock() + self.ttl)
        return True

    # --- state -------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _store_failed(self, what: str, error: Exception) -> None:
        now = self._clock()
        with self._lock:
            self.errors += 1
            self._down_until = now + self.retry_interval
            loud = now - self._last_warning >= 60.0
            if loud:
                self._last_warning = now
        if loud:  # an outage would otherwise log once per request
            logger.warning(
                "response cache: %s store %s failed (%s: %s); serving without the cache for %gs",
                self.store.name,
                what,
                type(error).__name__,
                error,
                self.retry_interval,
            )

    def stats(self) -> dict[str, Any]:
        """Counters since start (this process) and the entries the store holds."""
        try:
            entries: int | None = self.store.count()
        except Exception:
            entries = None
        looked_up = self.hits + self.misses
        return {
            "enabled": True,
            "store": self.store.name,
            "ttl": self.ttl,
            "hits": self.hits,
            "misses": self.misses,
            "bypassed": self.bypassed,
            "stored": self.stored,
            "rejected": self.rejected,
            "errors": self.errors,
            "hit_rate": self.hits / looked_up if looked_up else 0.0,
            "entries": entries,
        }

    def close(self) -> None:
        try:
            self.store.close()
        except Exception:
            logger.debug("response cache: closing the store failed", exc_info=True)


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).hexdigest().encode()
