"""Run the bridge on waitress, a production thread-pool WSGI server.

    serve(manager, host="127.0.0.1", port=8080, threads=8)      # blocks; Ctrl-C stops

    with BridgeServer(manager) as server:                        # background, free port
        requests.get(server.url + "/healthz")

waitress answers each request on one of ``threads`` worker threads; an SSE stream holds its
thread until it ends, so ``threads`` is also the number of concurrent streams. Every write of
the app reaches the socket at once (waitress's ``send_bytes`` is 1 since 3.0, and this module
pins it), so server-sent events are flushed one by one. ``waitress`` is imported only when a
server is created.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["BridgeServer", "serve"]

logger = logging.getLogger(__name__)

# How often the loop looks at the stop flag when nothing happens (seconds); a stop also pulls
# waitress's trigger, so stopping does not wait for it.
_LOOP_TIMEOUT = 1
# How far past the app's body limit waitress may read before refusing on its own (bytes).
_BODY_SLACK = 65536


def _app_for(manager_or_app: Any, create_app_kwargs: dict[str, Any]) -> Callable[..., Any]:
    if hasattr(manager_or_app, "stream_request"):
        from router.bridge import create_app

        return create_app(manager_or_app, **create_app_kwargs)
    if create_app_kwargs:
        raise TypeError(
            "create_app options ("
            + ", ".join(sorted(create_app_kwargs))
            + ") need a manager, not a ready WSGI app"
        )
    if not callable(manager_or_app):
        raise TypeError("serve() needs an AIProviderManager or a WSGI application")
    return manager_or_app


class BridgeServer:
    """The bridge on a waitress server in a background thread.

    ``port=0`` picks a free port; :attr:`url` says which. ``start()`` returns once the socket
    listens; ``stop()`` closes every connection and joins the worker threads. The manager's
    lifecycle is the caller's: start it before and stop it after.
    """

    def __init__(
        self,
        manager_or_app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 8,
        *,
        server_options: dict[str, Any] | None = None,
        **create_app_kwargs: Any,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.app = _app_for(manager_or_app, create_app_kwargs)
        self._host = host
        self._port = port
        self._threads = threads
        self._options = dict(server_options or {})
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    def _create(self) -> Any:
        from waitress.server import create_server

        options = {
            "ident": "router",
            # 1 byte: hand every write to the socket at once (no batching of SSE events).
            "send_bytes": 1,
            "asyncore_use_poll": True,  # select() breaks past 1024 descriptors
            "asyncore_loop_timeout": _LOOP_TIMEOUT,
            "clear_untrusted_proxy_headers": True,
            **self._options,
        }
        max_body = getattr(self.app, "_max_body", None)
        if max_body is not None and "max_request_body_size" not in options:
            # waitress reads (and spools to disk) a whole body, up to 1 GiB by default, before
            # the app sees the request, so the app's own 413 came only after an oversized body
            # had been read (found by the resource-limit tests). Past the app's limit plus a
            # little slack waitress now refuses at the headers (its 413 is plain text); a body
            # just over the limit still gets the app's JSON 413.
            options["max_request_body_size"] = max_body + _BODY_SLACK
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # send_bytes is "deprecated"
            return create_server(
                self.app, host=self._host, port=self._port, threads=self._threads, **options
            )

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.effective_port)

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> BridgeServer:
        """Listen and serve in a background thread."""
        if self._server is not None:
            return self
        self._server = self._create()
        self._thread = threading.Thread(
            target=self._run, name=f"router-bridge-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Listen and serve in this thread until :meth:`stop` or Ctrl-C."""
        if self._server is None:
            self._server = self._create()
        try:
            self._run()
        except KeyboardInterrupt:
            self._stopping.set()
            self._shutdown()

    def _run(self) -> None:
        from waitress import wasyncore

        server = self._server
        try:
            # One poll round at a time, so a stop request is seen between rounds.
            while not self._stopping.is_set():
                wasyncore.loop(
                    timeout=_LOOP_TIMEOUT,
                    map=server._map,
                    use_poll=server.adj.asyncore_use_poll,
                    count=1,
                )
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        # Runs on the loop's own thread, so no channel is touched by two threads at once.
        if self._stopped.is_set():
            return
        server = self._server
        for channel in list(server._map.values()):
            # The trigger lives in the same map: it stays open until the workers are joined.
            if channel is not server and channel is not server.trigger:
                try:
                    channel.close()
                except OSError:
                    pass
        # Join the workers before closing the server: a worker finishing its last response
        # pulls the server's trigger, which server.close() closes (EBADF, and waitress logs
        # a traceback; seen when SIGTERM follows a fast answer).
        server.task_dispatcher.shutdown(timeout=5)
        try:
            server.close()
        except OSError:
            pass
        self._stopped.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: close the socket and every connection, join the workers."""
        if self._server is None or self._stopped.is_set():
            return
        self._stopping.set()
        try:
            self._server.pull_trigger()  # wake the loop now rather than after its timeout
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    manager_or_app: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 8,
    *,
    ready: Callable[[str], object] | None = None,
    **create_app_kwargs: Any,
) -> None:
    """Serve the bridge on waitress until Ctrl-C (blocking).

    ``ready(url)`` is called once the socket listens (``router serve`` prints the URL with it;
    it used to reach ``create_app`` and fail with a TypeError, found by the secrets suite).

    ``manager_or_app``: an ``AIProviderManager`` (wrapped with
    :func:`router.bridge.create_app` and ``create_app_kwargs``, e.g. ``auth_token=``,
    ``configure_token=``) or a ready WSGI app. A manager that is not running is started here
    and stopped on the way out; a running one is left running. Binds 127.0.0.1 by default:
    expose it deliberately (``host="0.0.0.0"``), ideally with ``auth_token``.
    """
    owns_manager = hasattr(manager_or_app, "stream_request") and not manager_or_app.running
    if owns_manager:
        manager_or_app.start()
    previous: Any = None
    try:
        server = BridgeServer(manager_or_app, host, port, threads, **create_app_kwargs)
        server._server = server._create()
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (systemd, docker stop) ends the loop like Ctrl-C: connections are
            # closed and the manager is stopped, so reservations are settled, not lost.
            previous = signal.signal(signal.SIGTERM, lambda *_: server.stop(timeout=0))
        logger.info("router bridge serving on %s (%d threads)", server.url, threads)
        if ready is not None:
            ready(server.url)
        server.serve_forever()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if owns_manager:
            manager_or_app.stop()
