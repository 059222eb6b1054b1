"""MCP tool definitions in OpenAI, Anthropic and Gemini tool formats.

An MCP tool carries an ordinary JSON Schema (``inputSchema``). The three providers accept
different things:

- **OpenAI** (and OpenAI-compatible servers; non-strict function calling) and **Anthropic**
  take standard JSON Schema, but the top level must be one object. Both reject ``anyOf``/``oneOf``/``allOf`` at the top level
  (OpenAI: "schema must have type 'object' and not have 'oneOf'/'anyOf'/'allOf'/'enum'/'not' at
  the top level"; Anthropic: "input_schema does not support oneOf, allOf, or anyOf at the top
  level"). Everything below the top level is passed through unchanged (``$defs``/``$ref``,
  ``additionalProperties``, ``$schema`` ... all kept).
- **Gemini** ``functionDeclarations[].parameters`` is the API's own ``Schema`` message, a small
  OpenAPI 3.0 subset. :func:`gemini_schema` rewrites a JSON Schema into exactly the fields of
  that message (v1beta discovery spec, component ``Schema``).

The top level is normalised the same way for every provider (:func:`_normalise_root`):

- a top-level ``$ref`` is resolved; a missing ``type`` becomes ``"object"``;
- a top-level ``anyOf``/``oneOf``/``not`` whose branches only add cross-field rules (e.g.
  ``anyOf: [{required: [body]}, {required: [reaction]}]``) is dropped: the properties and their
  schemas are unchanged, only that one validation rule is no longer visible to the model (the
  MCP server still enforces it);
- a top-level ``allOf`` of objects is merged into one object;
- anything else (a top level that is not an object, or alternative parameter shapes at the top
  level) cannot be expressed: :func:`check_tool` names the problem and :func:`translate_tools`
  raises :class:`~router.errors.ToolTranslationError`. Nothing is silently guessed.

Gemini decisions (each exists because the API rejected the alternative in peers' trackers):

- ``$ref`` (``#/$defs/X``, ``#/definitions/X``, any JSON pointer such as
  ``#/properties/data/properties/children/items``) is inlined. A recursive reference is
  expanded at most :data:`MAX_REF_EXPANSIONS` times on one path (so the model sees one level of
  the recursion), then cut to a free-form node of the target's type whose description says the
  structure repeats. Non-recursive references are inlined wherever they are used.
- ``type: [T, "null"]``, ``anyOf: [..., {type: null}]`` and ``null`` in ``enum`` become
  ``nullable: true``. Several non-null types become ``anyOf`` of typed branches. ``oneOf``
  becomes ``anyOf``; ``allOf`` is merged; ``not`` and branches that only carry cross-field
  rules are dropped; ``{"not": {}}`` branches (match nothing) are dropped.
- ``const`` becomes a one-value ``enum``. Gemini allows ``enum`` only on ``STRING``, so string
  enums are kept and non-string ones (numbers, booleans) keep their type and list the allowed
  values in the description instead; an ``anyOf`` of ``const`` branches becomes one enum.
- ``format`` is kept only where Gemini accepts it (STRING: ``enum``, ``date-time``; NUMBER:
  ``float``, ``double``; INTEGER: ``int32``, ``int64``; others were rejected with "only 'enum'
  and 'date-time' are supported for STRING type"); another format moves into the description.
- ``exclusiveMinimum``/``exclusiveMaximum`` (a number) become ``minimum``/``maximum`` (slightly
  wider, still advisory). ``default`` and ``title`` are Schema fields and are kept.
- A node with no type gets one inferred from its keywords (``enum`` -> STRING, ``properties``
  -> OBJECT, ``items`` -> ARRAY, ``minimum`` -> NUMBER ...). A node that accepts any value
  (``{}``, description only, an array without ``items``) becomes STRING with a description note
  "any JSON value": the model can always send a string, and keeping the parameter beats dropping
  it.
- An object without properties at the top level omits ``parameters`` (Gemini has rejected
  ``OBJECT`` with empty ``properties``); a nested free-form object (a map) stays ``OBJECT``
  without ``properties`` and its description says any keys are allowed.
- ``required`` only names properties that exist. ``additionalProperties``, ``$schema``,
  ``$defs``, ``examples``, ``uniqueItems``, ``multipleOf``, ``discriminator``,
  ``dependentSchemas``, ``patternProperties``, ``if``/``then``/``else`` ... are dropped.
- A top level that is a map with no named properties (``additionalProperties`` schema only)
  is refused for Gemini: leaving ``parameters`` out would hide that the tool takes arguments.

Names: OpenAI ``^[a-zA-Z0-9_-]{1,64}$``; Anthropic ``^[a-zA-Z0-9_-]{1,128}$``; Gemini a-z A-Z
0-9 ``_ . : -``, at most 64, and (Vertex AI's documented rule, kept because it is the stricter
one) starting with a letter or underscore. A name that does not fit is refused, not rewritten,
because the model's tool call must come back under the name the MCP server knows.

Translations are memoised per tool object and wire format (tools are immutable); every call
returns a fresh copy, so callers may modify what they get.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from router.errors import ToolTranslationError
from router.models import MCPTool, ProviderType

__all__ = [
    "MAX_REF_EXPANSIONS",
    "GEMINI_SCHEMA_FIELDS",
    "to_openai_tool",
    "to_anthropic_tool",
    "to_gemini_declaration",
    "gemini_schema",
    "check_tool",
    "translate_tools",
]

#: How many times one ``$ref`` may be expanded on a single path before recursion is cut.
MAX_REF_EXPANSIONS = 1

#: The fields of the Gemini ``Schema`` message (v1beta); nothing else is ever emitted.
GEMINI_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
    }
)

_OPENAI_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ANTHROPIC_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_GEMINI_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")

_JSON_TO_GEMINI_TYPE = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}

_GEMINI_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}

# Keywords a combinator branch may carry and still only express a rule across fields or values
# (no new shape): such branches tell the model nothing it can build arguments from.
_RULE_ONLY_KEYS = frozenset(
    {
        "required",
        "not",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "minProperties",
        "maxProperties",
        "if",
        "then",
        "else",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "description",
        "title",
        "$comment",
        "errorMessage",
    }
)
# Keywords that leave a schema accepting every value.
_ANNOTATION_KEYS = frozenset(
    {"description", "title", "$comment", "default", "examples", "example", "deprecated"}
)
_COMBINATORS = ("anyOf", "oneOf", "allOf", "not")

_ANY_VALUE_NOTE = "Any JSON value."


class _Unexpressible(ValueError):
    """A schema that cannot be expressed; the message is the reason shown to the user."""


# --- public API ------------------------------------------------------------------------------


def to_openai_tool(tool: MCPTool) -> dict[str, Any]:
    """``tool`` as an OpenAI Chat Completions function tool.

    Raises :class:`~router.errors.ToolTranslationError` if the tool cannot be expressed.
    """
    return _translated(tool, "openai")


def to_anthropic_tool(tool: MCPTool) -> dict[str, Any]:
    """``tool`` as an Anthropic Messages API tool (``name``, ``description``, ``input_schema``).

    Raises :class:`~router.errors.ToolTranslationError` if the tool cannot be expressed.
    """
    return _translated(tool, "anthropic")


def to_gemini_declaration(tool: MCPTool) -> dict[str, Any]:
    """``tool`` as one Gemini ``FunctionDeclaration`` (``parameters`` is a Gemini ``Schema``).

    ``parameters`` is left out for a tool without parameters. Raises
    :class:`~router.errors.ToolTranslationError` if the tool cannot be expressed.
    """
    return _translated(tool, "gemini")


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a JSON Schema into a Gemini ``Schema`` (pure; the input is not modified).

    ``$ref`` pointers are resolved against ``schema`` itself. Raises ``ValueError`` naming the
    problem when a reference cannot be resolved.
    """
    return _GeminiConverter(schema).convert(schema)


