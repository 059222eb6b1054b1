"""A non-streamed answer whose body breaks off after a 2xx head: the provider generated it all
before sending and bills it, but its usage went with the body. The attempt books the most it
can cost (the input estimate, the output ceiling) and ends its reservation with that record;
over real sockets, on the threads path (requests) and the loop engine's client alike.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support import one_openai_provider

from router.errors import AnswerCutError, ProviderError
from router.green_server import GreenBridgeServer

ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"


class _CutHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        length = 0
        while line := self.rfile.readline():
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            if line in (b"\r\n", b"\n"):
                break
        self.rfile.read(length)
        self.server.calls += 1  # type: ignore[attr-defined]
        # 2xx, then a third of the promised body, then the connection ends.
        self.wfile.write(HEAD + b'{"id":"chatcmpl-1","object":"chat.completion","choices":[')


@pytest.fixture
def cut_upstream() -> Iterator[Any]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CutHandler)
    server.daemon_threads = True
    server.calls = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _config(server: Any) -> dict[str, Any]:
    config = one_openai_provider(f"http://127.0.0.1:{server.server_address[1]}/v1", max_retries=1)
    config["budgets"] = [{"name": "Daily", "daily_limit": 1.0}]
    return config


def _assert_billed_at_most(manager: Any, attempts: int) -> None:
    records = manager.usage_records()
    assert [(r.outcome, r.output_tokens) for r in records] == [("error", 100)] * attempts
    assert all(r.input_tokens > 0 and r.cost > 0 for r in records)
    status = manager.get_budget_status()
    assert status["spent_today"] == pytest.approx(sum(r.cost for r in records))
    assert status["reserved"] == 0.0  # every reservation ended in its record
    health = manager.provider_health()["openai"]
    assert health.in_flight == 0 and health.failures == attempts


def test_a_cut_answer_is_billed_at_its_most_on_the_threads_path(cut_upstream, make_manager):
    manager = make_manager(_config(cut_upstream))
    with pytest.raises(ProviderError) as raised:
        manager.process_request(ASK)
    assert isinstance(raised.value, AnswerCutError), raised.value
    # The retry reserved anew and was billed on its own: each attempt was answered.
    assert cut_upstream.calls == 2
    _assert_billed_at_most(manager, attempts=2)


def test_a_cut_answer_is_billed_at_its_most_on_the_loop_engine(
    cut_upstream, make_manager, start_server
):
    manager = make_manager(_config(cut_upstream))
    server = start_server(GreenBridgeServer, manager)
    answer = requests.post(server.url + "/v1/chat/completions", json=ASK, timeout=30)
    assert answer.status_code == 502, answer.text
    assert "broke off" in answer.text
    assert cut_upstream.calls == 2
    _assert_billed_at_most(manager, attempts=2)
