"""The HTTP bridge: a plain WSGI application over an :class:`~router.AIProviderManager`.

    from router import AIProviderManager
    from router.bridge import create_app

    manager = AIProviderManager("conf/ai_providers.yaml").start()
    app = create_app(manager)          # mount in waitress, gunicorn --threads, any framework

Endpoints (see ``docs/bridge.md``): ``POST /ai/generate`` (JSON, or SSE when ``stream`` is
true), ``GET /ai/status``, ``POST /ai/recommendations``, ``POST /ai/configure`` (bearer
token; disabled without one), ``POST /v1/chat/completions`` and ``GET /v1/models`` in
OpenAI's format, ``GET /metrics`` (Prometheus) and ``GET /healthz``.

The app is thread-safe (the manager is); every request is answered by the thread the WSGI
server calls it on, and an SSE response occupies that thread until the stream ends. Errors
are JSON with a fitting status, never a stack trace, and never contain an API key.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from router import errors as _errors
from router.bridge_openai import (
    BodyError,
    ChatStreamTranslator,
    chat_request,
    completion_body,
    model_entry,
    new_completion_id,
    validation_error,
)
from router.errors import (
    BudgetExceededError,
    CircuitOpenError,
    ConfigError,
    InvalidRequestError,
    LedgerUnavailableError,
    ManagerStoppedError,
    ModelNotFoundError,
    NoProviderAvailableError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RequestCancelledError,
    RequestTimeoutError,
    RouterError,
    ToolTranslationError,
)
from router.models import AIRequest, ProviderSelection, StreamChunk

__all__ = ["BridgeApp", "create_app", "status_for"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("router.bridge.access")

AUTH_TOKEN_ENV = "ROUTER_AUTH_TOKEN"
CONFIGURE_TOKEN_ENV = "ROUTER_CONFIGURE_TOKEN"

StartResponse = Callable[..., Any]

# Most specific first. 402 (not 429) for budgets: a spent budget does not come back after a
# short pause, and 429 makes HTTP clients (the OpenAI SDK among them) retry in a loop.
_STATUS: tuple[tuple[type[RouterError], int], ...] = (
    (BudgetExceededError, 402),
    (RateLimitError, 429),
    (ModelNotFoundError, 404),
    (InvalidRequestError, 400),
    (ToolTranslationError, 400),
    (RequestTimeoutError, 504),
    (ProviderTimeoutError, 504),
    (NoProviderAvailableError, 503),
    (CircuitOpenError, 503),
    (ManagerStoppedError, 503),
    (LedgerUnavailableError, 503),
    (RequestCancelledError, 503),
    (ConfigError, 500),
    (ProviderError, 502),
)

# OpenAI's ``error.type`` per status, for the /v1 face.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

_SSE_HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    # nginx and similar proxies buffer responses unless told not to.
    ("X-Accel-Buffering", "no"),
]
_ROUTE_FIELDS = ("strategy", "selection", "timeout")
_CONFIGURE_FIELDS = frozenset({"provider", "enabled", "priority", "api_key", "rpm", "tpm"})
_BUDGET_FIELDS = frozenset(
    {"budgets", "daily_limit", "monthly_limit", "provider_limits", "alert_thresholds", "limit"}
)
_BUDGET_CHANGE_FIELDS = frozenset(
    {"budget", "daily_limit", "monthly_limit", "provider_limits", "alert_thresholds", "enabled"}
)


def status_for(error: BaseException) -> int:
    """The HTTP status the bridge answers a router error with."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def _status_for_type(name: str | None) -> int:
    kind = getattr(_errors, name or "", None)
    if isinstance(kind, type) and issubclass(kind, RouterError):
        for base, status in _STATUS:
            if issubclass(kind, base):
                return status
    return 500


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


# --- plumbing ------------------------------------------------------------------------------


