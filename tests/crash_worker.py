"""A router process under load, for the crash-safety test (which kills it with SIGKILL).

Run as ``python tests/crash_worker.py '<router config JSON>' <callers>``. It starts an
:class:`AIProviderManager` on the given configuration (an SQLite ledger), prints ``ready``, then
``callers`` threads send requests (every other one streamed) until the process is killed. Each
answer is reported as one line ``ok <provider request id> <cost>`` (a failure as ``err <type>``)
the moment the caller has it. The process exits on its own after ``MAX_SECONDS`` should its
parent die without killing it.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from router.errors import RouterError
from router.manager import AIProviderManager
from router.models import AIRequest

MAX_SECONDS = 120.0


def main() -> None:
    config = json.loads(sys.argv[1])
    callers = int(sys.argv[2])
    manager = AIProviderManager(config).start()
    out_lock = threading.Lock()

    def report(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def caller(offset: int) -> None:
        index = offset
        while True:
            request = AIRequest(
                model="fast",
                messages=[{"role": "user", "content": f"crash run {os.getpid()} {index}"}],
                max_tokens=16,
            )
            try:
                if index % 2:
                    stream = manager.stream_request(request, strategy="round_robin")
                    for _ in stream:
                        pass
                    response = stream.future.get(timeout=30)
                else:
                    response = manager.submit(request, strategy="round_robin").get(timeout=30)
                report(f"ok {response.request_id} {response.cost!r}")
            except RouterError as error:
                report(f"err {type(error).__name__}")
            index += callers

    report("ready")
    for offset in range(callers):
        threading.Thread(target=caller, args=(offset,), daemon=True).start()
    threading.Event().wait(MAX_SECONDS)
    os._exit(3)  # the parent should have killed us long ago


if __name__ == "__main__":
    main()
