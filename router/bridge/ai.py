"""The router's own door, ``/ai/*``: the seed's endpoints in the router's own shapes.

Pure translations first (a body is an ``AIRequest`` plus the manager's keywords; an answer is
the ``AIResponse`` as JSON; a stream is ``chunk`` / ``done`` / ``error`` events; an error is
the router error's own object), then the handlers that run them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from router import green
from router.bridge.errors import BodyError, Failure, validation_error
from router.bridge.options import ROUTE_FIELDS, route_options
from router.bridge.streaming import Events
from router.bridge.wire import Request, Response, Route, served_by
from router.errors import ConfigError
from router.models import AIRequest, AIResponse, StreamChunk

if TYPE_CHECKING:
    from router.bridge.app import BridgeApp

__all__ = [
    "AIDoor",
    "GenerateEvents",
    "answer_body",
    "configure_changes",
    "failure_body",
]

logger = logging.getLogger("router.bridge")

_CONFIGURE_FIELDS = frozenset({"provider", "enabled", "priority", "api_key", "rpm", "tpm"})
_BUDGET_FIELDS = frozenset(
    {"budgets", "daily_limit", "monthly_limit", "provider_limits", "alert_thresholds", "limit"}
)
_BUDGET_CHANGE_FIELDS = frozenset(
    {"budget", "daily_limit", "monthly_limit", "provider_limits", "alert_thresholds", "enabled"}
)


# --- translations --------------------------------------------------------------------------


def _ai_request(body: Mapping[str, Any], drop: Iterable[str]) -> AIRequest:
    fields = {k: v for k, v in body.items() if k not in drop}
    try:
        return AIRequest.model_validate(fields)
    except ValidationError as error:
        raise validation_error(error) from None


def answer_body(response: AIResponse) -> dict[str, Any]:
    """The ``AIResponse`` as JSON, ``raw`` left out."""
    return response.model_dump(mode="json", exclude={"raw"})


def failure_body(failure: Failure) -> dict[str, Any]:
    """``{"error": {type, message, ...}}``: the router error's own fields."""
    return {"error": failure.detail}


class GenerateEvents(Events):
    """``event: chunk`` per chunk, ``event: done`` with the final one, ``event: error``."""

    def chunk(self, chunk: StreamChunk) -> bytes:
        name = "done" if chunk.is_complete else "chunk"
        data = self.dumps(chunk.model_dump(mode="json", exclude_none=True))
        return f"event: {name}\ndata: {data}\n\n".encode()

    def error(self, error: dict[str, Any]) -> bytes:
        return f"event: error\ndata: {self.dumps({'error': error}, scrub=True)}\n\n".encode()


def configure_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """The provider changes an ``/ai/configure`` body asks for, each checked."""
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


# --- the door ------------------------------------------------------------------------------


class AIDoor:
    """``/ai/generate``, ``/ai/status``, ``/ai/recommendations``, ``/ai/configure``."""

    name = "router"

    def __init__(self, bridge: BridgeApp) -> None:
        self.bridge = bridge

    def routes(self) -> list[Route]:
        return [
            Route("/ai/generate", {"POST": self.generate}, "auth", self),
            Route("/ai/status", {"GET": self.status}, "auth", self),
            Route("/ai/recommendations", {"POST": self.recommendations}, "auth", self),
            Route("/ai/configure", {"POST": self.configure}, "configure", self),
        ]

    def failure_body(self, failure: Failure) -> dict[str, Any]:
        return failure_body(failure)

    def generate(self, request: Request) -> Response:
        body = request.json()
        if "mcp_servers" in body:
            return self._generate_agent(request, body)
        bridge = self.bridge
        ai_request, options = self._routed(request, body, ROUTE_FIELDS)
        if ai_request.stream:
            return bridge.stream("generate", ai_request, options, GenerateEvents(bridge.secrets))
        response = bridge.answer("generate", ai_request, options)
        return bridge.json(200, answer_body(response), served_by(response), scrub=False)

    def _routed(
        self, request: Request, body: Mapping[str, Any], drop: Iterable[str]
    ) -> tuple[AIRequest, dict[str, Any]]:
        """The body's request (``drop``: the fields that are not the request's) and route
        options with the ``x-router-*`` headers applied. Both ``/ai/generate`` paths (with and
        without ``mcp_servers``) and ``/ai/recommendations`` come through here, so a header
        means the same on each."""
        options = route_options(body)
        ai_request = _ai_request(body, drop)
        return self.bridge.with_router_headers(request, ai_request, options)

    def _generate_agent(self, request: Request, body: dict[str, Any]) -> Response:
        """The agent loop over the body's MCP servers (see :mod:`router.bridge.agent`)."""
        from router.bridge.agent import AGENT_FIELDS, agent_options, answer_agent, stream_agent

        agent = agent_options(body)
        ai_request, options = self._routed(request, body, (*ROUTE_FIELDS, *AGENT_FIELDS))
        # The loop waits on MCP sessions in ways a request greenlet cannot park: under the
        # loop engine it runs on a thread (green.offload), and so does each step of its stream.
        run = stream_agent if ai_request.stream else answer_agent
        response = green.offload(run, self.bridge, ai_request, options, agent)
        if ai_request.stream:
            response.body = green.offload_iteration(response.body)
        return response

    def status(self, request: Request) -> Response:
        stats = self.bridge.manager.get_manager_stats()
        return self.bridge.json(200, {"status": "ok", **stats})

    def recommendations(self, request: Request) -> Response:
        ai_request, options = self._routed(request, request.json(), ROUTE_FIELDS)
        strategy = options["strategy"] or "cost"
        rows = self.bridge.manager.get_cost_recommendations(
            ai_request, selection=options["selection"], strategy=strategy, by="model"
        )
        return self.bridge.json(
            200,
            {
                "strategy": strategy,
                "recommendations": [{"candidate": key, **row} for key, row in rows.items()],
            },
        )

    def configure(self, request: Request) -> Response:
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
        names = self.bridge.provider_names()
        if name not in names:
            known = ", ".join(sorted(names))
            raise BodyError(f"unknown provider '{name}' (configured: {known})", "provider")
        changes = configure_changes(body)
        if not changes:
            raise BodyError(
                "nothing to change: send one or more of enabled, priority, api_key, rpm, tpm"
            )
        if "api_key" in changes:
            self.bridge.secrets.add(changes["api_key"])  # before anything could echo it
        manager = self.bridge.manager
        try:
            manager.update_provider(name, **changes)
        except ConfigError as error:
            raise BodyError(str(error), "provider") from None
        logger.info("configure: provider %s changed: %s", name, ", ".join(sorted(changes)))
        health = manager.provider_health()[name]
        return self.bridge.json(
            200, {"provider": name, "updated": sorted(changes), "health": health.to_dict()}
        )

    def _configure_budget(self, body: dict[str, Any]) -> Response:
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
            updated = self.bridge.manager.update_budget(name, **changes)
        except ConfigError as error:
            raise BodyError(str(error), "budget") from None
        except TypeError as error:
            raise BodyError(f"invalid budget change: {error}", "budget") from None
        logger.info("configure: budget %s changed: %s", name, ", ".join(sorted(changes)))
        return self.bridge.json(
            200, {"budget": name, "updated": sorted(changes), "config": updated}
        )
