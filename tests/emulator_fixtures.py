"""Helpers and fixtures for the emulator's own tests (``tests/test_emulator*.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import sseclient

from router.emulator import EmulatorServer

KEYS = {"openai": "sk-emu-test-key", "anthropic": "sk-ant-emu-test", "google": "AIza-emu-test"}


@pytest.fixture(scope="module")
def emu_server() -> Iterator[EmulatorServer]:
    """One emulator per test module."""
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def emu(emu_server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The module's emulator with faults, counters and pacing reset around each test."""
    emu_server.reset()
    emu_server.set_pacing(None)
    yield emu_server
    emu_server.reset()
    emu_server.set_pacing(None)


def openai_headers(key: str = KEYS["openai"]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def anthropic_headers(
    key: str = KEYS["anthropic"], version: str | None = "2023-06-01"
) -> dict[str, str]:
    headers = {"x-api-key": key}
    if version:
        headers["anthropic-version"] = version
    return headers


def google_headers(key: str = KEYS["google"]) -> dict[str, str]:
    return {"x-goog-api-key": key}


def post(
    emu: EmulatorServer, path: str, body: Any, headers: dict[str, str], **kw: Any
) -> requests.Response:
    """POST JSON to the emulator (fresh connection each time)."""
    return requests.post(emu.url + path, data=json.dumps(body), headers=headers, timeout=10, **kw)


def sse_events(response: requests.Response) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE response, parsed with sseclient-py as the router does."""
    return [(e.event, e.data) for e in sseclient.SSEClient(response).events()]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition of another thread's progress (the emulator offers no event for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()
