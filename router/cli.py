"""The ``router`` command line.

Every user error prints one line (``router: error: ...``) and exits non-zero; no tracebacks.
Exit codes: 0 success, 1 the request or command failed (provider, budget, network), 2 usage or
configuration error. ``--json`` output is documented in ``docs/cli.md`` and kept stable.

Only click is imported at module level so ``router --help`` stays fast; everything else is
imported by the command that needs it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from router import __version__

__all__ = ["main", "cli"]

EXIT_FAILED = 1
EXIT_CONFIG = 2


class RouterCommandError(click.ClickException):
    """A one-line user-facing error with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"router: error: {self.format_message()}", err=True)


def _fail(error: BaseException) -> RouterCommandError:
    from router.errors import ConfigError, InvalidRequestError

    code = EXIT_CONFIG if isinstance(error, ConfigError | InvalidRequestError) else EXIT_FAILED
    message = str(error).strip()
    # One line: multi-problem config errors are joined, the first line leads.
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return RouterCommandError("; ".join(lines) or type(error).__name__, code)


class State:
    """Shared by all commands: where the configuration is and the log level."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path

    def config(self) -> Any:
        from router.config import load_config
        from router.errors import RouterError

        try:
            return load_config(self.config_path)
        except RouterError as error:
            raise _fail(error) from None

    @contextmanager
    def manager(self, config: Any = None) -> Iterator[Any]:
        """A started manager for ``config`` (default: the one at ``config_path``)."""
        from router.errors import RouterError
        from router.manager import AIProviderManager

        config = self.config() if config is None else config
        try:
            manager = AIProviderManager(config).start()
        except RouterError as error:
            raise _fail(error) from None
        except OSError as error:
            raise RouterCommandError(f"cannot start the router: {error}") from None
        try:
            yield manager
        finally:
            manager.stop()


def _parse_workers(_ctx: Any, _param: Any, value: Any) -> int | None:
    """``--workers``: a count from 1 to 256, or ``auto`` (None: decided from the config)."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'auto'") from None
    if not 1 <= count <= 256:
        raise click.BadParameter(f"{count} is not in the range 1 to 256")
    return count


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file [default: $AI_PROVIDER_CONFIG_PATH, config/ai_providers.yaml, "
    "conf/ai_providers.yaml].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Log verbosity (logs go to stderr).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line.",
)
@click.version_option(version=__version__, prog_name="router")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Route chat requests to Anthropic, OpenAI and Gemini as one dependable service."""
    from router.logformat import TEXT_FORMAT, JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format.lower() == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=getattr(logging, log_level.upper()), handlers=[handler])
    ctx.obj = State(config_path)


# --- generate --------------------------------------------------------------------------------


def _load_tools(path: str | None) -> list[Any]:
    if path is None:
        return []
    from pydantic import ValidationError

    from router.models import MCPTool

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise RouterCommandError(f"--tools: cannot read {path}: {error.strerror}", 2) from None
    except ValueError as error:
        raise RouterCommandError(f"--tools: {path} is not valid JSON: {error}", 2) from None
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]  # a tools/list result
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise RouterCommandError(f"--tools: {path} must hold a tool or a list of tools", 2)
    tools = []
    for index, item in enumerate(data):
        try:
            tools.append(MCPTool.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RouterCommandError(
                f"--tools: tool #{index} in {path}: {where}: {first['msg']}", 2
            ) from None
    return tools


def _summary(response: Any) -> str:
    usage = response.usage
    extra = ""
    if usage.reasoning_tokens:
        extra += f" reasoning={usage.reasoning_tokens}"
    if usage.cached_input_tokens or usage.cache_write_tokens:
        extra += f" cache_read={usage.cached_input_tokens} cache_write={usage.cache_write_tokens}"
    return (
        f"provider={response.provider_name} model={response.model} "
        f"tokens={usage.input_tokens}+{usage.output_tokens}{extra} cost={_money(response.cost)} "
        f"latency={response.latency_ms:.0f}ms"
    )


def _response_json(response: Any) -> dict[str, Any]:
    return response.model_dump(mode="json", exclude={"raw"})


@cli.command()
@click.argument("prompt")
@click.option("--model", default=None, help="Model id, model group alias, or provider/model.")
@click.option(
    "--strategy",
    type=click.Choice(
        ["cost", "priority", "capability_based", "load_balanced", "failover", "round_robin"]
    ),
    default=None,
    help="Provider selection strategy [default: from the configuration].",
)
@click.option("--system", default=None, help="A system prompt.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None)
@click.option("--temperature", type=click.FloatRange(0, 2), default=None)
@click.option(
    "--tools",
    "tools_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON file with MCP tool definitions (a list, or a tools/list result).",
)
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON file with a JSON Schema (or an OpenAI response_format) the answer must follow.",
)
@click.option(
    "--reasoning",
    type=click.Choice(["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
    default=None,
    help="How hard the model should think first (printed on stderr when returned).",
)
@click.option("--cache-prompt", is_flag=True, help="Cache the prompt (Anthropic breakpoints).")
@click.option(
    "--best-effort",
    is_flag=True,
    help="Drop parameters a provider cannot honour instead of refusing it (strict_params off).",
)
@click.option("--stream/--no-stream", default=False, help="Print tokens as they arrive.")
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
@click.pass_obj
def generate(
    state: State,
    prompt: str,
    model: str | None,
    strategy: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    tools_file: str | None,
    schema_file: str | None,
    reasoning: str | None,
    cache_prompt: bool,
    best_effort: bool,
    stream: bool,
    as_json: bool,
) -> None:
    """Send PROMPT and print the answer (details on stderr)."""
    from router.errors import RouterError
    from router.manager import coerce_request

    tools = _load_tools(tools_file)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    body: dict[str, Any] = {"model": model, "messages": messages, "tools": tools}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    if schema_file is not None:
        body["response_format"] = _load_schema(schema_file)
    if reasoning is not None:
        body["reasoning"] = {"effort": reasoning}
    if cache_prompt:
        body["cache_prompt"] = True
    if best_effort:
        body["strict_params"] = False
    try:
        request = coerce_request(body)
    except RouterError as error:
        raise _fail(error) from None
    with state.manager() as manager:
        try:
            if stream:
                response = _stream_to_terminal(manager, request, strategy, as_json)
            else:
                response = manager.process_request(request, strategy=strategy)
        except RouterError as error:
            raise _fail(error) from None
    if as_json:
        _emit_json(_response_json(response))
    else:
        if response.reasoning and not stream:
            click.echo(f"[reasoning] {response.reasoning}", err=True)
        if not stream:
            if response.content:
                click.echo(response.content)
            for call in response.tool_calls:
                click.echo(f"[tool call] {call.name}({json.dumps(call.arguments)})")
    for dropped in response.dropped_params:
        click.echo(f"[dropped] {dropped}", err=True)
    click.echo(_summary(response), err=True)


def _load_schema(path: str) -> dict[str, Any]:
    """``--schema FILE``: a JSON Schema, or a whole OpenAI ``response_format`` object."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise RouterCommandError(f"--schema: cannot read {path}: {error.strerror}", 2) from None
    except ValueError as error:
        raise RouterCommandError(f"--schema: {path} is not valid JSON: {error}", 2) from None
    if not isinstance(data, dict):
        raise RouterCommandError(f"--schema: {path} must hold a JSON Schema object", 2)
    if data.get("type") in ("json_schema", "json_object", "text"):
        return data
    name = re.sub(r"[^\w-]", "_", Path(path).stem)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": data}}


