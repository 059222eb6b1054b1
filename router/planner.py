"""Which (provider, model) pairs could serve a request, and why the others cannot.

Pure: reads the configuration and the catalog, never the network or an actor. The supervisor
calls :meth:`Planner.plan` once per request, then orders the result by strategy.

Model resolution:

- no model: the configuration's ``default_model`` if set, else every provider with its own
  default model (``default_model``, else the first of ``models``, else a built-in choice);
- a ``model_groups`` alias: one model per listed provider;
- ``"<provider-name>/<model>"``: that model on that instance only;
- a concrete model id: every provider instance that serves it (its ``models`` list names it,
  or the list is empty and the catalog says the model belongs to the provider's type;
  OpenAI-compatible instances with no list accept any model).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

from router.budget import worst_case_cost
from router.catalog import Catalog, ModelInfo
from router.config import ProviderConfig, RouterConfig
from router.errors import BudgetExceededError, ModelNotFoundError
from router.models import AIRequest, ProviderCapability, ProviderSelection, ProviderType
from router.params import output_ceiling, refusal, unsupported
from router.strategies import Candidate
from router.tokens import input_token_bound, measure_request
from router.tools import check_tool

__all__ = ["Planner", "Plan", "DEFAULT_MODELS", "EXPECTED_OUTPUT_TOKENS"]

#: The output length the cost strategy assumes for every candidate when ``max_tokens`` is unset
#: (a typical chat answer). Only ranking uses it; budgets reserve the model's maximum output.
EXPECTED_OUTPUT_TOKENS = 500

# Used when a provider names no model of its own: a cheap current model of each type.
DEFAULT_MODELS = {
    ProviderType.OPENAI: "gpt-4o-mini",
    ProviderType.ANTHROPIC: "claude-3-5-haiku-20241022",
    ProviderType.GOOGLE: "gemini-2.0-flash",
}


@dataclass
class Plan:
    candidates: list[Candidate]
    reasons: dict[str, str] = field(default_factory=dict)
    budget_refusals: list[BudgetExceededError] = field(default_factory=list)
    estimated_input_tokens: int = 0


class Planner:
    """Builds candidate lists from a configuration and a catalog."""

    def __init__(self, config: RouterConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self._providers = {p.name: p for p in config.providers}

    def default_model(self, provider: ProviderConfig) -> str | None:
        if provider.default_model:
            return provider.default_model
        if provider.models:
            return provider.models[0]
        return DEFAULT_MODELS.get(provider.type)

    def resolve(self, model: str | None) -> list[tuple[ProviderConfig, str]]:
        """(provider, model) pairs for a requested model name; ``ModelNotFoundError`` if none."""
        providers = list(self.config.providers)
        model = model or self.config.default_model
        if model is None:
            pairs = [(p, self.default_model(p)) for p in providers]
            return [(p, m) for p, m in pairs if m]
        group = self.config.model_groups.get(model)
        if group is not None:
            return [(self._providers[m.provider], m.model) for m in group]
        if "/" in model:
            name, _, concrete = model.partition("/")
            if name in self._providers:
                return [(self._providers[name], concrete)]
        info = self.catalog.get(model)
        pairs = [(p, model) for p in providers if model in p.models]
        if not pairs and info is not None:
            pairs = [(p, model) for p in providers if not p.models and _serves(p, info)]
        if not pairs:
            pairs = [
                (p, model)
                for p in providers
                if p.type == ProviderType.OPENAI_COMPATIBLE and not p.models
            ]
        if not pairs:
            known = sorted(
                {m.id for m in self.catalog} | set(self.config.model_groups) | _listed(providers)
            )
            close = difflib.get_close_matches(model, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelNotFoundError(f"no configured provider serves model '{model}'{hint}")
        return pairs

    def plan(self, request: AIRequest, selection: ProviderSelection | None) -> Plan:
        selection = selection or ProviderSelection()
        # Two input figures: the typical estimate (context window, rate limits, ranking) and,
        # per candidate, the provable bound a budget reserves (router.tokens).
        measure = measure_request(request)
        input_tokens = measure.typical
        # One output length for every candidate: ranking by each model's own maximum would
        # make a model look dearer for being able to write more.
        expected_out = request.max_tokens or EXPECTED_OUTPUT_TOKENS
        cache_writes = _cache_write_ttls(request)
        plan = Plan(candidates=[], estimated_input_tokens=input_tokens)
        needed = _needed_capabilities(request, selection)
        limits = [
            (name, value)
            for name, value in (
                ("budget_limit", request.budget_limit),
                ("max_cost_per_request", selection.max_cost_per_request),
            )
            if value is not None
        ]
        for provider, model in self.resolve(request.model):
            key = f"{provider.name}/{model}"
            info = self.catalog.get(model)
            reason = self._unfit(provider, model, info, request, selection, needed, input_tokens)
            estimate = expected = None
            if info is not None:
                # Reasoning's thinking budget comes on top of max_tokens; a prompt written to
                # the cache is billed at the (dearer) cache-write price.
                max_out = output_ceiling(request, info.max_output_tokens)
                input_price = max(
                    [info.input_price, *(info.cache_write_price(ttl) for ttl in cache_writes)]
                )
                bound = input_token_bound(measure, provider.type, model)
                estimate = worst_case_cost(bound, max_out, input_price, info.output_price)
                # Catalog prices are validated finite and >= 0: no need to check them again.
                expected = (
                    input_tokens * info.input_price + expected_out * info.output_price
                ) / 1_000_000
            if reason is None:
                for name, limit in limits:
                    if estimate is None:
                        reason = f"no known price for '{model}' while {name} is set"
                        break
                    if estimate > limit:
                        reason = f"estimated cost ${estimate:.6f} exceeds {name} ${limit:.6f}"
                        plan.budget_refusals.append(
                            BudgetExceededError(
                                f"request {name} ${limit:.6f} is below the estimated cost "
                                f"${estimate:.6f} on {key}",
                                budget=name,
                                limit=limit,
                                spent=0.0,
                                estimate=estimate,
                                provider=provider.name,
                            )
                        )
                        break
            if reason is not None:
                plan.reasons[key] = reason
                continue
            plan.candidates.append(
                Candidate(
                    provider=provider.name,
                    provider_type=provider.type.value,
                    model=model,
                    estimated_cost=estimate,
                    expected_cost=expected,
                    priority=provider.priority,
                    capabilities=frozenset(c.value for c in info.capabilities)
                    if info
                    else frozenset(),
                    tier=info.tier if info else "",
                    info=info,
                )
            )
        return plan

    def _unfit(
        self,
        provider: ProviderConfig,
        model: str,
        info: ModelInfo | None,
        request: AIRequest,
        selection: ProviderSelection,
        needed: set[ProviderCapability],
        input_tokens: int,
    ) -> str | None:
        if provider.name in selection.exclude_providers or (
            provider.type.value in selection.exclude_providers
        ):
            return "excluded by the selection"
        if info is not None:
            missing = sorted(c.value for c in needed - set(info.capabilities))
            if missing:
                return f"model '{model}' lacks {', '.join(missing)}"
            if input_tokens > info.context_window:
                return (
                    f"estimated input of {input_tokens} tokens exceeds the "
                    f"{info.context_window}-token context window of '{model}'"
                )
            if request.max_tokens and request.max_tokens > info.max_output_tokens:
                return (
                    f"max_tokens {request.max_tokens} exceeds the {info.max_output_tokens} "
                    f"output tokens of '{model}'"
                )
        for tool in request.tools:
            why = check_tool(tool, provider.type)
            if why:
                return f"tool '{tool.name}' cannot be expressed for {provider.type.value}: {why}"
        return refusal(unsupported(request, provider.type, info), request)


def _cache_write_ttls(request: AIRequest) -> set[str]:
    """The prompt-cache TTLs the request may be billed writes at: automatic caching's, a cache
    key's (priced like a 5-minute write; providers without write prices bill the input price),
    and each explicit ``cache_control`` breakpoint's."""
    ttls: set[str] = set()
    if request.cache_ttl is not None:
        ttls.add(request.cache_ttl)
    if request.prompt_cache_key is not None:
        ttls.add("5m")
    for message in request.messages:
        if isinstance(message.content, list):
            for part in message.content:
                control = getattr(part, "cache_control", None)
                if control is not None:
                    ttls.add(control.ttl or "5m")
    return ttls


def _serves(provider: ProviderConfig, info: ModelInfo) -> bool:
    return provider.type == info.provider


def _listed(providers: Sequence[ProviderConfig]) -> set[str]:
    return {m for p in providers for m in p.models}


def _needed_capabilities(request: AIRequest, selection: ProviderSelection):
    needed = set(selection.required_capabilities)
    if request.stream or selection.require_streaming:
        needed.add(ProviderCapability.STREAMING)
    if request.tools or selection.require_tools:
        needed.add(ProviderCapability.TOOLS)
    if request.has_images():
        needed.add(ProviderCapability.VISION)
    return needed
