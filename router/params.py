"""Which request parameters each provider can honour, and how reasoning is budgeted.

One request format goes in; each provider's native mechanism comes out (the adapters in
:mod:`router.providers`). This module is the single statement of what a provider *cannot*
carry, used twice:

- the planner refuses a candidate that cannot honour a parameter which would change the
  answer (``response_format``, ``reasoning``, ``seed``, penalties, ...), with the reason;
  with ``strict_params: false`` that parameter is dropped instead;
- the answer lists every parameter that was left out (``AIResponse.dropped_params``), including
  those that never change the answer (``user``, ``service_tier``, ``prompt_cache_key``).

Nothing a provider cannot carry is dropped silently.
"""

from __future__ import annotations

from typing import NamedTuple

from router.models import AIRequest, ProviderCapability, ProviderType, Reasoning

__all__ = [
    "Unsupported",
    "unsupported",
    "refusal",
    "dropped",
    "thinking_budget",
    "effort_for_budget",
    "output_ceiling",
    "uses_native_schema",
    "ANSWER_TOOL",
    "EFFORT_BUDGETS",
    "MIN_ANTHROPIC_BUDGET",
]

#: Thinking tokens an effort level stands for where a provider wants a budget (Anthropic
#: ``budget_tokens`` on models without adaptive thinking, Gemini 2.5 ``thinkingBudget``), and
#: what the budget's worst case reserves for it.
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32768,
}
#: Anthropic's smallest ``thinking.budget_tokens``.
MIN_ANTHROPIC_BUDGET = 1024
#: The forced tool whose input is the answer, for Anthropic models without native
#: structured outputs; its ``tool_use`` is unwrapped into the answer's content.
ANSWER_TOOL = "json_answer"

