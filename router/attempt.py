"""One HTTP attempt, run on the caller's own thread (or a provider worker, for ``submit``).

The attempt builds the provider request, sends it, parses the answer and reports back:

- success: resolves the caller's job directly (the fastest path to the caller), queues the
  real cost for the budget actor and the outcome for the provider actor;
- failure: tells the provider actor, which decides between retry, failover and giving up.

A stream attempt is a generator the stream's iterator steps, one network read at a time. Once a
chunk has reached the caller a failure becomes an error chunk (no failover after the first
byte), and tokens seen on a cut or abandoned stream are billed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pykka

from router.actors.messages import Attempt, Outcome, Settle
from router.catalog import price
from router.errors import (
    AnswerCutError,
    MalformedResponseError,
    ProviderError,
    ProviderTimeoutError,
    RequestCancelledError,
    RequestTimeoutError,
    RouterError,
    StructuredOutputError,
)
from router.green import acquire
from router.ledger.base import UsageRecord
from router.models import AIResponse, ProviderType, StreamChunk, Usage
from router.params import dropped, output_ceiling, unsupported
from router.providers.base import ProviderAdapter, StreamAccumulator
from router.structured import parse_answer
from router.transport import HttpClient, SSEDecoder, decode_json, iter_reads

logger = logging.getLogger(__name__)

__all__ = ["AttemptContext", "Unbounded", "run_attempt"]


class Unbounded:
    """The slots of a provider without ``max_concurrency``: every attempt gets one at once."""

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return True

    def release(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """Everything an attempt needs for one provider; immutable, shared by all its attempts."""

    name: str
    provider_type: ProviderType
    adapter: ProviderAdapter
    client: HttpClient
    base_url: str
    # Bounds attempts in flight to ``max_concurrency`` on any thread (``Unbounded`` if unset).
    slots: threading.Semaphore | Unbounded
    keep_raw: bool = False
    audit: Any = None  # router.audit.AuditLog when the configuration opts in
    # router.actors.deferred.DeferredMessages: Settles are queued there instead of told
    # (one budget-actor wake-up per batch, not per request); None: tell the budget actor.
    settlements: Any = None
    # The provider actor's DeferredMessages: a success Outcome may be queued there (see
    # run_attempt's ``defer_success``); failures are always told.
    outcomes: Any = None


def _tell(ref: Any, message: Any) -> None:
    if type(message) is Outcome:
        _trace(message)
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        # The manager is stopping; the message has nobody left to act on it.
        logger.debug("dropped %s: actor stopped", type(message).__name__)


def _trace(outcome: Outcome) -> None:
    """The attempt's span (router.tracing), when the request is traced; never raises."""
    trace = outcome.attempt.job.trace
    if trace is not None:
        try:
            trace.attempt_finished(outcome)
        except Exception:
            logger.exception("tracing an attempt failed")


def _settle(ctx: AttemptContext, budget_ref: Any, message: Settle) -> None:
    if ctx.settlements is not None:
        ctx.settlements.add(message)
    else:
        _tell(budget_ref, message)


def _cost(info: Any, usage: Usage) -> float:
    return price(info, usage) if info is not None else 0.0


def _record(
    attempt: Attempt,
    ctx: AttemptContext,
    usage: Usage,
    cost: float,
    outcome: str,
    provider_request_id: str | None,
    record_id: str,
) -> UsageRecord:
    return UsageRecord(
        request_id=record_id,
        timestamp=time.time(),
        provider=ctx.name,
        provider_type=ctx.provider_type.value,
        model=attempt.candidate.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cost=cost,
        outcome=outcome,
        provider_request_id=provider_request_id,
    )


