"""The fleet store on Redis: rpm/tpm windows, circuits and health shared by every process.

Every decision is one Lua script run atomically by the server, timed by the server's own clock
(``TIME``), so hosts whose clocks disagree still share one window and one recovery timer.
Keys, under the ledger's ``<prefix>:`` (see ``docs/shared-ledger.md``):

- ``rate:<provider>``: sorted set of the last minute's requests (``<worker>:<n>:<tokens>``
  scored by admission time in ms); ``rate:<provider>:tokens``: their input tokens. Both
  expire a second after the window.
- ``circuit:<provider>``: hash ``state`` (``open``), ``until`` (ms, server time, when a trial
  may go), ``trial``/``trial_until`` (the worker holding the half-open trial, and until when).
  Absent means closed.
- ``worker:<id>``: JSON of one worker's provider figures, expiring after
  :data:`HEALTH_TTL`; ``workers``: the set of ids (pruned when their key is gone).

When Redis cannot be reached, the store does not try again for ``retry_interval`` seconds and
falls back to this process alone: rate limits are counted in a local window, trials are this
process's breaker's, circuit changes wait to be published. It logs the outage once (WARNING)
and its return, and :meth:`RedisFleet.stats` carries a ``warning``.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from router.fleet import FleetStore, RemoteCircuit, worker_id
from router.fleet.window import WINDOW, RateWindow
from router.ledger.redis import connect, display_url

__all__ = ["RedisFleet", "HEALTH_TTL"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a worker's published health outlives its last heartbeat.
HEALTH_TTL = 5.0

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: window, tokens. ARGV: rpm (0 = none), tpm (0 = none), tokens, member, window ms.
# Returns 0 when the request was counted, else the ms until the oldest request leaves.
_RATE = (
    _NOW_MS
    + """
local rpm, tpm, tokens, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[5])
local cutoff = now - window
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #gone > 0 then
  local sum = 0
  for _, m in ipairs(gone) do sum = sum + (tonumber(string.match(m, ':(%d+)$')) or 0) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  if sum > 0 then redis.call('DECRBY', KEYS[2], sum) end
end
local count = redis.call('ZCARD', KEYS[1])
if count == 0 then
  redis.call('DEL', KEYS[2])
else
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if (rpm > 0 and count >= rpm) or (tpm > 0 and used + tokens > tpm) then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + window - now)
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. ARGV[3])
redis.call('INCRBY', KEYS[2], tokens)
redis.call('PEXPIRE', KEYS[1], window + 1000)
redis.call('PEXPIRE', KEYS[2], window + 1000)
return 0
"""
)

# Circuits keep an open key an hour past its timer at most: a fleet that went quiet forgets.
_CIRCUIT_KEEP_MS = 3600 * 1000

# KEYS: circuit. ARGV: worker, recovery ms. Opens (or keeps open) until the later of the
# current timer and now + recovery; the worker's own trial, if it held it, is over.
# Returns the ms until a trial may go.
_OPEN = (
    _NOW_MS
    + """
local c = redis.call('HMGET', KEYS[1], 'state', 'until', 'trial')
local at = now + tonumber(ARGV[2])
if c[1] == 'open' and c[3] ~= ARGV[1] and tonumber(c[2]) > at then at = tonumber(c[2]) end
if c[3] == ARGV[1] then redis.call('HDEL', KEYS[1], 'trial', 'trial_until') end
redis.call('HSET', KEYS[1], 'state', 'open', 'until', at)
redis.call('PEXPIRE', KEYS[1], at - now + """
    + str(_CIRCUIT_KEEP_MS)
    + """)
return at - now
"""
)

# KEYS: circuit. ARGV: worker. Closes unless another worker's trial is still running.
_CLOSE = (
    _NOW_MS
    + """
local c = redis.call('HMGET', KEYS[1], 'trial', 'trial_until')
if c[1] and c[1] ~= ARGV[1] and tonumber(c[2]) > now then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
)

