"""A local journal of ledger writes that could not reach a shared store.

When the shared store (Redis) is unreachable, a settlement cannot be dropped: the money was
spent and the usage record must exist. The store appends it to this journal, a JSON-lines file
on local disk, and replays it when the store answers again. Replay relies on the store's own
idempotency (settle is idempotent by ``request_id``, release by reservation id), so an entry
applied twice — a crash between applying and truncating, or a write that did reach the server
but whose reply was lost — is never counted twice.

Layout: one file per process, ``<directory>/<host>-<pid>-<random>.jsonl``. The owning process
holds an exclusive ``flock`` on its file for as long as it lives. A file nobody holds belongs
to a process that died before replaying it (an *orphan*); any process sharing the directory
locks it, replays it and deletes it. New files are created under a dot-name, locked, then
renamed, so an orphan scan never takes a file whose owner is still setting it up.

POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

__all__ = ["Journal", "default_journal_dir"]

logger = logging.getLogger(__name__)


def default_journal_dir(namespace: str) -> Path:
    """``$XDG_STATE_HOME/router/journal/<namespace>`` (``~/.local/state/...`` when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "router" / "journal" / namespace


class Journal:
    """This process's append-only journal in ``directory``, plus replay of orphans there.

    Thread-safe. ``append`` is durable (``fsync``) before it returns. Nothing is created on
    disk until the first ``append``.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._pending: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"Journal({str(self.directory)!r}, pending={len(self._pending)})"

    @property
    def pending(self) -> int:
        """Entries of this process not yet replayed."""
        return len(self._pending)

    @property
    def path(self) -> Path | None:
        """This process's journal file, once created."""
        return self._path

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry durably; raises ``OSError`` if the disk refuses."""
        line = json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            handle = self._own_file()
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            self._pending.append(entry)

    def replay(self, apply: Callable[[dict[str, Any]], None]) -> int:
        """Apply this process's pending entries in order, then every orphan file's.

        Stops at the first entry ``apply`` raises on and re-raises; applied entries are
        forgotten only once the whole file has been applied (re-applying is harmless). Returns
        how many entries were applied.
        """
        with self._lock:
            applied = self._replay_own(apply)
            return applied + self._replay_orphans(apply)

    def close(self) -> None:
        """Close this process's file; delete it when nothing is pending (else it stays for
        the next process to replay as an orphan). Idempotent."""
        with self._lock:
            if self._file is None:
                return
            if not self._pending and self._path is not None:
                with suppress(OSError):
                    os.unlink(self._path)
            self._file.close()  # releases the flock
            self._file = self._path = None

    # --- internals ---------------------------------------------------------------------------

    def _own_file(self) -> IO[str]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            hidden = self.directory / f".{name}"
            handle = open(hidden, "x", encoding="utf-8")  # noqa: SIM115 - lives with the journal
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                # Same inode after the rename, so the lock comes along.
                os.rename(hidden, self.directory / name)
            except OSError:
                handle.close()
                raise
            self._file, self._path = handle, self.directory / name
        return self._file

    def _replay_own(self, apply: Callable[[dict[str, Any]], None]) -> int:
        applied = 0
        try:
            for entry in self._pending:
                apply(entry)
                applied += 1
        finally:
            # The file keeps every entry until all are applied: a crash in between replays
            # some twice, which the store's idempotency absorbs.
            del self._pending[:applied]
        if applied and self._file is not None:
            self._file.seek(0)
            self._file.truncate()
        return applied

    def _replay_orphans(self, apply: Callable[[dict[str, Any]], None]) -> int:
        if not self.directory.is_dir():
            return 0
        own = self.path
        applied = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            if own is not None and path == own:
                continue
            try:
                handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue  # replayed and deleted by another process just now
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and will replay it itself
                entries = _read_entries(handle, path)
                for entry in entries:
                    apply(entry)
                    applied += 1
                with suppress(FileNotFoundError):
                    os.unlink(path)
            if entries:
                logger.warning("replayed %d ledger write(s) left in %s", len(entries), path)
        return applied


def _read_entries(handle: IO[str], path: Path) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            # Only a torn last line (a crash mid-write) can look like this: its append never
            # returned, so its caller never counted on it.
            logger.error("skipping unreadable line %d of ledger journal %s", number, path)
    return entries