class _Problem(Exception):
    """An HTTP error the bridge itself raises (routing, auth, body)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.headers = list(headers)


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]


@dataclass
class _Request:
    environ: dict[str, Any]
    method: str
    path: str
    max_body: int
    face: str  # "router" or "openai": which error envelope to answer with
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def body(self) -> bytes:
        """The request body, refused with 413 before reading when it is too large."""
        stream = self.environ.get("wsgi.input")
        raw_length = (self.environ.get("CONTENT_LENGTH") or "").strip()
        if raw_length:
            try:
                length = int(raw_length)
            except ValueError:
                raise _Problem(400, "InvalidRequestError", "invalid Content-Length") from None
            if length < 0:
                raise _Problem(400, "InvalidRequestError", "invalid Content-Length")
            if length > self.max_body:
                raise self._too_large()
            return _read_exactly(stream, length)
        chunked = "chunked" in (self.header("Transfer-Encoding") or "").lower()
        if stream is None or not (chunked or self.environ.get("wsgi.input_terminated")):
            return b""  # PEP 3333: without a length there is no body to read
        # A chunked body: read until EOF, but never more than the limit.
        pieces, total = [], 0
        while True:
            piece = stream.read(min(65536, self.max_body + 1 - total))
            if not piece:
                return b"".join(pieces)
            total += len(piece)
            if total > self.max_body:
                raise self._too_large()
            pieces.append(piece)

    def _too_large(self) -> _Problem:
        return _Problem(
            413,
            "PayloadTooLarge",
            f"request body larger than {self.max_body} bytes",
            code="request_too_large",
        )

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; 400 naming the problem otherwise."""
        raw = self.body()
        if not raw.strip():
            raise BodyError("request body is empty; send a JSON object")
        try:
            value = json.loads(raw.decode("utf-8"))  # RFC 8259: JSON on the wire is UTF-8
        except UnicodeDecodeError:
            raise BodyError("request body is not UTF-8") from None
        except json.JSONDecodeError as error:
            # The decoder's message holds only a position, never the input.
            raise BodyError(f"request body is not valid JSON: {error}") from None
        except RecursionError:
            raise BodyError(_TOO_DEEP) from None
        if not isinstance(value, dict):
            raise BodyError("request body must be a JSON object")
        if _nests_deeper_than(value, _MAX_BODY_DEPTH):
            raise BodyError(_TOO_DEEP)
        return value


# A body nested deeper than this is refused. Found by fuzzing: deep nesting overflowed the JSON
# decoder's (or later the validators' and the tool translator's) stack and was answered 500.
# Real requests, tool schemas included, stay far below it.
_MAX_BODY_DEPTH = 100
_TOO_DEEP = f"request body nests more than {_MAX_BODY_DEPTH} levels deep"


def _nests_deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _read_exactly(stream: Any, length: int) -> bytes:
    if stream is None or length == 0:
        return b""
    pieces, remaining = [], length
    while remaining > 0:
        piece = stream.read(remaining)
        if not piece:
            break
        pieces.append(piece)
        remaining -= len(piece)
    return b"".join(pieces)


@dataclass(frozen=True)
class _Route:
    name: str
    handlers: Mapping[str, Callable[[_Request], _Response]]
    auth: str  # "none", "auth" (the optional token) or "configure"


class _Secrets:
    """The keys the bridge knows of, so that none can leak through an error message."""

    def __init__(self, manager: Any) -> None:
        # Replaced, never mutated: request threads scrub while /ai/configure adds a key.
        self._values: frozenset[str] = frozenset()
        for provider in getattr(getattr(manager, "config", None), "providers", ()):
            key = getattr(provider, "api_key", None)
            if key is not None:
                self.add(key.get_secret_value())

    def add(self, value: str) -> None:
        if len(value) >= 6:  # shorter strings would redact ordinary words
            self._values = self._values | {value}

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "[redacted]")
        return text


