"""Strict checks of request bodies against the official SDKs' request types.

The openai and anthropic SDKs describe request bodies as ``TypedDict``s (pydantic ignores
unknown keys in those, so it cannot say "this key does not exist"); :func:`check_typed` walks
the type hints itself: unknown keys, missing required keys, wrong literals and wrong JSON types
are all errors. google-genai's types are pydantic models with ``extra="forbid"`` and camelCase
aliases, so they validate themselves.
"""

from __future__ import annotations

import collections.abc
import functools
import types
import typing
from typing import Any

from typing_extensions import is_typeddict

__all__ = ["check_typed", "check_openai", "check_anthropic", "check_gemini"]

# In the official Messages API spec (CreateMessageParams) but no longer in the anthropic 2.x
# SDK's MessageCreateParams (the SDK dropped the sampling parameters).
ANTHROPIC_SPEC_ONLY = frozenset({"temperature", "top_p", "top_k"})


@functools.cache
def _hints(tp: Any) -> dict[str, Any]:
    return typing.get_type_hints(tp, include_extras=True)


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    while origin in (typing.Required, typing.NotRequired, typing.Annotated) or (
        origin is not None and getattr(origin, "__name__", "") in ("Required", "NotRequired")
    ):
        tp = typing.get_args(tp)[0]
        origin = typing.get_origin(tp)
    return tp


def check_typed(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Problems of ``value`` against type ``tp`` (empty when it conforms)."""
    tp = _unwrap(tp)
    if tp is Any or tp is object:
        return []
    if tp is None or tp is type(None):
        return [] if value is None else [f"{path}: expected null"]
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {tp.__name__}"]
        hints = _hints(tp)
        problems = [
            f"{path}.{key}: unknown key in {tp.__name__}" for key in value if key not in hints
        ]
        # The SDKs mark required keys with Required[...] in string annotations, which
        # TypedDict's own __required_keys__ does not see.
        required = {
            key
            for key, hint in hints.items()
            if typing.get_origin(hint) is typing.Required
            or (key in tp.__required_keys__ and typing.get_origin(hint) is not typing.NotRequired)
        }
        problems += [
            f"{path}.{key}: required by {tp.__name__}" for key in required if key not in value
        ]
        for key, item in value.items():
            if key in hints:
                problems += check_typed(item, hints[key], f"{path}.{key}")
        return problems
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        attempts = [check_typed(value, arg, path) for arg in args]
        if any(not problems for problems in attempts):
            return []
        return min(attempts, key=len)
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        if args:
            return [p for k, v in value.items() for p in check_typed(v, args[1], f"{path}.{k}")]
        return []
    if origin in (
        list,
        tuple,
        collections.abc.Iterable,
        collections.abc.Sequence,
        typing.Iterable,
        typing.Sequence,
    ):
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        item_type = args[0] if args else Any
        return [p for i, v in enumerate(value) for p in check_typed(v, item_type, f"{path}[{i}]")]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string"]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer"]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number"]
    if isinstance(tp, type):
        # e.g. the SDK's response models (``ContentBlock``), which it also accepts as input:
        # a dict the router built is not one of those.
        return [] if isinstance(value, tp) else [f"{path}: not a {tp.__name__}"]
    return []  # anything else (type variables, file types) is not used by the router


def check_openai(body: dict[str, Any]) -> list[str]:
    """``body`` against openai's ``CompletionCreateParams`` (streaming or not)."""
    from openai.types.chat import completion_create_params as params

    kind = params.CompletionCreateParamsStreaming if body.get("stream") else None
    kind = kind or params.CompletionCreateParamsNonStreaming
    return check_typed(body, kind)


def check_anthropic(body: dict[str, Any]) -> list[str]:
    """``body`` against anthropic's ``MessageCreateParams`` (plus the spec-only sampling keys)."""
    from anthropic.types import message_create_params as params

    kind = params.MessageCreateParamsStreaming if body.get("stream") else None
    kind = kind or params.MessageCreateParamsNonStreaming
    rest = {key: value for key, value in body.items() if key not in ANTHROPIC_SPEC_ONLY}
    problems = check_typed(rest, kind)
    for key in ("temperature", "top_p", "top_k"):
        if key in body and not isinstance(body[key], int | float):
            problems.append(f"$.{key}: expected a number")
    return problems


def check_gemini(body: dict[str, Any]) -> list[str]:
    """``body`` (a ``generateContent`` request) against google-genai's types: the contents as
    ``Content``, and the generation config, system instruction, tools and tool config together
    as one ``GenerateContentConfig`` (the SDK's flattened form of the same fields)."""
    from google.genai import types as gtypes
    from pydantic import ValidationError

    problems = []
    known = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    problems += [f"$.{key}: unknown key" for key in body if key not in known]
    config = dict(body.get("generationConfig") or {})
    for key in ("systemInstruction", "tools", "toolConfig"):
        if key in body:
            config[key] = body[key]
    try:
        gtypes.GenerateContentConfig.model_validate(config)
        for content in body.get("contents") or []:
            gtypes.Content.model_validate(content)
    except ValidationError as exc:
        problems += [
            f"$.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
    return problems
