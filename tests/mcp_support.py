"""Real MCP servers for the tests: the playground (``router.emulator.mcp_server``, written with
the ``mcp`` SDK) over stdio and streamable HTTP, and ``mcp-server-time`` from PyPI over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Spawned servers import this worktree's router, never an installed copy.
SERVER_ENV = {"PYTHONPATH": str(ROOT)}
# Starting a Python MCP server costs ~2 s of imports; a loaded CI machine needs slack.
STARTUP = 120.0


def playground(name: str = "play", *, log: Path | None = None, **extra: Any) -> dict[str, Any]:
    env = dict(SERVER_ENV)
    if log is not None:
        env["MCP_CALL_LOG"] = str(log)
    return {
        "name": name,
        "command": sys.executable,
        "args": ["-m", "router.emulator.mcp_server"],
        "env": env,
        "startup_timeout": STARTUP,
        **extra,
    }


def time_server(name: str = "time", **extra: Any) -> dict[str, Any]:
    """The third-party ``mcp-server-time`` (PyPI), spawned over stdio."""
    return {
        "name": name,
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "startup_timeout": STARTUP,
        **extra,
    }


ENV_SERVER = Path(__file__).resolve().with_name("env_mcp_server.py")


def env_server(name: str = "env", **extra: Any) -> dict[str, Any]:
    """``tests/env_mcp_server.py`` over stdio: its tool ``report_environment`` answers the
    environment it was started with (as JSON)."""
    return {
        "name": name,
        "command": sys.executable,
        "args": [str(ENV_SERVER)],
        "startup_timeout": STARTUP,
        **extra,
    }


def calls(log: Path) -> list[dict[str, Any]]:
    """The playground's call log: one ``{"tool", "arguments", "pid"}`` per call, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# Servers the tests start themselves (the HTTP playground), not the router's to stop.
TEST_OWNED: set[int] = set()


def mcp_children() -> list[tuple[int, str]]:
    """This process's child processes that are MCP servers the router started."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as raw:
                cmdline = raw.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(entry) in TEST_OWNED:
            continue
        if int(fields[1]) == me and fields[0] != "Z" and "mcp" in cmdline:
            found.append((int(entry), cmdline))
    return found


def mcp_threads() -> list[str]:
    return [
        t.name for t in threading.enumerate() if t.name.startswith(("router-mcp", "router-agent"))
    ]


@contextmanager
def http_playground(log: Path | None = None) -> Iterator[str]:
    """The playground over streamable HTTP (a process of its own); yields its endpoint URL."""
    env = {**os.environ, **SERVER_ENV}
    if log is not None:
        env["MCP_CALL_LOG"] = str(log)
    process = subprocess.Popen(
        [sys.executable, "-m", "router.emulator.mcp_server", "--http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    TEST_OWNED.add(process.pid)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"the HTTP playground did not start: {url!r}"
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        TEST_OWNED.discard(process.pid)
