"""AIProviderManager: lifecycle, futures, streams and stats — the Python face of the router.

    with AIProviderManager("conf/ai_providers.yaml") as manager:
        response = manager.process_request(AIRequest(model="gpt-4o-mini", messages=[...]))

``submit`` returns a ``pykka.ThreadingFuture`` resolved exactly once; ``process_request`` waits
for it; ``stream_request`` returns an iterator of ``StreamChunk``. Any number of threads may
share one manager; two managers in one process share nothing.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal

import pykka
from pydantic import ValidationError

from router.activity import RequestSummary
from router.actors.budget import BudgetActor
from router.actors.deferred import DeferredMessages
from router.actors.messages import Admitted, Attempt, Dispatch, ExpireReservations, Reconfigure
from router.actors.provider import ProviderActor
from router.actors.supervisor import SupervisorActor, plan_direct
from router.actors.writeahead import WriteAheadSettlements, pending_directory
from router.attempt import AttemptContext, Unbounded, run_attempt
from router.budget import BudgetAlert
from router.cache import ReplayStream, ResponseCache, open_cache
from router.catalog import Catalog, load_catalog
from router.config import RouterConfig, config_from_dict, load_config
from router.errors import (
    ConfigError,
    InvalidRequestError,
    ManagerStoppedError,
    RequestTimeoutError,
    RouterError,
)
from router.fleet import FleetStore, LocalFleet, open_fleet
from router.fleet.sync import FleetSync, fleet_totals, health_figures
from router.health import HealthSnapshot
from router.jobs import FINISHED, Job, JobRegistry
from router.ledger import open_ledger
from router.ledger.base import LedgerStore, UsageRecord
from router.mcp.servers import MCPServers, ServerSpec
from router.models import AIRequest, AIResponse, MCPTool, ProviderSelection, ProviderType
from router.planner import Planner
from router.providers import get_adapter
from router.scheduler import Scheduler
from router.strategies import STRATEGIES, Candidate
from router.streams import ChunkStream
from router.transport import HttpClient

logger = logging.getLogger(__name__)

__all__ = ["AIProviderManager", "ChunkStream"]

# A provider without ``max_concurrency`` (no cap of the router's own): keep-alive connections
# kept per provider (more are opened when needed and closed after use), and the worker threads
# ``submit`` runs on (callers that wait run their attempts on their own threads, uncapped).
KEEP_ALIVE_CONNECTIONS = 1024
SUBMIT_WORKERS = 64

ConfigLike = RouterConfig | str | os.PathLike | Mapping[str, Any] | None


def _coerce_config(config: ConfigLike) -> RouterConfig:
    if isinstance(config, RouterConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config)
    return load_config(config)


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
    return "invalid request: " + "; ".join(parts)


def coerce_request(request: AIRequest | Mapping[str, Any]) -> AIRequest:
    """An ``AIRequest`` from a request or a dict; ``InvalidRequestError`` naming the field."""
    if isinstance(request, AIRequest):
        return request
    try:
        return AIRequest.model_validate(request)
    except ValidationError as error:
        raise InvalidRequestError(_validation_message(error)) from None


def _prepare(
    request: AIRequest | Mapping[str, Any],
    tools: Sequence[MCPTool | Mapping[str, Any]] | None,
    selection: ProviderSelection | Mapping[str, Any] | None,
    strategy: str | None,
    stream: bool | None,
    default_strategy: str = "cost",
) -> tuple[AIRequest, ProviderSelection | None, str]:
    """Validate a caller's request, tools, selection and strategy (``InvalidRequestError``)."""
    request = coerce_request(request)
    try:
        if tools:
            request = request.with_tools([MCPTool.model_validate(t) for t in tools])
        if selection is not None and not isinstance(selection, ProviderSelection):
            selection = ProviderSelection.model_validate(selection)
    except ValidationError as error:
        raise InvalidRequestError(_validation_message(error)) from None
    if stream is not None and request.stream != stream:
        request = request.model_copy(update={"stream": stream})
    strategy = strategy or default_strategy
    if strategy not in STRATEGIES:
        raise InvalidRequestError(f"unknown strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    return request, selection, strategy


class AIProviderManager:
    """Routes requests to the configured providers; see the module docstring."""

    def __init__(
        self,
        config: ConfigLike = None,
        *,
        catalog: Catalog | None = None,
        ledger: LedgerStore | None = None,
        alert_callbacks: Sequence[Callable[[BudgetAlert], Any]] = (),
        keep_raw: bool = False,
        tracer_provider: Any = None,
        clock: Callable[[], float] = time.monotonic,
        fleet: FleetStore | None = None,
    ) -> None:
        self.config = _coerce_config(config)
        self._clock = clock  # breaker time; injectable so tests need not wait
        self._catalog = catalog
        self._ledger = ledger
        # What processes share besides spend (router.fleet): given, or opened from the
        # ledger's Redis at start; None = this process alone.
        self._fleet_store = fleet
        self._fleet: FleetStore | None = None
        self._fleet_sync: FleetSync | None = None
        self._alert_callbacks: list[Callable[[BudgetAlert], Any]] = list(alert_callbacks)
        self._keep_raw = keep_raw
        self._lock = threading.Lock()
        self._running = False
        self._registry = JobRegistry()
        self._scheduler: Scheduler | None = None
        self._supervisor: Any = None
        self._budget: Any = None
        self._providers: dict[str, Any] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._clients: dict[str, HttpClient] = {}
        self._expire_timer: Any = None
        self._audit: Any = None
        self._direct: tuple[Planner, dict[str, HealthSnapshot]] | None = None
        self._doors: dict[str, tuple[str | None] | None] = {}
        self._contexts: dict[str, AttemptContext] = {}
        self._cache: ResponseCache | None = None
        self._tracer_provider = tracer_provider
        self._request_listeners: list[Callable[[RequestSummary], Any]] = []
        self._tracing: Any = None  # router.tracing.Tracing when opentelemetry is installed
        self._mcp: MCPServers | None = None
        self._agent_pool: ThreadPoolExecutor | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog(self.config.catalog)
        return self._catalog

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> AIProviderManager:
        """Start every actor; configuration and ledger errors are raised here."""
        with self._lock:
            if self._running:
                return self
            catalog = self.catalog
            planner = Planner(self.config, catalog)
            store = self._ledger if self._ledger is not None else open_ledger(self.config.ledger)
            if self.config.audit_log:
                from router.audit import AuditLog

                self._audit = AuditLog(self.config.audit_log)
            self._scheduler = Scheduler().start()
            self._mcp = MCPServers(self.config.mcp_servers)
            try:
                self._fleet = (
                    self._fleet_store
                    if self._fleet_store is not None
                    else open_fleet(self.config.ledger) or LocalFleet()
                )
                if self._fleet.shared:
                    self._fleet_sync = FleetSync(self._fleet, clock=self._clock)
                self._cache = open_cache(self.config)
                if self._cache is not None:
                    self._registry.listeners.append(self._remember)
                self._tracing = _open_tracing(self.config, self._tracer_provider)
                if self._tracing is not None:
                    self._registry.listeners.append(_end_trace)
                self._start_actors(planner, store)
            except Exception:
                self._teardown()
                raise
            self._running = True
        return self

    def _start_actors(self, planner: Planner, store: LedgerStore) -> None:
        config = self.config
        # Any budget, even a disabled one, may be switched on at run time: keep reserving.
        has_budgets = bool(config.budgets)
        assert self._scheduler is not None
        # Workers queue their Settles here; the budget actor handles them in batches.
        pending_dir = pending_directory(config.ledger) if self._ledger is None else None
        settlements = (
            WriteAheadSettlements(self._scheduler, pending_dir)
            if pending_dir is not None
            else DeferredMessages(self._scheduler)
        )
        self._budget = BudgetActor.start(
            config.budgets,
            store,
            timezone=config.timezone,
            reservation_ttl=config.ledger.reservation_ttl,
            provider_types={p.name: p.type.value for p in config.providers},
            alert_callbacks=self._alert_callbacks,
            settlements=settlements,
            pending_dir=pending_dir,
        )
        settlements.target = self._budget
        # The supervisor's snapshot cache; providers publish into it (see ProviderActor._push).
        board: dict[str, HealthSnapshot] = {}
        # Without budgets a caller whose request has one candidate skips the supervisor.
        self._direct = None if has_budgets else (planner, board)
        self._supervisor = SupervisorActor.start(
            planner, has_budgets=has_budgets, clock=self._clock, snapshots=board
        )
        for provider in config.providers:
            adapter = get_adapter(provider.type)
            limit = provider.max_concurrency
            client = HttpClient(
                provider.name,
                connect_timeout=provider.connect_timeout,
                read_timeout=provider.timeout,
                pool=limit or KEEP_ALIVE_CONNECTIONS,
            )
            executor = ThreadPoolExecutor(
                max_workers=limit or SUBMIT_WORKERS, thread_name_prefix=f"router-{provider.name}"
            )
            context = AttemptContext(
                name=provider.name,
                provider_type=provider.type,
                adapter=adapter,
                client=client,
                base_url=provider.effective_base_url,
                keep_raw=self._keep_raw,
                audit=self._audit,
                settlements=settlements,
                outcomes=(outcomes := DeferredMessages(self._scheduler)),
                slots=threading.Semaphore(limit) if limit else Unbounded(),
            )
            self._clients[provider.name] = client
            self._contexts[provider.name] = context
            self._executors[provider.name] = executor
            self._providers[provider.name] = ProviderActor.start(
                provider,
                context,
                executor,
                self._scheduler,
                self._supervisor,
                self._budget,
                clock=self._clock,
                board=board,
                outcomes=outcomes,
                doors=self._doors,
                fleet=self._fleet_sync,
            )
            outcomes.target = self._providers[provider.name]
        self._supervisor.ask(("wire", dict(self._providers), self._budget))
        if self._fleet_sync is not None:
            self._fleet_sync.start(self._providers, board)
        # Snapshots are pushed on start; wait for them so the first request sees real state.
        for ref in self._providers.values():
            ref.ask("snapshot")
        self._supervisor.ask("snapshots")
        if config.ledger.type != "memory":
            self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        interval = max(1.0, min(60.0, self.config.ledger.reservation_ttl / 2))

        def tick() -> None:
            try:
                self._budget.tell(ExpireReservations())
            except pykka.ActorDeadError:
                return
            if self._scheduler is not None:
                self._expire_timer = self._scheduler.call_later(interval, tick)

        assert self._scheduler is not None
        self._expire_timer = self._scheduler.call_later(interval, tick)

    def stop(self, timeout: float = 10.0) -> None:
        """Fail every pending request, drain workers, stop every actor. Idempotent."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            for job in self._registry.pending():
                job.fail(ManagerStoppedError("the router was stopped"))
            self._stop_agents(timeout)
            self._teardown(timeout)

    def _stop_agents(self, timeout: float) -> None:
        """Close the MCP sessions (their processes, the loop thread), then the agent runs.

        Runs in progress fail at their next step: their model calls were failed above, their
        tool calls end with the sessions, and a new turn finds the router stopped.
        """
        if self._mcp is not None:
            self._mcp.close(timeout)
        pool, self._agent_pool = self._agent_pool, None
        if pool is not None:
            pool.shutdown(wait=False)
            deadline = time.monotonic() + timeout
            for thread in list(getattr(pool, "_threads", ())):
                thread.join(max(0.0, deadline - time.monotonic()))

    def _teardown(self, timeout: float = 10.0) -> None:
        if self._fleet_sync is not None:
            self._fleet_sync.stop()
            self._fleet_sync = None
        if self._supervisor is not None:
            _stop_actor(self._supervisor)
        deadline = time.monotonic() + timeout
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        # Attempts on callers' threads settle like the workers' before the budget stops.
        self._registry.wait_inline(timeout)
        for executor in self._executors.values():
            for thread in list(getattr(executor, "_threads", ())):
                thread.join(max(0.0, deadline - time.monotonic()))
        for ref in self._providers.values():
            _stop_actor(ref)
        if self._budget is not None:
            _stop_actor(self._budget)  # after the workers: their last settlements land first
        for client in self._clients.values():
            client.close()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._audit is not None:
            self._audit.close()
            self._audit = None
        if self._cache is not None:
            self._registry.listeners.remove(self._remember)
            self._cache.close()
            self._cache = None
        if self._tracing is not None:
            self._registry.listeners.remove(_end_trace)
            self._tracing = None
        self._providers.clear()
        self._executors.clear()
        self._clients.clear()
        self._contexts.clear()
        self._doors.clear()
        if self._mcp is not None:  # a start that failed half-way
            self._mcp.close(timeout)
        self._supervisor = self._budget = self._scheduler = None
        if self._fleet is not None and self._fleet is not self._fleet_store:
            self._fleet.close()  # opened here
        self._fleet = None

    def __enter__(self) -> AIProviderManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- requests ----------------------------------------------------------------------------

    def _new_job(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        tools: Sequence[MCPTool | Mapping[str, Any]] | None,
        strategy: str | None,
        selection: ProviderSelection | Mapping[str, Any] | None,
        timeout: float | None,
        stream: bool,
        inline: bool = False,
    ) -> Job | AIResponse:
        """A job on its way, or the cached answer (when the response cache has it)."""
        self._require_running()
        request, selection, strategy = _prepare(
            request, tools, selection, strategy, stream, self.config.default_strategy
        )
        if timeout is None:
            timeout = self.config.request_timeout
        elif timeout <= 0:
            raise InvalidRequestError("timeout must be > 0")
        tracing = self._tracing
        trace = tracing.request(request, stream=stream) if tracing is not None else None
        cache_key = None
        cache = self._cache
        if cache is not None:
            cache_key = cache.key_for(request, selection)
            if cache_key is not None:
                hit = cache.lookup(cache_key)
                if hit is not None and request.response_format is not None:
                    hit = _reparsed(request, hit)
                if hit is not None:
                    if trace is not None:
                        trace.cache_hit(hit)
                    if self._request_listeners:
                        self._tell_listeners(_cached_summary(hit, stream))
                    return hit
        job = Job(
            request,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
            registry=self._registry,
            stream=stream,
            inline=inline,
        )
        job.cache_key = cache_key
        job.trace = trace
        self._registry.add(job)
        assert self._scheduler is not None
        job.timer = self._scheduler.call_at(
            job.deadline,
            lambda: job.fail(RequestTimeoutError(f"no answer within {timeout:g}s")),
        )
        try:
            if self._direct is None:
                self._supervisor.tell(Dispatch(job))
            else:
                planner, board = self._direct
                found = plan_direct(job, planner, board, self._providers, self._clock())
                if isinstance(found, Dispatch):
                    self._supervisor.tell(found)
                elif not self._admit_here(job, found):
                    self._providers[found.provider].tell(Attempt(job, found, None, True))
        except pykka.ActorDeadError:
            job.fail(ManagerStoppedError("the router was stopped"))
        return job

    def _admit_here(self, job: Job, candidate: Candidate) -> bool:
        """Admit a waiting caller's attempt on its own thread if the provider's door is open.

        The provider publishes an open door (with its current key) while admitting is a
        formality: breaker closed, usable, no client-side rate limit. The attempt is then put
        straight into the caller's inbox and the provider learns of it from a queued
        ``Admitted`` (counted before its outcome), so a request crosses no thread at all.
        """
        door = self._doors.get(candidate.provider)
        if door is None:
            return False
        inbox = job.inbox
        if inbox is None:
            return False
        context = self._contexts[candidate.provider]
        attempt = Attempt(job, candidate, None, True)
        job.attempts += 1
        context.outcomes.add(Admitted(attempt))
        provider = self._providers[candidate.provider]
        # defer_success: the breaker was closed (the door is open only then).
        task = partial(run_attempt, context, attempt, door[0], provider, self._budget, True)
        if not job.offer_inline(task):
            task()  # the job already ended: the attempt reports itself cancelled
        return True

    def submit(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        tools: Sequence[MCPTool | Mapping[str, Any]] | None = None,
        strategy: str | None = None,
        selection: ProviderSelection | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> pykka.ThreadingFuture:
        """Send a request; the future resolves exactly once to an ``AIResponse`` or an error."""
        job = self._new_job(
            request,
            tools=tools,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
            stream=False,
        )
        if isinstance(job, AIResponse):
            future: pykka.ThreadingFuture = pykka.ThreadingFuture()
            future.set(job)
            return future
        return job.future

    def process_request(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        tools: Sequence[MCPTool | Mapping[str, Any]] | None = None,
        strategy: str | None = None,
        selection: ProviderSelection | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> AIResponse:
        """Send a request and wait for the answer (raises the typed error on failure).

        The HTTP call runs on the calling thread: the provider actor admits the attempt and
        hands it back here instead of to a worker, so a request costs two thread hand-offs
        fewer than ``submit(...).get()``. Retries and failover still go through the actors.
        """
        job = self._new_job(
            request,
            tools=tools,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
            stream=False,
            inline=True,
        )
        if isinstance(job, AIResponse):
            return job
        inbox = job.inbox
        assert inbox is not None
        # The job's own deadline resolves the future; the margin only guards against a bug.
        wait = job.remaining() + 30.0
        try:
            while not job.done:
                try:
                    task = inbox.get(timeout=max(0.0, wait))
                except queue.Empty:
                    break
                if task is not FINISHED and job.claim(task):
                    self._registry.run_inline(task)
        finally:
            for task in job.detach_inline():  # admitted as the job ended: report them
                self._registry.run_inline(task)
        return job.future.get(timeout=0 if job.done else 0.001)

    def stream_request(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        tools: Sequence[MCPTool | Mapping[str, Any]] | None = None,
        strategy: str | None = None,
        selection: ProviderSelection | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChunkStream | ReplayStream:
        """Stream the answer: an iterator of ``StreamChunk`` (see ``ChunkStream``).

        A response-cache hit is a ``ReplayStream`` of the cached answer (``cached`` is True).
        """
        job = self._new_job(
            request,
            tools=tools,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
            stream=True,
            inline=True,
        )
        if isinstance(job, AIResponse):
            return ReplayStream(job)
        return ChunkStream(job, self._registry)

    def _remember(self, job: Job, response: AIResponse | None, error: object) -> None:
        """Registry listener: a fresh answer goes into the response cache."""
        cache = self._cache
        if response is not None and job.cache_key is not None and cache is not None:
            cache.store_response(job.cache_key, response)

    # --- agents ------------------------------------------------------------------------------

    @property
    def mcp(self) -> MCPServers:
        """The MCP servers of this manager (sessions are opened on first use)."""
        self._require_running()
        assert self._mcp is not None
        return self._mcp

    def _agent_run(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        mcp_servers: Sequence[ServerSpec] | None,
        max_turns: int,
        tool_timeout: float | None,
        approve: Any,
        strategy: str | None,
        selection: ProviderSelection | Mapping[str, Any] | None,
        timeout: float | None,
    ) -> Any:
        from router.agent import AgentRun

        self._require_running()
        request, selection, strategy = _prepare(
            request, None, selection, strategy, None, self.config.default_strategy
        )
        if timeout is None:
            timeout = self.config.request_timeout
        elif timeout <= 0:
            raise InvalidRequestError("timeout must be > 0")
        servers = self.mcp.resolve(mcp_servers)
        if not servers:
            raise InvalidRequestError(
                "no MCP server to run the agent with: configure mcp_servers or pass mcp_servers="
            )
        return AgentRun(
            self,
            request,
            servers,
            max_turns=max_turns,
            tool_timeout=tool_timeout,
            approve=approve,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
        )

    def run_agent(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        mcp_servers: Sequence[ServerSpec] | None = None,
        max_turns: int = 8,
        tool_timeout: float | None = None,
        approve: Callable[[Any], bool] | None = None,
        strategy: str | None = None,
        selection: ProviderSelection | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> pykka.ThreadingFuture:
        """Run the agent loop (model turns and MCP tool calls); a future of an ``AgentResult``.

        ``mcp_servers``: configured server names and/or ad-hoc server configs (dicts); None
        means every enabled configured server. ``max_turns``: at most this many model calls.
        ``tool_timeout``: seconds per tool call (default: each server's ``timeout``).
        ``approve(ToolCallRequest) -> bool``: called on the run's thread before each call; a
        refused call is reported to the model. ``timeout``: the whole run's deadline. Errors
        are the router's typed errors, each with ``agent_result`` (see ``docs/agents.md``).
        """
        run = self._agent_run(
            request,
            mcp_servers=mcp_servers,
            max_turns=max_turns,
            tool_timeout=tool_timeout,
            approve=approve,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
        )
        future: pykka.ThreadingFuture = pykka.ThreadingFuture()

        def drive() -> None:
            steps = run.steps(stream=False)
            try:
                while True:
                    next(steps)
            except StopIteration as stop:
                future.set(stop.value)
            except BaseException:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception()

        with self._lock:
            self._require_running()
            if self._agent_pool is None:
                self._agent_pool = ThreadPoolExecutor(
                    max_workers=32, thread_name_prefix="router-agent"
                )
            self._agent_pool.submit(drive)
        return future

    def stream_agent(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        mcp_servers: Sequence[ServerSpec] | None = None,
        max_turns: int = 8,
        tool_timeout: float | None = None,
        approve: Callable[[Any], bool] | None = None,
        strategy: str | None = None,
        selection: ProviderSelection | Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The agent loop as an ``AgentStream``: model chunks and tool events, in order.

        Same arguments as :meth:`run_agent`; the loop runs on the iterating thread.
        """
        from router.agent import AgentStream

        run = self._agent_run(
            request,
            mcp_servers=mcp_servers,
            max_turns=max_turns,
            tool_timeout=tool_timeout,
            approve=approve,
            strategy=strategy,
            selection=selection,
            timeout=timeout,
        )
        return AgentStream(run.steps(stream=True))

    # --- insight -----------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._running:
            raise ManagerStoppedError("the router is not running; call start() or use 'with'")

    def provider_health(self) -> dict[str, HealthSnapshot]:
        """The current health snapshot of every provider."""
        self._require_running()
        futures = {name: ref.ask("snapshot", block=False) for name, ref in self._providers.items()}
        return {name: future.get(timeout=10) for name, future in futures.items()}

    def get_cost_recommendations(
        self,
        request: AIRequest | Mapping[str, Any],
        *,
        tools: Sequence[MCPTool | Mapping[str, Any]] | None = None,
        selection: ProviderSelection | Mapping[str, Any] | None = None,
        strategy: str = "cost",
        by: Literal["provider_type", "model"] = "provider_type",
    ) -> dict[Any, dict[str, Any]]:
        """What the request would cost where, with each provider's health.

        ``by="provider_type"`` (the product document's shape): keyed by :class:`ProviderType`,
        the cheapest model (by expected cost, usable ones first) each provider type could
        serve the request with; types with no candidate for it are left out.
        ``by="model"``: every candidate keyed ``"provider/model"`` — the ranked ones in
        strategy order, then those that cannot serve, with the ``reason``.

        Each row: ``provider``, ``provider_type``, ``model``, ``estimated_cost`` (worst case,
        what a budget reserves), ``expected_cost`` (what the cost strategy ranks by),
        ``health_score``, ``status``, ``available``, ``rank``, ``reason``; per type also
        ``candidate`` (its ``"provider/model"``).
        """
        if by not in ("provider_type", "model"):
            raise ValueError(f"by must be 'provider_type' or 'model', not {by!r}")
        self._require_running()
        request, selection, strategy = _prepare(request, tools, selection, strategy, None)
        rows = self._supervisor.ask(("plan", request, selection, strategy), timeout=10)
        health = self.provider_health()
        out: dict[str, dict[str, Any]] = {}
        rank = 0
        for row in rows:
            candidate = row["candidate"]
            if isinstance(candidate, Candidate):
                rank += 1
                snap = health.get(candidate.provider)
                available = (
                    snap is not None
                    and snap.disabled_reason is None
                    and (snap.circuit_state != "open")
                )
                out[candidate.key] = {
                    "provider": candidate.provider,
                    "provider_type": candidate.provider_type,
                    "model": candidate.model,
                    "estimated_cost": candidate.estimated_cost,
                    "expected_cost": candidate.expected_cost,
                    "health_score": snap.health_score if snap else 0.0,
                    "status": snap.status.value if snap else "unknown",
                    "available": available,
                    "rank": rank,
                    "reason": None
                    if available
                    else (snap.disabled_reason if snap else None) or "circuit open",
                }
            else:
                provider, _, model = candidate.partition("/")
                snap = health.get(provider)
                out[candidate] = {
                    "provider": provider,
                    "provider_type": snap.provider_type if snap else None,
                    "model": model,
                    "estimated_cost": None,
                    "expected_cost": None,
                    "health_score": snap.health_score if snap else 0.0,
                    "status": snap.status.value if snap else "unknown",
                    "available": False,
                    "rank": None,
                    "reason": row["reason"],
                }
        if by == "model":
            return out
        return _cheapest_per_type(out)

    def get_budget_status(self) -> dict[str, Any]:
        """Each budget limit (spent, reserved, limit, percentage), spend per provider, alerts."""
        self._require_running()
        return self._budget.ask("status", timeout=10)

    def get_budget_alerts(self) -> list[dict[str, Any]]:
        """Alerts fired so far: budget_name, threshold, percentage, spent, limit, period."""
        self._require_running()
        return self._budget.ask("alerts", timeout=10)

    def usage_records(
        self, *, since: float | None = None, limit: int | None = None
    ) -> list[UsageRecord]:
        """Usage records from the ledger (no prompt or response content)."""
        self._require_running()
        return self._budget.ask(("records", since, limit), timeout=30)

    def add_request_listener(self, callback: Callable[[RequestSummary], Any]) -> None:
        """Call ``callback(summary)`` once per finished request (answered, cached or failed).

        A ``router.activity.RequestSummary``: provider, model, tokens, cost, latency, outcome,
        the candidates that failed; never content. It runs on the thread that finished the
        request (often the caller's): keep it quick. The status page uses it.
        """
        with self._lock:
            if not self._request_listeners:
                self._registry.listeners.append(self._summarize)
            self._request_listeners.append(callback)

    def remove_request_listener(self, callback: Callable[[RequestSummary], Any]) -> None:
        with self._lock:
            if callback in self._request_listeners:
                self._request_listeners.remove(callback)
            if not self._request_listeners and self._summarize in self._registry.listeners:
                self._registry.listeners.remove(self._summarize)

    def _summarize(self, job: Job, response: AIResponse | None, error: Any) -> None:
        failed = tuple(
            (key.partition("/")[0], type(failure).__name__)
            for key, failure in job.errors.items()
            if failure is not error
        )
        latency = (time.monotonic() - job.created) * 1000.0
        if response is not None:
            usage = response.usage
            summary = RequestSummary(
                time.time(),
                job.id,
                response.provider_name,
                response.model,
                usage.input_tokens,
                usage.output_tokens,
                response.cost,
                latency,
                "success",
                stream=job.is_stream,
                failed=failed,
            )
        else:
            provider = getattr(error, "provider", None)
            summary = RequestSummary(
                time.time(),
                job.id,
                provider if provider in self._providers else "",
                job.request.model or "",  # as requested: nothing served it
                0,
                0,
                0.0,
                latency,
                "error",
                error_type=type(error).__name__,
                stream=job.is_stream,
                failed=failed,
            )
        self._tell_listeners(summary)

    def _tell_listeners(self, summary: RequestSummary) -> None:
        for callback in list(self._request_listeners):
            try:
                callback(summary)
            except Exception:  # an observer must never break the request it observes
                logger.exception("request listener %r failed", callback)

    def add_alert_callback(self, callback: Callable[[BudgetAlert], Any]) -> None:
        """Call ``callback(alert)`` (on the budget actor's thread; keep it quick) per alert."""
        self._alert_callbacks.append(callback)

    def get_manager_stats(self) -> dict[str, Any]:
        """Usage, per-provider health and budget figures (the seed's shape, extended)."""
        self._require_running()
        usage = self._registry.snapshot()
        health = self.provider_health()
        budget = self.get_budget_status()
        usage["reserved_budget"] = budget.get("reserved", 0.0)
        return {
            "usage_stats": usage,
            "providers": {name: snap.to_dict() for name, snap in health.items()},
            "models": usage.pop("by_model"),
            "budget": budget,
            "fleet": self.fleet_status(health),
            "cache": self.cache_stats(),
        }

    def fleet_status(self, health: Mapping[str, HealthSnapshot] | None = None) -> dict[str, Any]:
        """What this process shares with the others on its Redis ledger (``router.fleet``):
        the store's state (``shared``, ``warning`` while Redis is unreachable), every live
        worker's provider figures (``workers``, by ``host:pid``), and their sum per provider
        (``providers``). Without a shared ledger, a fleet of one: this process."""
        self._require_running()
        store = self._fleet
        assert store is not None
        out = store.stats()
        workers = store.read_health() if store.shared else None
        if not workers or store.worker not in workers:
            # Alone, unreachable, or not yet published: this process's own figures now.
            if health is None:
                health = self.provider_health()
            own = {name: health_figures(snap) for name, snap in health.items()}
            workers = {**(workers or {}), store.worker: {"worker": store.worker, "providers": own}}
        out["workers"] = workers
        out["providers"] = fleet_totals(workers)
        return out

    def cache_stats(self) -> dict[str, Any]:
        """The response cache's counters (hits, misses, bypassed, stored, rejected, errors)."""
        cache = self._cache
        return cache.stats() if cache is not None else {"enabled": False}

    # --- runtime changes ---------------------------------------------------------------------

    def _provider_ref(self, name: str) -> Any:
        self._require_running()
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(self._providers)
            raise ConfigError(f"unknown provider '{name}' (configured: {known})") from None

    def set_provider_enabled(self, name: str, enabled: bool) -> None:
        """Take a provider out of rotation or bring it back, without a restart."""
        self._provider_ref(name).ask(Reconfigure({"enabled": enabled}), timeout=10)
        self._supervisor.ask("snapshots", timeout=10)  # the pushed snapshot has landed

    def update_provider(
        self,
        name: str,
        *,
        priority: int | None = None,
        api_key: str | None = None,
        enabled: bool | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> None:
        """Change priority, rotate the key, enable/disable or set rate limits at run time."""
        changes: dict[str, Any] = {"priority": priority, "api_key": api_key, "enabled": enabled}
        if rpm is not None:
            changes["rpm"] = rpm or None
        if tpm is not None:
            changes["tpm"] = tpm or None
        self._provider_ref(name).ask(Reconfigure(changes), timeout=10)
        self._supervisor.ask("snapshots", timeout=10)

    def update_budget(
        self,
        name: str,
        *,
        daily_limit: float | None = None,
        monthly_limit: float | None = None,
        provider_limits: Mapping[str, float] | None = None,
        alert_thresholds: Sequence[float] | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        """Change a configured budget at run time (spend so far is kept); returns it."""
        self._require_running()
        changes = {
            key: value
            for key, value in (
                ("daily_limit", daily_limit),
                ("monthly_limit", monthly_limit),
                ("provider_limits", dict(provider_limits) if provider_limits is not None else None),
                ("alert_thresholds", alert_thresholds),
                ("enabled", enabled),
            )
            if value is not None
        }
        return self._budget.ask(("update_budget", name, changes), timeout=10)


def _reparsed(request: AIRequest, hit: AIResponse) -> AIResponse | None:
    """A structured cached answer with ``parsed`` built again for this request (an instance
    of its pydantic class, if it gave one); None (a miss) if it no longer parses."""
    from router.structured import parse_answer

    try:
        parsed = parse_answer(request, hit.content, finish_reason=hit.finish_reason)
    except RouterError:
        return None
    return hit.model_copy(update={"parsed": parsed})


def _cached_summary(hit: AIResponse, stream: bool) -> RequestSummary:
    usage = hit.usage
    return RequestSummary(
        time.time(),
        hit.request_id or "",
        hit.provider_name,
        hit.model,
        usage.input_tokens,
        usage.output_tokens,
        0.0,
        hit.latency_ms,
        "cached",
        stream=stream,
    )


def _open_tracing(config: RouterConfig, tracer_provider: Any) -> Any:
    """A ``router.tracing.Tracing``, or None when turned off or opentelemetry is missing."""
    if not config.tracing.enabled:
        return None
    try:
        from router.tracing import Tracing
    except ImportError:  # opentelemetry-api is optional: no tracing, no cost
        return None
    return Tracing(tracer_provider, capture_content=config.tracing.capture_content)


def _end_trace(job: Job, response: AIResponse | None, error: BaseException | None) -> None:
    """Registry listener: a traced request's span ends with its job."""
    if job.trace is not None:
        job.trace.finished(job, response, error)


def _stop_actor(ref: Any) -> None:
    try:
        ref.stop(block=True, timeout=10)
    except (pykka.ActorDeadError, pykka.Timeout):
        pass


# RouterError is re-exported for ``except router.manager.RouterError`` convenience.
__all__ += ["RouterError"]


def _cheapest_per_type(rows: Mapping[str, dict[str, Any]]) -> dict[ProviderType, dict[str, Any]]:
    """The product document's recommendation shape: one row per provider type, its cheapest
    ranked candidate (usable ones first; unknown prices last)."""
    best: dict[ProviderType, dict[str, Any]] = {}
    for key, row in rows.items():
        if row["rank"] is None:
            continue
        kind = ProviderType(row["provider_type"])
        mine = _cheapness(row)
        if kind not in best or mine < _cheapness(best[kind]):
            best[kind] = {"candidate": key, **row}
    return best


def _cheapness(row: Mapping[str, Any]) -> tuple[bool, bool, float, int]:
    cost = row["expected_cost"]
    return (not row["available"], cost is None, cost or 0.0, row["rank"])
