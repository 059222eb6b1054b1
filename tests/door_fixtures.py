"""One running bridge per test module for the SDK door tests (``tests/test_door_*.py``).

The bridge runs on a real socket with the session's emulator behind; tests that break
providers on purpose (all down, bad keys) build a bridge of their own with :func:`own_bridge`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from support import MODELS, router_config

from router.manager import AIProviderManager
from router.server import BridgeServer

TOKEN = "door-token-0123456789"
PROVIDERS = tuple(MODELS)  # openai, anthropic, google


@contextlib.contextmanager
def own_bridge(emulator: Any, **config: Any) -> Iterator[BridgeServer]:
    """A manager and bridge of their own (for tests that damage provider state)."""
    manager = AIProviderManager(router_config(emulator, **config)).start()
    try:
        with BridgeServer(manager, threads=4, auth_token=TOKEN) as server:
            yield server
    finally:
        manager.stop()


@pytest.fixture(scope="module")
def bridge(emulator_server: Any) -> Iterator[BridgeServer]:
    with own_bridge(emulator_server) as server:
        yield server


@pytest.fixture
def emu(emulator: Any, bridge: BridgeServer) -> Any:
    """The emulator, reset for this test (faults, counters)."""
    return emulator


# Models that think, per provider type (the emulator returns "Thinking about: <prompt>").
THINKERS = {"anthropic": "claude-sonnet-4-5", "google": "gemini-2.5-flash"}
# A schema the emulator answers with its example value.
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}},
    "required": ["city", "degrees"],
    "additionalProperties": False,
}
WEATHER_EXAMPLE = {"city": "city", "degrees": 1}