def _succeeded(
    ctx: AttemptContext, job: Any, outcome: Outcome, provider_ref: Any, defer: bool, *resolve: Any
) -> None:
    """Resolve the caller's job with ``resolve`` and report the success to the provider.

    A deferred outcome is queued *before* the job resolves (cheap, and then a caller that has
    its answer and asks for provider health sees it counted); a told one goes after, so the
    caller is not kept waiting for the wake-up of the provider actor.
    """
    _trace(outcome)  # before the request's span ends with the job
    if defer:
        ctx.outcomes.add(outcome)
    job.resolve(*resolve)
    if ctx.audit is not None:
        ctx.audit.write(job.id, job.request, outcome.response)
    if not defer:
        _tell(provider_ref, outcome)


def _without_key(error: RouterError, api_key: str | None) -> RouterError:
    """``error`` with this provider's own key cut out of its message.

    The adapters redact what looks like an OpenAI, Anthropic or Google key; the key of an
    OpenAI-compatible server can look like anything, and a server or proxy that echoes it in an
    error body put it in the caller's error, the logs and the health status (found by the
    secrets suite).
    """
    if api_key and len(api_key) >= 6 and api_key in error.message:
        error.message = error.message.replace(api_key, "[redacted]")
        error.args = (error.message,)
    return error


def run_attempt(
    ctx: AttemptContext,
    attempt: Attempt,
    api_key: str | None,
    provider_ref: Any,
    budget_ref: Any,
    defer_success: bool = False,
) -> Iterator[list[StreamChunk]] | None:
    """Run one attempt; never raises (every outcome is reported as a message).

    ``defer_success``: the provider allows this attempt's success to be queued in
    ``ctx.outcomes`` instead of told (its breaker was closed when it admitted the attempt;
    a half-open trial's result is always told at once).

    For a stream, returns its steps (see ``_stream_steps``) once the answer's headers are in:
    the stream's iterator drives them on its own thread.
    """
    job = attempt.job
    if job.done:
        _tell(
            provider_ref,
            Outcome(attempt, None, RequestCancelledError("cancelled"), 0.0, cancelled=True),
        )
        return None
    # One of the provider's ``max_concurrency`` slots, whichever thread runs the attempt (a
    # worker, or a caller reading on its own thread); the wait is bounded by the deadline.
    if not acquire(ctx.slots, max(0.0, job.remaining())):
        _deadline_passed(job)
        _tell(
            provider_ref,
            Outcome(attempt, None, RequestCancelledError("deadline"), 0.0, cancelled=True),
        )
        return None
    slot = [ctx.slots.release]  # emptied when a stream's steps take the slot over
    if job.trace is not None:
        try:
            job.trace.attempt_started(attempt)
        except Exception:
            logger.exception("tracing an attempt failed")
    try:
        return _run(ctx, attempt, api_key, provider_ref, budget_ref, defer_success, slot)
    finally:
        if slot:
            slot.pop()()


def _deadline_passed(job: Any) -> None:
    timeout = job.deadline - job.created
    job.fail(RequestTimeoutError(f"no answer within {timeout:g}s"))