class _NoMetrics:
    """Stands in for :class:`router.bridge_metrics.BridgeMetrics` when metrics are off."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


# --- the application -----------------------------------------------------------------------


def create_app(
    manager: Any,
    *,
    auth_token: str | None = None,
    configure_token: str | None = None,
    max_body_bytes: int = 1_000_000,
    metrics: bool = True,
) -> BridgeApp:
    """A WSGI application serving ``manager`` (see the module docstring).

    ``auth_token``: when set, every endpoint but ``/healthz`` requires ``Authorization:
    Bearer <token>`` (OpenAI clients send their ``api_key`` that way). ``configure_token``:
    the bearer token ``/ai/configure`` requires; without one that endpoint answers 403. Each
    defaults to its environment variable (``ROUTER_AUTH_TOKEN``, ``ROUTER_CONFIGURE_TOKEN``)
    when ``None``; pass ``""`` to switch it off regardless of the environment.
    ``max_body_bytes`` caps request bodies (413 beyond). ``metrics`` serves ``/metrics``
    from a registry of the app's own.
    """
    if auth_token is None:
        auth_token = os.environ.get(AUTH_TOKEN_ENV)
    if configure_token is None:
        configure_token = os.environ.get(CONFIGURE_TOKEN_ENV)
    if max_body_bytes <= 0:
        raise ValueError("max_body_bytes must be > 0")
    return BridgeApp(
        manager,
        auth_token=auth_token or None,
        configure_token=configure_token or None,
        max_body_bytes=max_body_bytes,
        metrics=metrics,
    )


class BridgeApp:
    """The WSGI callable :func:`create_app` returns."""

    def __init__(
        self,
        manager: Any,
        *,
        auth_token: str | None,
        configure_token: str | None,
        max_body_bytes: int,
        metrics: bool,
    ) -> None:
        self.manager = manager
        self._auth_token = auth_token
        self._configure_token = configure_token
        self._max_body = max_body_bytes
        self._secrets = _Secrets(manager)
        self._created = int(time.time())
        if metrics:
            from router.bridge_metrics import BridgeMetrics  # prometheus_client on demand

            self.metrics: Any = BridgeMetrics(manager)
        else:
            self.metrics = _NoMetrics()
        routes = [
            _Route("/healthz", {"GET": self._healthz}, "none"),
            _Route("/ai/generate", {"POST": self._generate}, "auth"),
            _Route("/ai/status", {"GET": self._status}, "auth"),
            _Route("/ai/recommendations", {"POST": self._recommendations}, "auth"),
            _Route("/ai/configure", {"POST": self._configure}, "configure"),
            _Route("/v1/chat/completions", {"POST": self._chat_completions}, "auth"),
            _Route("/v1/models", {"GET": self._models}, "auth"),
            _Route("/v1/models/{model}", {"GET": self._model}, "auth"),
        ]
        if metrics:
            routes.append(_Route("/metrics", {"GET": self._metrics}, "auth"))
        self._routes = {route.name: route for route in routes}

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = environ.get("PATH_INFO") or "/"
        if len(path) > 1:
            path = path.rstrip("/")
        face = "openai" if path.startswith("/v1/") else "router"
        request = _Request(environ, method, path, self._max_body, face)
        route_name = "unknown"
        try:
            route, params = self._match(path)
            route_name = route.name
            request.params = params
            handler = route.handlers.get("GET" if method == "HEAD" else method)
            if handler is None:
                allowed = ", ".join(route.handlers)
                raise _Problem(
                    405,
                    "MethodNotAllowed",
                    f"{method} is not allowed on {route.name}; use {allowed}",
                    code="method_not_allowed",
                    headers=[("Allow", allowed)],
                )
            self._authorize(route, request)
            response = handler(request)
        except Exception as error:  # every failure becomes a JSON answer, never a traceback
            response = self._error_response(error, face, request)
        if method == "HEAD":
            _close(response.body)
            response.body = []
        self.metrics.http(route_name, method, response.status)
        access_logger.info(
            "%s %s %d %.1fms", method, path, response.status, (time.monotonic() - started) * 1e3
        )
        start_response(_status_line(response.status), response.headers)
        return response.body

    def _match(self, path: str) -> tuple[_Route, dict[str, str]]:
        route = self._routes.get(path)
        if route is not None:
            return route, {}
        if path.startswith("/v1/models/"):
            return self._routes["/v1/models/{model}"], {"model": path[len("/v1/models/") :]}
        raise _Problem(404, "NotFound", f"no such endpoint: {path}", code="not_found")

    def _authorize(self, route: _Route, request: _Request) -> None:
        if route.auth == "none":
            return
        if route.auth == "configure":
            if self._configure_token is None:
                raise _Problem(
                    403,
                    "ConfigureDisabled",
                    "/ai/configure is disabled: start the bridge with a configure token "
                    f"(configure_token= or {CONFIGURE_TOKEN_ENV})",
                    code="configure_disabled",
                )
            self._check_token(request, self._configure_token)
        elif self._auth_token is not None:
            self._check_token(request, self._auth_token)

    def _check_token(self, request: _Request, token: str) -> None:
        header = request.header("Authorization") or ""
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _Problem(
                401,
                "AuthenticationRequired",
                "missing bearer token: send 'Authorization: Bearer <token>'",
                code="missing_token",
                headers=[("WWW-Authenticate", "Bearer")],
            )
        # Constant-time: the comparison must not reveal how much of a guess was right.
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise _Problem(
                401,
                "AuthenticationRequired",
                "invalid bearer token",
                code="invalid_api_key",
                headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')],
            )

    # --- responses ---------------------------------------------------------------------------

    def _json(
        self,
        status: int,
        payload: Any,
        headers: Iterable[tuple[str, str]] = (),
        *,
        scrub: bool = True,
    ) -> _Response:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        if scrub:
            text = self._secrets.scrub(text)
        body = text.encode("utf-8")
        return _Response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                *headers,
            ],
            [body],
        )

    def _error_response(self, error: BaseException, face: str, request: _Request) -> _Response:
        headers: list[tuple[str, str]] = []
        if isinstance(error, ValidationError):
            error = validation_error(error)
        if isinstance(error, _Problem):
            status, headers = error.status, error.headers
            router_body: dict[str, Any] = {"type": error.kind, "message": error.message}
            param, code, message = error.param, error.code, error.message
        elif isinstance(error, RouterError):
            status = status_for(error)
            router_body = error.to_dict()
            param = getattr(error, "param", None)
            code = _snake(type(error).__name__)
            if isinstance(error, BodyError):
                code = "invalid_request"
            elif isinstance(error, ModelNotFoundError):
                param = "model"
            message = str(error)
            if error.retry_after is not None and status in (429, 503):
                headers.append(("Retry-After", str(max(1, math.ceil(error.retry_after)))))
            if status >= 500:
                logger.warning(
                    "%s %s: %s", request.method, request.path, self._secrets.scrub(message)
                )
        else:
            _log_unexpected(self._secrets, f"{request.method} {request.path}", error)
            status = 500
            router_body = {"type": "InternalError", "message": "internal error; see the server log"}
            param, code, message = None, "internal_error", router_body["message"]
        if face == "openai":
            payload = {
                "error": {
                    "message": message,
                    "type": _OPENAI_TYPES.get(status, "server_error"),
                    "param": param,
                    "code": code,
                }
            }
        else:
            payload = {"error": router_body}
        return self._json(status, payload, headers)

    def _record_failure(self, endpoint: str, error: BaseException) -> None:
        provider = getattr(error, "provider", None) or ""
        if provider not in self._provider_names():
            provider = ""
        self.metrics.failure(endpoint, provider, "", type(error).__name__)

    def _provider_names(self) -> set[str]:
        return {p.name for p in getattr(self.manager.config, "providers", ())}

    # --- shared input ------------------------------------------------------------------------

    def _route_options(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``strategy``, ``selection`` and ``timeout`` checked, for the manager's keywords."""
        from router.strategies import STRATEGIES

        strategy = body.get("strategy")
        if strategy is not None and (not isinstance(strategy, str) or strategy not in STRATEGIES):
            raise BodyError(
                f"'strategy' must be one of: {', '.join(STRATEGIES)}",
                "strategy",
            )
        selection = body.get("selection")
        if selection is not None:
            if not isinstance(selection, dict):
                raise BodyError("'selection' must be an object", "selection")
            try:
                selection = ProviderSelection.model_validate(selection)
            except ValidationError as error:
                raise validation_error(error, ["selection"]) from None
        timeout = body.get("timeout")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise BodyError("'timeout' must be a number of seconds", "timeout")
            if not 0 < timeout < math.inf:
                raise BodyError("'timeout' must be greater than 0", "timeout")
        return {"strategy": strategy, "selection": selection, "timeout": timeout}

    @staticmethod
    def _ai_request(body: Mapping[str, Any], drop: Iterable[str]) -> AIRequest:
        fields = {k: v for k, v in body.items() if k not in drop}
        try:
            return AIRequest.model_validate(fields)
        except ValidationError as error:
            raise validation_error(error) from None

    # --- /healthz, /metrics ------------------------------------------------------------------

    def _healthz(self, request: _Request) -> _Response:
        if getattr(self.manager, "running", False):
            return self._json(200, {"status": "ok"})
        return self._json(503, {"status": "stopped"})

    def _metrics(self, request: _Request) -> _Response:
        body, content_type = self.metrics.exposition()
        return _Response(
            200,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
            [body],
        )

    # --- /ai/* -------------------------------------------------------------------------------

    def _generate(self, request: _Request) -> _Response:
        body = request.json()
        options = self._route_options(body)
        ai_request = self._ai_request(body, _ROUTE_FIELDS)
        if ai_request.stream:
            return self._stream("generate", ai_request, options, _GenerateEvents(self._secrets))
        started = time.monotonic()
        try:
            response = self.manager.process_request(ai_request, **options)
        except RouterError as error:
            self._record_failure("generate", error)
            raise
        self.metrics.success(
            "generate",
            response.provider_name,
            response.model,
            time.monotonic() - started,
            response.usage,
            response.cost,
        )
        return self._json(
            200,
            response.model_dump(mode="json", exclude={"raw"}),
            _served_by(response),
            scrub=False,
        )

    def _status(self, request: _Request) -> _Response:
        stats = self.manager.get_manager_stats()
        return self._json(200, {"status": "ok", **stats})

    def _recommendations(self, request: _Request) -> _Response:
        body = request.json()
        options = self._route_options(body)
        ai_request = self._ai_request(body, _ROUTE_FIELDS)
        strategy = options["strategy"] or "cost"
        rows = self.manager.get_cost_recommendations(
            ai_request, selection=options["selection"], strategy=strategy
        )
        return self._json(
            200,
            {
                "strategy": strategy,
                "recommendations": [{"candidate": key, **row} for key, row in rows.items()],
            },
        )

    def _configure(self, request: _Request) -> _Response:
        body = request.json()
        if "budget" in body:
            return self._configure_budget(body)
        budget = sorted(set(body) & _BUDGET_FIELDS)
        if budget:
            raise BodyError(
                f"'{budget[0]}' changes a budget: name it with 'budget' (and no 'provider')",
                budget[0],
            )
        unknown = sorted(set(body) - _CONFIGURE_FIELDS)
        if unknown:
            raise BodyError(
                f"unknown field '{unknown[0]}' (known: {', '.join(sorted(_CONFIGURE_FIELDS))})",
                unknown[0],
            )
        name = body.get("provider")
        if not isinstance(name, str) or not name:
            raise BodyError("'provider' must name a configured provider", "provider")
        if name not in self._provider_names():
            known = ", ".join(sorted(self._provider_names()))
            raise BodyError(f"unknown provider '{name}' (configured: {known})", "provider")
        changes = _configure_changes(body)
        if not changes:
            raise BodyError(
                "nothing to change: send one or more of enabled, priority, api_key, rpm, tpm"
            )
        if "api_key" in changes:
            self._secrets.add(changes["api_key"])  # before anything could echo it
        try:
            self.manager.update_provider(name, **changes)
        except ConfigError as error:
            raise BodyError(str(error), "provider") from None
        logger.info("configure: provider %s changed: %s", name, ", ".join(sorted(changes)))
        health = self.manager.provider_health()[name]
        return self._json(
            200, {"provider": name, "updated": sorted(changes), "health": health.to_dict()}
        )

    def _configure_budget(self, body: dict[str, Any]) -> _Response:
        unknown = sorted(set(body) - _BUDGET_CHANGE_FIELDS)
        if unknown:
            known = ", ".join(sorted(_BUDGET_CHANGE_FIELDS))
            raise BodyError(f"unknown field '{unknown[0]}' (known: {known})", unknown[0])
        name = body["budget"]
        if not isinstance(name, str) or not name:
            raise BodyError("'budget' must name a configured budget", "budget")
        changes = {key: value for key, value in body.items() if key != "budget"}
        if not changes:
            raise BodyError(
                "nothing to change: send one or more of "
                + ", ".join(sorted(_BUDGET_CHANGE_FIELDS - {"budget"}))
            )
        try:
            updated = self.manager.update_budget(name, **changes)
        except ConfigError as error:
            raise BodyError(str(error), "budget") from None
        except TypeError as error:
            raise BodyError(f"invalid budget change: {error}", "budget") from None
        logger.info("configure: budget %s changed: %s", name, ", ".join(sorted(changes)))
        return self._json(200, {"budget": name, "updated": sorted(changes), "config": updated})

    # --- /v1/* -------------------------------------------------------------------------------

    def _chat_completions(self, request: _Request) -> _Response:
        body = request.json()
        ai_request, chat = chat_request(body)
        options = self._route_options(
            {"strategy": chat.strategy, "selection": chat.selection, "timeout": chat.timeout}
        )
        if ai_request.stream:
            translator = ChatStreamTranslator(
                include_usage=chat.include_usage, model=ai_request.model
            )
            events = _ChatEvents(self._secrets, translator)
            return self._stream("chat_completions", ai_request, options, events)
        started = time.monotonic()
        try:
            response = self.manager.process_request(ai_request, **options)
        except RouterError as error:
            self._record_failure("chat_completions", error)
            raise
        self.metrics.success(
            "chat_completions",
            response.provider_name,
            response.model,
            time.monotonic() - started,
            response.usage,
            response.cost,
        )
        completion_id = new_completion_id()
        return self._json(
            200,
            completion_body(response, completion_id=completion_id),
            [("X-Request-Id", completion_id), *_served_by(response)],
            scrub=False,
        )

    def _model_entries(self) -> list[dict[str, Any]]:
        config = self.manager.config
        catalog = self.manager.catalog
        entries: dict[str, dict[str, Any]] = {}
        for provider in config.providers:
            ids = provider.models or [info.id for info in catalog.models_for(provider.type)]
            for model_id in ids:
                if model_id not in entries:
                    entries[model_id] = model_entry(model_id, provider.name, self._created)
        for alias in config.model_groups:
            entries.setdefault(alias, model_entry(alias, "router", self._created))
        return list(entries.values())

    def _models(self, request: _Request) -> _Response:
        return self._json(200, {"object": "list", "data": self._model_entries()})

    def _model(self, request: _Request) -> _Response:
        wanted = request.params["model"]
        for entry in self._model_entries():
            if entry["id"] == wanted:
                return self._json(200, entry)
        raise _Problem(
            404,
            "ModelNotFoundError",
            f"The model '{wanted}' does not exist",
            param="model",
            code="model_not_found",
        )

    # --- streaming ---------------------------------------------------------------------------

    def _stream(
        self, endpoint: str, ai_request: AIRequest, options: dict[str, Any], events: _Events
    ) -> _Response:
        started = time.monotonic()
        stream = self.manager.stream_request(ai_request, **options)
        try:
            # The first chunk decides the status: a request that fails before anything was
            # produced gets a plain JSON error with its proper status, not a 200 stream.
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
        provider, model = first.provider_name or "", first.model or ""
        self.metrics.first_chunk_after(endpoint, provider, model, time.monotonic() - started)

        def finished(outcome: str, last: StreamChunk | None, error_type: str | None) -> None:
            nonlocal provider, model
            if last is not None:  # the final chunk names who served
                provider, model = last.provider_name or provider, last.model or model
            if outcome == "success" and last is not None:
                seconds = time.monotonic() - started
                self.metrics.success(endpoint, provider, model, seconds, last.usage, last.cost)
            elif outcome == "cancelled":
                self.metrics.cancelled(endpoint, provider, model)
            else:
                self.metrics.failure(endpoint, provider, model, error_type or "RouterError")

        headers = list(_SSE_HEADERS)
        if provider:
            headers.append(("X-Router-Provider", provider))
        if model:
            headers.append(("X-Router-Model", model))
        return _Response(200, headers, _EventStream(stream, first, events, finished))


