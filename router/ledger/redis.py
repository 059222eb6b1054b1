"""The shared ledger: one Redis for every router process on every host.

Each write is one Lua script run atomically by the server (``EVALSHA``, loaded on first use and
reloaded after a Redis restart), so a reservation checks and holds every applicable limit in one
step and two processes can never both pass the last dollar. Money is integer nano-dollars
(:data:`~router.ledger.base.MONEY_SCALE`), added with ``HINCRBY``.

Keys, all under ``<prefix>:`` (the ``key_prefix`` setting, so several routers may share a
Redis):

- ``total:<ledger key>``: hash ``spent``/``reserved`` per ledger key (``budget:...``,
  ``spend:...``, see :mod:`router.budget`). A key naming a day or month expires after that
  period plus :data:`PERIOD_MARGIN` (never sooner than the margin from the last write).
- ``reservations``: hash ``reservation id -> {amount, keys, key expiries}``; ``reservations:expiry``: sorted
  set by expiry time, so :meth:`RedisLedger.expire` finds what a dead process left behind.
- ``usage``: hash ``request_id -> record JSON`` (the idempotency check of settle) and
  ``usage:time``: sorted set by record timestamp (``records(since=..., limit=...)``). Records
  replayed late from a journal still sort by when they happened.
- ``stats``: hash of counters shared by all processes (``expired``).

Only a single Redis (or a primary with replicas) is supported, not Redis Cluster: the scripts
touch keys they read from the reservation itself.

When Redis cannot be reached (see ``docs/shared-ledger.md``): a reservation fails closed with
:class:`~router.errors.LedgerUnavailableError` naming the URL without its password, or — with
``fail_open`` — is granted without a budget check, logged loudly and counted. A settlement or
release that cannot be written goes to the local :class:`~router.ledger.journal.Journal` and is
replayed, idempotently, as soon as Redis answers again. After a failure the store does not touch
the network for ``retry_interval`` seconds, so an outage costs each request no timeout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from router.budget import REQUEST_SCOPE, BudgetLimit
from router.errors import LedgerUnavailableError
from router.ledger.base import (
    LedgerStore,
    Refusal,
    UsageRecord,
    check_amount,
    check_expiry,
    from_units,
    stored_keys,
    to_units,
)
from router.ledger.journal import Journal, default_journal_dir

__all__ = ["RedisLedger", "PERIOD_MARGIN", "display_url", "period_key_expiry"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a day's or month's totals outlive the period (seconds): long enough for status of
#: the previous period and for late settlements replayed from a journal; the usage records
#: themselves never expire.
PERIOD_MARGIN = 35 * 86400.0

# Covers every time zone's offset from UTC: a period key names a local calendar day or month.
_TZ_SLACK = timedelta(hours=14)
_DAY = re.compile(r"(?:^|:)day:(\d{4})-(\d{2})-(\d{2})(?::|$)")
_MONTH = re.compile(r"(?:^|:)month:(\d{4})-(\d{2})(?::|$)")
_EXPIRE_BATCH = 500


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for errors and logs)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def connect(url: str, socket_timeout: float) -> redis.Redis:
    """A client for ``url`` without client-side retries (ledger, fleet and cache alike): an
    outage must cost a call one failed connect, not a backoff loop; each store decides what
    happens next (refuse, grant, journal, fall back to per-process, skip the cache)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
    )


def period_key_expiry(key: str, *, now: float, margin: float = PERIOD_MARGIN) -> int | None:
    """Unix time at which a ledger key's totals may go: the end of the day or month it names,
    plus time-zone slack and ``margin``, but never sooner than ``now + margin``. ``None`` for a
    key without a period (kept forever)."""
    if match := _DAY.search(key):
        year, month, day = (int(g) for g in match.groups())
        try:
            end = datetime(year, month, day, tzinfo=UTC) + timedelta(days=1)
        except ValueError:
            return None
    elif match := _MONTH.search(key):
        year, month = (int(g) for g in match.groups())
        if not 1 <= month <= 12:
            return None
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    else:
        return None
    return int(max((end + _TZ_SLACK).timestamp() + margin, now + margin))


