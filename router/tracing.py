"""OpenTelemetry traces: a span per request and per attempt, with the GenAI conventions.

Active only when ``opentelemetry-api`` is importable *and* a tracer provider is configured (the
global one set with ``trace.set_tracer_provider``, or one given to the manager). Otherwise the
manager holds no :class:`Tracing` (``opentelemetry`` not installed) or :meth:`Tracing.request`
returns None (nothing configured), and the request path pays one ``is None`` test per hook.

Spans (names and attributes follow the OpenTelemetry GenAI semantic conventions):

- ``chat {model}`` (INTERNAL), one per request, child of the caller's current span:
  ``gen_ai.operation.name``, ``gen_ai.request.model`` (as requested), ``gen_ai.request.*``
  sampling parameters, then ``gen_ai.system`` / ``gen_ai.provider.name``,
  ``gen_ai.response.model``, ``gen_ai.response.id``, ``gen_ai.response.finish_reasons``,
  ``gen_ai.usage.input_tokens`` / ``output_tokens``, ``router.cost_usd``, ``router.provider``
  (the configured instance), ``router.attempts``, ``router.cache.hit``; ``error.type`` and an
  error status on failure. Events: ``router.retry``, ``router.failover``,
  ``router.budget_refused``.
- ``chat {model}`` (CLIENT), one per HTTP attempt, child of the request span, with the
  attempt's provider and model, ``router.retry_number``, usage and ``error.type``.

Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``) is recorded only when
``tracing.capture_content`` is true in the configuration or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is ``true``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode

from router import __version__

__all__ = ["Tracing", "RequestTrace", "CAPTURE_CONTENT_ENV"]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# gen_ai.system per provider type (the conventions' well-known values).
_SYSTEMS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "openai_compatible": "openai_compatible",
}


def _system(provider_type: Any) -> str:
    value = str(getattr(provider_type, "value", provider_type))
    return _SYSTEMS.get(value, value)


class Tracing:
    """The manager's tracer source; see the module docstring."""

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False) -> None:
        self._provider = tracer_provider
        self._tracer: Any = None
        self._tracer_of: Any = None
        self._recheck_at = 0.0
        env = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower()
        self.capture_content = capture_content or env in ("1", "true", "yes")

    def tracer(self) -> Any:
        """The tracer, or None while no tracer provider is configured."""
        if self._provider is not None:
            provider = self._provider
        else:
            # Asking OpenTelemetry costs microseconds (it reads the environment); an
            # unconfigured process asks again once a second, so a provider set later is found.
            now = time.monotonic()
            if now < self._recheck_at:
                return None
            provider = trace.get_tracer_provider()
            if isinstance(provider, ProxyTracerProvider) or type(provider).__name__.startswith(
                "NoOp"
            ):
                self._recheck_at = now + 1.0
                return None
        if provider is not self._tracer_of:
            self._tracer = provider.get_tracer("router", __version__)
            self._tracer_of = provider
        return self._tracer

    def request(self, request: Any, *, stream: bool) -> RequestTrace | None:
        """A started request span for ``request``, or None when tracing is off."""
        tracer = self.tracer()
        if tracer is None:
            return None
        return RequestTrace(tracer, request, stream=stream, capture_content=self.capture_content)


