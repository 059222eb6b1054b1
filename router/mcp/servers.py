"""The MCP servers a manager knows: one session per server, one loop thread for all of them.

Thread-safe and blocking-free for callers: methods either return futures
(``concurrent.futures.Future``) or wait on them with a bound. The loop thread starts with the
first use and stops in :meth:`MCPServers.close` (the manager's ``stop()``), which closes every
session and so every server process.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from router.config import MCPServerConfig
from router.errors import InvalidRequestError, ManagerStoppedError, MCPServerError
from router.mcp.loop import LoopThread
from router.mcp.session import MCPSession
from router.models import MCPTool, ProviderType
from router.tools import check_tool

__all__ = ["MCPServers", "ServerSpec", "coerce_server_config", "EXPRESSIBLE_FOR"]

T = TypeVar("T")

ServerSpec = str | MCPServerConfig | Mapping[str, Any]

#: The provider types ``router mcp list`` checks each tool against.
EXPRESSIBLE_FOR = (ProviderType.OPENAI, ProviderType.ANTHROPIC, ProviderType.GOOGLE)


def coerce_server_config(spec: MCPServerConfig | Mapping[str, Any]) -> MCPServerConfig:
    """An ``MCPServerConfig`` from a config or a dict (``InvalidRequestError`` naming the field)."""
    if isinstance(spec, MCPServerConfig):
        return spec
    try:
        return MCPServerConfig.model_validate(dict(spec))
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first.get("ctx", {}).get("error") or first["msg"])
        raise InvalidRequestError(
            f"invalid MCP server: {where + ': ' if where else ''}{message}"
        ) from None


class MCPServers:
    """Sessions by server name; see the module docstring."""

    def __init__(self, configured: Sequence[MCPServerConfig] = ()) -> None:
        self._configured = {config.name: config for config in configured}
        self._sessions: dict[str, MCPSession] = {}
        self._lock = threading.Lock()
        self._loop: LoopThread | None = None
        self._closed = False

    @property
    def configured(self) -> tuple[MCPServerConfig, ...]:
        return tuple(self._configured.values())

    # --- resolving -------------------------------------------------------------------------

    def resolve(self, specs: Sequence[ServerSpec] | None) -> tuple[MCPServerConfig, ...]:
        """The servers a run uses: configured names, or ad-hoc configs / dicts.

        ``None`` means every enabled configured server. A name that is not configured, or is
        disabled, is an ``InvalidRequestError`` naming it.
        """
        if specs is None:
            return tuple(c for c in self._configured.values() if c.enabled)
        if isinstance(specs, str | Mapping | MCPServerConfig):
            specs = [specs]
        out: list[MCPServerConfig] = []
        for spec in specs:
            if isinstance(spec, str):
                config = self._configured.get(spec)
                if config is None:
                    known = ", ".join(self._configured) or "none"
                    raise InvalidRequestError(f"unknown MCP server '{spec}' (configured: {known})")
                if not config.enabled:
                    raise InvalidRequestError(f"MCP server '{spec}' is disabled (enabled: false)")
            else:
                config = coerce_server_config(spec)
                known_config = self._configured.get(config.name)
                if known_config is not None and known_config != config:
                    raise InvalidRequestError(
                        f"MCP server '{config.name}' is configured differently; "
                        "give the ad-hoc server another name"
                    )
            if config.name in {c.name for c in out}:
                raise InvalidRequestError(f"MCP server '{config.name}' is named twice")
            out.append(config)
        return tuple(out)

    def session(self, config: MCPServerConfig) -> MCPSession:
        """The one session of this server (created on first use)."""
        if importlib.util.find_spec("mcp") is None:
            raise MCPServerError(
                "MCP servers need the mcp package: pip install 'router[mcp]'", server=config.name
            )
        with self._lock:
            if self._closed:
                raise ManagerStoppedError("the router was stopped")
            session = self._sessions.get(config.name)
            if session is None or session.config != config:
                if session is not None:
                    # Same name, other settings (an ad-hoc server redefined): replace it.
                    self._submit_locked(session.close())
                session = self._sessions[config.name] = MCPSession(config)
            return session

    # --- running on the loop -----------------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop thread (started on first use)."""
        with self._lock:
            if self._closed:
                coro.close()
                raise ManagerStoppedError("the router was stopped")
            return self._submit_locked(coro)

    def _submit_locked(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._loop is None:
            self._loop = LoopThread()
        return self._loop.submit(coro)

    def list_tools(
        self,
        configs: Sequence[MCPServerConfig],
        *,
        refresh: bool = False,
        timeout: float | None = None,
    ) -> dict[str, tuple[MCPTool, ...]]:
        """The offered (filtered) tools of each server, connecting as needed (concurrently)."""
        futures = {
            config.name: self.submit(self.session(config).tools(refresh=refresh))
            for config in configs
        }
        out: dict[str, tuple[MCPTool, ...]] = {}
        for config in configs:
            try:
                tools = futures[config.name].result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise MCPServerError(
                    f"MCP server '{config.name}' did not list its tools in time",
                    server=config.name,
                ) from None
            except concurrent.futures.CancelledError:
                raise ManagerStoppedError("the router was stopped") from None
            out[config.name] = tuple(t for t in tools if config.offers(t.name))
        return out

    def describe(self, configs: Sequence[MCPServerConfig] | None = None) -> list[dict[str, Any]]:
        """Each server with its tools, schemas and which providers can express each tool.

        Disabled servers are listed without being started; a server that cannot be reached is
        listed with its error.
        """
        configs = self.configured if configs is None else tuple(configs)
        enabled = [c for c in configs if c.enabled]
        futures = {c.name: self.submit(self.session(c).tools(refresh=True)) for c in enabled}
        rows: list[dict[str, Any]] = []
        for config in configs:
            row: dict[str, Any] = {
                "name": config.name,
                "transport": config.transport,
                "target": config.display_target,
                "enabled": config.enabled,
                "status": "disabled",
                "error": None,
                "server": None,
                "tools": [],
                "skipped": [],
            }
            if config.enabled:
                try:
                    tools = futures[config.name].result(timeout=config.timeout + 10)
                except MCPServerError as error:
                    row.update(status="error", error=error.message)
                except concurrent.futures.TimeoutError:
                    row.update(status="error", error="no answer in time")
                else:
                    session = self.session(config)
                    row.update(status="connected", server=session.server_info)
                    row["tools"] = [_tool_row(tool, config) for tool in tools]
                    row["skipped"] = [{"name": s.name, "reason": s.reason} for s in session.skipped]
            rows.append(row)
        return rows

    def close(self, timeout: float = 10.0) -> None:
        """Close every session (stopping their processes) and stop the loop thread."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
            sessions = list(self._sessions.values())
            self._sessions.clear()
        if loop is None:
            return
        futures = [loop.submit(session.close()) for session in sessions]
        concurrent.futures.wait(futures, timeout=timeout)
        loop.stop(timeout)

    def reopen(self) -> None:
        """Allow use again after ``close`` (a restarted manager)."""
        with self._lock:
            self._closed = False


def _tool_row(tool: MCPTool, config: MCPServerConfig) -> dict[str, Any]:
    expressible = {kind.value: check_tool(tool, kind) for kind in EXPRESSIBLE_FOR}
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.inputSchema,
        "offered": config.offers(tool.name),
        "providers": {kind: reason is None for kind, reason in expressible.items()},
        "not_expressible": {kind: reason for kind, reason in expressible.items() if reason},
    }
