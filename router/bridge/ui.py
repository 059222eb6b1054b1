"""The status page: ``/`` and ``/ui`` (the page), ``/ui/app.js``, ``/ui/style.css``, ``/ui/data``.

The page and its two files are static (shipped in ``router/bridge/static``; no build step, no
CDN) and hold no data, so they need no token; the page asks ``/ui/data`` (the bridge's token
required, sent by the page as a bearer header) once a second. Polling, not server-sent
events: an open SSE response would hold one of the server's few worker threads per open page.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import TYPE_CHECKING, Any

from router.activity import Activity
from router.bridge.wire import Request, Response, Route
from router.statusview import status_view

if TYPE_CHECKING:
    from router.bridge.app import BridgeApp

__all__ = ["UIDoor"]

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page loads only its own files and talks only to its own bridge.
_SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


def _static(name: str) -> bytes:
    return resources.files("router.bridge").joinpath("static", name).read_bytes()


class UIDoor:
    """Serves the status page and its data (see the module docstring)."""

    name = "router"

    def __init__(self, bridge: BridgeApp, error_door: Any, *, recent: int = 50) -> None:
        self.bridge = bridge
        self.error_door = error_door  # /ui/data errors answer in the router's envelope
        self.activity = Activity(recent=recent)
        self._files = {name: _static(name) for name in _TYPES}
        listen = getattr(bridge.manager, "add_request_listener", None)
        if listen is not None:  # any object with the manager's methods can be served
            listen(self.activity.record)

    def routes(self) -> list[Route]:
        page = {"GET": self.page}
        return [
            Route("/", page, "none", self.error_door),
            Route("/ui", page, "none", self.error_door),
            Route("/ui/app.js", {"GET": self.asset}, "none", self.error_door),
            Route("/ui/style.css", {"GET": self.asset}, "none", self.error_door),
            Route("/ui/data", {"GET": self.data}, "auth", self.error_door),
        ]

    def failure_body(self, failure: Any) -> dict[str, Any]:
        return self.error_door.failure_body(failure)

    def page(self, request: Request) -> Response:
        # Assets are addressed from where the app is mounted (a SCRIPT_NAME prefix works).
        prefix = (request.environ.get("SCRIPT_NAME") or "").rstrip("/")
        base = html.escape(prefix + "/ui", quote=True).encode()
        return self._file("index.html", self._files["index.html"].replace(b"{{BASE}}", base))

    def asset(self, request: Request) -> Response:
        name = request.path.rsplit("/", 1)[-1]
        return self._file(name, self._files[name])

    def _file(self, name: str, body: bytes) -> Response:
        headers = [("Content-Type", _TYPES[name]), ("Content-Length", str(len(body)))]
        return Response(200, headers + _SECURITY_HEADERS, [body])

    def data(self, request: Request) -> Response:
        return self.bridge.json(200, status_view(self.bridge.manager, self.activity))
