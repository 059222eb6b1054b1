"""The Redis ledger: the store specification of ``test_ledger`` run on a real redis-server, plus
what only a shared store has (period key expiry, outages, the journal, other processes)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import count
from types import SimpleNamespace

import pytest
from redis_server import SKIP_REASON, RedisServer, free_port
from test_ledger import (  # noqa: F401 - collected here, against the Redis `ledger` fixture
    DAY,
    LATER,
    MONTH,
    SPEND,
    TestRecords,
    TestReleaseAndExpire,
    TestReserve,
    TestSettle,
    record,
    totals,
)

from router.errors import LedgerUnavailableError
from router.ledger import open_ledger

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

if SKIP_REASON is None:
    from router.ledger.redis import RedisLedger, period_key_expiry

_prefixes = count()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop(save=False)


@pytest.fixture
def make_store(redis_server, tmp_path) -> Iterator:
    """Stores on the module's server; each test gets its own key prefix and journal dir."""
    stores: list[RedisLedger] = []
    prefix = f"test{next(_prefixes)}"

    def build(url: str | None = None, **kwargs) -> RedisLedger:
        kwargs.setdefault("key_prefix", prefix)
        kwargs.setdefault("journal_dir", str(tmp_path / "journal"))
        kwargs.setdefault("retry_interval", 0.0)
        store = RedisLedger(url or redis_server.url, **kwargs)
        stores.append(store)
        return store

    yield build
    for store in stores:
        store.close()


@pytest.fixture
def ledger(make_store) -> RedisLedger:
    """Overrides ``test_ledger``'s fixture for the imported specification classes."""
    return make_store()


# --- what only the Redis store has ----------------------------------------------------------


class TestPeriodKeys:
    def test_day_and_month_keys_expire_after_their_period_plus_the_margin(self):
        now = 0.0  # long ago: the period end decides
        day_end = 1795651200  # 2026-11-26T00:00Z
        month_end = 1796083200  # 2026-12-01T00:00Z
        slack = 14 * 3600
        assert period_key_expiry(DAY.key, now=now, margin=10) == day_end + slack + 10
        assert period_key_expiry(MONTH.key, now=now, margin=10) == month_end + slack + 10
        assert (
            period_key_expiry("spend:month:2026-12:provider:openai", now=now, margin=0)
            == 1798761600 + slack  # 2027-01-01
        )

    def test_a_late_write_keeps_its_key_for_at_least_the_margin(self):
        assert period_key_expiry(DAY.key, now=2e9, margin=10) == 2_000_000_010

    def test_keys_without_a_period_never_expire(self):
        assert period_key_expiry("custom-key", now=0.0) is None
        assert period_key_expiry("budget:x:day:2026-13-40", now=0.0) is None

    def test_stored_period_keys_carry_a_ttl_and_others_none(self, ledger, redis_server):
        ledger.reserve("r1", 0.1, [MONTH, DAY], keys=["plain"], expires_at=LATER)
        ledger.settle("r1", record("q1", 0.1))
        client = redis_server.client()
        prefix = ledger.prefix
        assert client.ttl(f"{prefix}:total:{MONTH.key}") > 0
        assert client.ttl(f"{prefix}:total:{DAY.key}") > 0
        assert client.ttl(f"{prefix}:total:plain") == -1
        client.close()


class TestSharing:
    def test_another_process_sees_totals_records_and_holds(self, make_store):
        first, second = make_store(), make_store()
        first.reserve("r1", 0.6, [MONTH], keys=SPEND, expires_at=LATER)
        # The second router cannot take the last 0.5 the first one holds.
        assert second.reserve("r2", 0.5, [MONTH], expires_at=LATER) is not None
        first.settle("r1", record("q1", 0.2))
        assert second.reserve("r2", 0.5, [MONTH], expires_at=LATER) is None
        assert second.records() == [record("q1", 0.2)]
        assert totals(second, MONTH.key) == [(0.2, 0.5)]

    def test_a_dead_holders_reservation_is_expired_by_another_and_counted(
        self, make_store, redis_server
    ):
        dead, alive = make_store(), make_store()
        dead.reserve("r1", 0.9, [MONTH], expires_at=100.0)
        assert alive.reserve("r2", 0.5, [MONTH], expires_at=LATER) is not None
        assert alive.expire(now=100.0) == 1
        assert alive.reserve("r2", 0.5, [MONTH], expires_at=LATER) is None
        client = redis_server.client()
        assert client.hget(f"{alive.prefix}:stats", "expired") == "1"
        client.close()

    def test_scripts_are_reloaded_after_a_script_flush(self, ledger, redis_server):
        ledger.reserve("r1", 0.1, [MONTH], expires_at=LATER)
        client = redis_server.client()
        client.script_flush()  # what a Redis restart does to the script cache
        client.close()
        ledger.settle("r1", record("q1", 0.1))
        assert totals(ledger, MONTH.key) == [(0.1, 0.0)]

    def test_open_ledger_builds_it_from_the_config(self, redis_server, tmp_path):
        config = SimpleNamespace(
            type="redis", url=redis_server.url, key_prefix="from-config", fail_open=True
        )
        store = open_ledger(config)
        try:
            assert isinstance(store, RedisLedger)
            assert (store.prefix, store.fail_open) == ("from-config", True)
            assert store.record_count() == 0
        finally:
            store.close()