# --- server-side scripts ------------------------------------------------------------------
# Amounts travel as decimal strings and are handed to HINCRBY as such: Lua numbers are doubles
# and Redis may format them with an exponent.

_DROP = """
local function drop(p, rid)
  local res = p .. ':reservations'
  local raw = redis.call('HGET', res, rid)
  redis.call('ZREM', res .. ':expiry', rid)
  if not raw then return nil end
  redis.call('HDEL', res, rid)
  local r = cjson.decode(raw)
  if r.a ~= '0' then
    for _, key in ipairs(r.k) do
      local tk = p .. ':total:' .. key
      if redis.call('HINCRBY', tk, 'reserved', '-' .. r.a) <= 0 then
        -- <0 only if the period key expired meanwhile; never leave a negative hold.
        redis.call('HDEL', tk, 'reserved')
      end
    end
  end
  return r
end
"""

# ARGV: prefix, rid, units, expires_at, n_limits, (key or '', limit units) * n,
#       n_keys, (key, expireat or '0') * n
# Returns {0} when held, {-1} when the id is already open, {i, spent, reserved} when the i-th
# limit (1-based) refuses.
_RESERVE = """
local p, rid, amount = ARGV[1], ARGV[2], ARGV[3]
local units = tonumber(amount)
local res = p .. ':reservations'
if redis.call('HEXISTS', res, rid) == 1 then return {-1} end
local i = 6
for j = 1, tonumber(ARGV[5]) do
  local key, limit = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local spent, reserved = 0, 0
  if key ~= '' then
    local t = redis.call('HMGET', p .. ':total:' .. key, 'spent', 'reserved')
    spent, reserved = tonumber(t[1]) or 0, tonumber(t[2]) or 0
  end
  if spent + reserved + units > limit then return {j, spent, reserved} end
end
local n = tonumber(ARGV[i])
i = i + 1
local keys, ats = {}, {}
for j = 1, n do
  local key, at = ARGV[i], ARGV[i + 1]
  i = i + 2
  local tk = p .. ':total:' .. key
  if amount ~= '0' then redis.call('HINCRBY', tk, 'reserved', amount) end
  if at ~= '0' then redis.call('EXPIREAT', tk, at) end
  keys[j], ats[j] = key, at
end
redis.call('HSET', res, rid, cjson.encode({a = amount, k = keys, x = ats}))
redis.call('ZADD', res .. ':expiry', ARGV[4], rid)
return {0}
"""

# ARGV: prefix, rid, request_id, record JSON, cost units, timestamp, n, (key, expireat) * n
# (the fallback keys, used when the reservation is unknown). Returns 1 if the record was new.
_SETTLE = (
    _DROP
    + """
local p, rid, qid, cost = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local held = drop(p, rid)
if redis.call('HEXISTS', p .. ':usage', qid) == 1 then return 0 end
local keys = {}
local n = tonumber(ARGV[7])
for j = 1, n do keys[ARGV[6 + 2 * j]] = ARGV[7 + 2 * j] end
if held then
  keys = {}
  for j, key in ipairs(held.k) do keys[key] = held.x[j] end
end
for key, at in pairs(keys) do
  local tk = p .. ':total:' .. key
  if cost ~= '0' then redis.call('HINCRBY', tk, 'spent', cost) end
  -- Again after the write: dropping the hold may have emptied (deleted) the key.
  if at ~= '0' then redis.call('EXPIREAT', tk, at) end
end
redis.call('HSET', p .. ':usage', qid, ARGV[4])
redis.call('ZADD', p .. ':usage:time', ARGV[6], qid)
return 1
"""
)

_RELEASE = _DROP + "\nreturn drop(ARGV[1], ARGV[2]) and 1 or 0\n"

