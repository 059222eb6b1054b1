"""The opt-in response cache: exact-match answers, served without a provider call or spend.

:func:`open_cache` builds it from the configuration's ``cache`` section (``None`` when it is
off). The policy, key and entry checks are in :mod:`router.cache.core`; the stores (SQLite,
memory, Redis) in :mod:`router.cache.stores` and :mod:`router.cache.redis`; stream replays of a
hit in :mod:`router.cache.replay`. See docs/configuration.md ("Response cache").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from router.cache.core import ResponseCache
from router.cache.replay import ReplayStream
from router.cache.stores import CacheStore, MemoryCacheStore, SQLiteCacheStore
from router.errors import ConfigError

__all__ = [
    "CacheStore",
    "MemoryCacheStore",
    "ReplayStream",
    "ResponseCache",
    "SQLiteCacheStore",
    "open_cache",
]


def open_cache(config: Any) -> ResponseCache | None:
    """The cache a :class:`~router.config.RouterConfig` asks for, or None when it is off.

    The store follows the ledger unless ``cache.store`` says otherwise: the ledger's Redis (its
    URL and key prefix), ``<ledger>-cache.db`` beside the SQLite ledger, or memory.
    """
    settings, ledger = config.cache, config.ledger
    if not settings.enabled:
        return None
    kind = settings.store or ledger.type
    store: CacheStore
    if kind == "redis":
        from router.cache.redis import RedisCacheStore

        store = RedisCacheStore(ledger.url, settings.max_entries, key_prefix=ledger.key_prefix)
    elif kind == "sqlite":
        path = settings.path or _beside_ledger(ledger.path)
        if path == ":memory:":
            store = MemoryCacheStore(settings.max_entries)  # beside a memory SQLite ledger
        else:
            try:
                store = SQLiteCacheStore(path, settings.max_entries)
            except Exception as error:
                raise ConfigError(f"cache: cannot open {path}: {error}") from None
    else:
        store = MemoryCacheStore(settings.max_entries)
    return ResponseCache(
        store,
        recent_entries=settings.recent_entries,
        ttl=settings.ttl,
        max_entry_bytes=settings.max_entry_bytes,
        any_temperature=settings.any_temperature,
        default_model=config.default_model,
    )


def _beside_ledger(ledger_path: str | None) -> str:
    if not ledger_path or ledger_path == ":memory:":
        return ":memory:"
    path = Path(ledger_path).expanduser()
    return str(path.with_name(f"{path.stem}-cache.db"))
