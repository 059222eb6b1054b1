"""A streamed answer as the body of an SSE response, whatever the door.

A door supplies an :class:`Events` (how its protocol writes a chunk, and an error); the
:class:`EventStream` iterates the router's stream, one chunk's events per item so the server
flushes each, and guarantees the stream never ends silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from router.bridge.wire import Secrets, log_unexpected
from router.errors import RouterError
from router.models import StreamChunk

__all__ = ["EventStream", "Events", "Finished"]

# outcome ("success", "error", "cancelled"), the final chunk (on success), the error type.
Finished = Callable[[str, StreamChunk | None, str | None], None]


class Events:
    """How one door renders chunks and errors as SSE bytes."""

    #: The door's events open with something of their own before the first chunk (see
    #: :meth:`prelude`): the bridge may answer as soon as a provider accepts the stream.
    opens_early = False

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets

    def prelude(self, model: str | None) -> bytes:
        """The events sent before the first chunk when :attr:`opens_early`; ``model`` is the
        model the accepting provider was asked for (None if unknown)."""
        return b""

    def chunk(self, chunk: StreamChunk) -> bytes:
        raise NotImplementedError

    def error(self, error: dict[str, Any]) -> bytes:
        """``error`` is the router's error object (``type``, ``message``, ``provider``...)."""
        raise NotImplementedError

    def dumps(self, value: Any, *, scrub: bool = False) -> str:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return self.secrets.scrub(text) if scrub else text


class EventStream:
    """The body of an SSE response: one chunk's events per iteration, so each is flushed.

    A stream never ends silently: it ends with the final chunk's events or an error event.
    The WSGI server calls :meth:`close` when the response ends or the client goes away; an
    unfinished stream is then cancelled upstream (the tokens seen so far are still billed).
    """

    def __init__(
        self,
        stream: Any,
        first: StreamChunk | None,
        events: Events,
        finished: Finished,
        prelude: bytes = b"",
    ) -> None:
        self._stream = stream
        self._pending: StreamChunk | None = first  # None: the first comes from the stream
        self._prelude = prelude  # sent before any chunk
        self._events = events
        self._finished = finished
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        if self._prelude:
            data, self._prelude = self._prelude, b""
            return data
        chunk, self._pending = self._pending, None
        if chunk is None:
            try:
                chunk = next(self._stream)
            except StopIteration:
                return self._fail(
                    {
                        "type": "StreamInterruptedError",
                        "message": "the stream ended without a final chunk",
                    }
                )
            except RouterError as error:
                return self._fail(error.to_dict())
            except Exception as error:
                log_unexpected(self._events.secrets, "a stream", error)
                return self._fail(
                    {"type": "InternalError", "message": "internal error; see the server log"}
                )
        if chunk.error is not None:
            payload: dict[str, Any] = {
                "type": chunk.error_type or "RouterError",
                "message": chunk.error,
            }
            if chunk.provider_name:
                payload["provider"] = chunk.provider_name
            return self._fail(payload)
        data = self._events.chunk(chunk)
        if chunk.is_complete:
            self._done = True
            self._finished("success", chunk, None)
        return data

    def _fail(self, error: dict[str, Any]) -> bytes:
        self._done = True
        self._finished("error", None, str(error.get("type")))
        return self._events.error(error)

    def close(self) -> None:
        """Called by the WSGI server at the end of the response or on a disconnect."""
        if not self._done:
            self._done = True
            self._stream.close()
            self._finished("cancelled", None, None)
