"""The bridge's WSGI application: routing, auth, limits, errors; the doors do the rest.

Each door (``router/bridge/<door>.py``) declares its routes and renders answers, streams and
errors in its own protocol; the app finds the route, checks the credential and the body
limit, runs the request on the manager (with metrics) and turns any failure into the door's
error envelope, never a traceback and never an API key.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from router.bridge.ai import AIDoor
from router.bridge.anthropic import AnthropicDoor
from router.bridge.errors import (
    BodyError,
    Failure,
    Problem,
    snake_case,
    status_for,
    validation_error,
)
from router.bridge.gemini import GeminiDoor
from router.bridge.openai_chat import ChatDoor
from router.bridge.openai_responses import ResponsesDoor
from router.bridge.options import apply_router_headers
from router.bridge.streaming import Events, EventStream
from router.bridge.wire import (
    SSE_HEADERS,
    ModelEntry,
    Request,
    Response,
    Route,
    Secrets,
    json_response,
    log_unexpected,
)
from router.errors import ModelNotFoundError, RouterError
from router.models import AIRequest, AIResponse, StreamChunk

__all__ = ["BridgeApp", "create_app"]

logger = logging.getLogger("router.bridge")
access_logger = logging.getLogger("router.bridge.access")

AUTH_TOKEN_ENV = "ROUTER_AUTH_TOKEN"
CONFIGURE_TOKEN_ENV = "ROUTER_CONFIGURE_TOKEN"

StartResponse = Callable[..., Any]


class _NoMetrics:
    """Stands in for :class:`router.bridge.metrics.BridgeMetrics` when metrics are off."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def create_app(
    manager: Any,
    *,
    auth_token: str | None = None,
    configure_token: str | None = None,
    max_body_bytes: int = 1_000_000,
    metrics: bool = True,
    ui: bool = True,
    max_in_flight: int | None = None,
) -> BridgeApp:
    """A WSGI application serving ``manager`` (see ``docs/bridge.md``).

    ``auth_token``: when set, every endpoint but ``/healthz`` requires ``Authorization:
    Bearer <token>`` (OpenAI clients send their ``api_key`` that way). ``configure_token``:
    the bearer token ``/ai/configure`` requires; without one that endpoint answers 403. Each
    defaults to its environment variable (``ROUTER_AUTH_TOKEN``, ``ROUTER_CONFIGURE_TOKEN``)
    when ``None``; pass ``""`` to switch it off regardless of the environment.
    ``max_body_bytes`` caps request bodies (413 beyond). ``metrics`` serves ``/metrics``
    from a registry of the app's own. ``ui`` serves the status page (``/``, ``/ui``; its
    data at ``/ui/data`` needs the auth token) and records the last requests for it.
    ``max_in_flight``: requests answered at once (a stream counts until it ends); past
    it the bridge answers 503 with ``Retry-After`` at once instead of queueing
    (``/healthz``, ``/metrics`` and the status page are always answered). ``None``: no limit of the app's
    own (``router serve`` sets one from its thread count).
    """
    if auth_token is None:
        auth_token = os.environ.get(AUTH_TOKEN_ENV)
    if configure_token is None:
        configure_token = os.environ.get(CONFIGURE_TOKEN_ENV)
    if max_body_bytes <= 0:
        raise ValueError("max_body_bytes must be > 0")
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1 (or None: no limit)")
    return BridgeApp(
        manager,
        auth_token=auth_token or None,
        configure_token=configure_token or None,
        max_body_bytes=max_body_bytes,
        metrics=metrics,
        ui=ui,
        max_in_flight=max_in_flight,
    )