# KEYS: circuit. ARGV: worker. The worker's trial ended without a verdict: free the lease.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'trial') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'trial', 'trial_until')
end
return 1
"""

# KEYS: circuit. ARGV: worker, lease ms. Returns -1 (closed: no trial needed), 0 (the trial
# is this worker's) or the ms until a trial may go (timer running, or another's trial).
_TRIAL = (
    _NOW_MS
    + """
local c = redis.call('HMGET', KEYS[1], 'state', 'until', 'trial', 'trial_until')
if c[1] ~= 'open' then return -1 end
local at = tonumber(c[2])
if now < at then return at - now end
if c[3] and c[3] ~= ARGV[1] and tonumber(c[4]) > now then return tonumber(c[4]) - now end
redis.call('HSET', KEYS[1], 'trial', ARGV[1], 'trial_until', now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + """
    + str(_CIRCUIT_KEEP_MS)
    + """)
return 0
"""
)

# KEYS: circuits. Per key: -1 closed, else ms until a trial may go (another's trial included).
_READ = (
    _NOW_MS
    + """
local out = {}
for i, key in ipairs(KEYS) do
  local c = redis.call('HMGET', key, 'state', 'until', 'trial_until')
  if c[1] == 'open' then
    local at = tonumber(c[2])
    local trial = tonumber(c[3] or '0')
    if trial > now and trial > at then at = trial end
    out[i] = math.max(0, at - now)
  else
    out[i] = -1
  end
