"""An asyncio HTTP/1.1 load generator: open-loop request rates and many concurrent streams.

One event loop, raw sockets (``asyncio`` streams), keep-alive connections reused from an idle
pool, no third-party client: the generator must cost little CPU per request so that it is not
what a benchmark measures (``bench_capacity.py`` proves it with a calibration run against the
upstream alone). Latencies are measured from each request's *scheduled* send time, so a
generator or server that falls behind shows up in the figures instead of being hidden
(coordinated omission).

    results = asyncio.run(open_loop(url, body, headers, rate=500, duration=30))
    results = asyncio.run(concurrent_streams(url, body, headers, count=1000, ramp=1.0))
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Result:
    """One request as the client saw it."""

    scheduled: float  # loop clock, seconds
    status: int = 0  # 0: no answer (connection error, timeout)
    first_byte: float = float("nan")  # seconds after ``scheduled``: headers + first body bytes
    latency: float = float("nan")  # seconds after ``scheduled``: the whole answer read
    body_bytes: int = 0
    tail: bytes = b""  # the body's last bytes (a stream's end marker)
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _no_collections() -> Iterator[None]:
    """The garbage collector off for a measured run: a full collection over a thousand pending
    tasks stalls the generator's loop for 40 ms (measured with ``gc.callbacks``), which every
    request due meanwhile would count as the server's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Target:
    def __init__(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        self.request = "\r\n".join(lines).encode("latin-1") + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], on_first: object, result: Result
) -> bool:
    """Read the body into ``result`` (size, last bytes); returns whether the connection can be
    kept. ``on_first()`` at its first byte."""
    total = 0
    first = True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                result.body_bytes = total
                return headers.get("connection", "").lower() != "close"
            data = await reader.readexactly(size + 2)
            if first:
                on_first()  # type: ignore[operator]
                first = False
            total += size
            result.tail = (result.tail + data[:-2])[-64:]
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length:
            data = await reader.readexactly(length)
            result.tail = data[-64:]
            on_first()  # type: ignore[operator]
        result.body_bytes = length
        return headers.get("connection", "").lower() != "close"
    while True:  # until the server closes
        data = await reader.read(65536)
        if not data:
            result.body_bytes = total
            return False
        if first:
            on_first()  # type: ignore[operator]
            first = False
        total += len(data)
        result.tail = (result.tail + data)[-64:]


class _Pool:
    """Idle keep-alive connections to one host; a new one whenever none is idle."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        self.opened += 1
        return await asyncio.open_connection(self.target.host, self.target.port)

    def give(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _one(
    pool: _Pool, result: Result, timeout: float, loop: asyncio.AbstractEventLoop
) -> None:
    conn = None
    try:
        conn = await asyncio.wait_for(pool.take(), timeout)
        reader, writer = conn
        writer.write(pool.target.request)

        def first() -> None:
            result.first_byte = loop.time() - result.scheduled

        async def exchange() -> bool:
            status, headers = await _read_head(reader)
            result.status, result.headers = status, headers
            return await _read_body(reader, headers, first, result)

        keep = await asyncio.wait_for(exchange(), timeout)
        result.latency = loop.time() - result.scheduled
        if keep:
            pool.give(conn)
        else:
            writer.close()
    except Exception as error:  # noqa: BLE001 - every failure is a result, counted
        result.status = 0
        result.error = type(error).__name__
        if conn is not None:
            conn[1].close()


async def open_loop(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    rate: float,
    duration: float,
    timeout: float = 30.0,
    warm: int = 0,
) -> tuple[list[Result], dict[str, float]]:
    """Send ``rate`` requests/s for ``duration`` s on schedule, whatever the answers do.

    ``warm`` keep-alive connections are opened before the clock starts (as a client or load
    balancer in steady state holds them); more are opened when none is idle.

    Returns every request's result and facts about the generator itself (``lag_p99``: how late
    it started requests; ``connections``; ``cpu``: its own process CPU seconds).
    """
    loop = asyncio.get_running_loop()
    pool = _Pool(_Target(url, body, headers))
    for conn in await asyncio.gather(*(pool.take() for _ in range(warm))):
        pool.give(conn)
    warmed = pool.opened
    with _no_collections():
        results: list[Result] = []
        tasks: list[asyncio.Task[None]] = []
        lags: list[float] = []
        cpu0 = time.process_time()
        start = loop.time() + 0.05
        total = int(rate * duration)
        for index in range(total):
            scheduled = start + index / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(loop.time() - scheduled)
            result = Result(scheduled=scheduled)
            results.append(result)
            tasks.append(loop.create_task(_one(pool, result, timeout, loop)))
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu0
    pool.close()
    lags.sort()
    facts = {
        "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "connections": float(pool.opened),
        "opened_under_load": float(pool.opened - warmed),
        "cpu": cpu,
        "wall": loop.time() - start,
    }
    return results, facts


async def concurrent_streams(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    count: int,
    ramp: float = 1.0,
    timeout: float = 60.0,
    on_all_open: object = None,
) -> tuple[list[Result], dict[str, float]]:
    """Open ``count`` streams spread over ``ramp`` seconds, each on its own connection, and
    read every one to its end. ``on_all_open()`` is called once every stream has its first
    byte (or has failed): the moment all of them are open at once (to sample memory)."""
    loop = asyncio.get_running_loop()
    target = _Target(url, body, headers)
    results: list[Result] = []
    tasks = []
    cpu0 = time.process_time()
    start = loop.time() + 0.05
    pending_first = count
    all_open = asyncio.Event()

    async def one(result: Result) -> None:
        nonlocal pending_first
        pool = _Pool(target)  # one connection per stream
        counted = False

        def first() -> None:
            nonlocal pending_first, counted
            result.first_byte = loop.time() - result.scheduled
            counted = True
            pending_first -= 1
            if pending_first == 0:
                all_open.set()

        try:
            conn = await asyncio.wait_for(pool.take(), timeout)
            reader, writer = conn
            writer.write(target.request)
            status, hdrs = await asyncio.wait_for(_read_head(reader), timeout)
            result.status, result.headers = status, hdrs
            await asyncio.wait_for(_read_body(reader, hdrs, first, result), timeout)
            result.latency = loop.time() - result.scheduled
            writer.close()
        except Exception as error:  # noqa: BLE001
            result.status = 0
            result.error = type(error).__name__
        finally:
            if not counted:
                pending_first -= 1
                if pending_first == 0:
                    all_open.set()

    with _no_collections():
        for index in range(count):
            scheduled = start + ramp * index / count
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result = Result(scheduled=scheduled)
            results.append(result)
            tasks.append(loop.create_task(one(result)))
        if on_all_open is not None:
            await all_open.wait()
            await loop.run_in_executor(None, on_all_open)  # type: ignore[arg-type]
        await asyncio.gather(*tasks)
    return results, {"cpu": time.process_time() - cpu0, "wall": loop.time() - start}
