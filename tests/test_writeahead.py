"""Usage records are on disk from the moment a worker queues them until the ledger has them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from router.actors.messages import Settle
from router.actors.writeahead import WriteAheadSettlements, pending_directory, replay_orphans
from router.ledger.base import UsageRecord
from router.scheduler import Scheduler


def record(request_id: str, cost: float = 0.001) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        timestamp=time.time(),
        provider="openai",
        provider_type="openai",
        model="gpt-4o-mini",
        input_tokens=10,
        output_tokens=5,
        cached_input_tokens=0,
        cost=cost,
        outcome="success",
    )


@pytest.fixture
def scheduler():
    timers = Scheduler().start()
    yield timers
    timers.stop()


def lines(directory: Path) -> list[str]:
    return sorted(
        json.loads(line)["request_id"]
        for path in directory.glob("*.pending.jsonl")
        for line in path.read_text().splitlines()
    )


def test_records_stay_on_disk_until_their_batch_is_stored(tmp_path, scheduler):
    queue = WriteAheadSettlements(scheduler, tmp_path)
    queue.add(Settle(None, record("a")))
    queue.add(Settle(None, record("b")))
    assert lines(tmp_path) == ["a", "b"]
    batch = queue.drain()
    assert [m.record.request_id for m in batch] == ["a", "b"]
    queue.add(Settle(None, record("c")))  # arrives while the batch is being stored
    assert lines(tmp_path) == ["a", "b", "c"]
    queue.batch_done()
    assert lines(tmp_path) == ["c"]
    queue.close()
    assert list(tmp_path.glob("*.pending.jsonl")) == []


def test_files_of_dead_processes_are_replayed_once_and_live_ones_are_not(tmp_path, scheduler):
    live = WriteAheadSettlements(scheduler, tmp_path)
    live.add(Settle(None, record("live")))
    dead = tmp_path / "12345-deadbeef.a.pending.jsonl"
    dead.write_text(
        json.dumps(record("lost-1").to_dict())
        + "\n"
        + json.dumps(record("lost-2").to_dict())
        + "\n"
        + '{"request_id": "torn'  # the kill cut the last line
    )
    seen: list[str] = []
    assert replay_orphans(tmp_path, lambda r: seen.append(r.request_id)) == 2
    assert seen == ["lost-1", "lost-2"]
    assert not dead.exists()
    assert lines(tmp_path) == ["live"]
    assert replay_orphans(tmp_path, lambda r: seen.append(r.request_id)) == 0
    live.close()


def test_where_the_files_live():
    sqlite = SimpleNamespace(type="sqlite", path="/data/ledger.db", url=None, key_prefix="r")
    assert pending_directory(sqlite) == Path("/data/ledger.db.pending")
    memory = SimpleNamespace(type="memory", path=None, url=None, key_prefix="r")
    assert pending_directory(memory) is None
    redis = SimpleNamespace(type="redis", path=None, url="redis://h:6379/0", key_prefix="r")
    assert "pending-" in str(pending_directory(redis))