class BridgeApp:
    """The WSGI callable :func:`create_app` returns; the services every door uses."""

    def __init__(
        self,
        manager: Any,
        *,
        auth_token: str | None,
        configure_token: str | None,
        max_body_bytes: int,
        metrics: bool,
        ui: bool = True,
        max_in_flight: int | None = None,
    ) -> None:
        self.manager = manager
        self._auth_token = auth_token
        self._configure_token = configure_token
        self._max_body = max_body_bytes
        self.max_in_flight = max_in_flight
        self._admission = _Admission(max_in_flight)
        self.secrets = Secrets(manager)
        self.created = int(time.time())
        self.created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        if metrics:
            from router.bridge.metrics import BridgeMetrics  # prometheus_client on demand

            self.metrics: Any = BridgeMetrics(manager)
        else:
            self.metrics = _NoMetrics()
        self._router_door = AIDoor(self)
        self._openai_door = ChatDoor(self)
        self._gemini_door = GeminiDoor(self)
        # On a path two doors share (GET /v1/models), the first door that claims the request
        # by its headers answers; the OpenAI door, last, takes the rest.
        doors: list[Any] = [
            self._router_door,
            AnthropicDoor(self),
            self._gemini_door,
            ResponsesDoor(self),
            self._openai_door,
        ]
        routes = [Route("/healthz", {"GET": self._healthz}, "none", self._router_door)]
        for door in doors:
            routes.extend(door.routes())
        if metrics:
            routes.append(Route("/metrics", {"GET": self._metrics}, "auth", self._router_door))
        if ui:
            from router.bridge.ui import UIDoor

            routes.extend(UIDoor(self, self._router_door).routes())
        self._routes = _RouteTable(routes)

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = environ.get("PATH_INFO") or "/"
        if len(path) > 1:
            path = path.rstrip("/")
        request = Request(environ, method, path, self._max_body)
        route_name = "unknown"
        # Errors on unknown paths answer in the envelope their prefix suggests.
        door: Any = self._router_door
        if path.startswith("/v1/"):
            door = self._openai_door
        elif path.startswith("/v1beta/"):
            door = self._gemini_door
        try:
            route = self._match(request)
            route_name, door = route.name, route.door
            handler = route.handlers.get("GET" if method == "HEAD" else method)
            if handler is None:
                allowed = ", ".join(route.handlers)
                raise Problem(
                    405,
                    "MethodNotAllowed",
                    f"{method} is not allowed on {route.name}; use {allowed}",
                    code="method_not_allowed",
                    headers=[("Allow", allowed)],
                )
            self._authorize(route, request)
            if route.name in _ALWAYS_ANSWERED:
                response = handler(request)
            else:
                response = self._admitted(handler, request)
        except Exception as error:  # every failure becomes a JSON answer, never a traceback
            response = self._error_response(error, door, request)
        if method == "HEAD":
            _close(response.body)
            response.body = []
        self.metrics.http(route_name, method, response.status)
        access_logger.info(
            "%s %s %d %.1fms", method, path, response.status, (time.monotonic() - started) * 1e3
        )
        start_response(_status_line(response.status), response.headers)
        return response.body

    def _admitted(self, handler: Callable[[Request], Response], request: Request) -> Response:
        """Run ``handler`` holding one of the ``max_in_flight`` places (503 when none is free);
        a streamed body keeps its place until the server closes it."""
        admission = self._admission
        if not admission.enter():
            raise Problem(
                503,
                "Overloaded",
                f"the bridge is answering its maximum of {admission.limit} requests at once; "
                "retry shortly",
                code="overloaded",
                headers=[("Retry-After", "1")],
            )
        try:
            response = handler(request)
        except BaseException:
            admission.leave()
            raise
        if isinstance(response.body, list):
            admission.leave()
        else:
            response.body = _Held(response.body, admission.leave)
        return response

    @property
    def in_flight(self) -> int:
        """Requests being answered now (those counted against ``max_in_flight``)."""
        return self._admission.count

    def _match(self, request: Request) -> Route:
        route, params = self._routes.match(request)
        if route is None:
            raise Problem(404, "NotFound", f"no such endpoint: {request.path}", code="not_found")
        request.params = params
        return route

    def _authorize(self, route: Route, request: Request) -> None:
        if route.auth == "none":
            return
        if route.auth == "configure":
            if self._configure_token is None:
                raise Problem(
                    403,
                    "ConfigureDisabled",
                    "/ai/configure is disabled: start the bridge with a configure token "
                    f"(configure_token= or {CONFIGURE_TOKEN_ENV})",
                    code="configure_disabled",
                )
            _check_token(bearer_token(request), self._configure_token, MISSING_BEARER)
        elif self._auth_token is not None:
            # Each door reads the credential where its SDK sends it (x-api-key, ?key=, ...).
            credential = getattr(route.door, "credential", bearer_token)
            missing = getattr(route.door, "missing_credential", MISSING_BEARER)
            _check_token(credential(request), self._auth_token, missing)

    # --- services for the doors --------------------------------------------------------------

    def json(
        self,
        status: int,
        payload: Any,
        headers: Iterable[tuple[str, str]] = (),
        *,
        scrub: bool = True,
    ) -> Response:
        """A JSON response (scrubbed of every known key unless it is model output)."""
        return json_response(self.secrets, status, payload, headers, scrub=scrub)

    def provider_names(self) -> set[str]:
        return {p.name for p in getattr(self.manager.config, "providers", ())}

    def with_router_headers(
        self, request: Request, ai_request: AIRequest, options: dict[str, Any]
    ) -> tuple[AIRequest, dict[str, Any]]:
        """The ``x-router-*`` headers applied (the same on every door; the body wins)."""
        return apply_router_headers(request, ai_request, options, self.provider_names())

    def models(self) -> list[ModelEntry]:
        """Every model the router can reach: each provider's models, then the aliases."""
        config = self.manager.config
        catalog = self.manager.catalog
        entries: dict[str, ModelEntry] = {}
        for provider in config.providers:
            ids = provider.models or [info.id for info in catalog.models_for(provider.type)]
            for model_id in ids:
                if model_id not in entries:
                    entries[model_id] = ModelEntry(model_id, provider.name, catalog.get(model_id))
        for alias in config.model_groups:
            if alias not in entries:
                members = config.model_groups[alias]
                first = catalog.get(members[0].model) if members else None
                entries[alias] = ModelEntry(alias, "router", first)
        return list(entries.values())

    def answer(self, endpoint: str, ai_request: AIRequest, options: dict[str, Any]) -> AIResponse:
        """One request answered whole, counted in the metrics under ``endpoint``."""
        started = time.monotonic()
        try:
            response = self.manager.process_request(ai_request, **options)
        except RouterError as error:
            self._record_failure(endpoint, error)
            raise
        self.metrics.success(
            endpoint,
            response.provider_name,
            response.model,
            time.monotonic() - started,
            response.usage,
            response.cost,
            cached=response.cached,
        )
        return response

    def stream(
        self,
        endpoint: str,
        ai_request: AIRequest,
        options: dict[str, Any],
        events: Events,
        headers: Iterable[tuple[str, str]] = (),
        *,
        media_type: str | None = None,
    ) -> Response:
        """A streamed answer in the door's ``events``: SSE, or ``media_type="json"`` for a
        streamed JSON document (Gemini without ``alt=sse``).

        The first chunk decides the status: a request that fails before anything was produced
        raises (and gets a plain error with its proper status), not a 200 stream. A door whose
        events open with a prelude of their own (OpenAI's ``role`` chunk) answers as soon as a
        provider has accepted the stream instead, as the provider itself does: its first byte
        then waits for the provider's first byte, not for the first content (a failure after
        that, failovers exhausted, is an error event).
        """
        started = time.monotonic()
        stream = self.manager.stream_request(ai_request, **options)
        first: StreamChunk | None = None
        prelude = b""
        try:
            if events.opens_early and hasattr(stream, "accepted"):
                stream.accepted()
                answering = stream.answering
                prelude = events.prelude(answering[1] if answering is not None else None)
            else:
                first = next(stream)
        except StopIteration:
            first = StreamChunk(
                is_complete=True,
                finish_reason="error",
                error="the stream ended without any chunk",
                error_type="StreamInterruptedError",
            )
        except RouterError as error:
            self._record_failure(endpoint, error)
            raise
        except BaseException:
            stream.close()
            raise
        if first is not None:
            provider, model = first.provider_name or "", first.model or ""
        else:
            provider, model = stream.answering or ("", "")
        cached = bool(getattr(stream, "cached", False))  # a response-cache replay
        self.metrics.first_chunk_after(endpoint, provider, model, time.monotonic() - started)

        def finished(outcome: str, last: StreamChunk | None, error_type: str | None) -> None:
            nonlocal provider, model
            if last is not None:  # the final chunk names who served
                provider, model = last.provider_name or provider, last.model or model
            if outcome == "success" and last is not None:
                seconds = time.monotonic() - started
                self.metrics.success(
                    endpoint, provider, model, seconds, last.usage, last.cost, cached=cached
                )
            elif outcome == "cancelled":
                self.metrics.cancelled(endpoint, provider, model)
            else:
                self.metrics.failure(endpoint, provider, model, error_type or "RouterError")

        out = list(SSE_HEADERS)
        if media_type == "json":
            out[0] = ("Content-Type", "application/json; charset=UTF-8")
        if provider:
            out.append(("X-Router-Provider", provider))
        if model:
            out.append(("X-Router-Model", model))
        if cached:
            out.append(("X-Router-Cache", "hit"))
        out.extend(headers)
        return Response(200, out, EventStream(stream, first, events, finished, prelude))

    # --- errors ------------------------------------------------------------------------------

    def failure(self, error: BaseException, request: Request) -> Failure:
        """Any exception as a door-neutral :class:`Failure` (logged when it is the server's)."""
        if isinstance(error, ValidationError):
            error = validation_error(error)
        if isinstance(error, Problem):
            return Failure(
                error.status,
                error.kind,
                error.message,
                {"type": error.kind, "message": error.message},
                error.param,
                error.code,
                list(error.headers),
            )
        if isinstance(error, RouterError):
            status = status_for(error)
            headers: list[tuple[str, str]] = []
            param = getattr(error, "param", None)
            code = snake_case(type(error).__name__)
            if isinstance(error, BodyError):
                code = "invalid_request"
            elif isinstance(error, ModelNotFoundError):
                param = "model"
            message = str(error)
            if error.retry_after is not None and status in (429, 503):
                headers.append(("Retry-After", str(max(1, math.ceil(error.retry_after)))))
            if status >= 500:
                logger.warning(
                    "%s %s: %s", request.method, request.path, self.secrets.scrub(message)
                )
            detail = error.to_dict()
            return Failure(status, str(detail["type"]), message, detail, param, code, headers)
        log_unexpected(self.secrets, f"{request.method} {request.path}", error)
        message = "internal error; see the server log"
        detail = {"type": "InternalError", "message": message}
        return Failure(500, "InternalError", message, detail, None, "internal_error")

    def _error_response(self, error: BaseException, door: Any, request: Request) -> Response:
        failure = self.failure(error, request)
        # A door may answer a status in its own service's terms (Anthropic: 529 overloaded).
        status = door.error_status(failure) if hasattr(door, "error_status") else failure.status
        return self.json(status, door.failure_body(failure), failure.headers)

    def _record_failure(self, endpoint: str, error: BaseException) -> None:
        provider = getattr(error, "provider", None) or ""
        if provider not in self.provider_names():
            provider = ""
        self.metrics.failure(endpoint, provider, "", type(error).__name__)

    # --- /healthz, /metrics ------------------------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        if getattr(self.manager, "running", False):
            return self.json(200, {"status": "ok"})
        return self.json(503, {"status": "stopped"})

    def _metrics(self, request: Request) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(
            200,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
            [body],
        )


