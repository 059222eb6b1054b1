"""``settle_many``: SQLite's one-transaction batch leaves exactly the state that settling the same
items one by one leaves (on SQLite and in memory)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import pytest
from test_ledger import LATER, SPEND, record  # the same records and keys as the store specs

from router.budget import BudgetLimit
from router.ledger import LedgerStore, MemoryLedger, SQLiteLedger, UsageRecord

MONTH = BudgetLimit("Monthly", "monthly", "2026-11", "budget:Monthly:month:2026-11", 100.0)
DAY = BudgetLimit("Daily", "daily", "2026-11-25", "budget:Daily:day:2026-11-25", 50.0)
PROV = BudgetLimit(
    "Monthly",
    "monthly",
    "2026-11",
    "budget:Monthly:month:2026-11:provider:openai-eu",
    20.0,
    provider="openai-eu",
)
FALLBACK = ("fallback:a", "fallback:b")
ALL_KEYS = (MONTH.key, DAY.key, PROV.key, *SPEND, *FALLBACK, "never-touched")

Settlement = tuple[str, UsageRecord, Sequence[str] | None]


@pytest.fixture
def stores(tmp_path) -> Iterator[Callable[[str], LedgerStore]]:
    """Make a fresh store (``"sqlite"`` or ``"memory"``); all are closed after the test."""
    made: list[LedgerStore] = []

    def make(kind: str) -> LedgerStore:
        store: LedgerStore = (
            MemoryLedger() if kind == "memory" else SQLiteLedger(tmp_path / f"l{len(made)}.sqlite3")
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def settle_one_by_one(store: LedgerStore, batch: Sequence[Settlement]) -> None:
    for rid, rec, keys in batch:
        store.settle(rid, rec, keys=keys)


def state(store: LedgerStore, reservation_ids: Sequence[str]) -> dict:
    """Everything observable: totals, records, count, and which reservations are still open
    (probed last: reserving an open id raises ValueError, a closed one opens it)."""
    snapshot = {
        "totals": store.totals(ALL_KEYS),
        "records": store.records(),
        "count": store.record_count(),
    }
    still_open = []
    for rid in reservation_ids:
        try:
            store.reserve(rid, 0.0, [], keys=["probe"], expires_at=LATER)
        except ValueError:
            still_open.append(rid)
    snapshot["open"] = still_open
    return snapshot


# The setup every scenario starts from: reservations (id, amount, limits, extra keys) and
# records that are already stored before the batch.
RESERVATIONS = [
    ("r-a", 0.30, [MONTH, DAY], SPEND),
    ("r-b", 0.25, [MONTH, PROV], SPEND),
    ("r-c", 0.10, [DAY], ()),
    ("r-dup-stored", 0.40, [MONTH, DAY, PROV], SPEND),
    ("r-twice-1", 0.05, [MONTH], SPEND),
    ("r-twice-2", 0.06, [MONTH], SPEND),
    ("r-untouched", 0.70, [MONTH, DAY], SPEND),  # not in the batch: stays open
    ("r-same-id", 0.08, [DAY], ()),
]
PRESTORED = [("r-old", record("q-stored", 0.11, timestamp=500.0), [MONTH.key])]


def setup(store: LedgerStore) -> None:
    for rid, amount, limits, keys in RESERVATIONS:
        assert store.reserve(rid, amount, limits, keys=keys, expires_at=LATER) is None
    settle_one_by_one(store, PRESTORED)


MIXED_BATCH: list[Settlement] = [
    # Open reservations: the hold turns into spend on the reserved keys; fallback ignored.
    ("r-a", record("q-a", 0.12, timestamp=1001.0), None),
    ("r-b", record("q-b", 0.3, timestamp=1002.0), ["ignored-fallback"]),
    ("r-c", record("q-c", 0.1, timestamp=999.0), ()),
    # Unknown reservation ids: the cost lands on the fallback keys (duplicates once) or nowhere.
    ("gone-1", record("q-gone-1", 0.07, timestamp=1003.0), [*FALLBACK, FALLBACK[0]]),
    ("gone-2", record("q-gone-2", 0.2, timestamp=1003.0), [MONTH.key, *SPEND]),
    ("gone-3", record("q-gone-3", 0.01, timestamp=1004.0), None),
    # Already stored request id: only the reservation is released, nothing is booked.
    ("r-dup-stored", record("q-stored", 0.4, timestamp=1005.0), None),
    # The same request id twice in one batch: the second is ignored (its hold released).
    ("r-twice-1", record("q-twice", 0.05, timestamp=1006.0), None),
    ("r-twice-2", record("q-twice", 0.06, timestamp=1007.0, model="other"), None),
    ("gone-4", record("q-twice", 0.5, timestamp=1008.0), list(FALLBACK)),
    # The same reservation id twice: the first takes the hold, the second uses its fallback.
    ("r-same-id", record("q-same-1", 0.03, timestamp=1009.0), ["fallback:a"]),
    ("r-same-id", record("q-same-2", 0.04, timestamp=1010.0), ["fallback:b"]),
    # Costs that do not add up exactly in floats.
    *[(f"gone-f{i}", record(f"q-f{i}", 0.1, timestamp=1011.0), [SPEND[0]]) for i in range(7)],
]
RESERVATION_IDS = [r[0] for r in RESERVATIONS] + ["r-old", "gone-1", "gone-2"]


def run(store: LedgerStore, batch: Sequence[Settlement], *, many: bool) -> dict:
    setup(store)
    if many:
        store.settle_many(batch)
    else:
        settle_one_by_one(store, batch)
    return state(store, RESERVATION_IDS)


class TestSameAsOneByOne:
    def test_mixed_batch(self, stores):
        batched = run(stores("sqlite"), MIXED_BATCH, many=True)
        assert batched == run(stores("sqlite"), MIXED_BATCH, many=False)
        assert batched == run(stores("memory"), MIXED_BATCH, many=False)
        assert batched == run(stores("memory"), MIXED_BATCH, many=True)

    def test_mixed_batch_expected_numbers(self, stores):
        got = run(stores("sqlite"), MIXED_BATCH, many=True)
        t = got["totals"]
        # q-stored 0.11 (before) + q-a 0.12 + q-b 0.3 + q-gone-2 0.2 + q-twice 0.05
        assert t[MONTH.key] == (pytest.approx(0.78, abs=1e-12), 0.7)
        # q-a 0.12 + q-c 0.1 + q-same-1 0.03; r-untouched holds 0.7
        assert t[DAY.key] == (pytest.approx(0.25, abs=1e-12), 0.7)
        assert t[PROV.key] == (pytest.approx(0.3, abs=1e-12), 0.0)
        # q-a, q-b, q-gone-2, q-twice, and 7 x 0.1 exactly on the month spend key
        assert t[SPEND[0]] == (pytest.approx(1.37, abs=1e-12), 0.7)
        assert t[SPEND[1]] == (pytest.approx(0.67, abs=1e-12), 0.7)
        assert t["fallback:a"] == (pytest.approx(0.07, abs=1e-12), 0.0)
        assert t["fallback:b"] == (pytest.approx(0.11, abs=1e-12), 0.0)
        assert t["never-touched"] == (0.0, 0.0)
        ids = [r.request_id for r in got["records"]]
        assert ids.count("q-twice") == 1 and ids.count("q-stored") == 1
        assert got["count"] == len(ids) == 1 + 3 + 3 + 1 + 2 + 7
        twice = next(r for r in got["records"] if r.request_id == "q-twice")
        assert twice.cost == 0.05 and twice.model == "gpt-4o-mini"  # the first one wins
        stored = next(r for r in got["records"] if r.request_id == "q-stored")
        assert stored.cost == 0.11 and stored.timestamp == 500.0  # the old one is kept
        assert got["open"] == ["r-untouched"]

    def test_empty_batch_changes_nothing(self, stores):
        untouched = run(stores("sqlite"), [], many=False)
        assert run(stores("sqlite"), [], many=True) == untouched
        assert run(stores("memory"), [], many=True) == untouched
        assert set(untouched["open"]) == {r[0] for r in RESERVATIONS}
        assert untouched["count"] == 1

    def test_each_item_alone_matches(self, stores):
        # settle() on SQLite is settle_many of one item: compare per item with memory too.
        for item in MIXED_BATCH[:12]:
            assert run(stores("sqlite"), [item], many=True) == run(
                stores("memory"), [item], many=False
            ), item

    @pytest.mark.parametrize("seed", range(6))
    def test_random_batches(self, stores, seed):
        rng = random.Random(seed)
        keys = [MONTH.key, DAY.key, PROV.key, *SPEND, *FALLBACK]
        limits = [MONTH, DAY, PROV]
        reservations = [
            (
                f"r{i}",
                round(rng.uniform(0, 0.2), 9),
                rng.sample(limits, rng.randint(0, 3)),
                rng.sample(keys, rng.randint(0, 3)),
            )
            for i in range(40)
        ]
        batch: list[Settlement] = []
        for _ in range(120):
            rid = f"r{rng.randrange(60)}"  # r40..r59 were never reserved
            fallback = rng.choice([None, (), rng.sample(keys, rng.randint(1, 4))])
            rec = record(
                f"q{rng.randrange(90)}",  # repeats: some request ids come twice or more
                round(rng.uniform(0, 0.3), 9),
                timestamp=float(rng.randrange(1000, 1020)),
            )
            batch.append((rid, rec, fallback))
        ids = [r[0] for r in reservations] + [f"r{i}" for i in range(40, 60)]

        def go(store: LedgerStore, many: bool) -> dict:
            for rid, amount, lims, extra in reservations:
                assert store.reserve(rid, amount, lims, keys=extra, expires_at=LATER) is None
            store.settle(f"r{rng_pre}", record("q0", 0.5, timestamp=999.0), keys=[MONTH.key])
            if many:
                # In a few chunks, as the budget actor would send successive deferred batches.
                for start in range(0, len(batch), 50):
                    store.settle_many(batch[start : start + 50])
            else:
                settle_one_by_one(store, batch)
            return state(store, ids)

        rng_pre = rng.randrange(40)
        batched = go(stores("sqlite"), True)
        assert batched == go(stores("sqlite"), False)
        assert batched == go(stores("memory"), False)
        assert 0 < batched["count"] <= 90


class TestLargeBatch:
    def test_more_than_500_items_are_all_stored(self, stores):
        n = 1200
        store = stores("sqlite")
        # Every third item has an open reservation (so the DELETE ... IN batching is exercised
        # past 500 ids too); the rest fall back to their keys.
        for i in range(0, n, 3):
            assert store.reserve(f"r{i}", 0.01, [MONTH], keys=SPEND, expires_at=LATER) is None
        batch: list[Settlement] = [
            (f"r{i}", record(f"q{i}", 0.001, timestamp=1000.0 + i), [MONTH.key, *SPEND])
            for i in range(n)
        ]
        # Duplicates placed after the 500 / 1000 boundaries: ignored.
        batch += [(f"x{i}", record(f"q{i}", 9.0), [MONTH.key]) for i in (0, 501, 1001, 1199)]
        store.settle_many(batch)

        assert store.record_count() == n
        records = store.records()
        assert [r.request_id for r in records] == [f"q{i}" for i in range(n)]
        assert all(r.cost == 0.001 for r in records)
        got = store.totals([MONTH.key, *SPEND])
        for key in (MONTH.key, *SPEND):
            assert got[key] == (pytest.approx(n * 0.001, abs=1e-12), 0.0), key
        # Every reservation (the last one past id 1000 included) is closed.
        for i in range(0, n, 3):
            assert store.reserve(f"r{i}", 0.0, [], expires_at=LATER) is None

        reference = stores("memory")
        for i in range(0, n, 3):
            reference.reserve(f"r{i}", 0.01, [MONTH], keys=SPEND, expires_at=LATER)
        settle_one_by_one(reference, batch)
        assert reference.totals([MONTH.key, *SPEND]) == {
            key: (spent, 0.0) for key, (spent, _) in got.items()
        }
        assert reference.records() == records
