"""The loop engine's upstream client (``router.green_http``) against real sockets: keep-alive
reuse, every way a body can be framed, timeouts and broken answers mapped to the router's
errors, streams read as they arrive and cancelled from another thread."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from router import green, green_http
from router.errors import ProviderConnectionError, ProviderTimeoutError, RequestCancelledError
from router.providers.base import HTTPRequest
from router.transport import iter_reads

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def run(handler: Handler, client: Callable[[str], Any]) -> tuple[Any, dict[str, int]]:
    """Serve ``handler`` on a loop and run blocking ``client(url)`` as a request greenlet on
    the same loop; returns what the client returned and the server's connection count."""
    counts = {"connections": 0}

    async def scenario() -> Any:
        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counts["connections"] += 1
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat"
        try:
            return await green.run(client, url)
        finally:
            green_http.close_pools(asyncio.get_running_loop())
            server.close()

    return asyncio.run(scenario()), counts


def request(url: str, stream: bool = False) -> HTTPRequest:
    return HTTPRequest("POST", url, {"authorization": "Bearer FAKE"}, {"q": 1}, stream)


def send(url: str, stream: bool = False, read_timeout: float = 5.0) -> Any:
    return green_http.send(request(url, stream), b'{"q":1}', (2.0, read_timeout), {}, "test")


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(extra)
    return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_one_keep_alive_connection_serves_calls_one_after_another():
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(ok(b'{"n":%d}' % len(seen), b"X-Request-Id: abc\r\n"))

    def client(url: str) -> list[Any]:
        answers = [send(url) for _ in range(3)]
        return [(a.status_code, a.content, a.headers.get("x-request-ID")) for a in answers]

    answers, counts = run(handler, client)
    assert answers == [(200, b'{"n":%d}' % n, "abc") for n in (1, 2, 3)]
    assert counts["connections"] == 1
    first = seen[0]
    assert first.startswith(b"POST /v1/chat HTTP/1.1\r\n")
    assert b"\r\nauthorization: Bearer FAKE\r\n" in first
    assert b"Content-Length: 7\r\n\r\n" in first and first.endswith(b'{"q":1}')
    assert b"Accept-Encoding: identity" in first


def test_an_idle_connection_past_its_expiry_is_closed_not_reused(monkeypatch):
    closed_by_client: list[bool] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"{}"))  # keep-alive: the client decides
        closed_by_client.append(await reader.read() == b"")

    monkeypatch.setattr(green_http, "IDLE_EXPIRY", 0.0)  # every idle connection has expired
    answers, counts = run(handler, lambda url: [send(url).content for _ in range(2)])
    assert answers == [b"{}", b"{}"]
    assert counts["connections"] == 2
    assert closed_by_client[:1] == [True]  # the expired one was closed, not left open


def test_a_server_that_closes_after_answering_gets_a_new_connection():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"{}", b"Connection: close\r\n"))
        await writer.drain()

    answers, counts = run(handler, lambda url: [send(url).content for _ in range(2)])
    assert answers == [b"{}", b"{}"]
    assert counts["connections"] == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",  # ends with the connection
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
        % (len(gzip.compress(b"hello world")), gzip.compress(b"hello world")),
    ],
    ids=["chunked", "until-close", "gzip"],
)
def test_every_framing_of_a_body_is_read_whole(reply):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        if b"Connection: close" in reply:
            writer.close()

    answer, _ = run(handler, lambda url: send(url).content)
    assert answer == b"hello world"


def test_an_error_status_is_read_whole_even_for_a_stream():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b'{"error":{"message":"slow down"}}'
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    answer, _ = run(handler, lambda url: send(url, stream=True))
    assert answer.status_code == 429
    assert answer.headers.get("retry-after") == "3"
    assert b"slow down" in answer.content


def test_no_answer_within_the_read_timeout_is_a_provider_timeout():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()  # never answers (cancelled when the test's loop ends)

    def client(url: str) -> float:
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError, match="no answer within 0.2s"):
            send(url, read_timeout=0.2)
        return time.monotonic() - started

    waited, _ = run(handler, client)
    assert 0.2 <= waited < 5


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",  # then the connection ends
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["cut-body", "malformed"],
)
def test_a_broken_answer_is_a_connection_error_and_the_connection_is_dropped(reply):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    def client(url: str) -> None:
        with pytest.raises(ProviderConnectionError):
            send(url)
        assert not any(green_http._pool(asyncio.get_running_loop()).idle.values())

    run(handler, client)


def test_a_refused_connection_is_a_connection_error():
    async def scenario() -> None:
        def client() -> None:
            with pytest.raises(ProviderConnectionError, match="connection failed"):
                send("http://127.0.0.1:9/v1/chat")  # the discard port: nothing listens

        await green.run(client)

    asyncio.run(scenario())


def test_a_stream_is_read_as_it_arrives_and_can_be_cancelled_from_another_thread():
    release = [asyncio.Event() for _ in range(3)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for number, gate in enumerate(release):
            await gate.wait()
            event = b"data: %d\n\n" % number
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        await asyncio.Event().wait()  # the rest never comes

    def client(url: str) -> tuple[list[bytes], str]:
        loop = asyncio.get_running_loop()
        answer = send(url, stream=True)
        reads = iter_reads(answer, "test")
        got = []
        for gate in release[:2]:
            loop.call_soon(gate.set)
            got.append(next(reads))  # each event is handed over alone, as it arrives
        loop.call_soon(release[2].set)
        got.append(next(reads))
        closer = threading.Thread(target=answer.close)  # as a cancelled job's hook does
        loop.call_later(0.05, closer.start)
        with pytest.raises(RequestCancelledError) as cancelled:
            next(reads)
        closer.join()
        return got, str(cancelled.value)

    (events, error), _ = run(handler, client)
    assert events == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert "closed the stream" in error


def test_a_stream_read_whole_gives_its_connection_back():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"7\r\ndata: x\r\n0\r\n\r\n")

    def client(url: str) -> list[bytes]:
        return [b"".join(iter_reads(send(url, stream=True), "test")) for _ in range(3)]

    bodies, counts = run(handler, client)
    assert bodies == [b"data: x"] * 3
    assert counts["connections"] == 1