def _stream_to_terminal(manager: Any, request: Any, strategy: str | None, as_json: bool) -> Any:
    from router.errors import RouterError

    stream = manager.stream_request(request, strategy=strategy)
    with stream:
        for chunk in stream:
            if chunk.error:
                if not as_json:
                    click.echo("")
                raise RouterError(f"stream failed: {chunk.error}")
            if chunk.reasoning and not as_json:
                click.echo(chunk.reasoning, nl=False, err=True)
            if chunk.content and not as_json:
                click.echo(chunk.content, nl=False)
                sys.stdout.flush()
        if not as_json:
            click.echo("")
        response = stream.future.get(timeout=5)
    if not as_json:
        for call in response.tool_calls:
            click.echo(f"[tool call] {call.name}({json.dumps(call.arguments)})")
    return response


# --- agent, mcp -------------------------------------------------------------------------------


def _adhoc_server(command_line: str, env: dict[str, str]) -> dict[str, Any]:
    import shlex

    try:
        words = shlex.split(command_line)
    except ValueError as error:
        raise RouterCommandError(f"--mcp-command: {error}", EXIT_CONFIG) from None
    if not words:
        raise RouterCommandError("--mcp-command: empty command", EXIT_CONFIG)
    # The server gets the minimal environment (router.mcp.session.stdio_environment) plus
    # what --mcp-env names, never the caller's, which holds the provider API keys.
    return {"name": "command", "command": words[0], "args": words[1:], "env": env}


