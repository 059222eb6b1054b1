"""A cached answer played back as a stream, for ``stream_request`` hits.

The chunks are what a live stream of the same answer would deliver, at once: the reasoning (if
any) in one chunk, the text in one chunk, each tool call as one delta with its whole arguments, then the final chunk (finish
reason, usage, ``cost`` 0, who served). It behaves like :class:`~router.streams.ChunkStream`
(iterate, ``future``, ``close``, ``with``) and says ``cached = True``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator

import pykka

from router.models import AIResponse, StreamChunk, ToolCallDelta

__all__ = ["ReplayStream", "replay_chunks"]


def replay_chunks(response: AIResponse) -> list[StreamChunk]:
    """The chunks of a stream that delivers ``response``."""
    who = {
        "provider": response.provider,
        "provider_name": response.provider_name,
        "model": response.model,
    }
    chunks = []
    if response.reasoning:
        chunks.append(StreamChunk(reasoning=response.reasoning, **who))
    if response.content:
        chunks.append(StreamChunk(content=response.content, **who))
    if response.tool_calls:
        deltas = tuple(
            ToolCallDelta(
                index=index,
                id=call.id,
                name=call.name,
                arguments=json.dumps(call.arguments, separators=(",", ":")),
                provider_data=call.provider_data,
            )
            for index, call in enumerate(response.tool_calls)
        )
        chunks.append(StreamChunk(tool_call_deltas=deltas, **who))
    chunks.append(
        StreamChunk(
            is_complete=True,
            finish_reason=response.finish_reason,
            usage=response.usage,
            cost=response.cost,
            request_id=response.request_id,
            provider_data=response.provider_data,
            parsed=response.parsed,
            dropped_params=response.dropped_params,
            **who,
        )
    )
    return chunks


class ReplayStream:
    """Iterator of the chunks of a cached answer (see the module docstring)."""

    cached = True

    def __init__(self, response: AIResponse) -> None:
        self._chunks = deque(replay_chunks(response))
        self._future: pykka.ThreadingFuture = pykka.ThreadingFuture()
        self._future.set(response)

    @property
    def future(self) -> pykka.ThreadingFuture:
        """Resolved to the cached ``AIResponse``."""
        return self._future

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        if not self._chunks:
            raise StopIteration
        return self._chunks.popleft()

    def close(self) -> None:
        self._chunks.clear()

    def __enter__(self) -> ReplayStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
