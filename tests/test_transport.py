"""The HTTP client under the attempts, against the emulator over real sockets."""

from __future__ import annotations

from router.providers.base import HTTPRequest
from router.transport import HttpClient, decode_json

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _chat(url: str) -> HTTPRequest:
    return HTTPRequest(
        method="POST",
        url=url,
        headers={"Authorization": "Bearer sk-test-0123456789abcdefghij"},
        json=CHAT,
        stream=False,
    )


def test_one_client_alternating_between_two_origins_keeps_working(emulator):
    # One pool per client is kept by urllib3's pool manager: a second origin evicts (and
    # closes) the first one's pool. The client's own lookup must notice, not reuse it.
    local = emulator.base_urls["openai"] + "/chat/completions"
    other = local.replace("127.0.0.1", "localhost")
    client = HttpClient("openai", connect_timeout=5, read_timeout=10, pool=4)
    try:
        for url in (local, other, local, other):
            response = client.send(_chat(url))
            assert response.status_code == 200
            assert decode_json(response, "openai")["choices"][0]["message"]["content"]
    finally:
        client.close()
    assert emulator.counters()["openai"]["ok"] == 4


def test_a_closed_client_opened_again_sends_on_a_new_pool(emulator):
    url = emulator.base_urls["openai"] + "/chat/completions"
    client = HttpClient("openai", connect_timeout=5, read_timeout=10, pool=4)
    assert client.send(_chat(url)).status_code == 200
    client.close()
    assert client.send(_chat(url)).status_code == 200
    client.close()


def test_answers_keep_their_headers_url_and_encoding(emulator):
    url = emulator.base_urls["openai"] + "/chat/completions"
    client = HttpClient("openai", connect_timeout=5, read_timeout=10, pool=4)
    try:
        response = client.send(_chat(url))
    finally:
        client.close()
    assert response.url == url
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["Content-Type"] == response.headers["content-type"]
    assert response.reason == "OK"
    assert response.json()["object"] == "chat.completion"
