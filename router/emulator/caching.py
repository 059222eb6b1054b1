"""The emulator's prompt cache: which prompt prefixes it has seen, per running emulator.

A request that marks a prefix as cacheable (Anthropic ``cache_control``) or repeats one
(OpenAI's and Gemini's automatic caching) is told how many tokens it wrote to or read from the
cache, so clients can test their accounting offline. There is no minimum length and entries
never expire (a real provider needs 1024+ tokens and forgets after the TTL).
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any


class PromptCache:
    """Fingerprints of cached prefixes; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def touch(self, prefix: Any) -> bool:
        """Whether ``prefix`` (any JSON value) was cached before; caches it from now on."""
        key = hashlib.sha256(
            json.dumps(prefix, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        with self._lock:
            seen = key in self._seen
            self._seen.add(key)
        return seen

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