def _run(
    ctx: AttemptContext,
    attempt: Attempt,
    api_key: str | None,
    provider_ref: Any,
    budget_ref: Any,
    defer_success: bool,
    slot: list[Callable[[], object]],
) -> Iterator[list[StreamChunk]] | None:
    defer_success = defer_success and ctx.outcomes is not None
    job = attempt.job
    started = time.perf_counter()
    # What is left of the caller's deadline bounds the wait for bytes when it is shorter
    # than the provider's own timeout; running out of it is then the caller's deadline, not a
    # provider failure (no breaker count).
    remaining = job.remaining()
    deadline_bound = remaining < ctx.client.read_timeout
    try:
        http_request = ctx.adapter.build_request(
            job.request,
            model=attempt.candidate.model,
            api_key=api_key,
            base_url=ctx.base_url,
            stream=job.is_stream,
            info=attempt.candidate.info,
        )
        response = ctx.client.send(
            http_request, read_timeout=max(0.001, remaining) if deadline_bound else None
        )
        if response.status_code >= 400:
            body = response.content
            raise _without_key(
                ctx.adapter.classify_error(
                    response.status_code, response.headers, body, provider=ctx.name
                ),
                api_key,
            )
        if job.is_stream:
            steps = _stream_steps(
                ctx,
                attempt,
                response,
                started,
                provider_ref,
                budget_ref,
                defer_success,
                slot.pop(),
            )
            next(steps)  # prime: the response is now closed and reported however it ends
            return steps
        body = decode_json(response, ctx.name)
        result = ctx.adapter.parse_response(
            body, model=attempt.candidate.model, request=job.request
        )
        result = _shaped(ctx, attempt, result)
    except StructuredOutputError as invalid:
        # The provider answered (and billed it), but not in the requested shape: book the
        # tokens under their own id, then let the next candidate (if any) try.
        usage = invalid.usage
        cost = _cost(attempt.candidate.info, usage)
        record = _record(
            attempt,
            ctx,
            usage,
            cost,
            "error",
            invalid.request_id,
            f"{job.id}.{ctx.name}.{attempt.number}",
        )
        _settle(ctx, budget_ref, Settle(None, record))
        _tell(provider_ref, Outcome(attempt, None, invalid, _ms(started)))
        return
    except AnswerCutError as cut:
        # The provider answered and bills it, but the usage went with the body: book the
        # most it can be and end the reservation with that record (a retry reserves anew).
        usage = cut_answer_usage(job, attempt.candidate.info)
        cost = _cost(attempt.candidate.info, usage)
        record = _record(
            attempt, ctx, usage, cost, "error", None, f"{job.id}.{ctx.name}.{attempt.number}"
        )
        _settle(ctx, budget_ref, Settle(attempt.reservation_id, record))
        ended = attempt.reservation_id is not None
        _tell(
            provider_ref,
            Outcome(
                attempt,
                None,
                cut,
                _ms(started),
                partial_usage=usage,
                partial_cost=cost,
                reservation_ended=ended,
            ),
        )
        return
    except ProviderTimeoutError as timed_out:
        if deadline_bound:
            _deadline_passed(job)
            cancelled = RequestCancelledError("the request's deadline passed")
            outcome = Outcome(attempt, None, cancelled, _ms(started), cancelled=True)
        else:
            outcome = Outcome(attempt, None, timed_out, _ms(started))
        _tell(provider_ref, outcome)
        return
    except RouterError as error:
        _tell(provider_ref, Outcome(attempt, None, error, _ms(started)))
        return
    except Exception as error:  # a bug or an unexpected body shape: never kill the worker
        logger.exception("%s: unexpected error in attempt", ctx.name)
        wrapped = MalformedResponseError(f"unexpected {type(error).__name__}", provider=ctx.name)
        _tell(provider_ref, Outcome(attempt, None, wrapped, _ms(started)))
        return
    latency = _ms(started)
    cost = _cost(attempt.candidate.info, result.usage)
    result = result.model_copy(
        update={
            "cost": cost,
            "provider": ctx.provider_type,
            "provider_name": ctx.name,
            "latency_ms": latency,
            "raw": body if ctx.keep_raw else None,
        }
    )
    _settle(
        ctx,
        budget_ref,
        Settle(
            attempt.reservation_id,
            _record(attempt, ctx, result.usage, cost, "success", result.request_id, job.id),
        ),
    )
    _succeeded(
        ctx, job, Outcome(attempt, result, None, latency), provider_ref, defer_success, result
    )


