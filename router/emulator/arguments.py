"""Deterministic tool-call arguments generated from a tool's input schema.

Accepts JSON Schema (OpenAI ``parameters``, Anthropic ``input_schema``, Gemini
``parametersJsonSchema``) and Gemini's OpenAPI subset (``"type": "OBJECT"``, ``nullable``).
Only *required* object properties (and ``const`` ones, which act as discriminators) are
filled in; every value is the simplest one the schema allows: ``const``/first ``enum`` value,
strings named after their property (or the first example a description quotes, ``e.g.
'Europe/London'``, when no ``format`` or ``pattern`` constrains the string; padded to
``minLength``, cut to ``maxLength``, with a sample for common ``format``s), numbers at their lower bound (or 1), ``true``, arrays of
``minItems`` (at least one) items, the first non-null branch of ``anyOf``/``oneOf`` (merged
with the schema around it), merged ``allOf``, and local ``$ref``s into ``$defs`` /
``definitions`` (with a depth guard so recursive schemas terminate).
"""

from __future__ import annotations

import math
import re
from typing import Any

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}
_MAX_DEPTH = 12


def example_arguments(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The arguments object the emulator sends for a tool with this input schema."""
    if not isinstance(schema, dict):
        return {}
    value = _example(schema, schema, "value", 0)
    return value if isinstance(value, dict) else {}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [str(k).lower() for k in kind if str(k).lower() != "null"]
        return kinds[0] if kinds else "null"
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def _example(schema: Any, root: dict[str, Any], name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen: dict[str, Any] | None = None
            for branch in branches:
                resolved = _resolve(branch, root) if isinstance(branch, dict) else {}
                if _type_of(resolved) != "null":
                    chosen = resolved
                    break
            if chosen is None:
                return None
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            if any(k in rest for k in ("type", "properties", "required", "items")):
                # The schema applies *and* one branch: merge them.
                return _example({"allOf": [rest, chosen]}, root, name, depth + 1)
            return _example(chosen, root, name, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        required: list[str] = list(merged.get("required", []))
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        for part in all_of:
            part = _resolve(part, root) if isinstance(part, dict) else {}
            properties.update(part.get("properties", {}))
            required.extend(r for r in part.get("required", []) if r not in required)
            for key, value in part.items():
                merged.setdefault(key, value)
        merged["properties"], merged["required"] = properties, required
        return _example(merged, root, name, depth + 1)
    kind = _type_of(schema)
    if kind == "object" or kind is None and "required" in schema:
        return _object(schema, root, depth)
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1) or 1))
        items = schema.get("items", {})
        if isinstance(items, list):  # tuple form
            return [_example(item, root, name, depth + 1) for item in items]
        return [_example(items, root, name, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, name)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return name


def _object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    required = required if isinstance(required, list) else []
    out: dict[str, Any] = {}
    for key in required:
        out[key] = _example(properties.get(key, {}), root, key, depth + 1)
    for key, prop in properties.items():
        # Constant properties are discriminators: without them a oneOf may match twice.
        if key not in out and isinstance(prop, dict) and "const" in prop:
            out[key] = prop["const"]
    return out


_QUOTED_EXAMPLE = re.compile(r"e\.g\.,?\s*[(]?\s*['\"]([^'\"]{1,80})['\"]")


def _string(schema: dict[str, Any], name: str) -> str:
    value = _FORMATS.get(str(schema.get("format", "")).lower(), name or "value")
    description = schema.get("description")
    if isinstance(description, str) and "format" not in schema and "pattern" not in schema:
        # What a model does with "IANA timezone name (e.g., 'America/New_York')".
        example = _QUOTED_EXAMPLE.search(description)
        if example:
            value = example.group(1)
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and len(value) < min_len:
        value = value + "x" * (min_len - len(value))
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and len(value) > max_len:
        value = value[:max_len]
    return value


def _number(schema: dict[str, Any], kind: str) -> int | float:
    low = schema.get("minimum")
    ex_low = schema.get("exclusiveMinimum")
    high = schema.get("maximum")
    ex_high = schema.get("exclusiveMaximum")
    if isinstance(ex_low, bool):  # draft 4: boolean modifier of minimum
        ex_low = low if ex_low else None
        low = None if ex_low is not None else low
    if isinstance(ex_high, bool):
        ex_high = high if ex_high else None
        high = None if ex_high is not None else high
    value: float = 1
    if isinstance(low, (int, float)):
        value = low
    elif isinstance(ex_low, (int, float)):
        value = math.floor(ex_low) + 1 if kind == "integer" else ex_low + 0.5
    elif isinstance(high, (int, float)) and high < value:
        value = high
    elif isinstance(ex_high, (int, float)) and ex_high <= value:
        value = math.ceil(ex_high) - 1 if kind == "integer" else ex_high - 0.5
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        value = math.ceil(value / step) * step
    if kind == "integer":
        return int(math.ceil(value))
    return float(value) if not float(value).is_integer() else int(value)
