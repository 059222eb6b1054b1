"""The opt-in audit log: prompts and answers as JSON lines.

Off unless the configuration names ``audit_log``. Without it the router stores no prompt or
response content anywhere (the ledger holds only usage metadata). Written by worker threads,
so appends are serialised by a lock; each line is flushed so a crash loses at most one line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from router.models import AIRequest, AIResponse

__all__ = ["AuditLog"]


class AuditLog:
    """Append-only JSON-lines file of requests and their answers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, request_id: str, request: AIRequest, response: AIResponse) -> None:
        line: dict[str, Any] = {
            "time": time.time(),
            "request_id": request_id,
            "provider": response.provider_name,
            "model": response.model,
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in request.messages],
            "content": response.content,
            "tool_calls": [c.model_dump(mode="json") for c in response.tool_calls],
            "finish_reason": response.finish_reason,
            "usage": response.usage.model_dump(),
            "cost": response.cost,
        }
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(text)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
