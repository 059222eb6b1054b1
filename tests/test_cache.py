"""The response cache: keys, policy, hits through every face, stores, corrupt entries."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_server import SKIP_REASON, RedisServer
from support import router_config

from router.bridge import create_app
from router.cache import MemoryCacheStore, ResponseCache, SQLiteCacheStore
from router.cache.replay import replay_chunks
from router.config import config_from_dict
from router.errors import BudgetExceededError, ConfigError, RouterError
from router.models import AIRequest, AIResponse, ToolCall, Usage
from router.providers.base import StreamAccumulator

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def ask(text: str = "Hello cache", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **fields}


def cached_config(emulator: Any, **cache: Any) -> dict[str, Any]:
    return router_config(emulator, cache={"enabled": True, **cache})


def sent(emulator: Any) -> int:
    return sum(c["requests"] for name, c in emulator.counters().items() if name != "prefixes")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- the key and the policy ------------------------------------------------------------------


class TestKey:
    cache = ResponseCache(MemoryCacheStore(10), default_model="fast")

    def key(self, **fields: Any) -> str | None:
        return self.cache.key_for(AIRequest.model_validate(ask(**fields)))

    def test_what_does_not_change_the_answer_does_not_change_the_key(self):
        base = self.key()
        assert base is not None
        assert self.key(stream=True) == base
        assert self.key(metadata={"user": "a"}) == base
        assert self.key(budget_limit=0.5) == base
        assert self.key(cache=True) == base

    @pytest.mark.parametrize(
        "change",
        [
            {"text": "Hello cache!"},
            {"model": "claude-3-haiku-20240307"},
            {"model": "fast"},
            {"max_tokens": 10},
            {"top_p": 0.5},
            {"stop": ["x"]},
            {"temperature": 0.0},
            {"tools": [WEATHER_TOOL]},
        ],
    )
    def test_what_changes_the_answer_changes_the_key(self, change):
        text = change.pop("text", "Hello cache")
        fields = {**ask(text), **change}
        assert self.cache.key_for(AIRequest.model_validate(fields)) != self.key()

    def test_a_selection_is_part_of_the_key_and_no_model_means_the_default_model(self):
        from router.models import ProviderSelection

        request = AIRequest.model_validate(ask())
        excluded = ProviderSelection(exclude_providers=("openai",))
        assert self.cache.key_for(request, excluded) != self.cache.key_for(request)
        no_model = AIRequest.model_validate({**ask(), "model": None})
        assert self.cache.key_for(no_model) == self.key(model="fast")

    def test_temperature_above_zero_bypasses_unless_configured_or_asked(self):
        assert self.key(temperature=0.7) is None
        assert self.key(temperature=0.7, cache=True) is not None
        assert self.key(cache=False) is None
        sampled = ResponseCache(MemoryCacheStore(10), any_temperature=True)
        assert sampled.key_for(AIRequest.model_validate(ask(temperature=0.7))) is not None


def test_a_replayed_stream_reassembles_into_the_same_answer():
    answer = AIResponse(
        content="Let me look.",
        reasoning="The user wants the weather.",
        tool_calls=(ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"}),),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=12, output_tokens=7),
        provider_name="openai",
        model="gpt-4o-mini",
    )
    accumulator = StreamAccumulator()
    chunks = replay_chunks(answer)
    for chunk in chunks:
        accumulator.add(chunk)
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "tool_calls"
    assert final.usage == answer.usage and final.provider_name == "openai"
    rebuilt = accumulator.response(usage=final.usage, model="gpt-4o-mini")
    assert chunks[0].reasoning == answer.reasoning
    assert rebuilt.content == answer.content
    assert rebuilt.tool_calls == answer.tool_calls


# --- through the manager ---------------------------------------------------------------------


def test_a_hit_is_flagged_free_and_sends_nothing(make_manager, emulator):
    manager = make_manager(cached_config(emulator))
    first = manager.process_request(ask())
    before = sent(emulator)
    records = len(manager.usage_records())
    second = manager.process_request(ask())
    assert not first.cached and first.cost > 0
    assert second.cached and second.cost == 0.0
    assert (second.content, second.model, second.provider_name, second.usage) == (
        first.content,
        first.model,
        first.provider_name,
        first.usage,
    )
    assert sent(emulator) == before
    assert len(manager.usage_records()) == records  # nothing billed, nothing recorded
    assert manager.submit(ask()).get(timeout=5).cached
    stats = manager.cache_stats()
    assert (stats["hits"], stats["misses"], stats["stored"]) == (2, 1, 1)
    assert manager.get_manager_stats()["cache"]["hits"] == 2


def test_a_stream_request_is_answered_by_a_replay_and_a_stream_fills_the_cache(
    make_manager, emulator
):
    manager = make_manager(cached_config(emulator))
    live = manager.stream_request(ask("streamed first"))
    live_chunks = list(live)
    assert not getattr(live, "cached", False)
    before = sent(emulator)
    replay = manager.stream_request(ask("streamed first"))
    with replay:
        chunks = list(replay)
    assert replay.cached and sent(emulator) == before
    assert "".join(c.content or "" for c in chunks) == "".join(c.content or "" for c in live_chunks)
    assert chunks[-1].is_complete and chunks[-1].cost == 0.0
    assert replay.future.get(timeout=1).cached
    # ... and the same entry answers the plain request.
    assert manager.process_request(ask("streamed first")).cached


def test_cache_false_neither_reads_nor_writes_and_sampled_requests_bypass(make_manager, emulator):
    manager = make_manager(cached_config(emulator))
    assert not manager.process_request(ask(cache=False)).cached
    assert not manager.process_request(ask()).cached  # the first one was not stored
    assert not manager.process_request(ask(cache=False)).cached  # nor read
    assert not manager.process_request(ask(temperature=0.9)).cached
    assert not manager.process_request(ask(temperature=0.9)).cached
    assert manager.cache_stats()["bypassed"] == 4


def test_a_hit_costs_no_budget_even_when_the_budget_is_spent(make_manager, emulator):
    config = cached_config(emulator, store="memory")
    config["budgets"] = [{"name": "Daily", "daily_limit": 1.0}]
    manager = make_manager(config)
    first = manager.process_request(ask(max_tokens=20))
    manager.update_budget("Daily", daily_limit=first.cost)  # nothing more may be spent
    with pytest.raises(BudgetExceededError):
        manager.process_request(ask("something new", max_tokens=20))
    again = manager.process_request(ask(max_tokens=20))
    assert again.cached and again.content == first.content
    assert manager.get_budget_status()["spent_today"] == pytest.approx(first.cost)


def test_failed_and_filtered_answers_are_not_stored(make_manager, emulator):
    manager = make_manager(cached_config(emulator))
    emulator.add_fault(provider="openai", kind="server_error", count=10)
    with pytest.raises(RouterError):
        manager.process_request(ask(), timeout=5)
    emulator.clear_faults()
    assert manager.cache_stats()["stored"] == 0
    cache = ResponseCache(MemoryCacheStore(10))
    assert not cache.store_response("k", AIResponse(content="x", finish_reason="content_filter"))


# --- stores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_entries_expire_after_the_ttl_and_the_oldest_go_past_the_bound(kind, tmp_path):
    clock = Clock()
    store = (
        MemoryCacheStore(2, clock=clock)
        if kind == "memory"
        else SQLiteCacheStore(tmp_path / "cache.db", 2, clock=clock)
    )
    store.put("a", b"1", 10.0)
    clock.now += 1
    store.put("b", b"2", 10.0)
    clock.now += 1
    store.put("c", b"3", 10.0)
    assert store.get("a") is None and store.get("b") == b"2" and store.get("c") == b"3"
    clock.now += 9.5
    assert store.get("b") is None and store.get("c") == b"3"
    clock.now += 1
    assert store.get("c") is None
    store.close()


def corrupt_entries(key: str, good: bytes) -> list[tuple[str, bytes]]:
    magic, digest_and_payload = good[:4], good[4:]
    digest, _, payload = digest_and_payload.partition(b" ")
    other = json.loads(payload)
    other["key"] = "somebody-else"
    other_payload = json.dumps(other).encode()
    import hashlib

    other_digest = hashlib.blake2b(other_payload, digest_size=16).hexdigest().encode()
    bad_response = json.dumps({"key": key, "response": {"finish_reason": "maybe"}}).encode()
    bad_digest = hashlib.blake2b(bad_response, digest_size=16).hexdigest().encode()
    return [
        ("truncated", good[: len(good) // 2]),
        ("flipped", good.replace(b"Echo", b"Echx")),
        ("garbage", b"\x00\xffnot an entry"),
        ("other key", magic + other_digest + b" " + other_payload),
        ("bad fields", magic + bad_digest + b" " + bad_response),
    ]


def test_corrupt_entries_are_logged_dropped_and_never_served(tmp_path, caplog):
    store = SQLiteCacheStore(tmp_path / "cache.db", 10)
    writer = ResponseCache(store)
    key = writer.key_for(AIRequest.model_validate(ask()))
    assert writer.store_response(key, AIResponse(content="Echo: hi", provider_name="openai"))
    good = store.get(key)
    assert ResponseCache(store).lookup(key).content == "Echo: hi"
    for name, value in corrupt_entries(key, good):
        store.put(key, value, 60.0)
        reader = ResponseCache(store)  # another process: nothing decoded in memory yet
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="router.cache"):
            assert reader.lookup(key) is None, name
        assert "corrupt entry" in caplog.text, name
        assert reader.stats()["rejected"] == 1 and store.get(key) is None, name
    store.close()


def test_a_corrupt_entry_is_answered_by_the_provider_and_replaced(make_manager, emulator, tmp_path):
    config = cached_config(emulator)
    config["ledger"] = {"type": "sqlite", "path": str(tmp_path / "ledger.db")}
    first = make_manager(config).process_request(ask())
    store = SQLiteCacheStore(tmp_path / "ledger-cache.db", 10)
    (key,) = [row[0] for row in store._db.execute("SELECT key FROM entries")]
    store.put(key, store.get(key).replace(b"Echo", b"Ecko"), 60.0)
    other = make_manager(config)
    answer = other.process_request(ask())
    assert not answer.cached and answer.content == first.content
    assert other.process_request(ask()).cached
    assert b"Echo" in store.get(key)
    store.close()


def test_an_entry_is_served_for_its_ttl_only(tmp_path):
    wall = Clock()
    store = SQLiteCacheStore(tmp_path / "cache.db", 10)  # the store's own clock: real time
    writer = ResponseCache(store, ttl=30.0, wall_clock=wall)
    writer.store_response("k", AIResponse(content="hello"))
    wall.now += 29.0
    assert ResponseCache(store, ttl=30.0, wall_clock=wall).lookup("k").content == "hello"
    wall.now += 2.0
    assert ResponseCache(store, ttl=30.0, wall_clock=wall).lookup("k") is None
    store.close()


def test_the_sqlite_cache_sits_beside_the_ledger_and_is_shared_by_managers(
    make_manager, emulator, tmp_path
):
    config = cached_config(emulator)
    config["ledger"] = {"type": "sqlite", "path": str(tmp_path / "spend.db")}
    one = make_manager(config)
    first = one.process_request(ask())
    assert (tmp_path / "spend-cache.db").exists()
    other = make_manager(config)  # another process would open the same file
    hit = other.process_request(ask())
    assert hit.cached and hit.content == first.content


def test_cache_configuration_is_checked(emulator):
    with pytest.raises(ConfigError, match=r"cache.store: 'redis' uses the ledger's Redis"):
        config_from_dict(cached_config(emulator, store="redis"))
    with pytest.raises(ConfigError, match=r"cache.ttl"):
        config_from_dict(cached_config(emulator, ttl=0))
    with pytest.raises(ConfigError, match=r"cache.path: is only used with store 'sqlite'"):
        config_from_dict(cached_config(emulator, path="x.db"))  # the ledger is memory


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_on_a_redis_ledger_the_cache_is_shared_and_an_outage_is_a_miss(
    make_manager, emulator, tmp_path, caplog
):
    server = RedisServer(tmp_path / "redis").start()
    try:
        config = cached_config(emulator, max_entries=50)
        config["ledger"] = {"type": "redis", "url": server.url, "key_prefix": "cachetest"}
        one = make_manager(config)
        other = make_manager(config)
        first = one.process_request(ask())
        hit = other.process_request(ask())
        assert hit.cached and hit.content == first.content
        assert other.cache_stats()["store"] == "redis"
        assert server.client().exists("cachetest:cache:index")
        server.kill()
        with caplog.at_level(logging.WARNING, logger="router.cache"):
            during = other.process_request(ask("during the outage"))
        assert not during.cached and during.content.startswith("Echo")
        assert "redis store read failed" in caplog.text
        assert other.cache_stats()["errors"] >= 1
    finally:
        server.kill()


# --- the bridge --------------------------------------------------------------------------------


def call(app: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(raw),
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body_iter = app(environ, start_response)
    data = b"".join(body_iter)
    getattr(body_iter, "close", lambda: None)()
    return seen["status"], {k.lower(): v for k, v in seen["headers"].items()}, data


def test_the_bridge_flags_hits_in_a_header_and_in_metrics(make_manager, emulator):
    app = create_app(make_manager(cached_config(emulator)), auth_token="")
    status, headers, _ = call(app, "/ai/generate", ask())
    assert status == 200 and "x-router-cache" not in headers
    status, headers, body = call(app, "/ai/generate", ask())
    assert headers["x-router-cache"] == "hit" and json.loads(body)["cached"] is True
    status, headers, _ = call(app, "/v1/chat/completions", ask())
    assert headers["x-router-cache"] == "hit"
    status, headers, body = call(app, "/v1/chat/completions", ask(stream=True))
    assert headers["x-router-cache"] == "hit" and body.endswith(b"data: [DONE]\n\n")
    status, headers, _ = call(app, "/v1/chat/completions", ask(cache=False))
    assert status == 200 and "x-router-cache" not in headers
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "wsgi.input": io.BytesIO()}
    text = b"".join(app(environ, lambda *a: None)).decode()
    assert 'router_cache_lookups_total{result="hit"} 3.0' in text
    assert 'router_cache_lookups_total{result="bypass"} 1.0' in text
    cached = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "router_requests_total" and sample.labels["outcome"] == "cached"
    ]
    assert sum(cached) == 3


def test_a_structured_answer_is_parsed_again_into_the_requests_class(make_manager, emulator):
    from pydantic import BaseModel

    class Event(BaseModel):
        name: str
        day: int

    manager = make_manager(cached_config(emulator))
    request = AIRequest.model_validate({**ask("Plan the launch"), "model": "gpt-4o"}).model_copy(
        update={"response_format": None}
    )
    structured = AIRequest(
        model="gpt-4o", messages=request.messages, response_format=Event, prompt_cache_key="a"
    )
    first = manager.process_request(structured)
    assert isinstance(first.parsed, Event) and not first.cached
    again = manager.process_request(structured.model_copy(update={"prompt_cache_key": "b"}))
    assert again.cached and isinstance(again.parsed, Event) and again.parsed == first.parsed
    # A plain request with the same messages is another entry.
    assert not manager.process_request(request).cached
