"""Identifiers for answers and jobs, without a system call each.

``uuid.uuid4()`` and ``secrets.token_hex()`` read the kernel's random source: a system call
per identifier, which also releases the GIL (a hand-off to another thread when hundreds of
request threads are waiting for it). Response and job identifiers need to be unique, not
secret, so they come from a per-process generator seeded from the kernel once, and again in
each forked worker (so siblings never share a sequence).
"""

from __future__ import annotations

import os
import random

__all__ = ["random_hex"]

_source = random.Random(os.urandom(32))  # noqa: S311 - unique, not secret


def _reseed() -> None:
    _source.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def random_hex(length: int = 32) -> str:
    """``length`` random lowercase hex digits (32: as many as a UUID's)."""
    return f"{_source.getrandbits(4 * length):0{length}x}"
