"""What the emulator answers, independent of any wire format.

Each protocol module reads its request into a :class:`Conversation`; :func:`answer` turns it
into an :class:`Answer` by these rules, in order:

1. **Tool results.** When the last turn carries tool results (OpenAI trailing ``tool``
   messages, an Anthropic user turn with ``tool_result`` blocks, a Gemini user turn with
   ``functionResponse`` parts), the answer is the text ``"Tool results: " + "; ".join(results)``
   where each result is the result's text (text blocks joined with a space; a Gemini response
   object with a single string value is unwrapped, any other object is compact JSON with
   sorted keys). Except when a result asks for another call: the words ``call NAME`` (any case)
   naming an offered tool make the emulator call that tool (rule 2's arguments and parallel
   rules), the way a model follows a tool's hint; this is how multi-turn agent loops are
   played.
2. **Tool calls.** When the request carries tools and tool use is not switched off, the
   emulator calls every tool whose name appears in the last user message (as a whole word,
   in order of first appearance; only the first one when parallel calls are disabled). When
   ``tool_choice`` requires a tool (OpenAI ``required`` or a named function, Anthropic
   ``any``/``tool``, Gemini ``ANY``) but none is named, it calls the forced tool, or else the
   first allowed tool. Arguments come from :func:`router.emulator.arguments.example_arguments`.
3. **Echo.** Otherwise the text is :func:`reply_text` of the last user message's text
   (text parts joined with ``"\\n"``): ``"Echo: " + prompt``.
4. **JSON.** When the request asks for JSON (OpenAI ``response_format``, Anthropic
   ``output_config.format``, Gemini ``responseMimeType: application/json``), the text of rules
   1 and 3 becomes compact JSON instead: the schema's example value
   (:func:`router.emulator.arguments.example_arguments`, which satisfies the schema) or,
   without a schema, ``{"answer": <text>}``.
5. **Thinking.** When the request asks the model to think, the answer also carries the thought
   ``"Thinking about: " + prompt`` (its tokens count as output and as reasoning tokens).

Text is cut after ``max_tokens`` tokens (see :mod:`router.emulator.tokenizer`), and the finish
reason becomes "length". Tool calls are never cut.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .arguments import example_arguments
from .tokenizer import count_tokens, truncate

ECHO_PREFIX = "Echo: "
TOOL_RESULTS_PREFIX = "Tool results: "
THINKING_PREFIX = "Thinking about: "


@dataclass(frozen=True)
class ToolSpec:
    """A tool the request offers: its name and JSON-ish input schema."""

    name: str
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Conversation:
    """The provider-neutral facts of a request that decide the answer."""

    last_user_text: str = ""
    tool_results: tuple[str, ...] | None = None
    tools: tuple[ToolSpec, ...] = ()
    # "auto", "none", "required" (any tool) or "named" (one of ``forced``)
    tool_choice: str = "auto"
    forced: tuple[str, ...] = ()
    parallel: bool = True
    max_tokens: int | None = None
    prompt_tokens: int = 0
    json_answer: bool = False
    json_schema: dict[str, Any] | None = None
    thinking: bool = False


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an answer."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        """Arguments as compact JSON, the way OpenAI and Anthropic send them."""
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Answer:
    """The emulator's reply: either text or tool calls, with a neutral finish reason."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()
    finish: str = "stop"  # "stop" | "length" | "tool_calls"
    output_tokens: int = 0  # includes reasoning_tokens
    thinking: str = ""
    reasoning_tokens: int = 0


def reply_text(prompt: str, max_tokens: int | None = None) -> str:
    """The deterministic answer to a plain prompt: ``"Echo: " + prompt``, cut to ``max_tokens``."""
    return truncate(ECHO_PREFIX + prompt, max_tokens)[0]


def tool_result_text(value: Any) -> str:
    """The text of one tool result as the emulator quotes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [tool_result_text(item) for item in value]
        return " ".join(t for t in texts if t)
    if isinstance(value, dict):
        if value.get("type") == "text" and isinstance(value.get("text"), str):
            return value["text"]
        if len(value) == 1:
            (only,) = value.values()
            if isinstance(only, str):
                return only
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def answer(conv: Conversation) -> Answer:
    """Decide the answer to a conversation (rules in the module docstring)."""
    thinking = THINKING_PREFIX + conv.last_user_text if conv.thinking else ""
    if conv.tool_results is not None:
        calls = _chained_calls(conv)
        if not calls:
            full = TOOL_RESULTS_PREFIX + "; ".join(conv.tool_results)
            return _text_answer(_json_text(conv, full), conv.max_tokens, thinking)
    else:
        calls = _tool_calls(conv)
    if calls:
        tokens = sum(count_tokens(c.name) + count_tokens(c.arguments_json) for c in calls)
        thought = count_tokens(thinking)
        return Answer(
            calls=tuple(calls),
            finish="tool_calls",
            output_tokens=tokens + thought,
            thinking=thinking,
            reasoning_tokens=thought,
        )
    full = ECHO_PREFIX + conv.last_user_text
    return _text_answer(_json_text(conv, full), conv.max_tokens, thinking)


def _json_text(conv: Conversation, text: str) -> str:
    if not conv.json_answer:
        return text
    value: Any = {"answer": text}
    if conv.json_schema is not None:
        value = example_arguments(conv.json_schema)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text_answer(full: str, max_tokens: int | None, thinking: str = "") -> Answer:
    text, cut = truncate(full, max_tokens)
    thought = count_tokens(thinking)
    return Answer(
        text=text,
        finish="length" if cut else "stop",
        output_tokens=count_tokens(text) + thought,
        thinking=thinking,
        reasoning_tokens=thought,
    )


def _tool_calls(conv: Conversation) -> list[ToolCall]:
    if not conv.tools or conv.tool_choice == "none":
        return []
    by_name = {tool.name: tool for tool in conv.tools}
    allowed = [t.name for t in conv.tools]
    if conv.tool_choice == "named" and conv.forced:
        allowed = [name for name in conv.forced if name in by_name] or allowed
    named = _named_in(conv.last_user_text, allowed)
    if not named and conv.tool_choice in ("required", "named"):
        named = allowed[:1]
    if not conv.parallel:
        named = named[:1]
    return [ToolCall(name, example_arguments(by_name[name].schema)) for name in named]


def _chained_calls(conv: Conversation) -> list[ToolCall]:
    """Tools a tool result asks for with ``call NAME``."""
    if not conv.tools or conv.tool_choice == "none" or not conv.tool_results:
        return []
    text = " ".join(conv.tool_results)
    found: list[tuple[int, str]] = []
    for tool in conv.tools:
        match = re.search(r"(?i:\bcall)\s+" + re.escape(tool.name) + r"(?![\w-])", text)
        if match:
            found.append((match.start(), tool.name))
    by_name = {tool.name: tool for tool in conv.tools}
    named = [name for _, name in sorted(found)]
    if not conv.parallel:
        named = named[:1]
    return [ToolCall(name, example_arguments(by_name[name].schema)) for name in named]


def _named_in(text: str, names: list[str]) -> list[str]:
    found: list[tuple[int, str]] = []
    for name in names:
        # Whole-word match; tool names may contain "-" or "." so \b alone is not enough.
        match = re.search(r"(?<![\w.-])" + re.escape(name) + r"(?![\w-])", text)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]