def _shaped(ctx: AttemptContext, attempt: Attempt, result: AIResponse) -> AIResponse:
    """``result`` with its parsed answer and the parameters that were left out.

    Raises :class:`StructuredOutputError` (carrying the usage to bill) when the answer does
    not follow the request's ``response_format``.
    """
    request = attempt.job.request
    problems = unsupported(request, ctx.provider_type, attempt.candidate.info)
    try:
        parsed = parse_answer(
            request, result.content, finish_reason=result.finish_reason, provider=ctx.name
        )
    except StructuredOutputError as invalid:
        invalid.usage = result.usage
        invalid.request_id = result.request_id
        raise
    if parsed is None and not problems:
        return result
    return result.model_copy(update={"parsed": parsed, "dropped_params": dropped(problems)})


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _stream_steps(
    ctx: AttemptContext,
    attempt: Attempt,
    response: Any,
    started: float,
    provider_ref: Any,
    budget_ref: Any,
    defer_success: bool,
    release_slot: Callable[[], object],
) -> Iterator[list[StreamChunk]]:
    """Read the stream; yields the content chunks of each network read, then settles.

    Every batch is yielded before the next read (which may block), so nothing that has
    arrived waits, and the first chunk is yielded alone at once. The stream's iterator drives
    it on its own thread and closes it to cancel: the tokens seen so far are billed as
    ``partial``. The final chunk or the error
    reaches the caller through the job (``resolve``/``fail``) after the last batch.
    """
    job = attempt.job
    parser = ctx.adapter.new_stream_parser(
        model=attempt.candidate.model, provider=ctx.name, request=job.request
    )
    accumulator = StreamAccumulator()
    decoder = SSEDecoder(ctx.name)
    job.on_cancel(response.close)
    job.answering = (ctx.provider_type, ctx.name, attempt.candidate.model)
    final: StreamChunk | None = None
    error: RouterError | None = None
    pending: list[StreamChunk] = []
    produced = 0  # content and tool-call chunks: each carried at least one output token

    def take(events: list[tuple[str, str]]) -> None:
        nonlocal final, produced
        for event, data in events:
            for chunk in parser.feed(event, data):
                if chunk.is_complete:
                    final = chunk
                else:
                    accumulator.add(chunk)
                    pending.append(chunk)
                    produced += 1

    try:
        try:
            # Primed by run_attempt: from here on, closing the steps (even before the first
            # read) ends up below, where the attempt is billed and reported.
            yield []
            for data in iter_reads(response, ctx.name):
                for event in decoder.feed(data):
                    take([event])
                    if pending and not job.started:
                        batch, pending = pending, []
                        yield batch  # the first chunk never waits for the rest of its read
                    if final is not None:
                        break
                if final is not None:
                    break
                if pending:
                    batch, pending = pending, []
                    yield batch
                if job.done:
                    raise RequestCancelledError("the caller closed the stream")
            if final is None:
                take(decoder.finish())
            if final is None:
                for chunk in parser.finish():
                    if chunk.is_complete:
                        final = chunk
                    else:
                        accumulator.add(chunk)
                        pending.append(chunk)
                        produced += 1
        except RouterError as exc:
            error = exc
        except GeneratorExit:
            error = RequestCancelledError("the caller closed the stream")
            pending = []
        except Exception as exc:
            if job.done:
                error = RequestCancelledError("the caller closed the stream")
            else:
                logger.exception("%s: unexpected error in stream", ctx.name)
                error = MalformedResponseError(
                    f"unexpected {type(exc).__name__}", provider=ctx.name
                )
        if pending:  # what was parsed before the end (or a failure) reaches the caller first
            try:
                yield pending
            except GeneratorExit:
                error = RequestCancelledError("the caller closed the stream")
    finally:
        job.clear_cancel_hooks()
        response.close()
    try:
        _settle_stream(
            ctx,
            attempt,
            parser,
            accumulator,
            final,
            error,
            started,
            provider_ref,
            budget_ref,
            defer_success,
            produced,
        )
    finally:
        release_slot()  # after the settlement: the next attempt sees this one billed