def check_tool(tool: MCPTool, provider: ProviderType) -> str | None:
    """``None`` if ``tool`` can be expressed for ``provider``, else the reason it cannot."""
    return _memo_lookup(tool, _wire_format(provider))[1]


def translate_tools(tools: Sequence[MCPTool], provider: ProviderType) -> list[dict[str, Any]]:
    """``tools`` in ``provider``'s tool format, in order.

    OpenAI and OpenAI-compatible providers get function tools, Anthropic gets tools with
    ``input_schema``, Google gets function declarations (to be wrapped in
    ``tools[{functionDeclarations: [...]}]``). Raises
    :class:`~router.errors.ToolTranslationError` for the first tool that cannot be expressed.
    """
    wire = _wire_format(provider)
    return [_translated(tool, wire) for tool in tools]


# --- dispatch and memo -----------------------------------------------------------------------


def _wire_format(provider: ProviderType) -> str:
    provider = ProviderType(provider)
    if provider in (ProviderType.OPENAI, ProviderType.OPENAI_COMPATIBLE):
        return "openai"
    if provider is ProviderType.ANTHROPIC:
        return "anthropic"
    return "gemini"


def _translated(tool: MCPTool, wire: str) -> dict[str, Any]:
    result, reason = _memo_lookup(tool, wire)
    if reason is not None:
        raise ToolTranslationError(f"tool '{tool.name}': {reason}")
    assert result is not None
    return copy.deepcopy(result)


