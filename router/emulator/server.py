"""The emulator's HTTP server: routing, auth, faults, pacing and framing on real sockets.

One thread per connection (``ThreadingHTTPServer``, daemon threads, HTTP/1.1 keep-alive, a
1024-deep accept queue, ``TCP_NODELAY``); no lock is held while a request is handled. Streams
use ``Transfer-Encoding: chunked`` and every event is sent the moment it is produced, so a
stream cut by a fault is visible to the client as an incomplete chunked body. ``stop()``
closes the listening socket, shuts down every open connection (also those waiting in a
``timeout`` fault or a pacing delay) and joins the handler threads.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from .answers import answer
from .anthropic import AnthropicProtocol
from .config import EmulatorConfig, load_config
from .faults import PROVIDERS, Fault, FaultBook, normalize_prefix, normalize_provider
from .gemini import GeminiProtocol
from .openai import OpenAIProtocol
from .protocol import ApiError, Exchange, Reply, Request, StreamPlan
from .state import Counters, Pacing

logger = logging.getLogger(__name__)

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"),
    "google": ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"),
}
_ERROR_KINDS = {
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "unavailable",
    "overloaded",
    "auth",
}
_MAX_BODY = 64 * 1024 * 1024

_OPENAI_CHAT = re.compile(r"^(?P<prefix>.*?)/v1/chat/completions/?$")
_ANTHROPIC_MESSAGES = re.compile(r"^(?P<prefix>.*?)/v1/messages/?$")
_GEMINI_CALL = re.compile(
    r"^(?P<prefix>.*?)/(?:v1beta|v1alpha|v1)/models/(?P<model>[^/:]+)"
    r":(?P<action>generateContent|streamGenerateContent|countTokens)$"
)
_GEMINI_MODELS = re.compile(r"^(?P<prefix>.*?)/(?:v1beta|v1alpha)/models(?:/(?P<model>[^/:]+))?/?$")
_V1_MODELS = re.compile(r"^(?P<prefix>.*?)(?P<rest>/v1/models(?:/[^/]+)?)/?$")


class _Aborted(Exception):
    """The server is stopping or the client went away: drop the connection quietly."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: _Emulator) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Track sockets and threads here (in the accept loop) rather than in the handler
        # thread, so stop() can never miss a connection whose thread has not started yet.
        # socketserver itself does not track daemon threads, so we keep our own set.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="emulator-connection",
            daemon=True,
        )
        with self._open_lock:
            self._open.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._conn_threads.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._open_lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            logger.warning(
                "emulator: %d connection threads did not stop", sum(t.is_alive() for t in threads)
            )

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("emulator: error while handling %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "router-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.app.dispatch(self)

    do_POST = do_GET
    do_DELETE = do_GET
    do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("emulator: " + format, *args)


class _Emulator:
    """Everything a request handler needs; shared by all handler threads."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.protocols = {
            "openai": OpenAIProtocol(),
            "anthropic": AnthropicProtocol(),
            "google": GeminiProtocol(),
        }
        self.faults = FaultBook(config.faults)
        self.counters = Counters()
        self.pacing = Pacing()
        for provider, (ttft, delay) in sorted(
            config.pacing.items(), key=lambda kv: kv[0] is not None
        ):
            self.pacing.set(provider, ttft=ttft, token_delay=delay)
        self.stopping = threading.Event()

    # -- entry point -------------------------------------------------------------------------
    def dispatch(self, h: _Handler) -> None:
        try:
            path, _, qs = h.path.partition("?")
            query = dict(parse_qsl(qs, keep_blank_values=True))
            body = _read_body(h)
            if path.startswith("/_emulator"):
                self._control(h, h.command, path, body)
                return
            self._provider(h, path, query, body)
        except _Aborted:
            h.close_connection = True
        except (ConnectionError, OSError):
            h.close_connection = True

    # -- provider requests -------------------------------------------------------------------
    def _provider(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        method = h.command
        route = self._route(method, path, headers)
        if route is None:
            message = f"Invalid URL ({method} {path})"
            payload = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
            _send(
                h, Reply(404, [("Content-Type", "application/json")], json.dumps(payload).encode())
            )
            return
        provider, prefix, rest, model, action = route
        proto: Any = self.protocols[provider]
        req = Request(method, rest, prefix, query, headers, body, model, action)
        exchange: Exchange | None = None
        recorded = False

        def record(outcome: str) -> None:
            # Counted before the first byte goes out, so a client that has its answer
            # always finds its request in the counters.
            nonlocal recorded
            if not recorded:
                recorded = True
                model_id = exchange.model if exchange else model
                stream = exchange.stream if exchange else False
                body_json = exchange.body if exchange else None
                self.counters.record(provider, prefix, model_id, stream, outcome, body_json)

        try:
            proto.authenticate(req, self.config.keys.get(provider))
            if action == "models":
                record("ok")
                _send(h, proto.models(req, self._models(provider)))
                return
            exchange = proto.decode(req)
            self.counters.enter(provider)
            try:
                fault = self.faults.pick(provider, prefix, exchange.model)
                if fault is not None:
                    record(fault.kind)
                    self._inject(h, proto, req, exchange, fault)
                    return
                self._answer(h, proto, req, exchange, None, record)
            finally:
                self.counters.leave(provider)
        except ApiError as err:
            record(err.outcome)
            _send(h, err.reply)

    def _route(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[str, str, str, str | None, str | None] | None:
        if method == "POST":
            if m := _OPENAI_CHAT.match(path):
                return "openai", normalize_prefix(m["prefix"]), "/v1/chat/completions", None, None
            if m := _ANTHROPIC_MESSAGES.match(path):
                return "anthropic", normalize_prefix(m["prefix"]), "/v1/messages", None, None
            if m := _GEMINI_CALL.match(path):
                rest = path[len(m["prefix"]) :]
                return "google", normalize_prefix(m["prefix"]), rest, m["model"], m["action"]
        if method == "GET":
            if m := _GEMINI_MODELS.match(path):
                return (
                    "google",
                    normalize_prefix(m["prefix"]),
                    path[len(m["prefix"]) :],
                    m["model"],
                    "models",
                )
            if m := _V1_MODELS.match(path):
                anthropic = "anthropic-version" in headers or "x-api-key" in headers
                provider = "anthropic" if anthropic else "openai"
                return provider, normalize_prefix(m["prefix"]), m["rest"], None, "models"
        return None

    def _models(self, provider: str) -> tuple[str, ...]:
        return self.config.models.get(provider) or DEFAULT_MODELS[provider]

    def _answer(
        self,
        h: _Handler,
        proto: Any,
        req: Request,
        exchange: Exchange,
        fault: Fault | None,
        record: Callable[[str], None] | None = None,
    ) -> None:
        pinned = self.config.models.get(proto.name)
        if pinned and exchange.model not in pinned:
            raise ApiError(proto.error("not_found", exchange, {}), "not_found")
        exchange = proto.validate(req, exchange)
        if req.action == "countTokens":
            if record is not None:
                record("ok")
            _send(h, proto.count_tokens_reply(exchange))
            return
        assert exchange.conversation is not None
        result = answer(exchange.conversation)
        pace = self.pacing.get(proto.name)
        self._wait(pace.ttft)
        if record is not None:
            record("ok")
        if not exchange.stream:
            reply = proto.render(exchange, result)
            if fault is not None and fault.kind == "cut_stream":
                _send_truncated(h, reply)
            else:
                _send(h, reply)
            return
        plan = proto.stream(exchange, result)
        cut_after = error_after = None
        if fault is not None and fault.kind == "cut_stream":
            cut_after = int(fault.params.get("after_events", 2))
        if fault is not None and fault.kind == "stream_error":
            error_after = int(fault.params.get("after_events", 2))
        self._stream(h, plan, pace.token_delay, cut_after, error_after, proto)

    def _inject(
        self, h: _Handler, proto: Any, req: Request, exchange: Exchange, fault: Fault
    ) -> None:
        kind = fault.kind
        if kind in _ERROR_KINDS or (kind == "stream_error" and not exchange.stream):
            _send(h, proto.error(kind, exchange, fault.params))
        elif kind == "timeout":
            self._wait(float(fault.params.get("delay", 30.0)))
            self._answer(h, proto, req, exchange, None)
        elif kind == "reset":
            _reset(h)
        elif kind == "malformed":
            plan = proto.malformed(exchange)
            if isinstance(plan, StreamPlan):
                self._stream(h, plan, 0.0, None, None, proto)
            else:
                _send(h, plan)
        elif kind in ("cut_stream", "stream_error"):
            self._answer(h, proto, req, exchange, fault)
        else:  # pragma: no cover - FaultRule validates kinds
            raise AssertionError(kind)

    def _wait(self, seconds: float) -> None:
        """Sleep that ends early (and aborts the request) when the server stops."""
        if seconds > 0 and self.stopping.wait(seconds):
            raise _Aborted
        if self.stopping.is_set():
            raise _Aborted

    def _stream(
        self,
        h: _Handler,
        plan: StreamPlan,
        token_delay: float,
        cut_after: int | None,
        error_after: int | None,
        proto: Any,
    ) -> None:
        # HTTP/1.0 clients cannot take chunked bodies: they get the raw events and a close.
        chunked = h.request_version != "HTTP/1.0"
        if chunked:
            _write_head(h, plan.status, plan.headers + [("Transfer-Encoding", "chunked")])
        else:
            h.close_connection = True
            _write_head(h, plan.status, plan.headers)
        write = _write_chunk if chunked else _write_raw
        for sent, event in enumerate(plan.events):
            if cut_after is not None and sent >= cut_after:
                # End the connection without the terminating chunk: an incomplete body.
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if error_after is not None and sent >= error_after:
                write(h, proto.stream_error_event())
                break
            if event.paced and token_delay > 0:
                self._wait(token_delay)
            write(h, event.data)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")

    # -- control endpoints -------------------------------------------------------------------
    def _control(self, h: _Handler, method: str, path: str, body: bytes) -> None:
        try:
            payload = json.loads(body) if body.strip() else None
        except ValueError:
            _send_control(h, 400, {"error": "request body is not valid JSON"})
            return
        route = (method, path.rstrip("/"))
        try:
            if route == ("GET", "/_emulator/faults"):
                result: Any = {"faults": self.faults.to_list()}
            elif route == ("POST", "/_emulator/faults"):
                if isinstance(payload, dict) and "kind" in payload:
                    self.faults.add(payload)
                else:
                    rules = payload.get("faults") if isinstance(payload, dict) else payload
                    self.faults.replace(rules if rules is not None else [])
                result = {"faults": self.faults.to_list()}
            elif route == ("DELETE", "/_emulator/faults"):
                self.faults.clear()
                result = {"faults": []}
            elif route == ("GET", "/_emulator/counters"):
                result = self.counters.snapshot()
            elif route == ("GET", "/_emulator/requests"):
                result = {"requests": self.counters.recent()}
            elif route == ("POST", "/_emulator/reset"):
                self.counters.reset()
                self.faults.clear()
                result = {"status": "ok"}
            elif route == ("GET", "/_emulator/pacing"):
                result = self.pacing.snapshot()
            elif route == ("POST", "/_emulator/pacing"):
                if not isinstance(payload, dict):
                    raise ValueError(
                        "pacing: body must be an object with provider, ttft, token_delay"
                    )
                extra = sorted(set(payload) - {"provider", "ttft", "token_delay"})
                if extra:
                    raise ValueError(f"pacing: unknown key(s) {', '.join(extra)}")
                self.pacing.set(
                    payload.get("provider"),
                    ttft=payload.get("ttft", 0.0),
                    token_delay=payload.get("token_delay", 0.0),
                )
                result = self.pacing.snapshot()
            elif route == ("GET", "/_emulator/health"):
                result = {"status": "ok"}
            else:
                _send_control(h, 404, {"error": f"no control endpoint {method} {path}"})
                return
        except ValueError as exc:
            _send_control(h, 400, {"error": str(exc)})
            return
        _send_control(h, 200, result)


# -- wire helpers --------------------------------------------------------------------------------
def _read_body(h: _Handler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        total = 0
        while True:
            size_line = h.rfile.readline(1024)
            if not size_line:
                raise _Aborted
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > _MAX_BODY:
                raise _Aborted
            parts.append(h.rfile.read(size))
            h.rfile.readline(1024)
        return b"".join(parts)
    length = int(h.headers.get("Content-Length") or 0)
    if length > _MAX_BODY:
        raise _Aborted
    data = h.rfile.read(length) if length else b""
    if len(data) < length:
        raise _Aborted
    return data


def _head_bytes(h: _Handler, status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = {529: "Overloaded"}.get(status, "Unknown")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Date: {h.date_time_string()}",
        f"Server: {h.server_version}",
    ]
    lines += [f"{k}: {v}" for k, v in headers]
    if h.close_connection:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _write_head(h: _Handler, status: int, headers: list[tuple[str, str]]) -> None:
    h.wfile.write(_head_bytes(h, status, headers))


def _write_chunk(h: _Handler, data: bytes) -> None:
    h.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))


def _write_raw(h: _Handler, data: bytes) -> None:
    h.wfile.write(data)


def _send(h: _Handler, reply: Reply) -> None:
    # Head and body in one write: with keep-alive, two small writes can stall on Nagle/ACK.
    head = _head_bytes(h, reply.status, reply.headers + [("Content-Length", str(len(reply.body)))])
    h.wfile.write(head + reply.body)


def _send_truncated(h: _Handler, reply: Reply) -> None:
    head = _head_bytes(h, reply.status, reply.headers + [("Content-Length", str(len(reply.body)))])
    h.wfile.write(head + reply.body[: len(reply.body) // 2])
    h.close_connection = True
    h.connection.shutdown(socket.SHUT_RDWR)


def _send_control(h: _Handler, status: int, payload: Any) -> None:
    _send(h, Reply(status, [("Content-Type", "application/json")], json.dumps(payload).encode()))


def _reset(h: _Handler) -> None:
    """Close with an RST (SO_LINGER 0) and no response at all."""
    h.close_connection = True
    sock = h.connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.rfile.close()  # drop the makefile reference, or close() would be deferred
    sock.close()


# -- public face ---------------------------------------------------------------------------------
class EmulatorServer:
    """A running emulator on ``host:port`` (port 0 picks a free one); a context manager.

    >>> with EmulatorServer() as emu:            # doctest: +SKIP
    ...     openai.OpenAI(base_url=emu.base_urls["openai"], api_key="sk-test")
    """

    def __init__(
        self,
        config: dict[str, Any] | str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._config = load_config(config)
        self._host = host
        self._port = port
        self._app = _Emulator(self._config)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.base_urls: dict[str, str] = {}

    def start(self) -> EmulatorServer:
        """Bind and serve in a background thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("emulator already started")
        self._httpd = _HTTPServer((self._host, self._port), self._app)
        host, port = self._httpd.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{port}"
        self.base_urls = {p: self.base_url(p) for p in PROVIDERS}
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop open connections (also stalled ones) and join all threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._app.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        httpd.join_threads(timeout=10.0)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._httpd is None:
            raise RuntimeError("emulator not started")
        return int(self._httpd.server_address[1])

    def base_url(self, provider: str, prefix: str | None = None) -> str:
        """The router ``base_url`` for a provider, optionally under an instance prefix.

        OpenAI's includes ``/v1``; Anthropic's and Gemini's are the root. A prefix such as
        ``"/p/b"`` makes requests count (and match faults) separately from other instances.
        """
        if not self.url:
            raise RuntimeError("emulator not started")
        name = normalize_provider(provider)
        root = self.url + normalize_prefix(prefix)
        return root + "/v1" if name == "openai" else root

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace all fault rules (same shape as the config file and control endpoint)."""
        self._app.faults.replace(rules)

    def add_fault(self, **rule: Any) -> None:
        """Append one fault rule, e.g. ``add_fault(provider="openai", kind="rate_limit", count=1)``."""
        self._app.faults.add(rule)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._app.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """The current fault rules with their bookkeeping (seen, fired, spent)."""
        return self._app.faults.to_list()

    def set_pacing(
        self, provider: str | None = None, *, ttft: float = 0.0, token_delay: float = 0.0
    ) -> None:
        """Time to first byte and per-token stream delay, for one provider or all (None)."""
        self._app.pacing.set(provider, ttft=ttft, token_delay=token_delay)

    def counters(self) -> dict[str, Any]:
        """Requests per provider by outcome and model, plus ``"prefixes"``: the same per prefix."""
        return self._app.counters.snapshot()

    def requests(self) -> list[dict[str, Any]]:
        """The last (up to 1000) requests: provider, prefix, model, stream, outcome, JSON body."""
        return self._app.counters.recent()

    def reset(self) -> None:
        """Zero the counters and remove every fault rule (pacing is kept)."""
        self._app.counters.reset()
        self._app.faults.clear()


def serve_forever(
    host: str,
    port: int,
    config: dict[str, Any] | str | None,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run an emulator until KeyboardInterrupt; ``ready(url)`` is called once it listens."""
    server = EmulatorServer(config, host=host, port=port).start()
    try:
        if ready is not None:
            ready(server.url)
        forever = threading.Event()
        while not forever.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
