"""The one error hierarchy.

Every error the router raises or hands back through a future is a :class:`RouterError`.
Provider-side errors carry the provider instance name, the HTTP status, the retry-after floor
(seconds) and the provider's request id. Two class attributes drive the runtime:

- ``retryable``: the same provider may be tried again after a backoff;
- ``trips_breaker``: the failure counts towards the provider's circuit breaker.

Caller mistakes (400/401/403/404, validation) are neither.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RouterError",
    "ConfigError",
    "ProviderError",
    "RateLimitError",
    "QuotaExceededError",
    "AuthenticationError",
    "PermissionDeniedError",
    "ModelNotFoundError",
    "ServiceUnavailableError",
    "InvalidRequestError",
    "ProviderTimeoutError",
    "ProviderConnectionError",
    "AnswerCutError",
    "MalformedResponseError",
    "StreamInterruptedError",
    "ToolTranslationError",
    "StructuredOutputError",
    "BudgetExceededError",
    "CircuitOpenError",
    "NoProviderAvailableError",
    "RequestTimeoutError",
    "RequestCancelledError",
    "ManagerStoppedError",
    "LedgerUnavailableError",
    "MCPServerError",
    "MaxTurnsExceededError",
]


class RouterError(Exception):
    """Root of every error the router raises."""

    retryable: bool = False
    trips_breaker: bool = False
    #: On an error that ended an agent run (``run_agent``): the ``AgentResult`` of the turns
    #: completed so far (``response`` is the last answer, if any), else None.
    agent_result: Any = None

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        return f"{prefix}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (for the bridge and ``--json`` output)."""
        out: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        for key in ("provider", "status", "retry_after", "request_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class ConfigError(RouterError):
    """A configuration file or value is wrong; the message names the file and key path."""


class ProviderError(RouterError):
    """An error reported by (or while talking to) a provider."""


class RateLimitError(ProviderError):
    """429: too many requests or tokens per minute; retry after a pause."""

    retryable = True
    trips_breaker = True


class QuotaExceededError(ProviderError):
    """The account is out of credit (OpenAI ``insufficient_quota``); not retryable."""


class AuthenticationError(ProviderError):
    """The API key is missing or wrong (401; Gemini's 400 ``API_KEY_INVALID``)."""


class PermissionDeniedError(AuthenticationError):
    """403: the key is valid but not allowed to do this."""


class ModelNotFoundError(ProviderError):
    """404: the provider does not know the model."""


class ServiceUnavailableError(ProviderError):
    """5xx, Anthropic 529 ``overloaded_error``, Gemini 503 ``UNAVAILABLE``."""

    retryable = True
    trips_breaker = True


class InvalidRequestError(ProviderError):
    """400/422: the provider rejected the request as malformed; the caller must fix it."""


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within the configured connect/read timeout."""

    retryable = True
    trips_breaker = True


class ProviderConnectionError(ProviderError):
    """The connection failed or was reset before a complete answer arrived."""

    retryable = True
    trips_breaker = True


class AnswerCutError(ProviderConnectionError):
    """The provider answered 2xx, then its body broke off (cut or stalled) before it was whole.

    A non-streamed answer is sent once it is generated: the provider did the work and bills
    it, but its usage went with the body. The attempt books the most it can cost.
    """


class MalformedResponseError(ProviderError):
    """The provider answered 2xx with a body that cannot be parsed."""

    retryable = True
    trips_breaker = True


class StreamInterruptedError(ProviderError):
    """A stream broke after content had reached the caller (no failover is possible)."""

    trips_breaker = True


class ToolTranslationError(RouterError):
    """A tool's input schema cannot be expressed in a provider's tool format."""


class StructuredOutputError(ProviderError):
    """The answer is not JSON that follows the requested ``response_format``.

    ``raw_text`` is the answer as the model wrote it; ``problem`` says what is wrong with it.
    The model, not the provider, failed: the breaker is not touched, and the next candidate
    (if any) is tried.
    """

    def __init__(self, message: str, *, raw_text: str = "", problem: str = "", **kwargs: Any):
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.problem = problem
        self.usage: Any = None  # router.models.Usage of the answer (it is billed)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["raw_text"] = self.raw_text
        return out


class BudgetExceededError(RouterError):
    """A request would exceed a budget; names the budget, limit, spend and estimate."""

    def __init__(
        self,
        message: str,
        *,
        budget: str | None = None,
        limit: float | None = None,
        spent: float | None = None,
        estimate: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.estimate = estimate

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("budget", "limit", "spent", "estimate"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class CircuitOpenError(RouterError):
    """The provider's circuit breaker is open; ``retry_after`` says when it half-opens."""


class NoProviderAvailableError(RouterError):
    """No candidate could serve the request; ``reasons`` maps each candidate to why."""

    def __init__(
        self,
        message: str,
        *,
        reasons: dict[str, str] | None = None,
        errors: dict[str, RouterError] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.reasons = dict(reasons or {})
        self.errors = dict(errors or {})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["reasons"] = self.reasons
        return out


class RequestTimeoutError(RouterError):
    """The request's deadline passed before any provider answered."""


class RequestCancelledError(RouterError):
    """The caller cancelled the request (e.g. closed a stream early)."""


class ManagerStoppedError(RouterError):
    """The manager was stopped while the request was pending, or is not running."""


class LedgerUnavailableError(RouterError):
    """The usage ledger cannot be reached and the router is configured to fail closed."""


class MCPServerError(RouterError):
    """An MCP server could not be started, reached or listed; ``server`` names it."""

    def __init__(self, message: str, *, server: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.server = server

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.server is not None:
            out["server"] = self.server
        return out


class MaxTurnsExceededError(RouterError):
    """The agent loop made ``max_turns`` model calls and the model still asked for tools.

    ``last_response`` is the last answer (with the tool calls that were not run).
    """

    def __init__(self, message: str, *, last_response: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.last_response = last_response