class _TranslationMemo:
    """A bounded memo of translations keyed by tool identity and wire format.

    Pure: the same (immutable) tool always translates the same way, so sharing it between
    managers changes nothing but speed. The tool is kept in the entry so a recycled ``id()``
    can never return another tool's translation.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[
            tuple[int, str], tuple[MCPTool, dict[str, Any] | None, str | None]
        ] = OrderedDict()

    def get(self, tool: MCPTool, wire: str) -> tuple[dict[str, Any] | None, str | None] | None:
        with self._lock:
            entry = self._entries.get((id(tool), wire))
            if entry is None or entry[0] is not tool:
                return None
            self._entries.move_to_end((id(tool), wire))
            return entry[1], entry[2]

    def put(
        self, tool: MCPTool, wire: str, result: dict[str, Any] | None, reason: str | None
    ) -> None:
        with self._lock:
            self._entries[(id(tool), wire)] = (tool, result, reason)
            self._entries.move_to_end((id(tool), wire))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_MEMO = _TranslationMemo()


def _memo_lookup(tool: MCPTool, wire: str) -> tuple[dict[str, Any] | None, str | None]:
    hit = _MEMO.get(tool, wire)
    if hit is not None:
        return hit
    try:
        result: dict[str, Any] | None = _BUILDERS[wire](tool)
        reason = None
    except _Unexpressible as exc:
        result, reason = None, str(exc)
    _MEMO.put(tool, wire, result, reason)
    return result, reason


def _build_openai(tool: MCPTool) -> dict[str, Any]:
    _check_name(tool.name, _OPENAI_NAME, "OpenAI", "a-z, A-Z, 0-9, '_' or '-', 1 to 64 long")
    parameters = _normalise_root(tool.inputSchema)
    _check_refs(parameters, parameters)
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": parameters},
    }


def _build_anthropic(tool: MCPTool) -> dict[str, Any]:
    _check_name(tool.name, _ANTHROPIC_NAME, "Anthropic", "a-z, A-Z, 0-9, '_' or '-', 1 to 128 long")
    input_schema = _normalise_root(tool.inputSchema)
    _check_refs(input_schema, input_schema)
    return {"name": tool.name, "description": tool.description, "input_schema": input_schema}


def _build_gemini(tool: MCPTool) -> dict[str, Any]:
    _check_name(
        tool.name,
        _GEMINI_NAME,
        "Gemini",
        "a-z, A-Z, 0-9, '_', '.', ':' or '-', starting with a letter or '_', at most 64 long",
    )
    root = _normalise_root(tool.inputSchema)
    if not root.get("properties") and (
        isinstance(root.get("additionalProperties"), dict) or root.get("patternProperties")
    ):
        raise _Unexpressible(
            "the parameters are a map with arbitrary keys and no named properties, which a "
            "Gemini function declaration cannot express"
        )
    parameters = _GeminiConverter(root).convert(root)
    declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
    if parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


_BUILDERS = {"openai": _build_openai, "anthropic": _build_anthropic, "gemini": _build_gemini}


def _check_name(name: str, pattern: re.Pattern[str], provider: str, rule: str) -> None:
    if not pattern.fullmatch(name):
        raise _Unexpressible(f"name is not a valid {provider} function name (must be {rule})")


# --- the top level (all providers) -----------------------------------------------------------


def _normalise_root(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema with a top level every provider accepts: exactly one object."""
    root = copy.deepcopy(schema)
    seen: set[str] = set()
    while "$ref" in root:
        ref = root.pop("$ref")
        if not isinstance(ref, str) or ref in seen:
            raise _Unexpressible(f"the top-level $ref {ref!r} refers to itself")
        seen.add(ref)
        target = _resolve_pointer(schema, ref)
        if not isinstance(target, dict):
            raise _Unexpressible(f"the top-level $ref '{ref}' does not point to a schema")
        root = {**copy.deepcopy(target), **root}

    if "allOf" in root:
        root = _merge_root_all_of(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in root:
            branches = root[key] if isinstance(root[key], list) else []
            if all(_is_rule_only(_peek(schema, b)) for b in branches):
                del root[key]  # a cross-field rule; the server still enforces it
            else:
                raise _Unexpressible(
                    f"the input schema's top level is a '{key}' of alternative parameter "
                    "shapes; tool parameters must be a single object at the top level"
                )
    root.pop("not", None)  # only ever forbids combinations of the object's own properties

    declared = root.get("type")
    if declared is None:
        for keyword, what in (("enum", "an enum"), ("const", "a constant"), ("items", "an array")):
            if keyword in root:
                raise _Unexpressible(
                    f"the input schema describes {what}, but tool parameters must be an object "
                    "(type 'object') at the top level"
                )
        root["type"] = "object"
    elif isinstance(declared, list) and "object" in declared:
        root["type"] = "object"  # a null or scalar alternative makes no sense for arguments
    elif declared != "object":
        raise _Unexpressible(
            f"the input schema has type {json.dumps(declared)}, but tool parameters must be an "
            "object (type 'object') at the top level"
        )
    for keyword in ("enum", "const"):
        if keyword in root:
            raise _Unexpressible(
                f"the input schema has '{keyword}' at the top level; tool parameters must be a "
                "plain object"
            )
    if "properties" in root and not isinstance(root["properties"], dict):
        raise _Unexpressible("the input schema's 'properties' is not an object")
    return root


def _merge_root_all_of(document: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in root.items() if k != "allOf"}
    properties: dict[str, Any] = dict(merged.get("properties") or {})
    required: list[str] = list(merged.get("required") or [])
    for branch in root["allOf"] if isinstance(root["allOf"], list) else []:
        part = _peek(document, branch)
        if _is_rule_only(part):
            continue
        kind = part.get("type", "object")
        if kind != "object" or any(k in part for k in ("anyOf", "oneOf", "allOf")):
            raise _Unexpressible(
                "the input schema's top-level 'allOf' combines schemas that are not plain "
                "objects; tool parameters must be a single object at the top level"
            )
        for name, sub in (part.get("properties") or {}).items():
            if name in properties and properties[name] != sub:
                properties[name] = {"allOf": [properties[name], sub]}
            else:
                properties[name] = sub
        required += [name for name in part.get("required") or [] if name not in required]
        for key, value in part.items():
            if key not in ("properties", "required", "type", "title", "description"):
                merged.setdefault(key, value)
    merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _check_refs(node: Any, document: dict[str, Any]) -> None:
    """Raise if any ``$ref`` in the schema (found by position, not key name) does not resolve."""
    for sub in _subschemas(node):
        if isinstance(sub, dict) and isinstance(sub.get("$ref"), str):
            _resolve_pointer(document, sub["$ref"])


def _subschemas(node: Any) -> list[Any]:
    """Every schema inside ``node``, ``node`` included, walked by schema position."""
    out: list[Any] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        if not isinstance(current, dict):
            continue
        for key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
            if isinstance(current.get(key), dict):
                stack.extend(current[key].values())
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if isinstance(current.get(key), list):
                stack.extend(current[key])
        for key in (
            "items",
            "additionalProperties",
            "not",
            "if",
            "then",
            "else",
            "contains",
            "propertyNames",
            "unevaluatedProperties",
            "unevaluatedItems",
            "additionalItems",
        ):
            value = current.get(key)
            if isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, dict):
                stack.append(value)
    return out


