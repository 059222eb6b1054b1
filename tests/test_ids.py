"""Answer and job identifiers: unique within a process and across forked workers."""

from __future__ import annotations

import subprocess
import sys

from router.ids import random_hex

# In a fresh single-threaded interpreter: a forked child (a `router serve` worker) must not
# repeat its parent's sequence.
_PARENT_AND_CHILD = """
import os
from router.ids import random_hex
read, write = os.pipe()
if os.fork() == 0:
    os.write(write, random_hex().encode())
    os._exit(0)
os.wait()
print(random_hex(), os.read(read, 64).decode())
"""


def test_identifiers_have_the_asked_length_and_do_not_repeat():
    ids = {random_hex() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)
    assert len(random_hex(24)) == 24 and len(random_hex(12)) == 12


def test_a_forked_worker_does_not_repeat_its_parents_identifiers():
    done = subprocess.run(
        [sys.executable, "-c", _PARENT_AND_CHILD], capture_output=True, text=True, timeout=60
    )
    parent, child = done.stdout.split()
    assert parent != child
