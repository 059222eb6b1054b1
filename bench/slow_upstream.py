"""A slow OpenAI-compatible upstream for capacity benchmarks: answers after a fixed latency.

One asyncio event loop (uvloop when installed), a bare ``asyncio.Protocol`` per connection, the
fixed bodies of ``bench/nginx/bodies``: a non-streamed request gets ``openai.json`` after
``--latency`` seconds; a streamed one (``"stream": true`` in the body) gets the events of
``openai.sse``, the first after ``--stream-ttft`` seconds and the rest spread evenly until
``--stream-duration`` seconds. It costs a few tens of microseconds of CPU per request, so a
thousand connections waiting on it do not make it the bottleneck (the router's emulator can
play the same latency with its ``ttft`` pacing, but spends a thread and ~0.8 ms of CPU per
request, which on two cores is a share of the machine the benchmark needs).

    python bench/slow_upstream.py --latency 1.5      # prints its base URL, serves until EOF on stdin

``GET /peak`` answers ``{"peak": n}``: the most non-streamed requests it held at once since the
last ``GET /peak`` (how many calls a client really kept in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import pathlib
import sys

BODIES = pathlib.Path(__file__).resolve().parent / "nginx" / "bodies"


class Upstream(asyncio.Protocol):
    held = 0  # non-streamed requests waiting for their answer, all connections
    peak = 0  # the most held at once since the last GET /peak

    def __init__(self, config: argparse.Namespace, json_reply: bytes, events: list[bytes]) -> None:
        self.config = config
        self.json_reply = json_reply
        self.events = events
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.handles: list[asyncio.TimerHandle] = []
        self.waiting = 0  # this connection's share of ``held``

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in self.handles:
            handle.cancel()
        Upstream.held -= self.waiting  # their answers will never be sent
        self.waiting = 0
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            start = head.find(b"content-length:")
            if start >= 0:
                stop = head.find(b"\r\n", start)
                length = int(head[start + 15 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"get /peak"):
                self.write_json(json.dumps({"peak": Upstream.peak}).encode())
                Upstream.peak = Upstream.held
                continue
            self.answer(b'"stream":true' in body.replace(b" ", b""))

    def answer(self, stream: bool) -> None:
        loop = asyncio.get_running_loop()
        if not stream:
            Upstream.held += 1
            self.waiting += 1
            Upstream.peak = max(Upstream.peak, Upstream.held)
            self.handles.append(loop.call_later(self.config.latency, self.send, self.json_reply))
            return
        ttft = self.config.stream_ttft
        step = max(0.0, self.config.stream_duration - ttft) / max(1, len(self.events) - 1)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for index, event in enumerate(self.events):
            piece = b"%x\r\n%s\r\n" % (len(event), event)
            if index == 0:
                piece = head + piece
            if index == len(self.events) - 1:
                piece += b"0\r\n\r\n"
            self.handles.append(loop.call_later(ttft + index * step, self.write, piece))

    def send(self, body: bytes) -> None:
        Upstream.held -= 1
        self.waiting -= 1
        self.write_json(body)

    def write_json(self, body: bytes) -> None:
        self.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(config: argparse.Namespace) -> None:
    json_reply = (BODIES / "openai.json").read_bytes()
    events = [e + b"\n\n" for e in (BODIES / "openai.sse").read_bytes().split(b"\n\n") if e]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(config, json_reply, events), config.host, config.port, backlog=4096
    )
    gc.freeze()  # nothing here needs collecting; a collection would stall every answer
    gc.disable()
    port = server.sockets[0].getsockname()[1]
    print(f"http://{config.host}:{port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until EOF: the parent is done
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=1.5, help="seconds before an answer")
    parser.add_argument("--stream-ttft", type=float, default=0.5, help="seconds to first event")
    parser.add_argument("--stream-duration", type=float, default=10.0, help="seconds per stream")
    config = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