# --- references and branch classification ----------------------------------------------------


def _resolve_pointer(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise _Unexpressible(
            f"$ref '{ref}' points outside the schema; only local references ('#/...') can be used"
        )
    fragment = urllib.parse.unquote(ref[1:])
    if fragment == "":
        return document
    if not fragment.startswith("/"):
        raise _Unexpressible(f"$ref '{ref}' uses an anchor; only JSON pointers can be resolved")
    node: Any = document
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise _Unexpressible(f"$ref '{ref}' does not resolve to anything in the schema")
    return node


def _peek(document: dict[str, Any], schema: Any) -> Any:
    """``schema`` with top-level ``$ref``s resolved (siblings win), for classification only."""
    seen: set[str] = set()
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if ref in seen:
            break
        seen.add(ref)
        target = _resolve_pointer(document, ref)
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings} if isinstance(target, dict) else target
    return schema


def _accepts_everything(schema: Any) -> bool:
    return schema is True or (isinstance(schema, dict) and set(schema) <= _ANNOTATION_KEYS)


def _accepts_nothing(schema: Any) -> bool:
    return schema is False or (
        isinstance(schema, dict) and "not" in schema and _accepts_everything(schema["not"])
    )


def _is_rule_only(schema: Any) -> bool:
    """A branch that adds a rule but no shape (``{required: [x]}``, ``{format: ipv4}``)."""
    return _accepts_everything(schema) or (
        isinstance(schema, dict) and set(schema) <= _RULE_ONLY_KEYS
    )


