"""Streams are read on the thread that iterates them (commit 132e90c).

What is checked here, without mocking anything inside the router:

- iterating a stream sends its HTTP request from the iterating thread (``responses``),
  whether it admitted itself through the provider's open door or the provider actor handed
  it over; a stream nobody iterates is read by a ``router-<name>`` worker when the actor
  admits it, by the thread asking for its future when it admitted itself, and either way
  its future resolves to the same answer;
- ``stream.future`` asked mid-iteration reads the rest, and the chunks left still iterate;
- closing, dropping or ``stop()``-ing a half-read inline stream bills its tokens as
  ``partial`` and gives its provider slot back (real sockets to the emulator);
- ``max_concurrency`` is a slot every stream holds until it is settled, on any thread.

Synchronisation is by events and futures only; pacing the emulator just keeps a stream open.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
import responses
from support import CHAT_URL, FAKE_OPENAI, router_config
from support import ask_model as ask
from wire import load, run_stream

from router.errors import ManagerStoppedError, RequestCancelledError
from router.ledger.memory import MemoryLedger
from router.models import ProviderType, StreamChunk
from router.providers import assemble_stream, get_adapter

# Nothing listens here: every call to it is answered by ``responses``.

# A recorded OpenAI text stream (25 chunks ending in ``[DONE]``) and what it assembles to.
RECORDED = load("openai", "simonw-llm__tools_stream_roundtrip_raw__test_tool_use_basic")[1]
EXPECTED = assemble_stream(
    run_stream(
        get_adapter(ProviderType.OPENAI).new_stream_parser(model="gpt-4o-mini"), RECORDED.body
    )
)

LONG_PROMPT = " ".join(f"word{i}" for i in range(40))


def content(chunks: list[StreamChunk]) -> str:
    return "".join(chunk.content for chunk in chunks if chunk.content)


class Recorder:
    """A ``responses`` callback that notes which thread sent each request, then streams."""

    def __init__(self) -> None:
        self.threads: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.threads.append((threading.get_ident(), threading.current_thread().name))
        return 200, {"content-type": "text/event-stream; charset=utf-8"}, RECORDED.body


def mocked_config(emulator: Any, admission: str = "door") -> dict[str, Any]:
    """The usual config with openai pointed at the ``responses`` host.

    ``admission="actor"`` sets a client-side rate limit (far from reached): the provider's
    door is then closed and every attempt is admitted by its actor, which hands it to the
    stream's queue for whoever iterates it (or asks for its future).
    """
    config = router_config(emulator)
    config["providers"][0]["base_url"] = FAKE_OPENAI
    if admission == "actor":
        config["providers"][0]["rpm"] = 100_000
    return config


def one_slot_config(emulator: Any) -> dict[str, Any]:
    config = router_config(emulator)
    config["providers"][0]["max_concurrency"] = 1
    return config


def partial_records(records: list[Any]) -> list[Any]:
    return [r for r in records if r.outcome == "partial"]


# --- which thread reads ----------------------------------------------------------------------


@pytest.mark.parametrize("admission", ["door", "actor"])
def test_iterating_a_stream_sends_its_http_from_the_iterating_thread(
    make_manager, emulator, admission
):
    manager = make_manager(mocked_config(emulator, admission))
    recorder = Recorder()
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        stream = manager.stream_request(ask())
        chunks = list(stream)
        response = stream.future.get(timeout=5)
    assert recorder.threads == [(threading.get_ident(), threading.current_thread().name)]
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "stop" and final.error is None
    assert all(not chunk.is_complete for chunk in chunks[:-1])
    assert content(chunks) == EXPECTED.content
    assert final.usage == EXPECTED.usage and final.cost > 0
    assert response.content == EXPECTED.content
    assert response.usage == EXPECTED.usage
    assert response.provider_name == "openai"
    health = manager.provider_health()["openai"]
    assert health.in_flight == 0 and health.successes == 1


@pytest.mark.parametrize("admission", ["door", "actor"])
def test_a_stream_nobody_iterates_is_read_by_the_thread_asking_for_its_future(
    make_manager, emulator, admission
):
    manager = make_manager(mocked_config(emulator, admission))
    recorder = Recorder()
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, CHAT_URL, callback=recorder)
        stream = manager.stream_request(ask())
        response = stream.future.get(timeout=10)  # reads the stream here, to the end
        assert recorder.threads == [(threading.get_ident(), threading.current_thread().name)]
        chunks = list(stream)  # kept for the iterator
    assert response.content == EXPECTED.content
    assert content(chunks) == EXPECTED.content and chunks[-1].is_complete
    assert manager.provider_health()["openai"].in_flight == 0


@pytest.mark.parametrize("admission", ["door", "actor"])
def test_an_awaited_stream_that_is_not_iterated_completes_like_an_iterated_one(
    make_manager, emulator, admission
):
    config = router_config(emulator)
    if admission == "actor":  # the door is closed: the provider actor admits the stream
        config["providers"][0]["rpm"] = 100_000
    manager = make_manager(config)
    iterated = manager.stream_request(ask(LONG_PROMPT))
    chunks = list(iterated)
    expected = iterated.future.get(timeout=10)
    assert chunks[-1].is_complete and chunks[-1].finish_reason == "stop"
    assert content(chunks) == expected.content == "Echo: " + LONG_PROMPT

    awaited = manager.stream_request(ask(LONG_PROMPT))
    response = awaited.future.get(timeout=10)  # nobody iterates it
    assert response.content == expected.content
    assert response.usage == expected.usage
    assert response.finish_reason == expected.finish_reason == "stop"
    assert response.provider_name == "openai"
    assert emulator.counters()["openai"]["ok"] == 2
    assert manager.provider_health()["openai"].in_flight == 0


def test_the_future_asked_mid_iteration_reads_the_rest_and_the_chunks_stay(make_manager, emulator):
    manager = make_manager()
    stream = manager.stream_request(ask(LONG_PROMPT))
    first = [next(stream), next(stream)]
    assert not any(chunk.is_complete for chunk in first)
    response = stream.future.get(timeout=10)  # read on this thread, which holds the stream
    assert response.content == "Echo: " + LONG_PROMPT
    rest = list(stream)
    assert rest and rest[-1].is_complete and rest[-1].finish_reason == "stop"
    assert all(not chunk.is_complete for chunk in rest[:-1])
    assert content(first + rest) == response.content  # every chunk, in order
    assert rest[-1].usage == response.usage
    with pytest.raises(StopIteration):
        next(stream)


# --- closing, dropping and stopping a half-read stream -------------------------------------


def test_closing_an_inline_stream_bills_it_and_frees_its_slot(make_manager, emulator):
    emulator.set_pacing("openai", token_delay=0.05)
    manager = make_manager(one_slot_config(emulator))
    stream = manager.stream_request(ask(LONG_PROMPT))
    received = [next(stream), next(stream)]
    assert content(received) and not any(chunk.is_complete for chunk in received)
    stream.close()
    with pytest.raises(RequestCancelledError):
        stream.future.get(timeout=5)
    assert list(stream) == []
    (record,) = partial_records(manager.usage_records())
    assert record.provider == "openai" and record.output_tokens > 0 and record.cost > 0
    assert manager.provider_health()["openai"].in_flight == 0
    emulator.set_pacing("openai", token_delay=0.0)
    # The provider's only slot is free again: the next request does not wait for it.
    assert manager.process_request(ask(), timeout=5).provider_name == "openai"


def test_dropping_a_half_read_stream_bills_it_and_frees_its_slot(make_manager, emulator):
    emulator.set_pacing("openai", token_delay=0.05)
    manager = make_manager(one_slot_config(emulator))
    stream = manager.stream_request(ask(LONG_PROMPT))
    received = [next(stream), next(stream)]
    assert content(received)
    del stream  # the last reference: CPython's refcounting closes the stream here
    (record,) = partial_records(manager.usage_records())
    assert record.provider == "openai" and record.output_tokens > 0
    assert manager.provider_health()["openai"].in_flight == 0
    emulator.set_pacing("openai", token_delay=0.0)
    assert manager.process_request(ask(), timeout=5).provider_name == "openai"


def test_stop_during_a_suspended_inline_stream_ends_and_bills_it(make_manager, emulator):
    emulator.set_pacing("openai", token_delay=0.05)
    ledger = MemoryLedger()
    manager = make_manager(router_config(emulator), ledger=ledger)
    stream = manager.stream_request(ask(LONG_PROMPT))
    received = [next(stream), next(stream)]  # then this thread holds it without reading on
    assert content(received)
    manager.stop()
    records = ledger.records()
    assert [(r.provider, r.outcome) for r in records] == [("openai", "partial")]
    assert records[0].output_tokens > 0
    rest = list(stream)  # the stream ends with an error chunk, not a hang
    assert rest and rest[-1].is_complete and rest[-1].finish_reason == "error"
    assert rest[-1].error_type == "ManagerStoppedError"
    with pytest.raises(ManagerStoppedError):
        stream.future.get(timeout=5)


# --- max_concurrency -----------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["finished", "closed"])
def test_one_slot_makes_a_second_stream_wait_for_the_first(make_manager, emulator, ending):
    emulator.set_pacing("openai", token_delay=0.03)
    manager = make_manager(one_slot_config(emulator))
    first = manager.stream_request(ask(LONG_PROMPT))
    first_chunk = next(first)
    assert not first_chunk.is_complete

    second_started = threading.Event()
    # What was billed when the second stream's first chunk came, and the second's chunks. A
    # stream is billed before it gives its slot back, so with one slot the first stream's
    # record must already be there, and only it: no sleep, no timing involved.
    outcome: Future = Future()

    def second() -> None:
        try:
            stream = manager.stream_request(ask("Hello there"))
            second_started.set()
            chunks = [next(stream)]
            billed = [(r.provider, r.outcome) for r in manager.usage_records()]
            chunks.extend(stream)
            outcome.set_result((billed, chunks))
        except BaseException as error:  # reported by the test thread
            outcome.set_exception(error)

    thread = threading.Thread(target=second, name="second-stream")
    thread.start()
    assert second_started.wait(10)
    if ending == "finished":
        chunks = [first_chunk, *first]
        assert chunks[-1].is_complete and chunks[-1].finish_reason == "stop"
        assert content(chunks) == "Echo: " + LONG_PROMPT
    else:
        # Keep the first stream going for a while after the second asked for its chunk (a
        # second stream let through would have had its first chunk long before the close).
        more = [next(first) for _ in range(8)]
        assert not any(chunk.is_complete for chunk in more)
        first.close()
    billed, second_chunks = outcome.result(timeout=10)
    thread.join(timeout=10)
    assert not thread.is_alive()
    first_outcome = "success" if ending == "finished" else "partial"
    # Not [] (the second ran beside the first): its first chunk came after the first ended.
    assert billed == [("openai", first_outcome)]
    assert second_chunks[-1].is_complete and second_chunks[-1].finish_reason == "stop"
    assert content(second_chunks) == "Echo: Hello there"
    outcomes = sorted(r.outcome for r in manager.usage_records())
    assert outcomes == sorted([first_outcome, "success"])
    assert manager.provider_health()["openai"].in_flight == 0
