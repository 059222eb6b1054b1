"""Settlements written ahead to disk, so a killed process loses no usage record.

Workers queue their ``Settle`` messages for the budget actor (``DeferredMessages``); until the
actor has stored them they live only in memory, and a SIGKILL would lose them. This queue also
appends each usage record as a JSON line to a file of its own before queueing it (one
``write``, no fsync: the data is in the kernel once the call returns, which is what survives a
killed process). Two files alternate: when the actor takes a batch, new records go to the other
file, and once the batch is in the ledger the old file is emptied. Each file is ``flock``-ed by
its process; a file nobody holds belongs to a process that died, and the next budget actor on
the same ledger replays it (settling is idempotent by request id) and deletes it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from router.actors.deferred import DeferredMessages
from router.ledger.base import UsageRecord

logger = logging.getLogger(__name__)

__all__ = ["WriteAheadSettlements", "pending_directory", "replay_orphans"]

SUFFIX = ".pending.jsonl"
_RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(UsageRecord))


def pending_directory(ledger: Any) -> Path | None:
    """Where the write-ahead files of processes sharing ``ledger`` (a LedgerConfig) live."""
    if ledger.type == "sqlite" and ledger.path and ledger.path != ":memory:":
        return Path(str(ledger.path) + ".pending")
    if ledger.type == "redis" and ledger.url:
        import hashlib

        from router.ledger.journal import default_journal_dir

        digest = hashlib.sha256(f"{ledger.url}|{ledger.key_prefix}".encode()).hexdigest()[:16]
        return default_journal_dir(f"pending-{digest}")
    return None  # an in-memory ledger does not survive the process anyway


class WriteAheadSettlements(DeferredMessages):
    """``DeferredMessages`` for ``Settle``s whose records are on disk until stored."""

    def __init__(self, scheduler: Any, directory: Path, delay: float = 0.01) -> None:
        super().__init__(scheduler, delay)
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._paths = [directory / f"{stem}.{side}{SUFFIX}" for side in "ab"]
        self._fds = []
        for path in self._paths:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live
            self._fds.append(fd)
        self._current = 0
        self._taken: int | None = None

    def _prepare(self, message: Any) -> bytes | None:
        record = getattr(message, "record", None)
        if not isinstance(record, UsageRecord):
            return None
        values = {name: getattr(record, name) for name in _RECORD_FIELDS}
        return (json.dumps(values, separators=(",", ":")) + "\n").encode()

    def _queued(self, prepared: bytes | None) -> int:
        # The file of the batch this message joins (read under the queue's lock).
        return self._current

    def _after_queue(self, prepared: bytes | None, token: int) -> None:
        # Written outside the lock (a write releases the GIL; holding the lock through it
        # makes concurrent workers convoy). Before the caller is answered, which is what
        # counts. If the batch was stored and its file emptied in between, the line lands in
        # an emptied file: a duplicate of a stored record, harmless (replay is idempotent).
        if prepared is not None:
            try:
                os.write(self._fds[token], prepared)
            except (OSError, IndexError):
                logger.debug("write-ahead file closed: the router is stopping")

    def _batch_taken(self) -> None:
        # Every record in the current file belongs to the batch just taken.
        self._taken = self._current
        self._current = 1 - self._current

    def batch_done(self) -> None:
        if self._taken is not None:
            os.ftruncate(self._fds[self._taken], 0)
            self._taken = None

    def close(self) -> None:
        for fd, path in zip(self._fds, self._paths, strict=True):
            os.close(fd)
            path.unlink(missing_ok=True)
        self._fds = []


def _orphans(directory: Path) -> Iterator[tuple[Path, int]]:
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # a live process holds it
            continue
        yield path, fd


def replay_orphans(directory: Path, settle: Callable[[UsageRecord], None]) -> int:
    """Settle the records left by dead processes in ``directory``; returns how many."""
    if not directory.is_dir():
        return 0
    count = 0
    for path, fd in _orphans(directory):
        try:
            with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as handle:
                for number, line in enumerate(handle, 1):
                    try:
                        record = UsageRecord.from_dict(json.loads(line))
                    except (ValueError, TypeError):
                        # A torn last line from the kill: it was never a whole record.
                        logger.warning("%s:%d: skipped an unreadable line", path, number)
                        continue
                    settle(record)
                    count += 1
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    if count:
        logger.warning("replayed %d usage record(s) left by stopped processes", count)
    return count
