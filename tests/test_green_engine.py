"""The loop engine (``router.green_server``): requests as greenlets on one event loop.

Over real sockets: hundreds of calls in flight hold no thread each, and every guarantee of
the threaded path still holds on the loop (failover through the actors, deadlines, budgets,
billing of a stream whose client left). Behaviour shared with the threads engine is tested
for both in test_bridge_server.py and test_serve_capacity.py.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from support import completion, one_openai_provider, router_config

from router import green
from router.green_server import GreenBridgeServer, runs_green

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class HeldUpstream:
    """An OpenAI-shaped upstream on its own event loop that holds every call until
    :meth:`release`; ``arrived`` is set once ``expected`` calls are waiting."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.arrived = threading.Event()
        self._release: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        self._done = asyncio.Event()
        server = await asyncio.start_server(self._answer, "127.0.0.1", 0, backlog=1024)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        self._ready.set()
        await self._done.wait()
        server.close()
        for task in asyncio.all_tasks():  # the handlers of idle keep-alive connections
            if task is not asyncio.current_task():
                task.cancel()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = await reader.readexactly(length)
                self.count += 1
                if self.count >= self.expected:
                    self.arrived.set()
                assert self._release is not None
                if b'"stream":true' in request.replace(b" ", b""):
                    await self._stream(writer)
                    continue
                await self._release.wait()
                body = completion().encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        """OpenAI's way: the role chunk at once, the content once released."""

        def event(delta: str, finish: str = "null") -> bytes:
            data = (
                '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
                f'"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}'
            )
            text = f"data: {data}\n\n".encode()
            return b"%x\r\n%s\r\n" % (len(text), text)

        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + event('{"role":"assistant","content":""}')
        )
        assert self._release is not None
        await self._release.wait()
        done = b"data: [DONE]\n\n"
        writer.write(
            event('{"content":"Hello"}')
            + event("{}", '"stop"')
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done)
        )

    def start(self) -> HeldUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def release(self) -> None:
        assert self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    def stop(self) -> None:
        self.release()
        self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(10)


@pytest.fixture
def loop_server(start_server) -> Any:
    """Start a loop-engine server for a manager (default config)."""
    return lambda manager=None, **kwargs: start_server(GreenBridgeServer, manager, **kwargs)


def test_hundreds_of_calls_in_flight_hold_no_thread_each(loop_server, make_manager):
    calls = 300
    upstream = HeldUpstream(calls).start()
    try:
        server = loop_server(make_manager(one_openai_provider(upstream.url)))
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=calls))
        threads_before = threading.active_count()
        with ThreadPoolExecutor(calls) as pool:
            answers = [
                pool.submit(session.post, server.url + "/v1/chat/completions", json=CHAT)
                for _ in range(calls)
            ]
            assert upstream.arrived.wait(60), f"only {upstream.count} calls reached upstream"
            assert server.app.in_flight == calls
            # The client's pool added its threads; the server added none per call.
            router_threads = [
                t for t in threading.enumerate() if t.name.startswith(("router-", "ThreadPool"))
            ]
            assert threading.active_count() - threads_before <= calls + 10
            assert len([t for t in router_threads if "bridge" in t.name]) <= 2
            upstream.release()
            results = [future.result(timeout=60) for future in answers]
        assert [r.status_code for r in results] == [200] * calls
        assert {r.json()["choices"][0]["message"]["content"] for r in results} == {
            "Hello from the mock"
        }
        assert server.app.in_flight == 0
        stats = server.app.manager.get_manager_stats()
        assert stats["usage_stats"]["successful_requests"] == calls
    finally:
        upstream.stop()


# Doors that once ran on the thread routes' pool: their calls in flight are greenlets now.
HELD_DOORS = {
    "responses": (
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": "hi"},
        lambda answer: answer["output"][0]["content"][0]["text"],
    ),
    "generate": ("/ai/generate", CHAT, lambda answer: answer["content"]),
}


@pytest.mark.parametrize("door", sorted(HELD_DOORS))
def test_calls_in_flight_are_not_bounded_by_the_thread_routes(loop_server, make_manager, door):
    path, body, text_of = HELD_DOORS[door]
    calls = 48  # more than the 32 threads the routes that may block share
    upstream = HeldUpstream(calls).start()
    try:
        server = loop_server(make_manager(one_openai_provider(upstream.url)))
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=calls))
        with ThreadPoolExecutor(calls) as pool:
            answers = [
                pool.submit(session.post, server.url + path, json=body, timeout=60)
                for _ in range(calls)
            ]
            assert upstream.arrived.wait(30), f"only {upstream.count} calls reached upstream"
            upstream.release()
            results = [future.result(timeout=60) for future in answers]
        assert [r.status_code for r in results] == [200] * calls
        assert {text_of(r.json()) for r in results} == {"Hello from the mock"}
    finally:
        upstream.stop()


