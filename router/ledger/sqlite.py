"""The default ledger: one SQLite file, so spend survives restarts.

Every write runs in a ``BEGIN IMMEDIATE`` transaction: it takes the file's write lock before
reading the totals it checks, so two processes sharing the file serialise on SQLite's own
locking and can never both pass the last dollar. WAL mode lets readers (``router budget`` in
another process) run while a writer holds the lock; ``synchronous=NORMAL`` is durable across
process crashes, and at worst loses the last transactions on power loss.

Only the budget actor's thread writes. The connection is opened with
``check_same_thread=False`` so the manager may also read totals or close the store from another
thread; a lock serialises those calls.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

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

__all__ = ["SQLiteLedger", "SCHEMA_VERSION", "default_ledger_path"]

#: ``PRAGMA user_version`` of the schema below; bump it with a migration when the schema changes.
SCHEMA_VERSION = 1

# Money columns are INTEGER nano-dollars (see router.ledger.base); record.cost keeps the float.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS totals (
    key      TEXT PRIMARY KEY,
    spent    INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reservations (
    id         TEXT PRIMARY KEY,
    amount     INTEGER NOT NULL,
    keys       TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_expires_at ON reservations (expires_at);
CREATE TABLE IF NOT EXISTS usage (
    request_id          TEXT PRIMARY KEY,
    timestamp           REAL NOT NULL,
    provider            TEXT NOT NULL,
    provider_type       TEXT NOT NULL,
    model               TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost                REAL NOT NULL,
    outcome             TEXT NOT NULL,
    provider_request_id TEXT,
    day                 TEXT NOT NULL,
    month               TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_timestamp ON usage (timestamp);
"""

_USAGE_COLUMNS = (
    "request_id, timestamp, provider, provider_type, model, input_tokens, output_tokens, "
    "cached_input_tokens, cost, outcome, provider_request_id, day, month"
)

