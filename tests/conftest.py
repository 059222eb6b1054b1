"""Shared fixtures: an emulator on a free loopback port and managers wired to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from redis_server import RedisServer
from router_processes import Worker
from support import router_config


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


@pytest.fixture(params=["loop", "threads"])
def engine(request) -> type:
    """The server class of each engine (``router serve --engine``)."""
    from router.server import server_engine

    return server_engine(request.param)


@pytest.fixture
def start_server(make_manager) -> Iterator[Any]:
    """``start_server(server_class, manager=None, **kwargs)``: a started bridge server for a
    manager (default config), without auth unless asked; all are stopped after the test."""
    servers: list[Any] = []

    def start(server_class: type, manager: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("auth_token", "")
        server = server_class(manager or make_manager(), **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_workers(tmp_path) -> Iterator:
    """Start workers in parallel and wait until each is ready; all are killed after the test."""
    workers: list[Worker] = []

    def start(*all_settings: dict[str, Any]) -> list[Worker]:
        batch = [Worker(settings, tmp_path) for settings in all_settings]
        workers.extend(batch)
        for worker in batch:
            assert worker.answer(timeout=60)["event"] == "ready"
        return batch

    yield start
    for worker in workers:
        worker.kill()


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop(save=False)
