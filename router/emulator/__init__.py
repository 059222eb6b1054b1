"""A local server that speaks the OpenAI, Anthropic and Gemini wire protocols, with faults.

It plays the *other* side of the wire for tests, the demo and benchmarks, and imports
nothing from the router's runtime. See ``docs/emulator.md``.
"""

import logging

from .answers import reply_text
from .config import EmulatorConfig, load_config
from .faults import KINDS as FAULT_KINDS
from .server import DEFAULT_MODELS, EmulatorServer, serve_forever
from .tokenizer import count_tokens

__all__ = [
    "DEFAULT_MODELS",
    "FAULT_KINDS",
    "EmulatorConfig",
    "EmulatorServer",
    "count_tokens",
    "load_config",
    "reply_text",
    "serve_forever",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