def _adhoc_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--mcp-env NAME=VALUE`` pairs. An error names the variable, never the value (often
    a token), and without an ``=`` it echoes nothing of what was given."""
    import re

    env: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise RouterCommandError("--mcp-env: expected NAME=VALUE (no '=' given)", EXIT_CONFIG)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise RouterCommandError(
                f"--mcp-env: {name[:40]!r} is not an environment variable name", EXIT_CONFIG
            )
        env[name] = value
    return env


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cli.command()
@click.argument("prompt")
@click.option("--mcp", "servers", multiple=True, help="A configured MCP server (repeatable).")
@click.option(
    "--mcp-command",
    "commands",
    multiple=True,
    help="Start this MCP server over stdio, e.g. 'uvx mcp-server-time' (repeatable).",
)
@click.option(
    "--mcp-env",
    "env_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An environment variable for the --mcp-command servers (repeatable); they get no "
    "other of yours.",
)
@click.option("--model", default=None, help="Model id, model group alias, or provider/model.")
@click.option(
    "--strategy",
    type=click.Choice(
        ["cost", "priority", "capability_based", "load_balanced", "failover", "round_robin"]
    ),
    default=None,
    help="Provider selection strategy [default: from the configuration].",
)
@click.option("--system", default=None, help="A system prompt.")
@click.option("--max-turns", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None)
@click.option("--tool-timeout", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the whole transcript as JSON.")
@click.pass_obj
def agent(
    state: State,
    prompt: str,
    servers: tuple[str, ...],
    commands: tuple[str, ...],
    env_pairs: tuple[str, ...],
    model: str | None,
    strategy: str | None,
    system: str | None,
    max_turns: int,
    max_tokens: int | None,
    tool_timeout: float | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Answer PROMPT with the tools of MCP servers: the model calls them until it answers.

    Without --mcp or --mcp-command every enabled configured server is used. The answer is
    streamed and each tool call is printed as it happens; details go to stderr.
    """
    from router.agent import AgentEvent
    from router.errors import RouterError

    specs: list[Any] = list(servers)
    env = _adhoc_env(env_pairs)
    if env and not commands:
        raise RouterCommandError("--mcp-env applies to --mcp-command servers only", EXIT_CONFIG)
    for index, command_line in enumerate(commands):
        spec = _adhoc_server(command_line, env)
        if len(commands) > 1:
            spec["name"] = f"command-{index + 1}"
        specs.append(spec)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    with state.manager() as manager:
        try:
            stream = manager.stream_agent(
                body,
                mcp_servers=specs or None,
                max_turns=max_turns,
                tool_timeout=tool_timeout,
                strategy=strategy,
                timeout=timeout,
            )
            with stream:
                at_line_start = True
                for item in stream:
                    if as_json:
                        continue
                    if isinstance(item, AgentEvent):
                        if not at_line_start:
                            click.echo("")
                            at_line_start = True
                        if item.type == "tool_call_started":
                            where = f" [{item.server}]" if item.server else ""
                            click.echo(
                                f"[tool call] {item.tool}({json.dumps(item.arguments)}){where}"
                            )
                        elif item.record is not None:
                            label = "tool error" if item.record.is_error else "tool result"
                            click.echo(
                                f"[{label}] {item.tool}: {_short(item.record.result)} "
                                f"({item.record.duration_ms:.0f}ms)"
                            )
                    elif item.content:
                        click.echo(item.content, nl=False)
                        sys.stdout.flush()
                        at_line_start = item.content.endswith("\n")
                if not as_json and not at_line_start:
                    click.echo("")
                result = stream.result()
        except RouterError as error:
            if as_json:
                partial = error.agent_result.transcript() if error.agent_result else None
                _emit_json({"error": error.to_dict(), "transcript": partial})
                raise SystemExit(EXIT_FAILED) from None
            raise _fail(error) from None
    if as_json:
        _emit_json(result.transcript())
    calls = sum(len(turn.tool_calls) for turn in result.turns)
    click.echo(
        f"turns={len(result.turns)} tool_calls={calls} "
        f"tokens={result.usage.input_tokens}+{result.usage.output_tokens} "
        f"cost={_money(result.cost)}",
        err=True,
    )


