"""The agent loop: model turns and MCP tool calls until the model answers.

A *turn* is one model call, sent through the manager like any request (strategy, failover,
budget reservation and settlement, deadline). When the answer asks for tools, every call of the
turn is started at once on the MCP loop thread, and the results (or errors: ``isError``
answers, timeouts, a crashed server, an unknown tool, a refusal by ``approve``) go back to the
model as tool messages; the next turn follows. The loop ends when the model answers without
tool calls, or with a typed error: ``MaxTurnsExceededError``, ``BudgetExceededError``,
``RequestTimeoutError``, ``MCPServerError``, ... each carrying ``agent_result`` (the turns so
far).

The loop itself is a generator of events (model chunks and tool events) run by whichever
thread drives it: a worker of the manager's agent pool for ``run_agent``, the caller's own
thread for ``stream_agent``. See ``docs/agents.md``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from router.config import MCPServerConfig
from router.errors import (
    InvalidRequestError,
    ManagerStoppedError,
    MaxTurnsExceededError,
    MCPServerError,
    RequestTimeoutError,
    RouterError,
    StreamInterruptedError,
)
from router.mcp.session import ToolOutcome
from router.models import AIRequest, AIResponse, MCPTool, Message, StreamChunk, ToolCall, Usage

if TYPE_CHECKING:
    from router.manager import AIProviderManager

__all__ = [
    "AgentResult",
    "AgentTurn",
    "ToolCallRecord",
    "ToolCallRequest",
    "AgentEvent",
    "AgentStream",
    "AgentRun",
    "Approver",
]

logger = logging.getLogger(__name__)

_FROZEN = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ToolCallRecord(BaseModel):
    """One tool call of a turn: what was asked, what came back, how long it took."""

    model_config = _FROZEN

    id: str
    tool: str
    server: str | None = None
    arguments: dict[str, Any]
    result: str  # the text the model was given (an error message for failed calls)
    is_error: bool = False
    # None, or: tool_error | timeout | server_error | unknown_tool | refused | not_run
    error: str | None = None
    truncated: bool = False
    duration_ms: float = 0.0


class AgentTurn(BaseModel):
    """One model call and the tool calls its answer asked for."""

    model_config = _FROZEN

    number: int
    response: AIResponse
    tool_calls: tuple[ToolCallRecord, ...] = ()
    duration_ms: float = 0.0


class AgentResult(BaseModel):
    """A finished (or, on an error's ``agent_result``, interrupted) agent run."""

    model_config = _FROZEN

    response: AIResponse | None  # the final answer (on an error: the last answer, if any)
    turns: tuple[AgentTurn, ...] = ()
    usage: Usage = Usage()
    cost: float = 0.0
    messages: tuple[Message, ...] = ()  # the whole conversation, to continue it
    duration_ms: float = 0.0

    @property
    def content(self) -> str:
        return self.response.content if self.response is not None else ""

    def transcript(self) -> dict[str, Any]:
        """A JSON-safe transcript (the CLI's ``--json``, the bridge's answer)."""
        return {
            "content": self.content,
            "turns": [
                {
                    "number": turn.number,
                    "provider": turn.response.provider_name,
                    "model": turn.response.model,
                    "content": turn.response.content,
                    "finish_reason": turn.response.finish_reason,
                    "usage": turn.response.usage.model_dump(),
                    "cost": turn.response.cost,
                    "duration_ms": round(turn.duration_ms, 1),
                    "tool_calls": [call.model_dump(mode="json") for call in turn.tool_calls],
                }
                for turn in self.turns
            ],
            "usage": self.usage.model_dump(),
            "cost": self.cost,
            "duration_ms": round(self.duration_ms, 1),
        }


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call about to run; what ``approve`` is asked about."""

    turn: int
    id: str
    tool: str
    server: str | None
    arguments: dict[str, Any]


Approver = Callable[[ToolCallRequest], bool]


class AgentEvent(BaseModel):
    """A tool event of a streamed run: ``tool_call_started``, then its ``tool_result``."""

    model_config = _FROZEN

    type: Literal["tool_call_started", "tool_result"]
    turn: int
    id: str
    tool: str
    server: str | None = None
    arguments: dict[str, Any]
    record: ToolCallRecord | None = None  # on tool_result

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


AgentItem = StreamChunk | AgentEvent


class AgentRun:
    """One run of the loop over ``manager``; ``steps`` yields its events, returns the result."""

    def __init__(
        self,
        manager: AIProviderManager,
        request: AIRequest,
        servers: Sequence[MCPServerConfig],
        *,
        max_turns: int,
        tool_timeout: float | None,
        approve: Approver | None,
        strategy: str | None,
        selection: Any,
        timeout: float,
    ) -> None:
        if max_turns < 1:
            raise InvalidRequestError("max_turns must be >= 1")
        if tool_timeout is not None and tool_timeout <= 0:
            raise InvalidRequestError("tool_timeout must be > 0")
        self._manager = manager
        self._mcp = manager.mcp
        self._request = request
        self._servers = tuple(servers)
        self._max_turns = max_turns
        self._tool_timeout = tool_timeout
        self._approve = approve
        self._strategy = strategy
        self._selection = selection
        self._timeout = timeout
        self._started = time.monotonic()
        self._deadline = self._started + timeout
        self._turns: list[AgentTurn] = []
        self._messages: list[Message] = list(request.messages)
        self._last: AIResponse | None = None
        self._owners: dict[str, MCPServerConfig] = {}

    # --- the loop --------------------------------------------------------------------------

    def steps(self, *, stream: bool) -> Generator[AgentItem, None, AgentResult]:
        """Run the loop, yielding chunks (when ``stream``) and tool events; return the result.

        Any error leaves with ``agent_result`` set to the turns so far.
        """
        try:
            tools = self._tools(refresh=True)
            request = self._request
            for number in range(1, self._max_turns + 1):
                if number > 1:
                    tools = self._tools(refresh=False)
                    request = self._next_request(request, tools)
                else:
                    request = request.model_copy(update={"tools": tools})
                turn_started = time.monotonic()
                if stream:
                    response = yield from self._streamed_turn(request)
                else:
                    response = self._manager.process_request(
                        request,
                        strategy=self._strategy,
                        selection=self._selection,
                        timeout=self._remaining(),
                    )
                self._last = response
                self._messages.append(_assistant_message(response))
                if not response.tool_calls:
                    self._turns.append(
                        AgentTurn(number=number, response=response, duration_ms=_ms(turn_started))
                    )
                    return self._result()
                if number == self._max_turns:
                    self._turns.append(
                        AgentTurn(
                            number=number,
                            response=response,
                            tool_calls=tuple(
                                _not_run(call, self._owner(call)) for call in response.tool_calls
                            ),
                            duration_ms=_ms(turn_started),
                        )
                    )
                    raise MaxTurnsExceededError(
                        f"the model still asked for tools after {self._max_turns} turns "
                        f"(max_turns={self._max_turns})",
                        last_response=response,
                    )
                records = yield from self._run_tools(number, response.tool_calls)
                for record in records:
                    self._messages.append(
                        Message(role="tool", tool_call_id=record.id, content=record.result)
                    )
                self._turns.append(
                    AgentTurn(
                        number=number,
                        response=response,
                        tool_calls=tuple(records),
                        duration_ms=_ms(turn_started),
                    )
                )
                self._remaining()  # the deadline passed during the calls: stop here
            raise AssertionError("unreachable: the last turn returns or raises")
        except RouterError as error:
            if isinstance(error, RequestTimeoutError) and time.monotonic() >= self._deadline:
                # A turn cut short by the run's deadline: say so in the run's terms.
                timeout = RequestTimeoutError(
                    f"the agent run did not finish within {self._timeout:g}s"
                )
                timeout.agent_result = self._result()
                raise timeout from error
            error.agent_result = self._result()
            raise

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeoutError(f"the agent run did not finish within {self._timeout:g}s")
        if not self._manager.running:
            raise ManagerStoppedError("the router was stopped")
        return remaining

    def _tools(self, *, refresh: bool) -> tuple[MCPTool, ...]:
        """The request's own tools plus every offered tool of the run's servers."""
        try:
            listing = self._mcp.list_tools(
                self._servers, refresh=refresh, timeout=self._remaining()
            )
        except MCPServerError:
            self._remaining()  # a listing cut short by the deadline is the deadline's error
            raise
        own = {tool.name for tool in self._request.tools}
        owners: dict[str, MCPServerConfig] = {}
        tools: list[MCPTool] = list(self._request.tools)
        for config in self._servers:
            for tool in listing[config.name]:
                if tool.name in own:
                    continue  # the caller's definition wins; calls still go to the server
                if tool.name in owners:
                    raise InvalidRequestError(
                        f"tool '{tool.name}' is offered by MCP servers '{owners[tool.name].name}' "
                        f"and '{config.name}'; hide one with denied_tools"
                    )
                owners[tool.name] = config
                tools.append(tool)
            for tool in listing[config.name]:
                owners.setdefault(tool.name, config)
        self._owners = owners
        return tuple(tools)

    def _owner(self, call: ToolCall) -> MCPServerConfig | None:
        return self._owners.get(call.name)

    def _next_request(self, request: AIRequest, tools: tuple[MCPTool, ...]) -> AIRequest:
        update: dict[str, Any] = {"messages": tuple(self._messages), "tools": tools}
        if request.tool_choice not in (None, "auto", "none"):
            update["tool_choice"] = None  # forcing a tool every turn would never end the loop
        return request.model_copy(update=update)

    def _streamed_turn(self, request: AIRequest) -> Generator[AgentItem, None, AIResponse]:
        with self._manager.stream_request(
            request,
            strategy=self._strategy,
            selection=self._selection,
            timeout=self._remaining(),
        ) as chunks:
            for chunk in chunks:
                yield chunk
                if chunk.error is not None:
                    raise StreamInterruptedError(
                        f"the model's stream failed: {chunk.error}",
                        provider=chunk.provider_name,
                    )
            return chunks.future.get(timeout=10)

    def _run_tools(
        self, turn: int, calls: Sequence[ToolCall]
    ) -> Generator[AgentItem, None, list[ToolCallRecord]]:
        """Run a turn's calls concurrently; yield started/result events; the records in order."""
        records: dict[str, ToolCallRecord] = {}
        futures: dict[concurrent.futures.Future[ToolOutcome], tuple[ToolCall, MCPServerConfig]] = {}
        for call in calls:
            config = self._owner(call)
            server = config.name if config is not None else None
            yield AgentEvent(
                type="tool_call_started",
                turn=turn,
                id=call.id,
                tool=call.name,
                server=server,
                arguments=call.arguments,
            )
            outcome: ToolOutcome | None = None
            if config is None:
                known = ", ".join(sorted(self._owners)) or "none"
                outcome = ToolOutcome(
                    f"unknown tool '{call.name}' (no MCP server of this run offers it; "
                    f"available: {known})",
                    "unknown_tool",
                )
            elif not config.offers(call.name):
                outcome = ToolOutcome(
                    f"the tool '{call.name}' is not allowed on MCP server '{config.name}'",
                    "refused",
                )
            else:
                refusal = self._refusal(turn, call, config)
                if refusal is not None:
                    outcome = ToolOutcome(refusal, "refused")
            if outcome is not None:
                record = _record(call, server, outcome)
                records[call.id] = record
                yield _result_event(turn, record)
                continue
            assert config is not None
            timeout = min(self._tool_timeout or config.timeout, self._remaining())
            session = self._mcp.session(config)
            future = self._mcp.submit(
                session.call(call.name, call.arguments, timeout, config.max_result_chars)
            )
            futures[future] = (call, config)
        pending = set(futures)
        try:
            while pending:
                # Each call is bounded by its own timeout; the margin only guards a stuck loop.
                done, pending = concurrent.futures.wait(
                    pending,
                    timeout=max(0.0, self._deadline - time.monotonic()) + 5.0,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                if not done:
                    break
                for future in done:
                    call, config = futures[future]
                    try:
                        outcome = future.result()
                    except concurrent.futures.CancelledError:
                        outcome = ToolOutcome(
                            "the call was cancelled (the router stopped)", "server_error"
                        )
                    record = _record(call, config.name, outcome)
                    records[call.id] = record
                    yield _result_event(turn, record)
        finally:
            for future in pending:
                future.cancel()
        for call in calls:
            if call.id not in records:  # only when the loop thread itself got stuck
                records[call.id] = _record(
                    call, None, ToolOutcome("the call did not finish", "timeout")
                )
        return [records[call.id] for call in calls]

    def _refusal(self, turn: int, call: ToolCall, config: MCPServerConfig) -> str | None:
        if self._approve is None:
            return None
        request = ToolCallRequest(
            turn=turn, id=call.id, tool=call.name, server=config.name, arguments=call.arguments
        )
        try:
            approved = self._approve(request)
        except Exception as error:  # noqa: BLE001 - the caller's callback
            logger.warning("approve raised %s for tool %s; refusing the call", error, call.name)
            return f"the call to '{call.name}' was refused (the approver failed: {error})"
        if approved:
            return None
        return f"the call to '{call.name}' was refused by the user"

    def _result(self) -> AgentResult:
        responses = [turn.response for turn in self._turns]
        return AgentResult(
            response=self._last,
            turns=tuple(self._turns),
            usage=Usage(
                input_tokens=sum(r.usage.input_tokens for r in responses),
                output_tokens=sum(r.usage.output_tokens for r in responses),
                cached_input_tokens=sum(r.usage.cached_input_tokens for r in responses),
            ),
            cost=sum(r.cost for r in responses),
            messages=tuple(self._messages),
            duration_ms=_ms(self._started),
        )


class AgentStream:
    """The iterator ``stream_agent`` returns: model chunks and ``AgentEvent``s, in order.

    Iterating runs the loop on the iterating thread. When it ends, :meth:`result` gives the
    ``AgentResult``; a failure is raised from the iteration (with ``agent_result``). Closing
    the stream (or leaving its ``with`` block) cancels the model stream in progress.
    """

    def __init__(self, steps: Generator[AgentItem, None, AgentResult]) -> None:
        self._steps = steps
        self._result: AgentResult | None = None
        self._error: BaseException | None = None
        self._done = False

    def __iter__(self) -> Iterator[AgentItem]:
        return self

    def __next__(self) -> AgentItem:
        if self._done:
            raise StopIteration
        try:
            return next(self._steps)
        except StopIteration as stop:
            self._done = True
            self._result = stop.value
            raise StopIteration from None
        except BaseException as error:
            self._done = True
            self._error = error
            raise

    def result(self) -> AgentResult:
        """The run's result, running what is left of it first; raises the run's error."""
        for _ in self:
            pass
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RequestTimeoutError("the agent stream was closed before it finished")
        return self._result

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._steps.close()

    def __enter__(self) -> AgentStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _assistant_message(response: AIResponse) -> Message:
    message = response.to_message()
    if message.get("content") is None and not message.get("tool_calls"):
        message["content"] = ""
    return Message.model_validate(message)


def _record(call: ToolCall, server: str | None, outcome: ToolOutcome) -> ToolCallRecord:
    # Tool messages have no error flag in every provider's format: the text says it.
    text = outcome.text
    if outcome.is_error and not text.lower().startswith("error"):
        text = f"Error: {text}"
    return ToolCallRecord(
        id=call.id,
        tool=call.name,
        server=server,
        arguments=call.arguments,
        result=text,
        is_error=outcome.is_error,
        error=outcome.error,
        truncated=outcome.truncated,
        duration_ms=outcome.duration_ms,
    )


def _not_run(call: ToolCall, config: MCPServerConfig | None) -> ToolCallRecord:
    return ToolCallRecord(
        id=call.id,
        tool=call.name,
        server=config.name if config else None,
        arguments=call.arguments,
        result="not run: max_turns was reached",
        is_error=True,
        error="not_run",
    )


def _result_event(turn: int, record: ToolCallRecord) -> AgentEvent:
    return AgentEvent(
        type="tool_result",
        turn=turn,
        id=record.id,
        tool=record.tool,
        server=record.server,
        arguments=record.arguments,
        record=record,
    )


def _ms(since: float) -> float:
    return (time.monotonic() - since) * 1000
