"""The emulator in a child process, driven over its HTTP control endpoints.

The soak and crash suites run the emulator in its own process: it then gets its own
interpreter (its own GIL, so the second core serves the providers' side of the wire) and the
thread count and RSS measured in the test process are the router's alone. The interface is
the subset of :class:`router.emulator.EmulatorServer` those suites use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent

_SCRIPT = """
import sys
from router.emulator import serve_forever
serve_forever("127.0.0.1", 0, {"pacing": {"ttft": 0.0, "token_delay": 0.0}},
              ready=lambda url: print(url, flush=True))
"""


def child_env() -> dict[str, str]:
    """The environment for a child Python process that must import ``router`` from this repo."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


class RemoteEmulator:
    """``router.emulator`` running in a child process; a context manager."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._session = requests.Session()
        self._session.trust_env = False
        self.url = ""
        self.base_urls: dict[str, str] = {}

    def start(self) -> RemoteEmulator:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self._process.stdout is not None
        # serve_forever prints the URL once it listens: the pipe is the synchronisation.
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError("the emulator child process did not start")
        self.base_urls = {
            "openai": self.url + "/v1",
            "anthropic": self.url,
            "google": self.url,
        }
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._session.request(method, self.url + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def add_fault(self, **rule: Any) -> None:
        """Append one fault rule (same keys as ``EmulatorServer.add_fault``)."""
        self._call("POST", "/_emulator/faults", rule)

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_emulator/faults")["faults"]

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/counters")

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset")

    def stop(self) -> None:
        process, self._process = self._process, None
        self._session.close()
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> RemoteEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
