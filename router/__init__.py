"""router: one dependable chat service over Anthropic, OpenAI and Gemini.

The public face is small: :class:`AIProviderManager` (futures, streams, stats) and
:func:`load_config`. Request and response values live in :mod:`router.models`, errors in
:mod:`router.errors`. Heavy modules are imported on first use so ``import router`` stays fast.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AIProviderManager", "load_config", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from router.config import load_config
    from router.manager import AIProviderManager


def __getattr__(name: str) -> Any:
    if name == "AIProviderManager":
        from router.manager import AIProviderManager

        return AIProviderManager
    if name == "load_config":
        from router.config import load_config

        return load_config
    raise AttributeError(f"module 'router' has no attribute {name!r}")