# ARGV: prefix, now, batch. Returns how many reservations were released.
_EXPIRE = (
    _DROP
    + """
local p = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', p .. ':reservations:expiry', '-inf', ARGV[2],
                       'LIMIT', 0, tonumber(ARGV[3]))
local count = 0
for _, rid in ipairs(due) do
  if drop(p, rid) then count = count + 1 end
end
if count > 0 then redis.call('HINCRBY', p .. ':stats', 'expired', count) end
return {count, #due}
"""
)


class RedisLedger(LedgerStore):
    """A :class:`~router.ledger.base.LedgerStore` in Redis, shared by every process using the
    same ``url`` and ``key_prefix``.

    ``fail_open``: when Redis is unreachable, grant reservations without a check (True) or
    refuse them with :class:`~router.errors.LedgerUnavailableError` (False, the default).
    ``journal_dir``: where settlements that could not be written wait for Redis (default
    ``$XDG_STATE_HOME/router/journal/<hash of url and prefix>``). ``retry_interval``: seconds
    after a failure during which calls fail at once instead of reconnecting. ``client`` may be a
    ready ``redis.Redis`` (tests); it is closed with the store.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "router",
        fail_open: bool = False,
        journal_dir: str | None = None,
        socket_timeout: float = 2.0,
        retry_interval: float = 1.0,
        period_margin: float = PERIOD_MARGIN,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key_prefix:
            raise ValueError("RedisLedger key_prefix must not be empty")
        self.url = display_url(url)
        self.prefix = key_prefix
        self.fail_open = fail_open
        self.retry_interval = retry_interval
        self.period_margin = period_margin
        self._clock = clock
        self._client = client or connect(url, socket_timeout)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._release = self._client.register_script(_RELEASE)
        self._expire = self._client.register_script(_EXPIRE)
        namespace = hashlib.sha256(f"{self.url}\0{key_prefix}".encode()).hexdigest()[:16]
        self.journal = Journal(journal_dir or default_journal_dir(namespace))
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._last_error = ""
        # Keys of every reservation this process holds (backed by Redis or granted open), so a
        # settlement always knows where its cost goes even if Redis lost or expired the hold.
        self._held: dict[str, tuple[str, ...]] = {}
        self._counters = {
            "fail_open_grants": 0,
            "journaled": 0,
            "replayed": 0,
            "unavailable_errors": 0,
        }
        self._closed = False
        # Replay what a previous process on this host left behind, if Redis is there now.
        try:
            self._maybe_replay(force=True)
        except LedgerUnavailableError:
            pass

    @classmethod
    def from_config(cls, config: Any) -> RedisLedger:
        """Build from a :class:`~router.config.LedgerConfig` (``url``, ``key_prefix``,
        ``fail_open``; ``journal_dir`` when the config has one)."""
        return cls(
            config.url,
            key_prefix=getattr(config, "key_prefix", None) or "router",
            fail_open=bool(getattr(config, "fail_open", False)),
            journal_dir=getattr(config, "journal_dir", None),
        )

    def __repr__(self) -> str:
        return f"RedisLedger({self.url!r}, key_prefix={self.prefix!r})"

    # --- the store protocol ------------------------------------------------------------------

    def reserve(
        self,
        reservation_id: str,
        amount: float,
        limits: Sequence[BudgetLimit],
        *,
        keys: Sequence[str] = (),
        expires_at: float,
    ) -> Refusal | None:
        check_amount("reservation amount", amount)
        check_expiry(expires_at)
        units = to_units(amount)
        written = stored_keys(limits, keys)
        args: list[Any] = [self.prefix, reservation_id, str(units), repr(float(expires_at))]
        args.append(len(limits))
        for lim in limits:
            args += ["" if lim.scope == REQUEST_SCOPE else lim.key, str(to_units(lim.limit))]
        args.append(len(written))
        now = self._clock()
        for key in written:
            args += [key, str(self._key_expiry(key, now))]
        try:
            self._maybe_replay()
            reply = self._call("reserve", lambda: self._reserve(args=args))
        except LedgerUnavailableError:
            if not self.fail_open:
                raise
            self._grant_open(reservation_id, written)
            return None
        code = int(reply[0])
        if code == -1:
            raise ValueError(f"reservation {reservation_id!r} is already open")
        if code > 0:
            spent, reserved = int(reply[1]), int(reply[2])
            return Refusal(limits[code - 1], from_units(spent), from_units(reserved), amount)
        self._held[reservation_id] = written
        return None

    def settle(
        self, reservation_id: str, record: UsageRecord, *, keys: Sequence[str] | None = None
    ) -> None:
        fallback = tuple(dict.fromkeys(keys)) if keys is not None else None
        if fallback is None:
            fallback = self._held.get(reservation_id, ())
        self._held.pop(reservation_id, None)
        entry = {
            "op": "settle",
            "reservation_id": reservation_id,
            "record": record.to_dict(),
            "keys": list(fallback),
        }
        try:
            self._maybe_replay()
            self._apply(entry)
        except LedgerUnavailableError as exc:
            self._journal(entry, exc)

    def release(self, reservation_id: str) -> None:
        self._held.pop(reservation_id, None)
        entry = {"op": "release", "reservation_id": reservation_id}
        try:
            self._maybe_replay()
            self._apply(entry)
        except LedgerUnavailableError as exc:
            # The hold would also go by expiry; the journal just gives it back sooner.
            self._journal(entry, exc)

    def totals(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}

        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for key in wanted:
                pipe.hmget(self._k("total", key), "spent", "reserved")
            return pipe.execute()

        rows = self._call("totals", read)
        return {
            key: (from_units(int(spent or 0)), from_units(int(reserved or 0)))
            for key, (spent, reserved) in zip(wanted, rows, strict=True)
        }

    def expire(self, now: float) -> int:
        self._maybe_replay(force=True)
        total = 0
        while True:
            count, seen = self._call(
                "expire", lambda: self._expire(args=[self.prefix, repr(float(now)), _EXPIRE_BATCH])
            )
            total += int(count)
            if int(seen) < _EXPIRE_BATCH:
                return total

    def records(self, *, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        if limit is not None and limit <= 0:
            return []
        index = self._k("usage", "time")
        low = "-inf" if since is None else repr(float(since))

        def read() -> list[Any]:
            if limit is None:
                ids = self._client.zrangebyscore(index, low, "+inf")
            else:
                # Newest first so LIMIT keeps the latest; reversed below.
                ids = self._client.zrevrangebyscore(index, "+inf", low, start=0, num=limit)[::-1]
            return self._client.hmget(self._k("usage"), ids) if ids else []

        raw = self._call("records", read)
        return [UsageRecord.from_dict(json.loads(item)) for item in raw if item is not None]

    def record_count(self) -> int:
        return int(self._call("record_count", lambda: self._client.hlen(self._k("usage"))))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.journal.pending:
            # One real attempt, even inside the retry interval: settlements batched just
            # before a shutdown may all have been journaled within one interval.
            with self._lock:
                self._retry_at = 0.0
            try:
                self._maybe_replay(force=True)
            except LedgerUnavailableError:
                logger.error(
                    "ledger %s still unreachable at close: %d settlement(s) stay in %s and are "
                    "replayed by the next router using this ledger",
                    self.url,
                    self.journal.pending,
                    self.journal.path,
                )
        self.journal.close()
        self._client.close()

    # --- beyond the protocol -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This process's view of the ledger for status output: reachability, fail-open grants,
        journal entries waiting and replayed. Never touches the network."""
        return {
            "type": "redis",
            "url": self.url,
            "available": self._down_since is None,
            "fail_open": self.fail_open,
            "last_error": self._last_error or None,
            "journal_pending": self.journal.pending,
            **self._counters,
        }

    def replay_journal(self) -> int:
        """Apply journaled writes (this process's and orphans') now; return how many.

        Raises :class:`~router.errors.LedgerUnavailableError` if Redis is still unreachable.
        """
        return self._maybe_replay(force=True)

    # --- internals ---------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _key_expiry(self, key: str, now: float) -> int:
        return period_key_expiry(key, now=now, margin=self.period_margin) or 0

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        if self._down_since is not None and time.monotonic() < self._retry_at:
            raise LedgerUnavailableError(
                f"ledger {self.url} unreachable ({what} not attempted; last error: "
                f"{self._last_error})"
            )
        try:
            result = fn()
        except redis.RedisError as exc:
            self._mark_down(exc)
            raise LedgerUnavailableError(f"ledger {self.url}: {what} failed: {exc}") from exc
        if self._down_since is not None:
            self._mark_up()
        return result

    def _mark_down(self, exc: Exception) -> None:
        with self._lock:
            self._counters["unavailable_errors"] += 1
            self._last_error = display_url(str(exc)) or type(exc).__name__
            self._retry_at = time.monotonic() + self.retry_interval
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.error(
                    "LEDGER UNAVAILABLE: %s: %s; %s",
                    self.url,
                    self._last_error,
                    "FAILING OPEN: requests are served WITHOUT budget checks"
                    if self.fail_open
                    else "failing closed: requests are refused until it returns",
                )

    def _mark_up(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            outage = time.monotonic() - self._down_since
            self._down_since = None
        logger.warning(
            "ledger %s reachable again after %.1fs; %d journaled write(s) to replay, %d "
            "fail-open grant(s) so far",
            self.url,
            outage,
            self.journal.pending,
            self._counters["fail_open_grants"],
        )

    def _grant_open(self, reservation_id: str, written: tuple[str, ...]) -> None:
        with self._lock:
            self._counters["fail_open_grants"] += 1
            count = self._counters["fail_open_grants"]
        self._held[reservation_id] = written
        logger.error(
            "ledger %s unreachable: FAIL-OPEN grant for reservation %s without a budget check "
            "(%d so far)",
            self.url,
            reservation_id,
            count,
        )

    def _journal(self, entry: dict[str, Any], cause: LedgerUnavailableError) -> None:
        try:
            self.journal.append(entry)
        except OSError as exc:
            raise LedgerUnavailableError(
                f"{cause}; and the local journal {self.journal.directory} failed: {exc}"
            ) from exc
        with self._lock:
            self._counters["journaled"] += 1

    def _maybe_replay(self, *, force: bool = False) -> int:
        """Replay the journal when there is something to replay (or on ``force``, to pick up
        orphans); a failure leaves the rest for later and raises."""
        if not force and not self.journal.pending:
            return 0
        count = self.journal.replay(self._replay_entry)
        if count:
            with self._lock:
                self._counters["replayed"] += count
            logger.warning("replayed %d journaled ledger write(s) to %s", count, self.url)
        return count

    def _replay_entry(self, entry: dict[str, Any]) -> None:
        try:
            self._apply(entry)
        except (KeyError, TypeError, ValueError) as exc:
            # Not ours to understand (hand-edited, another version): keep replaying the rest
            # rather than block every write behind it.
            logger.error("skipping malformed ledger journal entry %r: %s", entry, exc)

    def _apply(self, entry: dict[str, Any]) -> None:
        """One journal-shaped write, straight to Redis (settle or release)."""
        rid = entry["reservation_id"]
        if entry["op"] == "release":
            self._call("release", lambda: self._release(args=[self.prefix, rid]))
            return
        record = UsageRecord.from_dict(entry["record"])
        now = self._clock()
        args: list[Any] = [
            self.prefix,
            rid,
            record.request_id,
            json.dumps(record.to_dict(), separators=(",", ":")),
            str(to_units(record.cost)),
            repr(float(record.timestamp)),
            len(entry["keys"]),
        ]
        for key in entry["keys"]:
            args += [key, str(self._key_expiry(key, now))]
        self._call("settle", lambda: self._settle(args=args))
