"""OpenTelemetry spans (router.tracing), collected by the SDK's in-memory exporter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support import router_config

from router.errors import BudgetExceededError


@pytest.fixture
def spans() -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.provider = provider
    return exporter


def ask(text: str = "Hello tracing", model: str = "gpt-4o-mini", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def split(exporter: Any) -> tuple[Any, list[Any]]:
    finished = exporter.get_finished_spans()
    (request,) = [s for s in finished if s.kind is SpanKind.INTERNAL]
    attempts = [s for s in finished if s.kind is SpanKind.CLIENT]
    for attempt in attempts:
        assert attempt.parent.span_id == request.context.span_id
        assert attempt.context.trace_id == request.context.trace_id
    return request, attempts


def test_a_request_and_its_attempt_carry_the_genai_attributes_and_no_content(
    make_manager, emulator, spans
):
    manager = make_manager(tracer_provider=spans.provider)
    answer = manager.process_request(ask(max_tokens=50, temperature=0.0, seed=7))
    request, (attempt,) = split(spans)
    attrs = dict(request.attributes)
    assert request.name == "chat gpt-4o-mini"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.0 and attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.usage.cache_read_input_tokens"] == answer.usage.cached_input_tokens
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == answer.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == answer.usage.output_tokens
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["router.cost_usd"] == pytest.approx(answer.cost)
    assert attrs["router.attempts"] == 1 and attrs["router.cache.hit"] is False
    attempt_attrs = dict(attempt.attributes)
    assert attempt_attrs["router.provider"] == "openai"
    assert attempt_attrs["gen_ai.response.id"] == answer.request_id
    assert attempt.start_time >= request.start_time and attempt.end_time <= request.end_time
    everything = json.dumps([dict(s.attributes) for s in spans.get_finished_spans()])
    assert "Hello tracing" not in everything and "Echo" not in everything


def test_retries_and_failover_are_events_and_each_attempt_a_span(make_manager, emulator, spans):
    manager = make_manager(tracer_provider=spans.provider)
    emulator.add_fault(provider="openai", kind="server_error", count=1)
    manager.process_request(ask())
    request, attempts = split(spans)
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    assert attempts[0].attributes["error.type"] == "ServiceUnavailableError"
    assert [e.name for e in request.events] == ["router.retry"]
    assert request.attributes["router.attempts"] == 2

    spans.clear()
    emulator.add_fault(provider="openai", kind="auth", count=1)
    answer = manager.process_request(ask(model="fast"), strategy="priority")
    request, attempts = split(spans)
    assert [a.attributes["router.provider"] for a in attempts] == ["openai", "anthropic"]
    (failover,) = [e for e in request.events if e.name == "router.failover"]
    assert failover.attributes["router.to"] == f"anthropic/{answer.model}"
    assert request.attributes["gen_ai.system"] == "anthropic"


def test_a_budget_refusal_is_an_event_and_the_request_span_an_error(make_manager, emulator, spans):
    config = router_config(emulator, budgets=[{"name": "Tiny", "daily_limit": 0.0000001}])
    manager = make_manager(config, tracer_provider=spans.provider)
    with pytest.raises(BudgetExceededError):
        manager.process_request(ask(max_tokens=100))
    request, attempts = split(spans)
    assert attempts == []
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes["error.type"] == "BudgetExceededError"
    (refusal,) = [e for e in request.events if e.name == "router.budget_refused"]
    assert refusal.attributes["router.budget"] == "Tiny"


def test_streams_cache_hits_and_content_capture(make_manager, emulator, spans):
    config = router_config(emulator, cache={"enabled": True}, tracing={"capture_content": True})
    manager = make_manager(config, tracer_provider=spans.provider)
    with manager.stream_request(ask()) as stream:
        assert spans.get_finished_spans() == ()  # nothing ends before the stream does
        list(stream)
    request, (attempt,) = split(spans)
    assert request.attributes["gen_ai.request.stream"] is True
    assert json.loads(request.attributes["gen_ai.input.messages"])[0]["content"] == "Hello tracing"
    output = json.loads(request.attributes["gen_ai.output.messages"])
    assert output[0]["content"] == "Echo: Hello tracing"

    spans.clear()
    assert manager.process_request(ask()).cached
    request, attempts = split(spans)
    assert attempts == [] and request.attributes["router.cache.hit"] is True


def test_without_a_tracer_provider_nothing_is_traced(make_manager, emulator):
    from opentelemetry import trace

    manager = make_manager()
    assert trace.get_tracer_provider().__class__.__name__ == "ProxyTracerProvider"
    assert manager._tracing.request(manager.config and _request(), stream=False) is None


def _request() -> Any:
    from router.models import AIRequest

    return AIRequest.model_validate(ask())
