"""Shared fixtures: an emulator on a free loopback port and managers wired to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

KEYS = {
    "openai": "sk-test-openai-0123456789abcdefghij",
    "anthropic": "sk-ant-test-0123456789abcdefghij",
    "google": "AIza-test-0123456789abcdefghij",
}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-haiku-20240307",
    "google": "gemini-1.5-flash",
}


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Any]:
    from router.emulator import EmulatorServer

    with EmulatorServer() as server:
        yield server


@pytest.fixture
def emulator(emulator_server: Any) -> Iterator[Any]:
    """The session's emulator with faults, pacing and counters reset for this test."""
    emulator_server.reset()
    emulator_server.set_pacing(None, ttft=0.0, token_delay=0.0)
    yield emulator_server
    emulator_server.reset()
    emulator_server.set_pacing(None, ttft=0.0, token_delay=0.0)


def router_config(emulator: Any, **overrides: Any) -> dict[str, Any]:
    """A config dict with the three providers pointed at ``emulator``."""
    providers = []
    for priority, kind in zip((3, 2, 1), ("openai", "anthropic", "google"), strict=True):
        providers.append(
            {
                "name": kind,
                "type": kind,
                "api_key": KEYS[kind],
                "base_url": emulator.base_urls[kind],
                "priority": priority,
                "timeout": 10.0,
                "retry": {"base_delay": 0.01, "max_delay": 0.05},
                "circuit_breaker": {"failure_threshold": 5, "recovery_timeout": 0.5},
            }
        )
    config: dict[str, Any] = {
        "providers": providers,
        "model_groups": {
            "fast": [{"provider": kind, "model": MODELS[kind]} for kind in MODELS],
        },
        "ledger": {"type": "memory"},
        "request_timeout": 20.0,
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_manager(emulator: Any) -> Iterator[Any]:
    """Build and start managers against the emulator; all are stopped after the test."""
    from router.manager import AIProviderManager

    managers: list[AIProviderManager] = []

    def build(config: dict[str, Any] | None = None, **kwargs: Any) -> AIProviderManager:
        manager = AIProviderManager(config or router_config(emulator), **kwargs)
        managers.append(manager.start())
        return manager

    yield build
    for manager in managers:
        manager.stop()
    pykka.ActorRegistry.stop_all()


def router_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("router-", "PykkaActor"))]