def _served_by(response: Any) -> list[tuple[str, str]]:
    headers = [("X-Router-Provider", response.provider_name), ("X-Router-Model", response.model)]
    headers.append(("X-Router-Cost", f"{response.cost:.8f}"))
    return [(k, v) for k, v in headers if v]


def _configure_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BodyError("'enabled' must be true or false", "enabled")
        changes["enabled"] = body["enabled"]
    if "priority" in body:
        value = body["priority"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BodyError("'priority' must be an integer", "priority")
        changes["priority"] = value
    if "api_key" in body:
        key = body["api_key"]
        if not isinstance(key, str) or not key.strip():
            raise BodyError("'api_key' must be a non-empty string", "api_key")
        changes["api_key"] = key.strip()
    for name in ("rpm", "tpm"):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BodyError(f"'{name}' must be an integer >= 0 (0 removes the limit)", name)
            changes[name] = value
    return changes


def _log_unexpected(secrets: _Secrets, where: str, error: BaseException) -> None:
    # The frames, and the message scrubbed: an exception's text may quote a key.
    frames = "".join(traceback.format_tb(error.__traceback__))
    message = secrets.scrub(f"{type(error).__name__}: {error}")
    logger.error("unexpected error on %s: %s\n%s", where, message, frames)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


# --- server-sent events --------------------------------------------------------------------


class _Events:
    """How one face renders chunks and errors as SSE bytes."""

    def __init__(self, secrets: _Secrets) -> None:
        self.secrets = secrets

    def chunk(self, chunk: StreamChunk) -> bytes:
        raise NotImplementedError

    def error(self, error: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _dumps(self, value: Any, *, scrub: bool = False) -> str:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return self.secrets.scrub(text) if scrub else text


class _GenerateEvents(_Events):
    """``event: chunk`` per chunk, ``event: done`` with the final one, ``event: error``."""

    def chunk(self, chunk: StreamChunk) -> bytes:
        name = "done" if chunk.is_complete else "chunk"
        data = self._dumps(chunk.model_dump(mode="json", exclude_none=True))
        return f"event: {name}\ndata: {data}\n\n".encode()

    def error(self, error: dict[str, Any]) -> bytes:
        return f"event: error\ndata: {self._dumps({'error': error}, scrub=True)}\n\n".encode()


class _ChatEvents(_Events):
    """OpenAI's ``data: {chat.completion.chunk}`` events, then ``data: [DONE]``."""

    def __init__(self, secrets: _Secrets, translator: ChatStreamTranslator) -> None:
        super().__init__(secrets)
        self._translator = translator

    def chunk(self, chunk: StreamChunk) -> bytes:
        out = "".join(f"data: {self._dumps(obj)}\n\n" for obj in self._translator.translate(chunk))
        if chunk.is_complete:
            out += "data: [DONE]\n\n"
        return out.encode()

    def error(self, error: dict[str, Any]) -> bytes:
        kind = str(error.get("type") or "RouterError")
        status = _status_for_type(kind)
        payload = {
            "error": {
                "message": error.get("message") or "the stream failed",
                "type": _OPENAI_TYPES.get(status, "server_error"),
                "param": None,
                "code": _snake(kind),
            }
        }
        return f"data: {self._dumps(payload, scrub=True)}\n\n".encode()


class _EventStream:
    """The body of an SSE response: one chunk's events per iteration, so each is flushed.

    A stream never ends silently: it ends with the final chunk's events or an error event.
    The WSGI server calls :meth:`close` when the response ends or the client goes away; an
    unfinished stream is then cancelled upstream (the tokens seen so far are still billed).
    """

    def __init__(
        self,
        stream: Any,
        first: StreamChunk,
        events: _Events,
        finished: Callable[[str, StreamChunk | None, str | None], None],
    ) -> None:
        self._stream = stream
        self._pending: StreamChunk | None = first
        self._events = events
        self._finished = finished
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        chunk, self._pending = self._pending, None
        if chunk is None:
            try:
                chunk = next(self._stream)
            except StopIteration:
                return self._fail(
                    {
                        "type": "StreamInterruptedError",
                        "message": "the stream ended without a final chunk",
                    }
                )
            except RouterError as error:
                return self._fail(error.to_dict())
            except Exception as error:
                _log_unexpected(self._events.secrets, "a stream", error)
                return self._fail(
                    {"type": "InternalError", "message": "internal error; see the server log"}
                )
        if chunk.error is not None:
            payload: dict[str, Any] = {
                "type": chunk.error_type or "RouterError",
                "message": chunk.error,
            }
            if chunk.provider_name:
                payload["provider"] = chunk.provider_name
            return self._fail(payload)
        data = self._events.chunk(chunk)
        if chunk.is_complete:
            self._done = True
            self._finished("success", chunk, None)
        return data

    def _fail(self, error: dict[str, Any]) -> bytes:
        self._done = True
        self._finished("error", None, str(error.get("type")))
        return self._events.error(error)

    def close(self) -> None:
        """Called by the WSGI server at the end of the response or on a disconnect."""
        if not self._done:
            self._done = True
            self._stream.close()
            self._finished("cancelled", None, None)
