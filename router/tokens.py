"""Input token figures: a typical estimate, and a provable upper bound for budgets.

Budgets reserve a request's worst case before it is sent, so the input part must never be
below what the provider bills (``docs/reliability.md``, "The input bound", argues each term).
The argument in one line: OpenAI's and Anthropic's tokenizers are byte-level BPE and Gemini's is
SentencePiece with byte fallback, so every token the provider bills for the request's text
covers at least one UTF-8 byte of it; what is not the caller's text (role markers, block
wrappers, the tool-use preamble) is bounded by per-message, per-part, per-tool and per-request
allowances; images are billed by each provider's documented formula, which has a maximum.

:func:`measure_request` walks the request once (on the caller's thread, in the planner);
:func:`input_token_bound` then prices that measure for one provider type and model, which is a
few additions. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from collections.abc import Iterable
from typing import NamedTuple

from router.models import AIRequest, ImagePart, ProviderType, TextPart

__all__ = [
    "estimate_tokens",
    "estimate_request_tokens",
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "TOOL_OVERHEAD_TOKENS",
    "REPLY_OVERHEAD_TOKENS",
    "RequestMeasure",
    "measure_request",
    "input_token_bound",
    "request_input_bound",
    "image_token_bound",
    "MESSAGE_BOUND_TOKENS",
    "PART_BOUND_TOKENS",
    "TOOL_BOUND_TOKENS",
    "REQUEST_BOUND_TOKENS",
    "COMPATIBLE_REQUEST_BOUND_TOKENS",
    "TOOLS_PREAMBLE_BOUND_TOKENS",
]

#: Per message: the role marker and separators the provider's template puts around it
#: (OpenAI documents 3, +1 for a ``name``; Gemma-style turn markers are 4-5).
MESSAGE_BOUND_TOKENS = 10
#: Per content part, tool call and tool result inside a message: the block's wrapper, and the
#: one token a SentencePiece segment may start with that covers no byte (the dummy prefix).
PART_BOUND_TOKENS = 10
#: Per tool definition, on top of its JSON: the declaration's framing.
TOOL_BOUND_TOKENS = 16
#: Per request: reply priming (OpenAI documents 3) and the system/turn scaffolding.
REQUEST_BOUND_TOKENS = 16
#: Per request on an OpenAI-compatible server, which renders the model's own chat template:
#: some add a default system prompt.
COMPATIBLE_REQUEST_BOUND_TOKENS = 256
#: Once per request that carries tools: the tool-use system prompt the provider adds. Anthropic
#: documents it per model (at most 530 tokens, Claude 3 Opus with ``tool_choice`` auto); the
#: others do not publish theirs, which render the declarations compactly (OpenAI as a
#: TypeScript-like namespace), and get a generous constant.
TOOLS_PREAMBLE_BOUND_TOKENS = {
    ProviderType.OPENAI: 200,
    ProviderType.ANTHROPIC: 600,
    ProviderType.GOOGLE: 200,
    ProviderType.OPENAI_COMPATIBLE: 600,
}

#: The typical estimate's figures (not bounds): tokens per image, per message, per tool on top
#: of its JSON definition, and once per request.
IMAGE_TOKENS = 1600
MESSAGE_OVERHEAD_TOKENS = 4
TOOL_OVERHEAD_TOKENS = 8
REPLY_OVERHEAD_TOKENS = 3

# --- images --------------------------------------------------------------------------------

#: Anthropic: ``width × height / 750`` tokens, and an image over ~1,600 tokens is scaled down
#: first (its long edge to 1,568 px, at most ~1.15 megapixels) — so never more than 1,600.
ANTHROPIC_IMAGE_MAX = 1600

# OpenAI tile-based models: the image is scaled to fit 2048×2048, then its short side to 768,
# and billed base + per_tile × 512-px tiles: at most 2 × 4 = 8 tiles. ``detail: low`` is the
# base alone. Patch-based models: at most 1,536 32-px patches × a per-model multiplier.
_OPENAI_TILES = {
    "gpt-4o-mini": (2833, 5667),
    "gpt-4o": (85, 170),
    "chatgpt-4o-latest": (85, 170),
    "gpt-4.1": (85, 170),
    "gpt-4.5-preview": (85, 170),
    "gpt-4-turbo": (85, 170),
    "gpt-5": (70, 140),
    "gpt-5-chat-latest": (70, 140),
    "o1": (75, 150),
    "o1-pro": (75, 150),
    "o3": (75, 150),
}
_OPENAI_PATCH_MULTIPLIER = {
    "gpt-4.1-mini": 1.62,
    "gpt-4.1-nano": 2.46,
    "gpt-5-mini": 1.62,
    "gpt-5-nano": 2.46,
    "o4-mini": 1.72,
}
_OPENAI_MAX_TILES = 8
_OPENAI_MAX_PATCHES = 1536
#: A model the tables above do not list (or an OpenAI-compatible server): the largest of them.
OPENAI_IMAGE_MAX = 2833 + _OPENAI_MAX_TILES * 5667
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")

# Gemini: an image with both sides <= 384 px is 258 tokens; a larger one is cut into square
# tiles of ``min(w, h) / 1.5`` px, clamped to 256..768, each 258 tokens. Gemini 3 bills an
# image by its media resolution instead, 1,120 tokens at the default (high). Without the
# dimensions (a URL, or bytes we cannot read) the image is taken as 3,072 px square tiled at
# the smallest unit.
_GEMINI_TILE = 258
_GEMINI_HIGH_RESOLUTION = 1120
GEMINI_UNKNOWN_IMAGE = _GEMINI_TILE * math.ceil(3072 / 256) ** 2


class RequestMeasure(NamedTuple):
    """What the input figures need to know about a request, measured in one walk."""

    #: The typical estimate (:func:`estimate_request_tokens`).
    typical: int
    #: The bound's part every provider shares: UTF-8 bytes of every string a provider turns
    #: into tokens (message text, names, tool-call ids, names and arguments, tool definitions
    #: as JSON, provider data), the JSON re-rendering allowance (one token per structural
    #: character of tool definitions and arguments), and the per-message and per-part
    #: allowances.
    core: int
    tools: int
    images: tuple[ImagePart, ...]


def measure_request(request: AIRequest) -> RequestMeasure:
    """Walk ``request`` once: its typical estimate and what :func:`input_token_bound` needs."""
    messages = request.messages
    typical = REPLY_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(messages)
    text = allowance = 0
    parts = len(messages)
    images: list[ImagePart] | None = None
    for message in messages:
        content = message.content
        if content.__class__ is str:
            if content.isascii():  # the common case, O(1) to test
                text += len(content)
                typical += -(-len(content) // 4)
            else:
                text += len(content.encode("utf-8", "surrogatepass"))
                typical += estimate_tokens(content)
        elif content:
            parts += len(content) - 1
            for part in content:
                if isinstance(part, TextPart):
                    text += _utf8(part.text)
                else:
                    images = images or []
                    images.append(part)
            typical += estimate_tokens(message.text())
        if message.name:
            text += _utf8(message.name)
        if message.tool_call_id:
            text += _utf8(message.tool_call_id)
        if message.provider_data:
            text += _json_bytes(message.provider_data)
        if message.tool_calls:
            for call in message.tool_calls:
                parts += 1
                arguments = call.function.arguments
                text += _utf8(call.id) + _utf8(call.function.name) + _utf8(arguments)
                allowance += _json_allowance(arguments)
                typical += estimate_tokens(call.function.name) + estimate_tokens(arguments)
                if call.provider_data:
                    text += _json_bytes(call.provider_data)
    for tool in request.tools:
        definition = json.dumps(
            {"name": tool.name, "description": tool.description, "parameters": tool.inputSchema},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        text += _utf8(definition)
        allowance += _json_allowance(definition)
        typical += TOOL_OVERHEAD_TOKENS + estimate_tokens(definition)
    tools = len(request.tools)
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        # A schema is sent as the provider's structured-output setting or, where that is
        # missing, as a forced tool: counted like one more tool definition.
        fmt = response_format.json_schema
        definition = json.dumps(
            fmt.model_dump(by_alias=True) if fmt is not None else {"type": "json_object"},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        text += _utf8(definition)
        allowance += _json_allowance(definition)
        tools += 1
    core = text + allowance + MESSAGE_BOUND_TOKENS * len(messages) + PART_BOUND_TOKENS * parts
    if images is None:
        return RequestMeasure(typical, core, tools, ())
    typical += IMAGE_TOKENS * len(images)
    return RequestMeasure(typical, core, tools, tuple(images))


def estimate_tokens(text: str) -> int:
    """A fast token estimate for ``text`` (typical, not a bound).

    ASCII text: one token per 4 characters, rounded up (English prose averages about 4 characters
    per token in every provider's tokenizer). Each non-ASCII character counts as one token, since
    CJK and other scripts run close to a token per character.
    """
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def estimate_request_tokens(request: AIRequest) -> int:
    """A typical estimate of the input tokens ``request`` will be billed for.

    Sums :func:`estimate_tokens` of every message's text and tool-call arguments,
    :data:`MESSAGE_OVERHEAD_TOKENS` per message, :data:`IMAGE_TOKENS` per image, each tool's JSON
    definition (name, description, input schema) plus :data:`TOOL_OVERHEAD_TOKENS`, and
    :data:`REPLY_OVERHEAD_TOKENS` once. Used where a typical figure is right (context-window
    check, rpm/tpm windows, the cost strategy's ranking); budgets reserve
    :func:`input_token_bound` instead, which this can be far below.
    """
    return measure_request(request).typical


def input_token_bound(measure: RequestMeasure, provider_type: ProviderType, model: str) -> int:
    """The most input tokens ``provider_type`` can bill for the measured request on ``model``."""
    # Identity tests, not dict lookups: hashing an Enum member runs Python code.
    compatible = provider_type is ProviderType.OPENAI_COMPATIBLE
    total = measure.core + (COMPATIBLE_REQUEST_BOUND_TOKENS if compatible else REQUEST_BOUND_TOKENS)
    if measure.tools:
        total += TOOL_BOUND_TOKENS * measure.tools + TOOLS_PREAMBLE_BOUND_TOKENS[provider_type]
    for image in measure.images:
        total += image_token_bound(image, provider_type, model)
    return total


def request_input_bound(request: AIRequest, provider_type: ProviderType | str, model: str) -> int:
    """:func:`input_token_bound` of :func:`measure_request` (for one-off use)."""
    return input_token_bound(measure_request(request), ProviderType(provider_type), model)


def image_token_bound(image: ImagePart, provider_type: ProviderType, model: str) -> int:
    """The most tokens ``provider_type`` bills for ``image`` on ``model`` (documented formulas)."""
    if provider_type is ProviderType.ANTHROPIC:
        return ANTHROPIC_IMAGE_MAX
    if provider_type is ProviderType.GOOGLE:
        return _gemini_image(image.image_url.url)
    name = _DATED.sub("", model)
    multiplier = _OPENAI_PATCH_MULTIPLIER.get(name)
    if multiplier is not None and provider_type is ProviderType.OPENAI:
        return math.ceil(_OPENAI_MAX_PATCHES * multiplier)
    tiles = _OPENAI_TILES.get(name) if provider_type is ProviderType.OPENAI else None
    if tiles is None:
        return OPENAI_IMAGE_MAX
    base, per_tile = tiles
    if image.image_url.detail == "low":
        return base
    return base + _OPENAI_MAX_TILES * per_tile


def _gemini_image(url: str) -> int:
    size = _data_url_size(url)
    if size is None:
        return GEMINI_UNKNOWN_IMAGE
    width, height = size
    if width <= 384 and height <= 384:
        tiles = 1
    else:
        unit = min(768, max(256, int(min(width, height) / 1.5)))
        tiles = math.ceil(width / unit) * math.ceil(height / unit)
    return max(_GEMINI_TILE * tiles, _GEMINI_HIGH_RESOLUTION)


# --- helpers -------------------------------------------------------------------------------


def _utf8(text: str) -> int:
    # ASCII text (the common case) is one byte per character; isascii() is O(1) in CPython.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_bytes(value: object) -> int:
    return _utf8(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _json_allowance(text: str) -> int:
    # A provider may re-render JSON pretty-printed: a newline-and-indent before each member
    # and each closing bracket, a space after each colon. Each is at most one more token.
    return sum(text.count(c) for c in "{[,:") + text.count("{") + text.count("[")


def _data_url_size(url: str) -> tuple[int, int] | None:
    """Width and height of a base64 ``data:`` image (PNG, GIF, WebP, JPEG), else None."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",")
    if comma < 0 or ";base64" not in url[:comma]:
        return None
    encoded = url[comma + 1 : comma + 1 + 262_144]  # headers (and JPEG's EXIF) come first
    encoded = encoded[: len(encoded) // 4 * 4]
    try:
        head = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        return None
    return _image_size(head)


def _image_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        index += 2 + length
    return None


_JPEG_FRAMES: Iterable[int] = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