def test_failover_runs_through_the_actors_and_back_onto_the_loop(loop_server, emulator):
    emulator.add_fault(provider="openai", kind="server_error", count=100)
    from router.manager import AIProviderManager

    config = router_config(emulator)
    config["providers"][0]["max_retries"] = 1
    with AIProviderManager(config) as manager:
        server = loop_server(manager)
        body = {**CHAT, "model": "fast", "strategy": "priority"}  # openai first
        answer = requests.post(server.url + "/v1/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Router-Provider"] == "anthropic"
        health = manager.provider_health()
        assert health["openai"].failures >= 1
        assert health["openai"].in_flight == 0


def test_a_deadline_on_the_loop_answers_in_time_and_frees_the_provider(loop_server, make_manager):
    # An upstream of its own that never answers in time: a held call at the shared emulator
    # would be counted there seconds later, in another test's counters.
    upstream = HeldUpstream(1).start()
    try:
        server = loop_server(make_manager(one_openai_provider(upstream.url)))
        body = {**CHAT, "timeout": 0.5}
        answer = requests.post(server.url + "/v1/chat/completions", json=body, timeout=30)
        assert answer.status_code == 504, answer.text
        assert answer.elapsed.total_seconds() < 4.0
        assert upstream.arrived.is_set()
        assert server.app.manager.provider_health()["openai"].in_flight == 0
    finally:
        upstream.stop()


def test_a_budget_is_never_overspent_by_concurrent_calls_on_the_loop(loop_server, emulator):
    from router.manager import AIProviderManager

    config = router_config(emulator)
    config["budgets"] = [{"name": "Monthly", "monthly_limit": 0.002}]
    with AIProviderManager(config) as manager:
        server = loop_server(manager)
        long = {**CHAT, "max_tokens": 50, "messages": [{"role": "user", "content": "word " * 200}]}

        def call(_: int) -> int:
            return requests.post(server.url + "/v1/chat/completions", json=long).status_code

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(call, range(80)))
        assert 200 in codes and 402 in codes and set(codes) <= {200, 402}
        assert manager.get_budget_status()["spent_month"] <= 0.002


def test_a_stream_on_the_loop_bills_what_it_read_when_the_client_leaves(
    loop_server, emulator, make_manager
):
    emulator.set_pacing("openai", token_delay=0.2)
    config = router_config(emulator)
    config["providers"][0]["max_concurrency"] = 1
    server = loop_server(make_manager(config))
    manager = server.app.manager
    body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "a b c d e f g"}]}
    with requests.post(
        server.url + "/v1/chat/completions", json=body, stream=True, timeout=30
    ) as answer:
        data = (line for line in answer.iter_lines() if line.startswith(b"data: "))
        assert b'"role":"assistant"' in next(data)  # sent as soon as openai accepted
        assert b'"content":"Echo' in next(data)  # content, then the client leaves
    emulator.set_pacing("openai", token_delay=0.0)
    # openai's one slot comes back only once the abandoned stream was cancelled and billed;
    # without that this call would wait for the whole stream and run into its deadline.
    after = requests.post(
        server.url + "/v1/chat/completions", json={**CHAT, "timeout": 1.0}, timeout=30
    )
    assert after.status_code == 200, after.text
    records = manager.usage_records()
    assert [r.outcome for r in records].count("partial") == 1
    assert any(r.outcome == "partial" and r.output_tokens >= 1 for r in records)
    assert server.app.in_flight == 0


def test_routes_that_may_block_run_on_threads_and_do_not_stall_the_loop(loop_server):
    assert runs_green("POST", "/v1/chat/completions")
    assert runs_green("POST", "/v1/messages")
    assert runs_green("POST", "/v1/responses")
    assert runs_green("POST", "/v1beta/models/gemini-1.5-flash:streamGenerateContent")
    assert not runs_green("GET", "/v1/models")
    assert runs_green("POST", "/ai/generate")  # its agent loop over MCP: offloaded
    assert not runs_green("GET", "/ai/status")
    server = loop_server()
    assert requests.get(server.url + "/ai/status", timeout=10).status_code == 200
    assert requests.get(server.url + "/v1/models", timeout=10).json()["data"]


def test_the_loop_inbox_wakes_its_greenlet_from_other_threads_and_times_out():
    async def scenario() -> list[Any]:
        def blocking() -> list[Any]:
            inbox = green.new_queue()
            assert isinstance(inbox, green.LoopInbox)
            threading.Thread(target=inbox.put, args=("from a thread",)).start()
            got = [inbox.get(timeout=10)]
            inbox.put("same thread")
            got.append(inbox.get(timeout=0))
            try:
                inbox.get(timeout=0.01)
            except queue.Empty:
                got.append("empty")
            return got

        return await green.run(blocking)

    assert asyncio.run(scenario()) == ["from a thread", "same thread", "empty"]
    # On a plain thread the same call gives the threads' queue.
    assert isinstance(green.new_queue(), queue.SimpleQueue)
    assert green.current_loop() is None


