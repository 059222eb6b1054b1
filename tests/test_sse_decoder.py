"""``router.transport.SSEDecoder`` agrees with sseclient-py, however the bytes arrive.

The runtime decodes streams with the push-style ``SSEDecoder`` (commit 132e90c); sseclient-py
(``wire.sse_events``) is kept as the reference. Every recorded SSE body in
``tests/fixtures/wire`` is decoded whole, in pieces of every size from 1 to 64 bytes, and cut
in two at every byte; each way gives sseclient's events. Hand-written bodies cover the framing
the recordings do not: CRLF cut between two reads, CR-only and LF-only lines, comments, named
events, multi-line data, a bare ``data`` field, an event without data, a last event without
its blank line, and data that is not UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import pytest
from wire import WIRE, decoded_events, load, sse_events

from router.errors import MalformedResponseError
from router.transport import SSEDecoder

PROVIDERS = ("openai", "anthropic", "gemini")


def _recorded_bodies() -> list[tuple[str, bytes]]:
    """``(id, body)`` of every recorded 2xx ``text/event-stream`` answer."""
    bodies = []
    for provider in PROVIDERS:
        for path in sorted((WIRE / provider).glob("*.yaml")):
            for number, interaction in enumerate(load(provider, path.stem)):
                if interaction.status == 200 and "event-stream" in interaction.content_type:
                    bodies.append((f"{provider}/{path.stem}#{number}", interaction.body))
    return bodies


BODIES = _recorded_bodies()
IDS = [name for name, _ in BODIES]


@cache
def reference(body: bytes) -> list[tuple[str, str]]:
    """What sseclient-py makes of ``body`` given whole."""
    return sse_events(body)


def decode(pieces: Iterable[bytes]) -> list[tuple[str, str]]:
    """Feed ``pieces`` one by one to a decoder; every event returned, ``finish()``'s included."""
    decoder = SSEDecoder("test")
    events: list[tuple[str, str]] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.finish())
    return events


def pieces(body: bytes, size: int) -> list[bytes]:
    return [body[start : start + size] for start in range(0, len(body), size)]


# --- recorded bodies -----------------------------------------------------------------------


def test_the_recordings_hold_sse_bodies_of_every_provider_and_framing():
    assert len(BODIES) >= 15
    assert {name.split("/")[0] for name in IDS} == set(PROVIDERS)
    assert any(b"\r\n" in body for _, body in BODIES)  # Gemini's CRLF framing
    assert any(b"\r" not in body for _, body in BODIES)  # OpenAI's and Anthropic's LF


@pytest.mark.parametrize("body", [body for _, body in BODIES], ids=IDS)
def test_a_recorded_body_fed_whole_gives_sseclients_events(body):
    expected = reference(body)
    assert expected  # every recorded stream has events
    assert decode([body]) == expected


@pytest.mark.parametrize("body", [body for _, body in BODIES], ids=IDS)
def test_a_recorded_body_in_pieces_of_every_size_gives_sseclients_events(body):
    expected = reference(body)
    for size in range(1, 65):
        assert decode(pieces(body, size)) == expected, f"pieces of {size} bytes"
    # The helper the provider tests' ``run_stream`` feeds their parsers with.
    assert decoded_events(body) == decoded_events(body, 5) == expected
    # sseclient-py itself does not depend on how the bytes arrive either.
    for size in (1, 7, 64):
        assert sse_events(body, size) == expected


@pytest.mark.parametrize("body", [body for _, body in BODIES], ids=IDS)
def test_a_recorded_body_cut_in_two_at_every_byte_gives_sseclients_events(body):
    expected = reference(body)
    for cut in range(len(body) + 1):
        assert decode([body[:cut], body[cut:]]) == expected, f"cut at byte {cut}"


# --- hand-written framing ------------------------------------------------------------------


def test_crlf_cut_between_two_reads_ends_the_event_once():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r\n") == [("message", "a")]
    assert decoder.feed(b"data: b\r\n\r") == []  # the CR may be the start of a CRLF
    assert decoder.feed(b"\n") == [("message", "b")]
    assert decoder.finish() == []
    assert decode([b"data: a\r", b"\n\r\n"]) == sse_events(b"data: a\r\n\r\n", 8)