def _is_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "null" or kind == ["null"]:
        return True
    if "const" in schema:
        return schema["const"] is None
    return schema.get("enum") == [None]


def _json_types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    return []


# --- Gemini ----------------------------------------------------------------------------------


class _GeminiConverter:
    """Rewrites JSON Schema nodes into Gemini ``Schema`` nodes; ``$ref``s resolve in ``document``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    def convert(self, schema: Any) -> dict[str, Any]:
        return self._node(schema, ())

    # A node always comes out with a type (or an anyOf); `_shape` may leave it untyped so that
    # the pieces of allOf/anyOf can be merged first.
    def _node(self, schema: Any, refs: tuple[str, ...]) -> dict[str, Any]:
        out = self._shape(schema, refs)
        if "type" not in out and "anyOf" not in out:
            out["type"] = "STRING"
            _add_note(out, _ANY_VALUE_NOTE)
        return out

    def _shape(
        self, schema: Any, refs: tuple[str, ...], *, shaped_elsewhere: bool = False
    ) -> dict[str, Any]:
        """``schema`` converted, possibly without a type.

        ``shaped_elsewhere``: the node's alternatives describe its shape, so an object without
        properties here is not a free-form map.
        """
        if not isinstance(schema, dict):
            return {}  # `true`, or a malformed node: accepts anything
        if isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if refs.count(ref) >= MAX_REF_EXPANSIONS:
                return self._cut(schema, ref)
            target = _resolve_pointer(self._document, ref)
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            merged = {**target, **siblings} if isinstance(target, dict) else siblings
            return self._shape(merged, (*refs, ref), shaped_elsewhere=shaped_elsewhere)
        if isinstance(schema.get("allOf"), list):
            merged, refs = self._merge_all_of(schema, refs)
            return self._shape(merged, refs, shaped_elsewhere=shaped_elsewhere)
        if isinstance(schema.get("anyOf"), list) or isinstance(schema.get("oneOf"), list):
            return self._alternatives(schema, refs)
        return self._typed(schema, refs, shaped_elsewhere=shaped_elsewhere)

    def _merge_all_of(
        self, schema: dict[str, Any], refs: tuple[str, ...]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            while isinstance(branch, dict) and isinstance(branch.get("$ref"), str):
                ref = branch["$ref"]
                if refs.count(ref) >= MAX_REF_EXPANSIONS:
                    branch = self._cut_source(branch, ref)
                    break
                target = _resolve_pointer(self._document, ref)
                siblings = {k: v for k, v in branch.items() if k != "$ref"}
                branch = {**target, **siblings} if isinstance(target, dict) else siblings
                refs = (*refs, ref)
            if not isinstance(branch, dict):
                continue
            for key, value in branch.items():
                if key == "properties" and isinstance(value, dict):
                    properties = dict(merged.get("properties") or {})
                    for name, sub in value.items():
                        if name in properties and properties[name] != sub:
                            properties[name] = {"allOf": [properties[name], sub]}
                        else:
                            properties[name] = sub
                    merged["properties"] = properties
                elif key == "required" and isinstance(value, list):
                    have = list(merged.get("required") or [])
                    merged["required"] = have + [n for n in value if n not in have]
                else:
                    merged.setdefault(key, value)  # the outer schema's own keywords win
        return merged, refs

    def _alternatives(self, schema: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any]:
        branches = [
            *(schema.get("anyOf") if isinstance(schema.get("anyOf"), list) else []),
            *(schema.get("oneOf") if isinstance(schema.get("oneOf"), list) else []),
        ]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf", "discriminator")}
        nullable = False
        kept: list[tuple[Any, dict[str, Any]]] = []  # (source branch, peeked branch)
        formats: list[str] = []
        for branch in branches:
            peeked = _peek(self._document, branch)
            if _is_null(peeked):
                nullable = True
            elif _accepts_nothing(peeked):
                continue
            elif _accepts_everything(peeked):
                kept = []  # one branch takes any value, so the whole union does
                formats = []
                break
            elif _is_rule_only(peeked):
                if isinstance(peeked.get("format"), str):
                    formats.append(peeked["format"])
            else:
                kept.append((branch, peeked))

        outer = self._shape(rest, refs, shaped_elsewhere=bool(kept))
        if formats:
            _add_note(outer, "Format: " + " or ".join(formats) + ".")
        if not kept:
            out = outer
        elif (collapsed := self._const_union([p for _, p in kept])) is not None:
            out = _merge_outer(collapsed, outer)
        else:
            converted = _dedupe([self._node(branch, refs) for branch, _ in kept])
            kinds = {c.get("type") for c in converted}
            if kinds == {"INTEGER", "NUMBER"} and all(set(c) == {"type"} for c in converted):
                converted = [{"type": "NUMBER"}]
            if len(converted) == 1:
                out = _merge_outer(converted[0], outer)
            else:
                out = outer
                out["anyOf"] = converted
                if len(kinds) == 1 and None not in kinds:
                    out.setdefault("type", next(iter(kinds)))
                elif out.get("type") not in kinds:
                    out.pop("type", None)  # the branches decide; the outer type disagrees
                    _strip_type_specific(out)
        if nullable:
            out["nullable"] = True
        return out

    def _const_union(self, branches: list[Any]) -> dict[str, Any] | None:
        """``anyOf`` of ``const`` branches (of one type) as one enum-like node, else ``None``."""
        values: list[Any] = []
        labels: list[str] = []
        labelled = False
        for branch in branches:
            if not isinstance(branch, dict) or set(branch) - {
                "const",
                "enum",
                "type",
                "title",
                "description",
            }:
                return None
            if "const" in branch:
                branch_values = [branch["const"]]
            elif isinstance(branch.get("enum"), list):
                branch_values = list(branch["enum"])
            else:
                return None
            label = branch.get("description") or branch.get("title")
            labelled = labelled or (isinstance(label, str) and bool(label))
            for value in branch_values:
                values.append(value)
                shown = json.dumps(value, ensure_ascii=False)
                labels.append(f"{shown} ({label})" if isinstance(label, str) and label else shown)
        declared = {t for b in branches for t in _json_types(b)}
        if len(declared) > 1:
            return None
        node = {"enum": values}
        if declared:
            node["type"] = next(iter(declared))
        out = self._typed(node, ())
        if "enum" not in out:
            out.pop("description", None)  # replaces the plain list _typed wrote
            _add_note(out, "Allowed values: " + ", ".join(labels) + ".")
        elif labelled:
            _add_note(out, "Values: " + ", ".join(labels) + ".")
        return out

    def _typed(
        self, schema: dict[str, Any], refs: tuple[str, ...], *, shaped_elsewhere: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kinds = [k for k in _json_types(schema) if k in _JSON_TO_GEMINI_TYPE]
        nullable = "null" in kinds
        kinds = [k for k in kinds if k != "null"]
        values = _enum_values(schema)
        if values is not None and None in values:
            nullable = True
            values = [v for v in values if v is not None]

        if len(kinds) > 1:
            # Several types: one typed branch each, the annotations on the holder.
            out = _annotations(schema)
            out["anyOf"] = [self._node({**schema, "type": kind}, refs) for kind in kinds]
            for branch in out["anyOf"]:
                for key in ("description", "title", "default"):
                    branch.pop(key, None)
            if nullable:
                out["nullable"] = True
            return out

        kind = _JSON_TO_GEMINI_TYPE[kinds[0]] if kinds else _infer_type(schema, values)
        out = _annotations(schema)
        if kind is not None:
            out["type"] = kind
        if nullable or schema.get("nullable") is True:
            out["nullable"] = True
        if kind == "STRING":
            self._string(schema, values, out)
        elif kind in ("NUMBER", "INTEGER"):
            self._number(schema, values, kind, out)
        elif kind == "BOOLEAN":
            _values_note(values, out)
        elif kind == "ARRAY":
            self._array(schema, refs, out)
        elif kind == "OBJECT":
            self._object(schema, refs, out, free_form_note=not shaped_elsewhere)
        elif kind is None and values:
            out["type"] = "STRING"
            out["enum"] = [v if isinstance(v, str) else json.dumps(v) for v in values]
        return out

    def _string(
        self, schema: dict[str, Any], values: list[Any] | None, out: dict[str, Any]
    ) -> None:
        if values:
            out["enum"] = [v if isinstance(v, str) else json.dumps(v) for v in values]
        for key in ("minLength", "maxLength"):
            if _is_count(schema.get(key)):
                out[key] = int(schema[key])
        if isinstance(schema.get("pattern"), str):
            out["pattern"] = schema["pattern"]
        _format(schema, "STRING", out)

    def _number(
        self, schema: dict[str, Any], values: list[Any] | None, kind: str, out: dict[str, Any]
    ) -> None:
        for key, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if _is_number(schema.get(key)):
                out[key] = schema[key]
            elif _is_number(schema.get(exclusive)):
                out[key] = schema[exclusive]  # a bound slightly wider than asked; advisory anyway
        _format(schema, kind, out)
        _values_note(values, out)

    def _array(self, schema: dict[str, Any], refs: tuple[str, ...], out: dict[str, Any]) -> None:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # draft-04 tuple form
            prefix, items = items, None
        if isinstance(prefix, list) and prefix:
            converted = [self._node(p, refs) for p in prefix]
            distinct = _dedupe(
                converted + ([self._node(items, refs)] if isinstance(items, dict) else [])
            )
            out["items"] = distinct[0] if len(distinct) == 1 else {"anyOf": distinct}
            if len(distinct) > 1:
                shapes = ", ".join(c.get("type", "any").lower() for c in converted)
                _add_note(out, f"Items in this order: {shapes}.")
        else:
            out["items"] = self._node(items, refs)
        for key in ("minItems", "maxItems"):
            if _is_count(schema.get(key)):
                out[key] = int(schema[key])

    def _object(
        self,
        schema: dict[str, Any],
        refs: tuple[str, ...],
        out: dict[str, Any],
        *,
        free_form_note: bool = True,
    ) -> None:
        raw = schema.get("properties")
        properties = {
            name: self._node(sub, refs)
            for name, sub in (raw.items() if isinstance(raw, dict) else [])
        }
        if properties:
            out["properties"] = properties
            required = schema.get("required")
            if isinstance(required, list):
                names = list(dict.fromkeys(n for n in required if n in properties))
                if names:
                    out["required"] = names
            ordering = schema.get("propertyOrdering")
            if isinstance(ordering, list):
                names = [n for n in ordering if n in properties]
                if names:
                    out["propertyOrdering"] = names
        elif free_form_note:
            extra = schema.get("additionalProperties")
            if extra is not False:
                value_type = ""
                if isinstance(extra, dict):
                    peeked = _peek(self._document, extra)
                    kinds = (
                        [k for k in _json_types(peeked) if k != "null"]
                        if isinstance(peeked, dict)
                        else []
                    )
                    if len(kinds) == 1:
                        value_type = f" with {kinds[0]} values"
                _add_note(out, f"An object with any keys{value_type}.")
        for key in ("minProperties", "maxProperties"):
            if _is_count(schema.get(key)):
                out[key] = int(schema[key])

    def _cut(self, schema: dict[str, Any], ref: str) -> dict[str, Any]:
        return self._typed(self._cut_source(schema, ref), (), shaped_elsewhere=True)

    def _cut_source(self, schema: dict[str, Any], ref: str) -> dict[str, Any]:
        """A free-form stand-in for a recursive reference that has been expanded enough."""
        target = _resolve_pointer(self._document, ref)
        target = target if isinstance(target, dict) else {}
        kind = "array" if "array" in _json_types(target) or "items" in target else "object"
        source: dict[str, Any] = {"type": kind}
        description = schema.get("description") or target.get("description")
        if isinstance(description, str) and description:
            source["description"] = description
        parent, _, last = ref.rpartition("/")
        name = last if parent in ("#/$defs", "#/definitions") else ref
        note = (
            f"Recursive: same structure as '{name}' above (nesting limit reached, so its "
            "fields are not repeated here)."
        )
        source["description"] = (
            f"{source['description']} {note}" if "description" in source else note
        )
        if kind == "array":
            source["items"] = {"type": "object"}
        return source


# --- Gemini helpers --------------------------------------------------------------------------


def _enum_values(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    return None


def _infer_type(schema: dict[str, Any], values: list[Any] | None) -> str | None:
    if values:
        if all(isinstance(v, str) for v in values):
            return "STRING"
        if all(isinstance(v, bool) for v in values):
            return "BOOLEAN"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "INTEGER"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return "NUMBER"
        return None  # mixed: listed as strings by the caller
    keys = set(schema)
    if keys & {"properties", "required", "additionalProperties", "patternProperties"}:
        return "OBJECT"
    if keys & {"minProperties", "maxProperties", "propertyOrdering"}:
        return "OBJECT"
    if keys & {"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"}:
        return "ARRAY"
    if keys & {"minLength", "maxLength", "pattern"}:
        return "STRING"
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
        return "NUMBER"
    return None


def _annotations(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(schema.get("title"), str):
        out["title"] = schema["title"]
    if isinstance(schema.get("description"), str):
        out["description"] = schema["description"]
    if "default" in schema and schema["default"] is not None:
        out["default"] = copy.deepcopy(schema["default"])
    return out


def _format(schema: dict[str, Any], kind: str, out: dict[str, Any]) -> None:
    value = schema.get("format")
    if not isinstance(value, str):
        return
    if value in _GEMINI_FORMATS.get(kind, ()):
        out["format"] = value
    else:
        _add_note(out, f"Format: {value}.")


def _values_note(values: list[Any] | None, out: dict[str, Any]) -> None:
    if values:
        shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in values)
        _add_note(out, f"Allowed values: {shown}.")


def _add_note(out: dict[str, Any], note: str) -> None:
    description = (out.get("description") or "").rstrip()
    if description and description[-1] not in ".!?)。":
        description += "."
    out["description"] = f"{description} {note}" if description else note


def _merge_outer(inner: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
    """One surviving ``anyOf`` branch with the holder's annotations laid over it."""
    merged = dict(inner)
    for key, value in outer.items():
        if key == "type" and "type" in inner:
            continue  # the branch knows its shape better than the holder
        if key == "description" and "description" in inner and inner["description"] != value:
            merged["description"] = f"{value} {inner['description']}"
        elif key == "properties" and "properties" in inner:
            merged["properties"] = {**value, **inner["properties"]}
        elif key == "required" and "required" in inner:
            merged["required"] = list(dict.fromkeys([*value, *inner["required"]]))
        elif key == "items" and "items" in inner:
            continue
        else:
            merged[key] = value
    if merged.get("type") != outer.get("type", merged.get("type")):
        _strip_type_specific(merged)
    return merged


_TYPE_SPECIFIC = {
    "STRING": {"enum", "minLength", "maxLength", "pattern", "format"},
    "NUMBER": {"minimum", "maximum", "format"},
    "INTEGER": {"minimum", "maximum", "format"},
    "ARRAY": {"items", "minItems", "maxItems"},
    "OBJECT": {"properties", "required", "propertyOrdering", "minProperties", "maxProperties"},
}


def _strip_type_specific(node: dict[str, Any]) -> None:
    """Drop keywords that do not belong to the node's (final) type."""
    allowed = _TYPE_SPECIFIC.get(node.get("type", ""), set())
    for keywords in _TYPE_SPECIFIC.values():
        for key in keywords - allowed:
            node.pop(key, None)


def _dedupe(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for node in nodes:
        seen.setdefault(json.dumps(node, sort_keys=True), node)
    return list(seen.values())


def _is_count(value: Any) -> bool:
    return _is_number(value) and value >= 0 and float(value).is_integer()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