class RequestTrace:
    """The spans of one request; its hooks may run on several threads, one at a time."""

    __slots__ = ("tracer", "span", "model", "capture_content", "_last", "_attempts", "_starts")

    def __init__(self, tracer: Any, request: Any, *, stream: bool, capture_content: bool) -> None:
        self.tracer = tracer
        self.model = request.model or ""
        self.capture_content = capture_content
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            "gen_ai.request.stream": stream,
        }
        for name, value in (
            ("gen_ai.request.max_tokens", request.max_tokens),
            ("gen_ai.request.temperature", request.temperature),
            ("gen_ai.request.top_p", request.top_p),
            ("gen_ai.request.top_k", getattr(request, "top_k", None)),
            ("gen_ai.request.seed", getattr(request, "seed", None)),
            ("gen_ai.request.frequency_penalty", getattr(request, "frequency_penalty", None)),
            ("gen_ai.request.presence_penalty", getattr(request, "presence_penalty", None)),
        ):
            if value is not None:
                attributes[name] = value
        fmt = getattr(request, "response_format", None)
        if fmt is not None:
            attributes["gen_ai.output.type"] = "text" if fmt.type == "text" else "json"
        if request.stop is not None:
            stop = request.stop
            attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if capture_content:
            attributes["gen_ai.input.messages"] = json.dumps(
                [m.model_dump(mode="json", exclude_none=True) for m in request.messages],
                ensure_ascii=False,
            )
        self.span = tracer.start_span(
            f"chat {self.model}".rstrip(), kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._last: str | None = None  # the candidate of the previous attempt
        self._attempts = 0
        self._starts: dict[int, int] = {}  # id(attempt) -> start time (ns)

    # --- attempts (run_attempt) --------------------------------------------------------------

    def attempt_started(self, attempt: Any) -> None:
        candidate = attempt.candidate
        now = time.time_ns()
        self._attempts += 1
        self._starts[id(attempt)] = now
        if attempt.number > 1:
            self.span.add_event(
                "router.retry",
                {"router.provider": candidate.provider, "router.retry_number": attempt.number - 1},
                timestamp=now,
            )
        elif self._last is not None and self._last != candidate.key:
            self.span.add_event(
                "router.failover", {"router.from": self._last, "router.to": candidate.key}, now
            )
        self._last = candidate.key

    def attempt_finished(self, outcome: Any) -> None:
        """One attempt's span, from its ``Outcome`` (the span covers the whole attempt)."""
        attempt = outcome.attempt
        end = time.time_ns()
        start = self._starts.pop(id(attempt), None)
        if start is None:
            return  # never started (cancelled while waiting), or already recorded
        candidate = attempt.candidate
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": _system(candidate.provider_type),
            "gen_ai.provider.name": _system(candidate.provider_type),
            "gen_ai.request.model": candidate.model,
            "router.provider": candidate.provider,
            "router.retry_number": attempt.number - 1,
        }
        response = outcome.response
        usage = response.usage if response is not None else outcome.partial_usage
        if response is not None:
            attributes["gen_ai.response.model"] = response.model or candidate.model
            attributes["gen_ai.response.finish_reasons"] = [response.finish_reason]
            if response.request_id:
                attributes["gen_ai.response.id"] = response.request_id
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if outcome.cancelled:
            attributes["router.cancelled"] = True
        span = self.tracer.start_span(
            f"chat {candidate.model}",
            context=trace.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start,
        )
        error = outcome.error
        if error is not None and not outcome.cancelled:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.end(end_time=end)

    # --- the end -----------------------------------------------------------------------------

    def finished(self, job: Any, response: Any, error: BaseException | None) -> None:
        span = self.span
        for refusal in getattr(job, "budget_refusals", ()):
            span.add_event(
                "router.budget_refused",
                {
                    key: value
                    for key, value in (
                        ("router.budget", getattr(refusal, "budget", None)),
                        ("router.limit_usd", getattr(refusal, "limit", None)),
                        ("router.spent_usd", getattr(refusal, "spent", None)),
                        ("router.estimate_usd", getattr(refusal, "estimate", None)),
                        ("router.provider", getattr(refusal, "provider", None)),
                    )
                    if value is not None
                },
            )
        span.set_attribute("router.attempts", self._attempts)
        if response is not None:
            self.answered(response)
        else:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.end()

    def answered(self, response: Any) -> None:
        span = self.span
        system = _system(response.provider) if response.provider is not None else None
        usage = response.usage
        attributes: dict[str, Any] = {
            "gen_ai.response.model": response.model,
            "gen_ai.response.finish_reasons": [response.finish_reason],
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read_input_tokens": usage.cached_input_tokens,
            "gen_ai.usage.cache_creation_input_tokens": getattr(usage, "cache_write_tokens", 0),
            "gen_ai.usage.reasoning_output_tokens": getattr(usage, "reasoning_tokens", 0),
            "router.provider": response.provider_name,
            "router.cost_usd": response.cost,
            "router.cache.hit": response.cached,
        }
        if system is not None:
            attributes["gen_ai.system"] = system
            attributes["gen_ai.provider.name"] = system
        if response.request_id:
            attributes["gen_ai.response.id"] = response.request_id
        if self.capture_content:
            attributes["gen_ai.output.messages"] = json.dumps(
                [response.to_message()], ensure_ascii=False
            )
        span.set_attributes(attributes)

    def cache_hit(self, response: Any) -> None:
        """The request was answered by the response cache: no attempt at all."""
        self.span.set_attribute("router.attempts", 0)
        self.answered(response)
        self.span.end()
