"""A small MCP server for the tests and the demo, written with the ``mcp`` SDK.

    python -m router.emulator.mcp_server            # stdio
    python -m router.emulator.mcp_server --http     # streamable HTTP on a free loopback port;
                                                    # prints the endpoint URL, then serves

Its tools answer deterministically, and some misbehave on purpose: ``crash`` kills the process
mid-call, ``hang`` never answers, ``broken`` answers ``isError``, ``huge`` returns a large text,
``grow`` adds a tool and sends ``notifications/tools/list_changed``, ``3d_render`` has a name
Gemini cannot express, and ``plan_trip`` / ``loop_forever`` ask the model (the emulator) to call
another tool, for multi-turn runs. ``meet_left`` / ``meet_right`` return only once both are in
progress at the same time (they prove a turn's calls run concurrently). When ``MCP_CALL_LOG`` names a file, every
call appends ``{"tool", "arguments", "pid"}`` to it as a JSON line.

Needs the ``mcp`` extra; imports nothing from the router.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

app = MCPServer("router-playground", version="1.0", log_level="WARNING")

_meeting: dict[str, Any] = {"present": 0, "event": None}


def _record(tool: str, **arguments: Any) -> None:
    path = os.environ.get("MCP_CALL_LOG")
    if path:
        line = json.dumps({"tool": tool, "arguments": arguments, "pid": os.getpid()})
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


@app.tool()
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    _record("get_weather", city=city)
    return f"Sunny, 21 C in {city}"


@app.tool()
def plan_trip(city: str) -> str:
    """Plan a trip to a city (then asks for the weather there)."""
    _record("plan_trip", city=city)
    return f"Trip to {city} planned; now call get_weather for the forecast"


@app.tool()
def loop_forever() -> str:
    """A tool that always asks to be called again."""
    _record("loop_forever")
    return "not done yet: call loop_forever again"


async def _meet(side: str) -> str:
    _record(f"meet_{side}")
    if _meeting["event"] is None:
        _meeting["event"] = anyio.Event()
    event = _meeting["event"]
    _meeting["present"] += 1
    if _meeting["present"] >= 2:
        event.set()
        _meeting["present"], _meeting["event"] = 0, None  # the next pair meets afresh
    try:
        with anyio.fail_after(20):
            await event.wait()
    except TimeoutError:
        raise ToolError(f"meet_{side}: nobody came (the calls did not run concurrently)") from None
    return f"{side} side met the other side"


@app.tool()
async def meet_left() -> str:
    """Return once meet_right is in progress at the same time."""
    return await _meet("left")


@app.tool()
async def meet_right() -> str:
    """Return once meet_left is in progress at the same time."""
    return await _meet("right")


@app.tool()
def crash() -> str:
    """Kill the server process in the middle of the call."""
    _record("crash")
    os._exit(17)


@app.tool()
async def hang() -> str:
    """Never answer."""
    _record("hang")
    await anyio.sleep(3600)
    return "woke up"


@app.tool()
def broken() -> str:
    """Always fail (an isError result)."""
    _record("broken")
    raise ToolError("the database is down")


@app.tool()
def huge(size: int = 200_000) -> str:
    """Return a very long text."""
    _record("huge", size=size)
    return ("0123456789" * (size // 10 + 1))[:size]


@app.tool()
async def grow(ctx: Context) -> str:
    """Add the tool late_tool and tell the client the tool list changed."""
    _record("grow")
    if "late_tool" not in {tool.name for tool in await app.list_tools()}:
        app.add_tool(_late_tool, name="late_tool", description="A tool added at run time.")
    await ctx.session.send_tool_list_changed()
    return "added late_tool"


def _late_tool() -> str:
    _record("late_tool")
    return "late tool answered"


@app.tool(name="3d_render")
def render_3d(scene: str) -> str:
    """Render a scene (the name starts with a digit: Gemini refuses it)."""
    _record("3d_render", scene=scene)
    return f"rendered {scene}"


def _serve_http() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app.streamable_http_app(), log_level="warning", lifespan="on")
    )
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    anyio.run(server.serve, [sock])


if __name__ == "__main__":
    if "--http" in sys.argv[1:]:
        _serve_http()
    else:
        app.run("stdio")
