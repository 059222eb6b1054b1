"""A throwaway redis-server on a free loopback port, for tests (importable as ``redis_server``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Why Redis tests skip, or ``None`` when the binary is there.
SKIP_REASON = (
    None
    if shutil.which("redis-server")
    else "redis-server is not installed (apt-get install redis-server); .ci/run installs it"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """``redis-server`` without persistence except an explicit ``SHUTDOWN SAVE``, so a test can
    stop it mid-run and bring it back with its data (an outage, not a wipe)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--dbfilename",
                "dump.rdb",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(
            port=self.port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        try:
            # Bounded: 1000 polls of at most a few ms each.
            for _ in range(1000):
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    time.sleep(0.005)
            raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self, *, save: bool = True) -> None:
        """Shut down (saving the data to disk first, unless ``save=False``) and wait."""
        if self.process is None:
            return
        if self.process.poll() is None:
            # No retries: the server closing the connection is the expected answer.
            client = redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
            try:
                client.shutdown(save=save, nosave=not save)
            except redis.ConnectionError:
                pass  # the connection closes as the server goes down
            finally:
                client.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, 9)
            self.process.wait(timeout=10)
        self.process = None
