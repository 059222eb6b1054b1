"""One connection to one MCP server, driven on the runtime's loop thread.

A session connects lazily (the first listing or call starts the process or opens the HTTP
session), lists the server's tools, calls them, and notices when the server goes away: a call
that finds the connection closed returns an error result and drops the connection, and the next
use connects again. A connection being closed is waited for before a new one starts, so there
is never more than one process per server. A ``notifications/tools/list_changed`` marks the
listing stale; the next listing asks the server again.

Every method here runs on the loop thread (see :mod:`router.mcp.loop`); only
:class:`~router.mcp.servers.MCPServers` is called from other threads.

The connection uses the SDK's initialize handshake (``mode="legacy"``, protocol 2025-11-25),
which every MCP server speaks, and over which list-changed notifications arrive as plain
notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

from pydantic import ValidationError

from router.config import MCPServerConfig
from router.errors import MCPServerError
from router.models import MCPTool

__all__ = ["MCPSession", "ToolOutcome", "SkippedTool", "stdio_environment"]

logger = logging.getLogger(__name__)

_LIST_PAGE_CAP = 100  # a server whose cursor never ends cannot hang a listing
_STDERR_TAIL = 600  # characters of a failed server's stderr quoted in the error


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call produced, as the model will read it.

    ``error`` is None on success, else one of ``tool_error`` (the tool answered ``isError``),
    ``timeout``, ``server_error`` (the server failed or went away), ``unknown_tool``,
    ``refused`` (the approver said no).
    """

    text: str
    error: str | None = None
    truncated: bool = False
    original_chars: int = 0
    duration_ms: float = 0.0

    @property
    def is_error(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class SkippedTool:
    """A tool the server listed that the router cannot offer (its definition is invalid)."""

    name: str
    reason: str


class MCPSession:
    """One MCP server; see the module docstring. Loop-thread only."""

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self.connections = 0  # successful connections so far (a restart counts again)
        self._client: Any = None
        self._ready: asyncio.Future[Any] | None = None
        self._stop: asyncio.Event | None = None
        self._owner: asyncio.Task[None] | None = None
        self._closed = False
        self._stale = True
        self._tools: tuple[MCPTool, ...] = ()
        self._skipped: tuple[SkippedTool, ...] = ()
        self.server_info: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def connected(self) -> bool:
        return self._client is not None

    # --- connection ----------------------------------------------------------------------

    async def connect(self) -> Any:
        """The connected SDK client, starting the server (once) if needed."""
        while True:
            if self._closed:
                raise MCPServerError(f"MCP server '{self.name}' is closed", server=self.name)
            ready = self._ready
            if ready is None:
                owner = self._owner
                if owner is not None and not owner.done():
                    # The previous connection is still shutting down: one process at a time.
                    await asyncio.wait({owner})
                    continue
                ready = self._start()
            try:
                client = await asyncio.wait_for(asyncio.shield(ready), self.config.startup_timeout)
            except TimeoutError:
                if not ready.done():
                    ready.set_exception(
                        MCPServerError(
                            f"MCP server '{self.name}' did not complete the MCP handshake within "
                            f"{self.config.startup_timeout:g}s",
                            server=self.name,
                        )
                    )
                    if self._owner is not None:
                        self._owner.cancel()
                raise ready.exception() from None  # type: ignore[misc]
            if client is self._client:
                return client
            # It went away between the handshake and now: start again.

    def _start(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Any] = loop.create_future()
        # A failed start nobody waits for any more must not log "exception never retrieved".
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        stop = asyncio.Event()
        self._ready, self._stop = ready, stop
        self._owner = loop.create_task(self._own(ready, stop), name=f"mcp-{self.name}")
        return ready

    async def _own(self, ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        """Hold one connection open until ``stop`` is set (the SDK's contexts live in one task)."""
        # The server's stderr goes to a file: quoted if it fails to start, never interleaved
        # with the caller's output.
        errlog: IO[str] | None = None
        if self.config.transport == "stdio":
            errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        client: Any = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(await self._make_client(stack, errlog))
                await self._list(client)
                info = client.server_info
                self.server_info = f"{info.name} {info.version}".strip() if info else None
                self._client = client
                self.connections += 1
                if not ready.done():
                    ready.set_result(client)
                await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(self._stopped())
            raise
        except Exception as error:  # noqa: BLE001 - the SDK raises groups and transport errors
            if not ready.done():
                ready.set_exception(self._start_error(error, errlog))
            else:
                logger.info("MCP server %s: connection ended: %s", self.name, _leaf(error))
        finally:
            if errlog is not None:
                errlog.close()
            if self._client is client:
                self._client = None
            if self._ready is ready:
                self._ready = None
            if not ready.done():
                ready.set_exception(self._stopped())

    async def _make_client(self, stack: contextlib.AsyncExitStack, errlog: IO[str] | None) -> Any:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        config = self.config
        if config.transport == "stdio":
            assert config.command is not None and errlog is not None
            params = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=stdio_environment(config),
                cwd=config.cwd,
            )
            transport: Any = stdio_client(params, errlog=errlog)
        else:
            import httpx2

            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=dict(config.headers),
                    timeout=httpx2.Timeout(30.0, read=300.0),
                )
            )
            transport = streamable_http_client(config.url or "", http_client=http)
        return Client(transport, mode="legacy", message_handler=self._on_message)

    async def _on_message(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            self._stale = True
        elif isinstance(message, Exception):
            logger.debug("MCP server %s: transport error: %s", self.name, message)

    def _drop(self, client: Any) -> None:
        """Forget a connection that failed; its owner closes it, the next use reconnects."""
        if client is not None and self._client is client:
            self._client = None
            self._ready = None
            if self._stop is not None:
                self._stop.set()

    async def close(self, timeout: float = 8.0) -> None:
        """Close the connection for good (the process is stopped)."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        owner = self._owner
        if owner is None or owner.done():
            return
        if self._ready is not None and not self._ready.done():
            owner.cancel()  # still in the handshake
        done, _ = await asyncio.wait({owner}, timeout=timeout)
        if not done:
            owner.cancel()
            await asyncio.wait({owner}, timeout=3.0)

    def _stopped(self) -> MCPServerError:
        return MCPServerError(f"MCP server '{self.name}' was stopped", server=self.name)

    def _start_error(self, error: BaseException, errlog: IO[str] | None) -> MCPServerError:
        leaf = _leaf(error)
        config = self.config
        if isinstance(leaf, MCPServerError):
            return leaf
        if config.transport == "stdio":
            if isinstance(leaf, FileNotFoundError):
                why = f"command not found: {config.command}"
            elif isinstance(leaf, OSError) and not _is_closed(leaf):
                why = f"cannot run {config.command}: {leaf.strerror or leaf}"
            else:
                why = "the process exited during start-up"
                tail = _tail(errlog)
                if tail:
                    why += f"; its last output: {tail}"
                elif not _is_closed(leaf):
                    why = f"{type(leaf).__name__}: {leaf}"
            return MCPServerError(
                f"MCP server '{self.name}' could not be started ({why})", server=self.name
            )
        return MCPServerError(
            f"MCP server '{self.name}' at {config.display_target} could not be reached "
            f"({type(leaf).__name__}: {leaf})",
            server=self.name,
        )

    # --- tools -----------------------------------------------------------------------------

    async def _list(self, client: Any) -> None:
        listed: list[Any] = []
        cursor = None
        for _ in range(_LIST_PAGE_CAP):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        tools: list[MCPTool] = []
        skipped: list[SkippedTool] = []
        for tool in listed:
            try:
                tools.append(
                    MCPTool(
                        name=tool.name,
                        description=tool.description or "",
                        inputSchema=tool.input_schema or {"type": "object", "properties": {}},
                    )
                )
            except ValidationError as error:
                first = error.errors()[0]
                skipped.append(SkippedTool(tool.name, f"{first['msg']}"))
        self._tools, self._skipped = tuple(tools), tuple(skipped)
        self._stale = False

    async def tools(self, *, refresh: bool = False) -> tuple[MCPTool, ...]:
        """Every tool the server lists (unfiltered); re-listed when stale or ``refresh``.

        A connection found dead while listing is dropped and made again once.
        """
        for attempt in range(2):
            client = await self.connect()
            if not (refresh or self._stale) and attempt == 0:
                return self._tools
            try:
                await self._list(client)
                return self._tools
            except Exception as error:  # noqa: BLE001
                self._drop(client)
                if attempt == 1:
                    raise MCPServerError(
                        f"MCP server '{self.name}' failed to list its tools: {_leaf(error)}",
                        server=self.name,
                    ) from None
        raise AssertionError("unreachable")

    def offered(self, tools: tuple[MCPTool, ...]) -> tuple[MCPTool, ...]:
        """``tools`` filtered by ``allowed_tools`` / ``denied_tools``."""
        return tuple(tool for tool in tools if self.config.offers(tool.name))

    @property
    def skipped(self) -> tuple[SkippedTool, ...]:
        return self._skipped

    async def call(
        self, tool: str, arguments: dict[str, Any], timeout: float, max_chars: int
    ) -> ToolOutcome:
        """Call ``tool``; never raises: failures are error outcomes the model can read."""
        started = time.monotonic()

        def done(text: str, error: str | None = None) -> ToolOutcome:
            cut, truncated = _truncate(text, max_chars)
            return ToolOutcome(
                text=cut,
                error=error,
                truncated=truncated,
                original_chars=len(text),
                duration_ms=(time.monotonic() - started) * 1000,
            )

        import anyio
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        client: Any = None
        try:
            client = await self.connect()
            with anyio.fail_after(timeout):
                result = await client.call_tool(tool, arguments)
        except TimeoutError:
            return done(f"the tool '{tool}' did not answer within {timeout:g}s", "timeout")
        except MCPServerError as error:
            return done(error.message, "server_error")
        except MCPError as error:
            if error.code == CONNECTION_CLOSED:
                self._drop(client)
                return done(
                    f"the MCP server '{self.name}' closed the connection during the call "
                    "(it is restarted for the next call)",
                    "server_error",
                )
            return done(f"the MCP server '{self.name}' answered: {error}", "tool_error")
        except Exception as error:  # noqa: BLE001 - a malformed answer, a broken transport
            broken = (
                OSError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                anyio.EndOfStream,
            )
            if isinstance(_leaf(error), broken):
                self._drop(client)  # the next use reconnects
            return done(
                f"the call to MCP server '{self.name}' failed: {_leaf(error)}", "server_error"
            )
        text = result_text(result)
        return done(text, "tool_error" if result.is_error else None)


def stdio_environment(config: MCPServerConfig) -> dict[str, str]:
    """The environment a stdio server starts with: the SDK's minimal set (HOME, PATH, SHELL,
    TERM, USER, LOGNAME) plus the server's own ``env``, which wins.

    Never the router's environment: it holds the provider API keys (``OPENAI_API_KEY``, any
    variable a key was interpolated from), and a server is third-party code. A server that
    needs a variable names it in its ``env``. Built here rather than left to the SDK so no SDK
    version can widen it.
    """
    from mcp.client.stdio import get_default_environment

    return {**get_default_environment(), **config.env}


def result_text(result: Any) -> str:
    """A ``CallToolResult`` as the text the model reads (text blocks joined by newlines)."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}]".replace(" ]", "]"))
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, sort_keys=True))
    return "\n".join(parts)


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    note = (
        f"\n[truncated by the router: the tool returned {len(text)} characters; "
        f"the first {limit} are shown]"
    )
    return text[:limit] + note, True


def _leaf(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _is_closed(error: BaseException) -> bool:
    return getattr(error, "code", None) == -32000 or "closed" in str(error).lower()


def _tail(errlog: IO[str] | None) -> str:
    if errlog is None or errlog.closed:
        return ""
    try:
        errlog.flush()
        errlog.seek(0)
        text = errlog.read()
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-_STDERR_TAIL:]