def test_a_client_that_sends_a_bad_body_gets_a_json_error_on_the_loop(loop_server):
    server = loop_server()
    answer = requests.post(
        server.url + "/v1/chat/completions",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert "not valid JSON" in json.dumps(answer.json())


class FloodUpstream:
    """An OpenAI-shaped upstream that answers a stream with megabytes of events, as fast as
    it is read; ``closed`` is set when the router drops such a stream's connection. A call
    without ``"stream"`` gets a plain completion."""

    EVENT = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{"content":"' + b"x" * 1000 + b'"},"finish_reason":null}]}'
        b"\n\n"
    )

    def __init__(self) -> None:
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def start(self) -> FloodUpstream:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._answer, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"
        return self

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                if b'"stream":true' not in body.replace(b" ", b""):
                    reply = completion().encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                    )
                    continue
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for _ in range(20_000):  # ~20 MB: far more than any socket buffer holds
                    writer.write(b"%x\r\n%s\r\n" % (len(self.EVENT), self.EVENT))
                    await writer.drain()
                self.closed.set()  # not dropped: the test fails on its wait
                return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed.set()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_a_client_that_stops_reading_is_dropped_after_the_timeout(loop_server, make_manager):
    import socket

    upstream = FloodUpstream().start()
    try:
        config = one_openai_provider(upstream.url)
        config["providers"][0]["max_concurrency"] = 1
        server = loop_server(make_manager(config), timeout=1.0)
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect((server.host, server.port))
        payload = json.dumps({**CHAT, "stream": True}).encode()
        reader.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        try:
            # Never read: once the buffers are full the bridge's write waits; after its 1 s
            # timeout the stream is dropped, and with it the upstream connection.
            assert upstream.closed.wait(20), "the stalled stream was never dropped"
        finally:
            reader.close()
        # openai's one slot is free again: the dropped stream was settled.
        after = requests.post(server.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert after.status_code == 200, after.text
        records = server.app.manager.usage_records()
        assert [r.outcome for r in records] == ["partial", "success"]
    finally:
        upstream.stop()


# Each door's stream as its own provider opens it: what the client has before any content.
EARLY_DOORS = {
    "chat": (
        "/v1/chat/completions",
        CHAT,
        b'data: {"id":',
        b'"delta":{"role":"assistant","content":""}',
    ),
    "messages": (
        "/v1/messages",
        {**CHAT, "max_tokens": 64},
        b"event: message_start",
        b'"type":"message_start","message":{"id":',
    ),
    "responses": (
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": "hi"},
        b"event: response.created",
        b'"type":"response.created","sequence_number":0',
    ),
}


@pytest.mark.parametrize("door", sorted(EARLY_DOORS))
def test_a_stream_answers_once_the_provider_accepts_not_at_its_first_content(
    loop_server, make_manager, door
):
    path, body, first_line, first_event = EARLY_DOORS[door]
    upstream = HeldUpstream(1).start()
    try:
        server = loop_server(make_manager(one_openai_provider(upstream.url)))
        with requests.post(
            server.url + path,
            json={**body, "stream": True},
            headers={"anthropic-version": "2023-06-01"},  # needed by /v1/messages only
            stream=True,
            timeout=30,
        ) as answer:
            # The upstream sent its role chunk and holds the content: the client already has
            # the status, the provider's name and the door's opening event.
            assert answer.status_code == 200
            assert answer.headers["X-Router-Provider"] == "openai"
            lines = (line for line in answer.iter_lines() if line)
            line = next(lines)
            assert line.startswith(first_line)
            if not line.startswith(b"data: "):
                line = next(lines)
            assert first_event in line
            assert b'"model":"gpt-4o-mini"' in line
            upstream.release()
            rest = b"\n".join(lines)
        assert b"Hello" in rest
        assert first_event not in rest  # the opening only once
    finally:
        upstream.stop()


def test_eager_runs_a_coroutine_in_place_and_hands_the_loop_only_what_waits():
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        handed: list[str] = []

        def wait_rest(rest: Any) -> Any:
            handed.append("loop")
            return green.wait(rest)

        async def at_once() -> str:
            return "at once"

        async def after_a_future() -> str:
            future = loop.create_future()
            loop.call_later(0.01, future.set_result, "later")
            return await future

        async def failing() -> None:
            await asyncio.sleep(0)
            raise ValueError("inside")

        def blocking() -> list[Any]:
            got: list[Any] = [green.eager(at_once(), wait_rest), list(handed)]
            got.append(green.eager(after_a_future(), wait_rest))
            got.append(list(handed))
            try:
                green.eager(failing(), wait_rest)
            except ValueError as error:
                got.append(str(error))
            return got

        return await green.run(blocking)

    assert asyncio.run(scenario()) == ["at once", [], "later", ["loop"], "inside"]