@pytest.mark.parametrize(
    "body",
    [
        b"data: one\r\rdata: two\r\r",
        b"event: first\rdata: x\rdata: y\r\r: comment\rdata: z\r\r",
    ],
    ids=["two-events", "names-multiline-comment"],
)
def test_cr_only_line_endings(body):
    expected = sse_events(body)
    assert decode([body]) == expected
    assert decode(pieces(body, 1)) == expected
    for cut in range(len(body) + 1):
        assert decode([body[:cut], body[cut:]]) == expected


def test_cr_only_line_endings_values():
    assert decode([b"data: one\r\rdata: two\r\r"]) == [("message", "one"), ("message", "two")]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\r") == []
    assert decoder.feed(b"\r") == []  # a CR at the end of a read waits for the next byte
    assert decoder.feed(b"data: two\r\r") == [("message", "one")]
    assert decoder.finish() == [("message", "two")]


def test_lf_only_line_endings():
    body = b"data: one\n\nevent: named\ndata: two\n\n"
    assert decode([body]) == [("message", "one"), ("named", "two")] == sse_events(body)
    assert decode(pieces(body, 1)) == sse_events(body)


def test_comments_are_ignored():
    body = b": ping\n\n:another comment\ndata: kept\n: in between\n\n: ping\n\n"
    assert decode([body]) == [("message", "kept")] == sse_events(body)


def test_event_names():
    body = (
        b"event: message_start\ndata: {}\n\n"
        b"event:no-space\ndata: x\n\n"
        b"event:\ndata: default\n\n"
        b"data: last name wins\nevent: a\nevent: b\n\n"
    )
    expected = [
        ("message_start", "{}"),
        ("no-space", "x"),
        ("message", "default"),
        ("b", "last name wins"),
    ]
    assert decode([body]) == expected == sse_events(body)


def test_multi_line_data_is_joined_with_lf():
    body = b"data: first\ndata:second\ndata:  third\ndata: \n\n"
    expected = [("message", "first\nsecond\n third\n")]
    assert decode([body]) == expected == sse_events(body)
    crlf = body.replace(b"\n", b"\r\n")
    assert decode(pieces(crlf, 3)) == expected == sse_events(crlf)


def test_data_without_a_colon_is_an_empty_line_of_data():
    body = b"data\n\ndata\ndata: x\n\n"
    expected = [("message", ""), ("message", "\nx")]
    assert decode([body]) == expected == sse_events(body)


def test_an_event_without_data_is_not_dispatched():
    body = b"event: lonely\n\nid: 7\nretry: 100\n\nevent: named\nid: 8\ndata: yes\n\n"
    assert decode([body]) == [("named", "yes")] == sse_events(body)
    decoder = SSEDecoder()
    assert decoder.feed(b"event: nothing\n\n") == []
    assert decoder.finish() == []


def test_a_last_event_without_its_blank_line_comes_from_finish():
    for body in (
        b"data: a\n\ndata: tail",
        b"data: a\n\ndata: tail\n",
        b"data: a\r\n\r\ndata: tail\r",
    ):
        decoder = SSEDecoder()
        assert decoder.feed(body) == [("message", "a")]
        assert decoder.finish() == [("message", "tail")]
        assert decode([body]) == sse_events(body)  # as sseclient-py does
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n\n") == [("message", "a")]
    assert decoder.finish() == []  # only blank lines left: nothing
    assert decoder.finish() == []  # and finish() is repeatable


def test_data_that_is_not_utf8_is_a_malformed_response():
    decoder = SSEDecoder("openai")
    assert decoder.feed(b"data: caf\xc3") == []  # a character cut between reads is fine
    assert decoder.feed(b"\xa9\n\n") == [("message", "caf\u00e9")]
    with pytest.raises(MalformedResponseError) as caught:
        decoder.feed(b'data: {"text": "\xff\xfe"}\n\n')
    assert caught.value.provider == "openai"
    with pytest.raises(MalformedResponseError):
        decode([b"data: ok\n\ndata: \xc3\x28\n\n"])
    with pytest.raises(MalformedResponseError):
        decode([b"data: trailing \xe2\x82"])  # from finish()