# Another process may hold the write lock for a while (a slow disk, a long `router budget`
# read); waiting is better than failing a request.
_BUSY_TIMEOUT_S = 30.0


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user default file: ``$XDG_DATA_HOME/router/ledger.db``
    (``~/.local/share/router/ledger.db`` when unset). ``LedgerConfig`` fills its ``path``
    with this, so every store the router opens by default is the same file."""
    environ = os.environ if environ is None else environ
    data_home = environ.get("XDG_DATA_HOME")
    if data_home:
        return Path(data_home) / "router" / "ledger.db"
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / "router" / "ledger.db"


class SQLiteLedger(LedgerStore):
    """A :class:`~router.ledger.base.LedgerStore` in an SQLite file (WAL, ``BEGIN IMMEDIATE``).

    ``path`` may be ``":memory:"`` (private to this object). Parent directories are created.
    Errors from SQLite surface as :class:`~router.errors.LedgerUnavailableError` naming the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
            self._db = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerUnavailableError(f"cannot open ledger {self.path}: {exc}") from exc
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"

    def _setup(self) -> None:
        with self._errors("open"):
            self._db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            self._enable_wal()
            self._db.execute("PRAGMA synchronous = NORMAL")
        # Two processes may open a fresh file at once: create the schema under the write lock.
        with self._transaction("open") as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerUnavailableError(
                    f"ledger {self.path} has schema version {version}; this router understands "
                    f"up to {SCHEMA_VERSION} (upgrade router or use another ledger path)"
                )
            if version < SCHEMA_VERSION:
                # Statement by statement: executescript() would COMMIT our transaction first.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _enable_wal(self) -> None:
        # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database
        # is locked" at once, without its busy handler, while another process (a sibling
        # worker starting at the same moment) holds it: retry until the busy timeout.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"ledger {self.path}: {what} failed: {exc}") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(what):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT: never leave the connection inside a transaction.
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

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
        with self._transaction("reserve") as db:
            if db.execute("SELECT 1 FROM reservations WHERE id = ?", (reservation_id,)).fetchone():
                raise ValueError(f"reservation {reservation_id!r} is already open")
            for lim in limits:
                spent = reserved = 0
                if lim.scope != REQUEST_SCOPE:
                    row = db.execute(
                        "SELECT spent, reserved FROM totals WHERE key = ?", (lim.key,)
                    ).fetchone()
                    if row is not None:
                        spent, reserved = row
                if spent + reserved + units > to_units(lim.limit):
                    return Refusal(lim, from_units(spent), from_units(reserved), amount)
            written = stored_keys(limits, keys)
            db.executemany(
                "INSERT INTO totals (key, spent, reserved) VALUES (?, 0, ?) "
                "ON CONFLICT (key) DO UPDATE SET reserved = reserved + excluded.reserved",
                [(key, units) for key in written],
            )
            db.execute(
                "INSERT INTO reservations (id, amount, keys, expires_at) VALUES (?, ?, ?, ?)",
                (reservation_id, units, json.dumps(written), float(expires_at)),
            )
            return None

    def settle(
        self, reservation_id: str, record: UsageRecord, *, keys: Sequence[str] | None = None
    ) -> None:
        self.settle_many([(reservation_id, record, keys)])

    def settle_many(
        self, settlements: Sequence[tuple[str, UsageRecord, Sequence[str] | None]]
    ) -> None:
        # One transaction and a handful of statements for the whole batch, not five per
        # record: every statement releases and re-takes the GIL, which the threads serving
        # requests then wait for.
        if not settlements:
            return
        with self._transaction("settle") as db:
            held: dict[str, tuple[int, tuple[str, ...]]] = {}
            for marks, ids in _id_lists([rid for rid, _, _ in settlements]):
                for rid, amount, keys_json in db.execute(
                    f"SELECT id, amount, keys FROM reservations WHERE id IN ({marks})", ids
                ):
                    held[rid] = (amount, tuple(json.loads(keys_json)))
                db.execute(f"DELETE FROM reservations WHERE id IN ({marks})", ids)
            released: dict[str, int] = {}
            for amount, held_keys in held.values():
                for key in held_keys:
                    released[key] = released.get(key, 0) + amount
            # Idempotent by request id: a record already stored only releases its hold.
            stored: set[str] = set()
            for marks, ids in _id_lists([record.request_id for _, record, _ in settlements]):
                stored.update(
                    row[0]
                    for row in db.execute(
                        f"SELECT request_id FROM usage WHERE request_id IN ({marks})", ids
                    )
                )
            spent: dict[str, int] = {}
            rows = []
            for rid, record, keys in settlements:
                hold = held.pop(rid, None)
                if record.request_id in stored:
                    continue
                stored.add(record.request_id)
                spend_keys = hold[1] if hold is not None else tuple(dict.fromkeys(keys or ()))
                cost = to_units(record.cost)
                for key in spend_keys:
                    spent[key] = spent.get(key, 0) + cost
                rows.append(
                    (
                        record.request_id,
                        record.timestamp,
                        record.provider,
                        record.provider_type,
                        record.model,
                        record.input_tokens,
                        record.output_tokens,
                        record.cached_input_tokens,
                        record.cost,
                        record.outcome,
                        record.provider_request_id,
                        record.day,
                        record.month,
                    )
                )
            if released:
                db.executemany(
                    "UPDATE totals SET reserved = reserved - ? WHERE key = ?",
                    [(amount, key) for key, amount in released.items()],
                )
            if spent:
                db.executemany(
                    "INSERT INTO totals (key, spent, reserved) VALUES (?, ?, 0) "
                    "ON CONFLICT (key) DO UPDATE SET spent = spent + excluded.spent",
                    list(spent.items()),
                )
            if rows:
                db.executemany(
                    f"INSERT INTO usage ({_USAGE_COLUMNS}) VALUES ({', '.join('?' * 13)})", rows
                )

    def release(self, reservation_id: str) -> None:
        with self._transaction("release") as db:
            self._drop(db, reservation_id)

    def totals(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        out = {key: (0.0, 0.0) for key in keys}
        if not out:
            return out
        wanted = list(out)
        with self._lock, self._errors("totals"):
            rows = self._db.execute(
                f"SELECT key, spent, reserved FROM totals WHERE key IN ({', '.join('?' * len(wanted))})",
                wanted,
            ).fetchall()
        for key, spent, reserved in rows:
            out[key] = (from_units(spent), from_units(reserved))
        return out

    def expire(self, now: float) -> int:
        with self._transaction("expire") as db:
            due = [
                row[0]
                for row in db.execute("SELECT id FROM reservations WHERE expires_at <= ?", (now,))
            ]
            for rid in due:
                self._drop(db, rid)
            return len(due)

    def records(self, *, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        if limit is not None and limit <= 0:
            return []
        query = f"SELECT {_USAGE_COLUMNS} FROM usage"
        params: list[float | int] = []
        if since is not None:
            query += " WHERE timestamp >= ?"
            params.append(since)
        # Newest first so LIMIT keeps the latest; reversed below. rowid breaks timestamp ties in
        # insertion order.
        query += " ORDER BY timestamp DESC, rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._lock, self._errors("records"):
            rows = self._db.execute(query, params).fetchall()
        return [UsageRecord(*row) for row in reversed(rows)]

    def record_count(self) -> int:
        with self._lock, self._errors("record_count"):
            return self._db.execute("SELECT COUNT(*) FROM usage").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _drop(db: sqlite3.Connection, reservation_id: str) -> tuple[str, ...] | None:
        row = db.execute(
            "SELECT amount, keys FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
        if row is None:
            return None
        amount, keys_json = row
        keys = tuple(json.loads(keys_json))
        db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        db.executemany(
            "UPDATE totals SET reserved = reserved - ? WHERE key = ?",
            [(amount, key) for key in keys],
        )
        return keys


# Placeholder list lengths used for ``IN (...)``: a few fixed statement texts, so the
# connection's statement cache stays small whatever the batch sizes (one text per size grew
# SQLite's heap by a megabyte over 50,000 requests).
_ID_LIST_SIZES = (1, 8, 64, 512)


def _id_lists(values: list[str]) -> Iterator[tuple[str, list[str | None]]]:
    """``(placeholders, parameters)`` covering ``values``, padded with NULL (never equal)."""
    largest = _ID_LIST_SIZES[-1]
    for start in range(0, len(values), largest):
        part: list[str | None] = list(values[start : start + largest])
        size = next(n for n in _ID_LIST_SIZES if n >= len(part))
        part += [None] * (size - len(part))
        yield ", ".join("?" * size), part
