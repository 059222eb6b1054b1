"""What can go wrong at the bridge, door-neutral: body errors, HTTP problems, status codes.

Every door renders the same :class:`Failure` in its own envelope; the status code a router
error gets is decided here once, so a budget refusal is the same 402 behind every door.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from router import errors as _errors
from router.errors import (
    BudgetExceededError,
    CircuitOpenError,
    ConfigError,
    InvalidRequestError,
    LedgerUnavailableError,
    ManagerStoppedError,
    MaxTurnsExceededError,
    MCPServerError,
    ModelNotFoundError,
    NoProviderAvailableError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RequestCancelledError,
    RequestTimeoutError,
    RouterError,
    ToolTranslationError,
)

__all__ = [
    "BodyError",
    "Failure",
    "Problem",
    "field_path",
    "snake_case",
    "status_for",
    "status_for_type",
    "validation_error",
]

# Most specific first. 402 (not 429) for budgets: a spent budget does not come back after a
# short pause, and 429 makes HTTP clients (the OpenAI SDK among them) retry in a loop.
_STATUS: tuple[tuple[type[RouterError], int], ...] = (
    (BudgetExceededError, 402),
    (RateLimitError, 429),
    (ModelNotFoundError, 404),
    (InvalidRequestError, 400),
    (ToolTranslationError, 400),
    (RequestTimeoutError, 504),
    (ProviderTimeoutError, 504),
    (NoProviderAvailableError, 503),
    (CircuitOpenError, 503),
    (ManagerStoppedError, 503),
    (LedgerUnavailableError, 503),
    (RequestCancelledError, 503),
    (ConfigError, 500),
    (ProviderError, 502),
    # An MCP server failed, or the model kept asking for tools: upstream trouble, not ours.
    (MCPServerError, 502),
    (MaxTurnsExceededError, 502),
)


def status_for(error: BaseException) -> int:
    """The HTTP status the bridge answers a router error with."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def status_for_type(name: str | None) -> int:
    """:func:`status_for` from an error's class name (what a stream's error chunk carries)."""
    kind = getattr(_errors, name or "", None)
    if isinstance(kind, type) and issubclass(kind, RouterError):
        for base, status in _STATUS:
            if issubclass(kind, base):
                return status
    return 500


def snake_case(name: str) -> str:
    """``BudgetExceededError`` -> ``budget_exceeded`` (error codes on the OpenAI doors)."""
    name = name.removesuffix("Error")
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class BodyError(InvalidRequestError):
    """A request body field is missing or wrong; ``param`` names it (used by every endpoint)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["type"] = "InvalidRequestError"  # callers need not know the bridge's subclass
        if self.param:
            out["field"] = self.param
        return out


class Problem(Exception):
    """An HTTP error the bridge itself raises (routing, auth, body)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.headers = list(headers)


@dataclass
class Failure:
    """One failed request, door-neutral: each door renders it in its own envelope.

    ``kind`` is the router's error class name (or the bridge's problem name), ``detail`` the
    router's own error object (``RouterError.to_dict()``), ``code`` the snake-case code.
    """

    status: int
    kind: str
    message: str
    detail: dict[str, Any]
    param: str | None = None
    code: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def field_path(loc: Iterable[int | str]) -> str:
    """``("messages", 0, "content")`` -> ``"messages[0].content"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_error(error: ValidationError, prefix: Iterable[int | str] = ()) -> BodyError:
    """One :class:`BodyError` from pydantic's errors: each problem on its own, field first.

    Only pydantic's ``loc`` and ``msg`` are used, never ``input``, so a rejected value (which
    might be a key) is never echoed back.
    """
    problems = []
    first: str | None = None
    for item in error.errors(include_url=False, include_input=False):
        # Union members add their type name to the location; it means nothing to a caller.
        loc = [p for p in item.get("loc", ()) if not _is_type_tag(p)]
        path = field_path([*prefix, *loc])
        first = first or path or None
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return BodyError("; ".join(problems) or "invalid request body", first)


def _is_type_tag(part: int | str) -> bool:
    return isinstance(part, str) and (
        part in ("str", "list", "dict", "int", "float", "bool") or part[:1].isupper() or "[" in part
    )
