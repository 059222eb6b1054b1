"""Usage ledger stores: where spend, reservations and usage records persist.

:func:`open_ledger` picks the store from the configuration: ``sqlite`` (the default, one file,
shared safely by several processes on one host), ``memory`` (tests, throwaway runs) or
``redis`` (several hosts; needs ``pip install router[redis]``).
"""

from __future__ import annotations

import importlib
from typing import Any

from router.errors import ConfigError
from router.ledger.base import LedgerStore, Refusal, UsageRecord
from router.ledger.memory import MemoryLedger
from router.ledger.sqlite import SQLiteLedger, default_ledger_path

__all__ = [
    "LedgerStore",
    "UsageRecord",
    "Refusal",
    "MemoryLedger",
    "SQLiteLedger",
    "default_ledger_path",
    "open_ledger",
]


def open_ledger(config: Any) -> LedgerStore:
    """Open the store described by the ledger config (``.type``, ``.path``, ``.url``,
    ``.key_prefix``).

    ``sqlite`` uses ``.path`` (the per-user :func:`default_ledger_path` when empty). ``redis``
    imports :mod:`router.ledger.redis` on first use and calls its
    ``RedisLedger.from_config(config)``; a missing module or redis-py is a
    :class:`~router.errors.ConfigError` saying what to install.
    """
    kind = str(getattr(config.type, "value", config.type)).lower()
    if kind == "sqlite":
        path = getattr(config, "path", None)
        return SQLiteLedger(path or default_ledger_path())
    if kind == "memory":
        return MemoryLedger()
    if kind == "redis":
        try:
            module = importlib.import_module("router.ledger.redis")
        except ModuleNotFoundError as exc:
            if exc.name not in ("router.ledger.redis", "redis") and not (exc.name or "").startswith(
                "redis."
            ):
                raise
            raise ConfigError(
                "ledger.type 'redis' needs redis-py and router's Redis ledger "
                f"(pip install 'router[redis]'); missing module {exc.name!r}"
            ) from None
        return module.RedisLedger.from_config(config)
    raise ConfigError(f"ledger.type {config.type!r} is unknown; expected sqlite, memory or redis")