class TestOutage:
    def unreachable(self, make_store, **kwargs) -> RedisLedger:
        return make_store(f"redis://router:s3cret@127.0.0.1:{free_port()}/0", **kwargs)

    def test_fail_closed_names_the_ledger_without_its_password(self, make_store):
        store = self.unreachable(make_store)
        with pytest.raises(LedgerUnavailableError) as caught:
            store.reserve("r1", 0.1, [MONTH], expires_at=LATER)
        message = str(caught.value)
        assert "redis://router:***@127.0.0.1:" in message
        assert "s3cret" not in message and "s3cret" not in repr(store)
        assert store.stats()["available"] is False
        with pytest.raises(LedgerUnavailableError):
            store.totals([MONTH.key])

    def test_fail_open_grants_loudly_and_counts(self, make_store, caplog):
        store = self.unreachable(make_store, fail_open=True)
        with caplog.at_level(logging.ERROR, logger="router.ledger.redis"):
            assert store.reserve("r1", 0.1, [MONTH], expires_at=LATER) is None
            assert store.reserve("r2", 0.1, [MONTH], expires_at=LATER) is None
        assert store.stats()["fail_open_grants"] == 2
        assert "LEDGER UNAVAILABLE" in caplog.text and "FAIL-OPEN" in caplog.text
        # Bad input is still bad input, reachable or not.
        with pytest.raises(ValueError, match="amount"):
            store.reserve("r3", -1.0, [MONTH], expires_at=LATER)

    def test_a_retry_interval_keeps_an_outage_off_the_network(self, make_store):
        store = self.unreachable(make_store, retry_interval=60.0)
        with pytest.raises(LedgerUnavailableError, match="failed"):
            store.record_count()
        with pytest.raises(LedgerUnavailableError, match="not attempted"):
            store.record_count()
        assert store.stats()["unavailable_errors"] == 1

    def test_settlements_during_an_outage_are_journaled_and_replayed_once(
        self, make_store, tmp_path
    ):
        server = RedisServer(tmp_path / "own-redis").start()
        try:
            store = make_store(server.url)
            store.reserve("r1", 0.3, [MONTH], keys=SPEND, expires_at=LATER)
            server.stop()  # saved to disk: an outage, not a wipe
            store.settle("r1", record("q1", 0.2))
            store.release("r-other")
            assert store.stats()["journal_pending"] == 2
            with pytest.raises(LedgerUnavailableError):
                store.reserve("r2", 0.1, [MONTH], expires_at=LATER)

            server.start()
            assert store.reserve("r2", 0.1, [MONTH], expires_at=LATER) is None  # replays first
            assert store.stats()["journal_pending"] == 0
            assert store.stats()["replayed"] == 2
            assert totals(store, MONTH.key, *SPEND) == [(0.2, 0.1), (0.2, 0.0), (0.2, 0.0)]
            # A write whose reply was lost is replayed again: still counted once.
            store.settle("r1", record("q1", 0.2))
            assert store.record_count() == 1
            assert totals(store, MONTH.key) == [(0.2, 0.1)]
        finally:
            server.stop(save=False)

    def test_close_replays_the_journal_even_inside_the_retry_interval(self, make_store, tmp_path):
        # Settlements batched just before a shutdown can all be journaled within one retry
        # interval; closing makes one real attempt instead of leaving them to the next process.
        server = RedisServer(tmp_path / "own-redis").start()
        try:
            store = make_store(server.url, retry_interval=60.0)
            server.stop()
            store.settle("r1", record("q1", 0.2), keys=[MONTH.key])
            assert store.stats()["journal_pending"] == 1
            server.start()
            store.close()  # Redis is back, the retry interval is not over
            assert store.stats()["replayed"] == 1 and store.stats()["journal_pending"] == 0
            assert list((tmp_path / "journal").glob("*.jsonl")) == []
            reader = make_store(server.url)
            assert reader.records() == [record("q1", 0.2)]
            assert totals(reader, MONTH.key) == [(0.2, 0.0)]
        finally:
            server.stop(save=False)

    def test_a_fail_open_grant_is_booked_on_its_keys_once_redis_returns(self, make_store, tmp_path):
        server = RedisServer(tmp_path / "own-redis").start()
        try:
            store = make_store(server.url, fail_open=True)
            server.stop()
            assert store.reserve("r1", 0.3, [MONTH], keys=SPEND, expires_at=LATER) is None
            store.settle("r1", record("q1", 0.25))  # no fallback keys: the grant's keys count
            server.start()
            assert store.replay_journal() == 1
            assert totals(store, MONTH.key, *SPEND) == [(0.25, 0.0)] * 3
            assert store.records() == [record("q1", 0.25)]
        finally:
            server.stop(save=False)

    def test_a_journal_left_by_a_dead_process_is_replayed_by_the_next(self, make_store, tmp_path):
        server = RedisServer(tmp_path / "own-redis").start()
        try:
            gone = make_store(server.url)
            server.stop()
            gone.settle("r1", record("q1", 0.2), keys=[MONTH.key])
            gone.close()  # still down: the journal file stays behind
            leftovers = list((tmp_path / "journal").glob("*.jsonl"))
            assert len(leftovers) == 1

            server.start()
            successor = make_store(server.url)  # replays orphans when it opens
            assert successor.records() == [record("q1", 0.2)]
            assert totals(successor, MONTH.key) == [(0.2, 0.0)]
            assert list((tmp_path / "journal").glob("*.jsonl")) == []
        finally:
            server.stop(save=False)

    def test_a_malformed_journal_line_is_skipped_not_fatal(self, make_store, tmp_path):
        journal = tmp_path / "journal"
        journal.mkdir()
        good = {"op": "settle", "reservation_id": "r1", "record": record("q1", 0.2).to_dict()}
        (journal / "gone-1-x.jsonl").write_text(
            '{"op": "settle"}\n{"torn": \n' + json.dumps({**good, "keys": [MONTH.key]}) + "\n"
        )
        store = make_store()
        assert store.records() == [record("q1", 0.2)]
        assert totals(store, MONTH.key) == [(0.2, 0.0)]
