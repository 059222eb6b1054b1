"""The scheduler keeps no per-request state behind a live timer."""

from __future__ import annotations

import threading

from router.scheduler import Scheduler


def test_cancelled_timers_behind_a_live_one_do_not_pile_up():
    scheduler = Scheduler().start()
    try:
        fired = threading.Event()
        # A long live timer at the head of the heap (like the reservation-expiry tick) keeps
        # the thread asleep: it never pops the cancelled deadlines queued behind it.
        scheduler.call_later(3600, fired.set)
        for _ in range(5000):
            scheduler.call_later(7200, lambda: None).cancel()  # a request answered in time
        # Bounded by a small constant, not by the number of requests (nor by 1024 + doubling).
        assert len(scheduler._heap) <= 2 + 2 * 64
        done = threading.Event()
        scheduler.call_later(0.0, done.set)
        assert done.wait(5)  # still running timers
        assert not fired.is_set()
    finally:
        scheduler.stop()
