"""Real router processes for the multi-process tests (``tests/budget_worker.py``), driven
over stdin/stdout; the ``start_workers`` fixture (conftest.py) starts them."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("budget_worker.py")
ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """One router process; ``ask`` sends a command and returns its JSON answer."""

    def __init__(self, settings: dict[str, Any], tmp_path: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH")])
        )
        env["XDG_STATE_HOME"] = str(tmp_path / "state")  # keep journals out of $HOME
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        # A reader thread, so a dead worker turns into a timeout instead of a hang.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def answer(self, timeout: float = 60.0) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        if not line:
            raise AssertionError(f"worker {self.process.pid} exited ({self.process.poll()})")
        return json.loads(line)

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def ask(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.answer()

    def quit(self) -> dict[str, Any]:
        result = self.ask(cmd="quit")
        self.process.wait(timeout=30)
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
