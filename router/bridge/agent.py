"""``/ai/generate`` with ``"mcp_servers"``: the agent loop behind the router's own door.

The body is an ``/ai/generate`` body plus ``mcp_servers`` (names of configured servers only: a
request must not be able to start processes), ``max_turns`` and ``tool_timeout``. The answer is
the final ``AIResponse`` JSON with the run's transcript under ``agent``. With ``"stream": true``
the SSE stream carries, in order: ``chunk`` events (the model's chunks), a ``turn`` event at the
end of each model call (its final chunk), ``tool_call_started`` and ``tool_result`` events, and
``done`` with the transcript, or ``error`` (with the transcript so far).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from router.bridge.errors import BodyError
from router.bridge.streaming import Events
from router.bridge.wire import SSE_HEADERS, Response, log_unexpected, served_by
from router.errors import RouterError
from router.models import AIRequest, StreamChunk

if TYPE_CHECKING:
    from router.bridge.app import BridgeApp

__all__ = ["AGENT_FIELDS", "agent_options", "answer_agent", "stream_agent"]

AGENT_FIELDS = ("mcp_servers", "max_turns", "tool_timeout")


def agent_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """``mcp_servers``, ``max_turns`` and ``tool_timeout`` checked, for ``run_agent``."""
    servers = body.get("mcp_servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(name, str) and name for name in servers)
    ):
        raise BodyError(
            "'mcp_servers' must be a non-empty list of configured MCP server names",
            "mcp_servers",
        )
    options: dict[str, Any] = {"mcp_servers": servers}
    if "max_turns" in body:
        turns = body["max_turns"]
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
            raise BodyError("'max_turns' must be an integer >= 1", "max_turns")
        options["max_turns"] = turns
    if body.get("tool_timeout") is not None:
        seconds = body["tool_timeout"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise BodyError("'tool_timeout' must be a number of seconds > 0", "tool_timeout")
        options["tool_timeout"] = float(seconds)
    return options


def answer_agent(
    bridge: BridgeApp, ai_request: AIRequest, options: dict[str, Any], agent: dict[str, Any]
) -> Response:
    """Run the loop to its end; the final answer with the transcript under ``agent``."""
    started = time.monotonic()
    try:
        result = bridge.manager.run_agent(ai_request, **options, **agent).get()
    except RouterError as error:
        bridge.metrics.failure("generate", "", "", type(error).__name__)
        raise
    response = result.response
    bridge.metrics.success(
        "generate",
        response.provider_name,
        response.model,
        time.monotonic() - started,
        result.usage,
        result.cost,
    )
    body = {**response.model_dump(mode="json", exclude={"raw"}), "agent": result.transcript()}
    return bridge.json(200, body, served_by(response), scrub=False)


def stream_agent(
    bridge: BridgeApp, ai_request: AIRequest, options: dict[str, Any], agent: dict[str, Any]
) -> Response:
    """The loop as SSE; a run that fails before its first item is a plain error answer."""
    stream = bridge.manager.stream_agent(ai_request, **options, **agent)
    try:
        first = next(stream)
    except StopIteration:  # a run always yields before it ends; kept for safety
        first = None
    except RouterError as error:
        bridge.metrics.failure("generate", "", "", type(error).__name__)
        raise
    except BaseException:
        stream.close()
        raise
    return Response(200, list(SSE_HEADERS), _AgentEvents(bridge, stream, first))


class _AgentEvents:
    """The SSE body: one item's event per iteration (each flushed); never ends silently."""

    def __init__(self, bridge: BridgeApp, stream: Any, first: Any) -> None:
        self._bridge = bridge
        self._stream = stream
        self._pending = first
        self._events = Events(bridge.secrets)
        self._done = False
        self._started = time.monotonic()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def _event(self, name: str, data: Any, *, scrub: bool = False) -> bytes:
        return f"event: {name}\ndata: {self._events.dumps(data, scrub=scrub)}\n\n".encode()

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        item, self._pending = self._pending, None
        try:
            if item is None:
                item = next(self._stream)
        except StopIteration:
            self._done = True
            result = self._stream.result()
            response = result.response
            self._bridge.metrics.success(
                "generate",
                response.provider_name,
                response.model,
                time.monotonic() - self._started,
                result.usage,
                result.cost,
            )
            return self._event("done", result.transcript())
        except RouterError as error:
            return self._fail(error.to_dict(), error.agent_result)
        except Exception as error:
            log_unexpected(self._bridge.secrets, "an agent stream", error)
            return self._fail({"type": "InternalError", "message": "internal error"}, None)
        if isinstance(item, StreamChunk):
            name = "turn" if item.is_complete else "chunk"
            return self._event(name, item.model_dump(mode="json", exclude_none=True))
        return self._event(item.type, item.to_dict())

    def _fail(self, error: dict[str, Any], partial: Any) -> bytes:
        self._done = True
        self._bridge.metrics.failure("generate", "", "", str(error.get("type")))
        transcript = partial.transcript() if partial is not None else None
        return self._event("error", {"error": error, "transcript": transcript}, scrub=True)

    def close(self) -> None:
        """Called by the WSGI server at the end of the response or on a disconnect."""
        if not self._done:
            self._done = True
            self._stream.close()
            self._bridge.metrics.cancelled("generate", "", "")