@cli.group("mcp")
def mcp_group() -> None:
    """Inspect the configured MCP servers."""


def _parameters(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return "no arguments"
    required = set(schema.get("required") or ())
    parts = []
    for name, prop in properties.items():
        kind = prop.get("type", "any") if isinstance(prop, dict) else "any"
        parts.append(f"{name}{'*' if name in required else ''}: {kind}")
    return ", ".join(parts)


@mcp_group.command("list")
@click.option("--server", "names", multiple=True, help="Only this server (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with full input schemas).")
@click.pass_obj
def mcp_list(state: State, names: tuple[str, ...], as_json: bool) -> None:
    """Connect to each configured MCP server and list its tools, parameters and which
    providers can express each tool."""
    from router.errors import RouterError
    from router.mcp import MCPServers

    config = state.config()
    servers = MCPServers(config.mcp_servers)
    try:
        chosen = servers.configured
        if names:
            unknown = [n for n in names if n not in {c.name for c in chosen}]
            if unknown:
                known = ", ".join(c.name for c in chosen) or "none"
                raise RouterCommandError(
                    f"unknown MCP server '{unknown[0]}' (configured: {known})", EXIT_CONFIG
                )
            chosen = tuple(c for c in chosen if c.name in names)
        try:
            rows = servers.describe(chosen)
        except RouterError as error:
            raise _fail(error) from None
    finally:
        servers.close()
    if as_json:
        _emit_json({"servers": rows})
    elif not rows:
        click.echo("no MCP servers configured (add mcp_servers: to the configuration)")
    for row in [] if as_json else rows:
        head = f"{row['name']} ({row['transport']}: {row['target']}): {row['status']}"
        if row["server"]:
            head += f", {row['server']}"
        if row["status"] == "connected":
            head += f", {len(row['tools'])} tools"
        click.echo(head)
        if row["error"]:
            click.echo(f"  error: {row['error']}")
        for tool in row["tools"]:
            providers = " ".join(k for k, ok in tool["providers"].items() if ok) or "none"
            hidden = "" if tool["offered"] else " [not offered: allowed/denied_tools]"
            click.echo(f"  {tool['name']}{hidden}  providers: {providers}")
            if tool["description"]:
                click.echo(f"    {_short(tool['description'], 100)}")
            click.echo(f"    parameters: {_parameters(tool['input_schema'])}")
            for kind, reason in tool["not_expressible"].items():
                click.echo(f"    not for {kind}: {reason}")
        for skipped in row["skipped"]:
            click.echo(f"  {skipped['name']} [skipped: {skipped['reason']}]")
    if any(row["status"] == "error" for row in rows):
        raise SystemExit(EXIT_FAILED)


# --- status, recommend, budget, models ------------------------------------------------------


def _watch_options(command: Any) -> Any:
    """``--watch``, ``--count``, ``--url`` and ``--token``, shared by status and budget."""
    for option in reversed(
        [
            click.option(
                "--watch", is_flag=True, help="Redraw every second until Ctrl-C (needs rich)."
            ),
            click.option(
                "--count",
                type=click.IntRange(min=1),
                default=None,
                help="With --watch: stop after this many redraws.",
            ),
            click.option(
                "--url",
                default=None,
                help="Read a running bridge (its /ui/data) instead of the local configuration.",
            ),
            click.option(
                "--token",
                envvar="ROUTER_AUTH_TOKEN",
                default=None,
                help="The bridge's auth token, for --url [env ROUTER_AUTH_TOKEN].",
            ),
        ]
    ):
        command = option(command)
    return command


def _watch_view(state: State, url: str | None, token: str | None, render: str, count: Any):
    try:
        from router import watch
    except ImportError as error:
        raise RouterCommandError(
            f"--watch needs rich: pip install 'router[watch]' ({error.name} missing)"
        ) from None
    draw = watch.providers_view if render == "providers" else watch.budgets_view
    try:
        if url is not None:
            source = watch.BridgeSource(url, token)
            try:
                watch.watch(source, draw, count=count)
            finally:
                source.close()
        else:
            with state.manager() as manager:
                watch.watch(watch.local_source(manager), draw, count=count)
    except KeyboardInterrupt:
        pass


def _remote_view(url: str, token: str | None) -> dict[str, Any]:
    """The status view of a running bridge (one ``GET /ui/data``)."""
    from router.watch import BridgeSource, SourceError

    source = BridgeSource(url, token)
    try:
        return source()
    except SourceError as error:
        raise RouterCommandError(str(error)) from None
    finally:
        source.close()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_watch_options
@click.pass_obj
def status(
    state: State,
    as_json: bool,
    watch: bool,
    count: int | None,
    url: str | None,
    token: str | None,
) -> None:
    """Show each provider's health, circuit, latency, in-flight requests and spend."""
    if watch:
        _watch_view(state, url, token, "providers", count)
        return
    if url is not None:
        _print_remote_status(_remote_view(url, token), as_json)
        return
    with state.manager() as manager:
        health = manager.provider_health()
        budget = manager.get_budget_status()
    spend = budget.get("providers", {})
    if as_json:
        _emit_json(
            {
                "providers": {
                    name: {**snap.to_dict(), **spend.get(name, {})} for name, snap in health.items()
                },
                "spent_today": budget.get("spent_today", 0.0),
                "spent_month": budget.get("spent_month", 0.0),
            }
        )
        return
    rows = []
    for name, snap in health.items():
        money = spend.get(name, {})
        status_text = snap.status.value + (
            f" ({snap.disabled_reason})" if snap.disabled_reason else ""
        )
        rows.append(
            [
                name,
                status_text,
                snap.circuit_state,
                f"{snap.uptime_percentage:.1f}%",
                f"{snap.p50_latency_ms:.0f}/{snap.p95_latency_ms:.0f}ms",
                str(snap.in_flight),
                _money(money.get("spent_today", 0.0)),
                _money(money.get("spent_month", 0.0)),
            ]
        )
    click.echo(
        _table(
            rows,
            ["provider", "status", "circuit", "uptime", "p50/p95", "in-flight", "today", "month"],
        )
    )


def _print_remote_status(view: dict[str, Any], as_json: bool) -> None:
    providers = {p["name"]: p for p in view["providers"]}
    if as_json:
        _emit_json(
            {
                "providers": providers,
                "spent_today": view.get("spent_today", 0.0),
                "spent_month": view.get("spent_month", 0.0),
            }
        )
        return
    rows = [
        [
            name,
            p["status"] + (f" ({p['disabled_reason']})" if p.get("disabled_reason") else ""),
            p["circuit_state"],
            f"{p['uptime_percentage']:.1f}%",
            f"{p['p50_latency_ms']:.0f}/{p['p95_latency_ms']:.0f}ms",
            str(p["in_flight"]),
            _money(p.get("spent_today", 0.0)),
            _money(p.get("spent_month", 0.0)),
        ]
        for name, p in providers.items()
    ]
    click.echo(
        _table(
            rows,
            ["provider", "status", "circuit", "uptime", "p50/p95", "in-flight", "today", "month"],
        )
    )


@cli.command()
@click.argument("prompt")
@click.option("--model", default=None, help="Model id or model group alias.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def recommend(state: State, prompt: str, model: str | None, max_tokens: int | None, as_json: bool):
    """Estimate the cost of PROMPT on every candidate, with health."""
    from router.errors import RouterError

    request = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    with state.manager() as manager:
        try:
            recommendations = manager.get_cost_recommendations(request, by="model")
        except RouterError as error:
            raise _fail(error) from None
    if as_json:
        _emit_json(recommendations)
        return
    rows = [
        [
            key,
            _money(rec["estimated_cost"]),
            f"{rec['health_score']:.0f}",
            rec["status"],
            "yes" if rec["available"] else f"no ({rec['reason']})",
        ]
        for key, rec in recommendations.items()
    ]
    click.echo(_table(rows, ["candidate", "worst-case cost", "health", "status", "available"]))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_watch_options
@click.pass_obj
def budget(
    state: State,
    as_json: bool,
    watch: bool,
    count: int | None,
    url: str | None,
    token: str | None,
) -> None:
    """Show each budget: spent, reserved, limit, percentage, and alerts."""
    if watch:
        _watch_view(state, url, token, "budgets", count)
        return
    if url is not None:
        view = _remote_view(url, token)
        data = {
            key: view.get(key)
            for key in ("budgets", "alerts", "spent_today", "spent_month", "reserved")
        }
        data["providers"] = {
            p["name"]: {k: p.get(k) for k in ("spent_today", "spent_month", "reserved")}
            for p in view["providers"]
        }
    else:
        with state.manager() as manager:
            data = manager.get_budget_status()
    if as_json:
        _emit_json(data)
        return
    rows = [
        [
            b["budget"],
            b["scope"] + (f":{b['provider']}" if b.get("provider") else ""),
            b["period"],
            _money(b["spent"]),
            _money(b["reserved"]),
            _money(b["limit"]),
            f"{b['percentage']:.1f}%",
        ]
        for b in data["budgets"]
    ]
    if rows:
        click.echo(
            _table(rows, ["budget", "scope", "period", "spent", "reserved", "limit", "used"])
        )
    else:
        click.echo("no budgets configured")
    click.echo(
        f"spent today {_money(data['spent_today'])}, this month {_money(data['spent_month'])}"
    )
    for alert in data.get("alerts", []):
        click.echo(
            f"alert: {alert['budget_name']} reached {alert['percentage']:.1f}% "
            f"(threshold {alert['threshold']:.0%}) in {alert['period']}"
        )


@cli.command()
@click.option("--provider", type=click.Choice(["openai", "anthropic", "google"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def models(state: State, provider: str | None, as_json: bool) -> None:
    """List the model catalog with prices (USD per million tokens) and capabilities."""
    from router.catalog import load_catalog
    from router.errors import RouterError

    override = None
    if state.config_path is not None:
        override = state.config().catalog
    try:
        catalog = load_catalog(override)
    except RouterError as error:
        raise _fail(error) from None
    entries = [m for m in catalog if provider is None or m.provider.value == provider]
    entries.sort(key=lambda m: (m.provider.value, m.id))
    if as_json:
        _emit_json(
            {
                "prices_as_of": catalog.prices_as_of,
                "models": [
                    {
                        "id": m.id,
                        "provider": m.provider.value,
                        "input_price": m.input_price,
                        "output_price": m.output_price,
                        "cached_input_price": m.cached_input_price,
                        "context_window": m.context_window,
                        "max_output_tokens": m.max_output_tokens,
                        "capabilities": sorted(c.value for c in m.capabilities),
                        "tier": m.tier,
                    }
                    for m in entries
                ],
            }
        )
        return
    rows = [
        [
            m.id,
            m.provider.value,
            f"{m.input_price:g}",
            f"{m.output_price:g}",
            f"{m.cached_input_price:g}",
            f"{m.context_window:,}",
            m.tier,
            ",".join(sorted(c.value for c in m.capabilities)),
        ]
        for m in entries
    ]
    click.echo(
        _table(
            rows,
            [
                "model",
                "provider",
                "in $/M",
                "out $/M",
                "cached $/M",
                "context",
                "tier",
                "capabilities",
            ],
        )
    )
    click.echo(f"prices as of {catalog.prices_as_of}")


# --- config ----------------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def config_check(state: State, file: str | None, as_json: bool) -> None:
    """Validate FILE (default: the --config file) and explain what it sets up."""
    from router.config import load_config
    from router.errors import RouterError

    try:
        cfg = load_config(file or state.config_path)
    except RouterError as error:
        if as_json:
            _emit_json({"valid": False, "errors": str(error).splitlines()})
            raise SystemExit(1) from None
        click.echo(f"router: error: {error}", err=True)
        raise SystemExit(1) from None
    providers = [
        {
            "name": p.name,
            "type": p.type.value,
            "usable": p.disabled_reason is None,
            "reason": p.disabled_reason,
            "priority": p.priority,
            "base_url": p.effective_base_url,
            "models": list(p.models),
        }
        for p in cfg.providers
    ]
    budgets = [
        {
            "name": b.name,
            "daily_limit": b.daily_limit,
            "monthly_limit": b.monthly_limit,
            "provider_limits": dict(b.provider_limits),
            "enabled": b.enabled,
        }
        for b in cfg.budgets
    ]
    if as_json:
        _emit_json(
            {
                "valid": True,
                "source": cfg.source,
                "providers": providers,
                "budgets": budgets,
                "default_strategy": cfg.default_strategy,
                "model_groups": sorted(cfg.model_groups),
                "ledger": cfg.ledger.type,
            }
        )
        return
    click.echo(f"{cfg.source}: valid")
    for p in providers:
        state_text = "usable" if p["usable"] else f"disabled: {p['reason']}"
        click.echo(f"  provider {p['name']} ({p['type']}, priority {p['priority']}): {state_text}")
    for b in budgets:
        limits = ", ".join(
            f"{k} ${v:g}"
            for k, v in (("daily", b["daily_limit"]), ("monthly", b["monthly_limit"]))
            if v is not None
        )
        click.echo(f"  budget {b['name']}: {limits or 'provider limits only'}")
    click.echo(f"  default strategy: {cfg.default_strategy}; ledger: {cfg.ledger.type}")
    if not any(p["usable"] for p in providers):
        click.echo("  warning: no provider is usable (set the API key variables)", err=True)


# --- serve, emulate, demo --------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["auto", "loop", "threads"]),
    default="auto",
    show_default=True,
    help="loop: an event loop (uvicorn), each request a greenlet, so a call in flight holds "
    "no thread; threads: cheroot, a thread per request. auto: loop when installed.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 100_000),
    default=2048,
    show_default=True,
    help="threads engine: request threads at most, per worker (the pool grows with demand); "
    "each request in flight and each open stream holds one.",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Requests answered at once, per worker; past it 503 with Retry-After at once "
    "[default: 10000 with the loop engine; threads minus a few spare with threads].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1_000_000),
    default=10_000,
    show_default=True,
    help="Idle keep-alive client connections kept open, per worker.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds one read or write on a client socket may wait (slow senders and readers).",
)
@click.option(
    "--workers",
    callback=_parse_workers,
    default="auto",
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT), each with its own manager. auto: one "
    "per CPU when the ledger is sqlite or redis and /ai/configure is off, else 1. Without "
    "redis each worker enforces an even share of every rpm, tpm and max_concurrency.",
)
@click.option(
    "--auth-token",
    envvar="ROUTER_AUTH_TOKEN",
    default=None,
    help="Require this bearer token on every endpoint [env ROUTER_AUTH_TOKEN].",
)
@click.option(
    "--configure-token",
    envvar="ROUTER_CONFIGURE_TOKEN",
    default=None,
    help="Bearer token for /ai/configure; disabled when unset [env ROUTER_CONFIGURE_TOKEN].",
)
@click.pass_obj
def serve(
    state: State,
    host: str,
    port: int,
    engine: str,
    threads: int,
    max_in_flight: int | None,
    max_connections: int,
    timeout: float,
    workers: int | None,
    auth_token: str | None,
    configure_token: str | None,
) -> None:
    """Serve the HTTP bridge (seed endpoints + OpenAI-compatible) until interrupted."""
    try:
        from router.server import serve as run_server
        from router.server import serve_workers, server_engine

        if server_engine(engine).__name__ == "BridgeServer":
            import cheroot  # noqa: F401
    except ImportError as error:
        missing = f" ({error.name} missing)" if error.name else ""
        raise RouterCommandError(
            f"the bridge needs its extra: pip install 'router[server]'{missing}"
        ) from None
    options: dict[str, Any] = {
        "engine": engine,
        "threads": threads,
        "max_connections": max_connections,
        "timeout": timeout,
        "auth_token": auth_token,
        "configure_token": configure_token,
    }
    if max_in_flight is not None:
        options["max_in_flight"] = max_in_flight

    def announce(url: str) -> None:
        click.echo(f"router bridge listening on {url}", err=True)

    config = state.config()  # refused here, before any worker starts
    if workers is None:
        from router.worker_plan import auto_workers

        workers, why = auto_workers(config, configure_enabled=configure_token is not None)
        logging.getLogger("router.server").info("--workers auto: %d (%s)", workers, why)
    if workers == 1:
        with state.manager(config) as manager:
            try:
                run_server(manager, host=host, port=port, ready=announce, **options)
            except OSError as error:
                raise RouterCommandError(
                    f"cannot listen on {host}:{port}: {error.strerror}"
                ) from None
        return
    if config.ledger.type == "memory" and config.budgets:
        raise RouterCommandError(
            "--workers with budgets needs a shared ledger (ledger type sqlite or redis): "
            "a memory ledger would give each worker its own budget"
        )

    # Imported once here, before the fork: each worker (and a restarted one) starts faster.
    import router.bridge.app  # noqa: F401
    import router.manager  # noqa: F401
    from router.worker_plan import config_for_worker

    worker_config = config_for_worker(config, workers)

    def run_worker(worker_port: int, ready: Any) -> None:
        with state.manager(worker_config) as manager:
            run_server(
                manager, host=host, port=worker_port, reuse_port=True, ready=ready, **options
            )

    try:
        status = serve_workers(run_worker, workers, host=host, port=port, ready=announce)
    except OSError as error:
        raise RouterCommandError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    if status:
        raise RouterCommandError("a worker could not start; see the log above")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--config",
    "faults",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Emulator configuration (faults, pacing, keys) as YAML.",
)
def emulate(host: str, port: int, faults: str | None) -> None:
    """Run the local provider emulator (OpenAI, Anthropic, Gemini) until interrupted."""
    from router.emulator import serve_forever

    def ready(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()

    try:
        serve_forever(host, port, faults, ready=ready)
    except OSError as error:
        raise RouterCommandError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    except ValueError as error:
        raise RouterCommandError(f"emulator configuration: {error}", EXIT_CONFIG) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def demo(as_json: bool) -> None:
    """Show the router working end to end on the built-in emulator (no keys, no network)."""
    from router.demo import run_demo

    # The demo narrates alerts and failovers itself; keep routine warnings out of its output.
    router_logger = logging.getLogger("router")
    if router_logger.getEffectiveLevel() == logging.WARNING:
        router_logger.setLevel(logging.ERROR)
    results = run_demo(None if as_json else sys.stdout)
    if as_json:
        _emit_json(results)


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    try:
        cli.main(args=argv, prog_name="router", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("router: interrupted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