end
return out
"""
)


class RedisFleet(FleetStore):
    """Rate windows, circuits and health of every process sharing a Redis (see module)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "router",
        worker: str | None = None,
        socket_timeout: float = 1.0,
        retry_interval: float = 1.0,
        window: float = WINDOW,
        client: redis.Redis | None = None,
    ) -> None:
        if not key_prefix:
            raise ValueError("RedisFleet key_prefix must not be empty")
        self.url = display_url(url)
        self.prefix = key_prefix
        self.worker = worker or worker_id()
        self.retry_interval = retry_interval
        self.window = window
        self._client = client or connect(url, socket_timeout)
        self._rate = self._client.register_script(_RATE)
        self._open = self._client.register_script(_OPEN)
        self._close = self._client.register_script(_CLOSE)
        self._trial = self._client.register_script(_TRIAL)
        self._release = self._client.register_script(_RELEASE)
        self._read = self._client.register_script(_READ)
        self._members = itertools.count()
        self._lock = threading.Lock()
        self._fallback: dict[str, RateWindow] = {}
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._last_error = ""
        self._counters = {"unavailable_errors": 0, "fallback_admissions": 0}

    @classmethod
    def from_config(cls, config: Any) -> RedisFleet:
        """From a :class:`~router.config.LedgerConfig` (``url``, ``key_prefix``)."""
        return cls(config.url, key_prefix=getattr(config, "key_prefix", None) or "router")

    def __repr__(self) -> str:
        return f"RedisFleet({self.url!r}, key_prefix={self.prefix!r}, worker={self.worker!r})"

    # --- the store ---------------------------------------------------------------------------

    def take_rate(self, provider: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
        if not rpm and not tpm:
            return 0.0
        member = f"{self.worker}:{next(self._members)}"
        keys = [self._k("rate", provider), self._k("rate", provider, "tokens")]
        args = [rpm or 0, tpm or 0, max(0, int(tokens)), member, int(self.window * 1000)]
        waited = self._call("rate limit", lambda: self._rate(keys=keys, args=args))
        if waited is None:
            with self._lock:
                self._counters["fallback_admissions"] += 1
                window = self._fallback.setdefault(provider, RateWindow(self.window))
            return window.take(rpm, tpm, tokens, time.monotonic())
        return int(waited) / 1000.0

    def take_trial(self, provider: str, ttl: float) -> float | None:
        lease = max(1, int(ttl * 1000))
        key = [self._k("circuit", provider)]
        code = self._call("trial", lambda: self._trial(keys=key, args=[self.worker, lease]))
        if code is None or int(code) <= 0:
            return None  # ours, closed fleet-wide, or unreachable (this process's breaker)
        return int(code) / 1000.0

    def publish_circuit(self, provider: str, state: str, retry_in: float) -> bool:
        key = [self._k("circuit", provider)]
        if state == "open":
            args = [self.worker, max(0, int(retry_in * 1000))]
            return self._call("circuit", lambda: self._open(keys=key, args=args)) is not None
        script = self._release if state == "released" else self._close
        return self._call("circuit", lambda: script(keys=key, args=[self.worker])) is not None

    def read_circuits(self, providers: list[str]) -> dict[str, RemoteCircuit] | None:
        if not providers:
            return {}
        keys = [self._k("circuit", name) for name in providers]
        rows = self._call("circuits", lambda: self._read(keys=keys))
        if rows is None:
            return None
        return {
            name: RemoteCircuit("closed", 0.0)
            if int(ms) < 0
            else RemoteCircuit("open", int(ms) / 1000.0)
            for name, ms in zip(providers, rows, strict=True)
        }

    def publish_health(self, providers: dict[str, dict[str, Any]]) -> None:
        doc = {
            "worker": self.worker,
            "host": socket.gethostname(),
            "updated": time.time(),
            "providers": providers,
        }

        def write() -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._k("worker", self.worker), json.dumps(doc), px=int(HEALTH_TTL * 1000))
            pipe.sadd(self._k("workers"), self.worker)
            pipe.execute()

        self._call("health", write)

    def read_health(self) -> dict[str, dict[str, Any]] | None:
        def read() -> dict[str, dict[str, Any]]:
            ids = sorted(m.decode() for m in self._client.smembers(self._k("workers")))
            if not ids:
                return {}
            docs = self._client.mget([self._k("worker", w) for w in ids])
            gone = [w for w, doc in zip(ids, docs, strict=True) if doc is None]
            if gone:
                self._client.srem(self._k("workers"), *gone)
            return {w: json.loads(doc) for w, doc in zip(ids, docs, strict=True) if doc}

        return self._call("health", read)

    def stats(self) -> dict[str, Any]:
        available = self._down_since is None
        out: dict[str, Any] = {
            "type": "redis",
            "shared": available,
            "url": self.url,
            "worker": self.worker,
            "available": available,
            "last_error": self._last_error or None,
            **self._counters,
        }
        if not available:
            out["warning"] = (
                f"fleet state unreachable ({self._last_error}): rpm/tpm limits and circuits "
                "are per process until Redis answers again"
            )
        return out

    def close(self) -> None:
        self._client.close()

    # --- internals ---------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _call(self, what: str, fn: Callable[[], T]) -> T | None:
        """``fn()``, or ``None`` when Redis is (or was just found) unreachable."""
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return None
        try:
            result = fn()
        except redis.RedisError as exc:
            self._mark_down(what, exc)
            return None
        if self._down_since is not None:
            self._mark_up()
        return result

    def _mark_down(self, what: str, exc: Exception) -> None:
        with self._lock:
            self._counters["unavailable_errors"] += 1
            self._last_error = display_url(str(exc)) or type(exc).__name__
            self._retry_at = time.monotonic() + self.retry_interval
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            logger.warning(
                "FLEET STATE UNAVAILABLE: %s (%s failed: %s); rpm/tpm limits and circuits are "
                "per process until it answers again",
                self.url,
                what,
                self._last_error,
            )

    def _mark_up(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            outage = time.monotonic() - self._down_since
            self._down_since = None
            self._fallback.clear()
        logger.warning(
            "fleet state %s reachable again after %.1fs: limits and circuits are shared again",
            self.url,
            outage,
        )