MISSING_BEARER = "missing bearer token: send 'Authorization: Bearer <token>'"


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    scheme, _, given = (request.header("Authorization") or "").strip().partition(" ")
    return given.strip() or None if scheme.lower() == "bearer" else None


def _check_token(given: str | None, token: str, missing: str) -> None:
    if not given:
        raise Problem(
            401,
            "AuthenticationRequired",
            missing,
            code="missing_token",
            headers=[("WWW-Authenticate", "Bearer")],
        )
    # Constant-time: the comparison must not reveal how much of a guess was right.
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(
            401,
            "AuthenticationRequired",
            "invalid bearer token",
            code="invalid_api_key",
            headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')],
        )


class _RouteTable:
    """Exact paths first, then ``{param}`` patterns (most literal text first); a path that
    several doors serve picks its door by :meth:`claims`.
    """

    def __init__(self, routes: list[Route]) -> None:
        by_name: dict[str, list[Route]] = {}
        for route in routes:
            by_name.setdefault(route.name, []).append(route)
        self._exact: dict[str, list[Route]] = {}
        patterns: list[tuple[int, re.Pattern[str], list[Route]]] = []
        for name, shared in by_name.items():
            if "{" not in name:
                self._exact[name] = shared
                continue
            regex = ""
            for literal, param in re.findall(r"([^{]*)(?:\{(\w+)\})?", name):
                regex += re.escape(literal) + (f"(?P<{param}>.+?)" if param else "")
            literal_length = len(re.sub(r"\{\w+\}", "", name))
            patterns.append((literal_length, re.compile(regex + "$"), shared))
        patterns.sort(key=lambda item: -item[0])
        self._patterns = [(regex, shared) for _, regex, shared in patterns]

    def match(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        shared = self._exact.get(request.path)
        params: dict[str, str] = {}
        if shared is None:
            for regex, candidates in self._patterns:
                found = regex.match(request.path)
                if found:
                    shared, params = candidates, found.groupdict()
                    break
            else:
                return None, {}
        for route in shared[:-1]:
            if route.door.claims(request):
                return route, params
        return shared[-1], params


# Probes and monitoring still get an answer from a bridge that is full.
_ALWAYS_ANSWERED = frozenset(
    {"/healthz", "/metrics", "/", "/ui", "/ui/app.js", "/ui/style.css", "/ui/data"}
)


class _Admission:
    """Requests in flight against a limit (``None``: counted, never refused)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.limit is not None and self.count >= self.limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


class _Held:
    """A streamed body that gives its admission back once, when the server closes it (PEP
    3333: the server calls ``close()`` at the end of the response or when the client left)."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            _close(self._body)
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()
