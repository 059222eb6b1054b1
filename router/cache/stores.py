"""Where cached answers live: opaque bytes under a key, with an expiry and a size bound.

The stores know nothing of requests or responses (:class:`~router.cache.core.ResponseCache`
encodes, checks and decodes the values). Each is thread-safe; a store may raise on an outage
(the cache counts it as a miss). ``max_entries`` is a bound, not an exact count: the oldest
entries (soonest to expire) go first when it is passed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = ["CacheStore", "MemoryCacheStore", "SQLiteCacheStore"]


class CacheStore(Protocol):
    """A key-value store of cache entries."""

    name: str

    def get(self, key: str) -> bytes | None:
        """The value stored under ``key`` if it has not expired."""

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (replacing any entry under ``key``)."""

    def delete(self, key: str) -> None: ...

    def count(self) -> int:
        """Entries held (expired ones not yet pruned may be included)."""

    def close(self) -> None: ...


class MemoryCacheStore:
    """Entries in this process only (a memory ledger's cache, and tests)."""

    name = "memory"

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (expires_at, value), in insertion order: the first is the oldest.
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self.delete(key)
            return None
        return entry[1]

    def put(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (self._clock() + ttl, value)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def count(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires);
"""

# Pruning (expired entries, then the oldest over the bound) runs every this many writes of a
# process rather than on each, so a miss pays one INSERT.
_PRUNE_EVERY = 64
# A writer in another process holds the file only for one statement; waiting longer than this
# would make the cache slower than the provider it stands in for.
_BUSY_TIMEOUT_S = 0.25


class SQLiteCacheStore:
    """Entries in one SQLite file, shared by every process on the host that opens it."""

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_entries: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._writes = 0
        self._prune_every = max(1, min(_PRUNE_EVERY, max_entries // 8))
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            # A cache loses nothing that matters in a power cut; a torn entry fails its check.
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({self.path!r})"

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, self._clock())
            ).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries (key, expires, value) VALUES (?, ?, ?)",
                (key, now + ttl, value),
            )
            self._writes += 1
            if self._writes % self._prune_every == 1 or self._prune_every == 1:
                self._prune(now)

    def _prune(self, now: float) -> None:
        db = self._db
        db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
        excess = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] - self.max_entries
        if excess > 0:
            db.execute(
                "DELETE FROM entries WHERE key IN "
                "(SELECT key FROM entries ORDER BY expires LIMIT ?)",
                (excess,),
            )

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE key = ?", (key,))

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