def _settle_stream(
    ctx: AttemptContext,
    attempt: Attempt,
    parser: Any,
    accumulator: StreamAccumulator,
    final: StreamChunk | None,
    error: RouterError | None,
    started: float,
    provider_ref: Any,
    budget_ref: Any,
    defer_success: bool,
    produced: int = 0,
) -> None:
    """Finish a stream attempt: resolve and bill it, or bill what it produced and report.

    Either way the attempt settles its reservation itself, with a usage record: a success,
    or a ``partial`` one for a stream that ended without its final event.
    """
    job = attempt.job
    latency = _ms(started)
    info = attempt.candidate.info
    if error is None and final is not None:
        usage = final.usage or parser.usage
        cost = _cost(info, usage)
        final = final.model_copy(
            update={
                "usage": usage,
                "cost": cost,
                "provider": ctx.provider_type,
                "provider_name": ctx.name,
                "model": final.model or attempt.candidate.model,
            }
        )
        accumulator.add(final)
        result: AIResponse = accumulator.response(
            usage=usage,
            model=attempt.candidate.model,
            request_id=final.request_id,
        ).model_copy(
            update={
                "cost": cost,
                "provider": ctx.provider_type,
                "provider_name": ctx.name,
                "latency_ms": latency,
            }
        )
        invalid: StructuredOutputError | None = None
        try:
            result = _shaped(ctx, attempt, result)
        except StructuredOutputError as exc:
            invalid = exc
        outcome_name = "success" if invalid is None else "error"
        _settle(
            ctx,
            budget_ref,
            Settle(
                attempt.reservation_id,
                _record(attempt, ctx, usage, cost, outcome_name, final.request_id, job.id),
            ),
        )
        if invalid is not None:
            # The text has reached the caller: no failover, the stream ends with an error chunk.
            job.fail(invalid)
            _tell(provider_ref, Outcome(attempt, None, invalid, latency, started=True))
            return
        final = final.model_copy(
            update={"parsed": result.parsed, "dropped_params": result.dropped_params}
        )
        outcome = Outcome(attempt, result, None, latency)
        _succeeded(ctx, job, outcome, provider_ref, defer_success, result, final)
        return

    # Cut, failed or abandoned after the provider accepted it (it bills what it processed):
    # bill what it reported, or an estimate, and end the reservation with that record. A
    # retry on this provider reserves anew (the provider actor sees ``reservation_ended``).
    usage = partial_usage(parser.usage, job.estimated_input_tokens, produced)
    cost = _cost(info, usage)
    cancelled = isinstance(error, RequestCancelledError)
    delivered = job.started
    # The request's own id is kept for the record of the attempt that answers it.
    suffix = "" if delivered or cancelled else f".{ctx.name}.{attempt.number}"
    _settle(
        ctx,
        budget_ref,
        Settle(
            attempt.reservation_id,
            _record(attempt, ctx, usage, cost, "partial", None, job.id + suffix),
        ),
    )
    if error is None:
        error = MalformedResponseError("the stream ended without a final event", provider=ctx.name)
    if delivered and not cancelled:
        # Past the first chunk there is no failover: the caller gets an error chunk.
        if not isinstance(error, ProviderError):
            error = MalformedResponseError(str(error), provider=ctx.name)
        job.fail(error)
    _tell(
        provider_ref,
        Outcome(
            attempt,
            None,
            error,
            latency,
            started=delivered,
            cancelled=cancelled,
            partial_usage=usage,
            partial_cost=cost,
            reservation_ended=attempt.reservation_id is not None,
        ),
    )


def cut_answer_usage(job: Any, info: Any) -> Usage:
    """What to bill for a non-streamed answer whose body broke off: the request's input
    estimate and the most output it may have been billed (``max_tokens`` and the thinking
    budget, or the model's limit), since the provider generated it all before sending."""
    ceiling = output_ceiling(job.request, info.max_output_tokens) if info is not None else 0
    return Usage(input_tokens=job.estimated_input_tokens, output_tokens=ceiling)


def partial_usage(reported: Usage, estimated_input: int, chunks: int) -> Usage:
    """What to bill for a stream that ended without its final event.

    The provider's own figures where it sent them. OpenAI reports usage only at the end, so a
    cut stream has none: the input is then the request's estimate (the provider processed the
    whole prompt before its first token) and the output at least one token per content or
    tool-call chunk received (a tool call's name arrives before any argument text).
    """
    input_tokens = reported.input_tokens or estimated_input
    output_tokens = max(reported.output_tokens, chunks)
    if input_tokens == reported.input_tokens and output_tokens == reported.output_tokens:
        return reported
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=min(reported.cached_input_tokens, input_tokens),
    )
