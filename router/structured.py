"""Structured answers: checking an answer against the request's ``response_format``.

The adapters ask each provider for JSON in its own way (see :mod:`router.params`); this module
parses what came back and validates it, with pydantic when the format is a model class and
with :mod:`jsonschema` otherwise. A failure is a :class:`StructuredOutputError` that carries
the raw text, so a caller can see (and log, or repair) what the model wrote.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import ValidationError

from router.errors import StructuredOutputError
from router.models import AIRequest, FinishReason

__all__ = ["parse_answer"]


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    # Imported on the first structured answer only: jsonschema costs ~40 ms of import time.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def parse_answer(
    request: AIRequest,
    content: str,
    *,
    finish_reason: FinishReason = "stop",
    provider: str | None = None,
) -> Any:
    """``content`` parsed and validated against ``request.response_format``.

    Returns None for plain text (no format, or ``text``) and when the answer is a tool call
    (no content). Raises :class:`StructuredOutputError` naming the problem otherwise.
    """
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if not content and finish_reason == "tool_calls":
        return None

    def fail(problem: str) -> StructuredOutputError:
        if finish_reason == "length":
            problem += " (the answer was cut at max_tokens)"
        elif finish_reason == "content_filter":
            problem += " (the model refused or was filtered)"
        return StructuredOutputError(
            f"the answer does not follow response_format: {problem}",
            raw_text=content,
            problem=problem,
            provider=provider,
        )

    try:
        value = json.loads(content)
    except ValueError as exc:
        raise fail(f"not valid JSON ({exc})") from None
    model = fmt.model_class
    if model is not None:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise fail(f"{where}: {first['msg']}") from None
    if fmt.type == "json_object":
        if not isinstance(value, dict):
            raise fail(f"expected a JSON object, got {type(value).__name__}")
        return value
    schema = fmt.answer_schema or {}
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.path))
    if errors:
        error = errors[0]
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise fail(f"{where}: {error.message}")
    return value
