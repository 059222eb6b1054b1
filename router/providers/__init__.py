"""Pure wire adapters, one module per provider protocol.

``get_adapter(ProviderType.X)`` gives the stateless adapter for a protocol; the runtime sends
the :class:`HTTPRequest` it builds and hands the answer back to it to parse.
"""

from __future__ import annotations

from router.models import ProviderType
from router.providers.base import (
    HTTPRequest,
    ProviderAdapter,
    StreamAccumulator,
    StreamParser,
    assemble_stream,
)

__all__ = [
    "HTTPRequest",
    "ProviderAdapter",
    "StreamAccumulator",
    "StreamParser",
    "assemble_stream",
    "get_adapter",
]


def get_adapter(provider_type: ProviderType) -> ProviderAdapter:
    """The adapter that speaks ``provider_type``'s wire protocol."""
    # Imported here so that loading one adapter does not pull in the others' modules first.
    if provider_type is ProviderType.OPENAI:
        from router.providers.openai import OPENAI

        return OPENAI
    if provider_type is ProviderType.OPENAI_COMPATIBLE:
        from router.providers.openai import OPENAI_COMPATIBLE

        return OPENAI_COMPATIBLE
    if provider_type is ProviderType.ANTHROPIC:
        from router.providers.anthropic import ANTHROPIC

        return ANTHROPIC
    if provider_type is ProviderType.GOOGLE:
        from router.providers.google import GOOGLE

        return GOOGLE
    raise ValueError(f"no wire adapter for provider type {provider_type!r}")