_OPENAI = (ProviderType.OPENAI, ProviderType.OPENAI_COMPATIBLE)
# The request fields some provider cannot honour (temperature, top_p and tool_choice only
# matter together with reasoning).
_SURFACE = frozenset(
    {
        "response_format",
        "reasoning",
        "seed",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "verbosity",
        "parallel_tool_calls",
        "user",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)


class Unsupported(NamedTuple):
    """A parameter the provider cannot honour; ``changes_answer`` decides refuse vs drop."""

    name: str
    reason: str
    changes_answer: bool

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def _caps(info: object | None) -> frozenset[ProviderCapability] | None:
    return getattr(info, "capabilities", None)


def uses_native_schema(info: object | None) -> bool:
    """Whether the model takes a JSON Schema natively (unknown models are assumed to)."""
    caps = _caps(info)
    return caps is None or ProviderCapability.STRUCTURED_OUTPUTS in caps


def thinking_budget(reasoning: Reasoning | None) -> int:
    """The thinking tokens ``reasoning`` allows (0 when it is off or not asked for)."""
    if reasoning is None or not reasoning.enabled:
        return 0
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens
    return EFFORT_BUDGETS.get(reasoning.effort or "medium", EFFORT_BUDGETS["medium"])


def effort_for_budget(budget: int) -> str:
    """The effort level closest above a thinking budget (for providers that take a level)."""
    for effort, tokens in EFFORT_BUDGETS.items():
        if budget <= tokens:
            return effort
    return "max"


def output_ceiling(request: AIRequest, max_output_tokens: int) -> int:
    """The most output tokens ``request`` may be billed for on a model with that limit.

    ``max_tokens`` bounds the answer; reasoning adds its thinking budget on top (the adapters
    raise the provider's own limit by as much), never past the model's limit.
    """
    if request.max_tokens is None:
        return max_output_tokens
    return min(request.max_tokens + thinking_budget(request.reasoning), max_output_tokens)


def unsupported(
    request: AIRequest, provider_type: ProviderType, info: object | None
) -> list[Unsupported]:
    """Every parameter of ``request`` that ``provider_type`` (serving ``info``'s model, None
    when the catalog does not know it) cannot honour."""
    if not request.model_fields_set & _SURFACE:
        return []  # the common request: nothing any provider could fail to honour
    kind = ProviderType(provider_type)
    caps = _caps(info)
    out: list[Unsupported] = []

    def no(name: str, reason: str, changes_answer: bool = True) -> None:
        out.append(Unsupported(name, reason, changes_answer))

    fmt = request.response_format
    thinking = request.reasoning is not None and request.reasoning.enabled
    if fmt is not None and fmt.type != "text" and caps is not None:
        native = ProviderCapability.STRUCTURED_OUTPUTS in caps
        json_mode = ProviderCapability.JSON_MODE in caps
        if kind is ProviderType.ANTHROPIC:
            forced_tool = fmt.type == "json_object" or not native
            if forced_tool and ProviderCapability.TOOLS not in caps:
                no("response_format", "the model has neither structured outputs nor tools")
            elif forced_tool and thinking:
                no(
                    "response_format",
                    "without native structured outputs the answer comes through a forced tool, "
                    "which Anthropic does not allow together with thinking",
                )
        elif fmt.type == "json_schema" and not native:
            if kind is ProviderType.GOOGLE and json_mode:
                pass  # responseSchema: the schema in Gemini's OpenAPI subset
            else:
                no("response_format", "the model does not support json_schema outputs")
        elif fmt.type == "json_object" and not (native or json_mode):
            no("response_format", "the model has no JSON mode")

    if thinking and caps is not None and ProviderCapability.REASONING not in caps:
        no("reasoning", "the model does not reason")
    if thinking and kind is ProviderType.ANTHROPIC:
        if request.tool_choice not in (None, "auto", "none"):
            no("tool_choice", "Anthropic does not allow forcing a tool together with thinking")
        if request.temperature is not None and request.temperature != 1:
            no("temperature", "Anthropic allows no temperature other than 1 with thinking")
        if request.top_p is not None and request.top_p < 0.95:
            no("top_p", "Anthropic allows top_p below 0.95 only without thinking")
        if request.top_k is not None:
            no("top_k", "Anthropic allows no top_k with thinking")

    if request.seed is not None and kind is ProviderType.ANTHROPIC:
        no("seed", "Anthropic has no seed")
    if request.top_k is not None and kind in _OPENAI:
        no("top_k", "OpenAI Chat Completions has no top_k")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name) is not None and kind is ProviderType.ANTHROPIC:
            no(name, "Anthropic has no penalties")
    if request.logit_bias and kind not in _OPENAI:
        no("logit_bias", f"{kind.value} has no logit_bias")
    if request.verbosity is not None and kind not in _OPENAI:
        no("verbosity", f"{kind.value} has no verbosity setting")
    if request.parallel_tool_calls is False and request.tools and kind is ProviderType.GOOGLE:
        no("parallel_tool_calls", "Gemini cannot be told to call one tool at a time")

    if request.user is not None and kind is ProviderType.GOOGLE:
        no("user", "Gemini takes no end-user id", changes_answer=False)
    if request.service_tier is not None and (
        kind is ProviderType.GOOGLE
        or (kind is ProviderType.ANTHROPIC and request.service_tier not in ("auto", "default"))
    ):
        no("service_tier", f"{kind.value} has no tier {request.service_tier!r}", False)
    if kind is not ProviderType.OPENAI:
        if request.prompt_cache_key is not None:
            no("prompt_cache_key", f"{kind.value} takes no cache key", changes_answer=False)
        if request.prompt_cache_retention is not None:
            no("prompt_cache_retention", f"{kind.value} sets no retention", False)
    return out


def refusal(problems: list[Unsupported], request: AIRequest) -> str | None:
    """Why a candidate with these problems is refused, or None when it may serve."""
    blocking = [p for p in problems if p.changes_answer and request.strict_params]
    if not blocking:
        return None
    return "cannot honour " + "; ".join(str(p) for p in blocking)


def dropped(problems: list[Unsupported]) -> tuple[str, ...]:
    """What the answer reports as left out."""
    return tuple(str(p) for p in problems)
