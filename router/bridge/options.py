"""The router's own options for a request (strategy, selection, timeout, budget limit, which
providers), checked once for every door: from a body, and from the ``x-router-*`` headers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from router.bridge.errors import BodyError, validation_error
from router.models import AIRequest, ProviderSelection

__all__ = ["ROUTE_FIELDS", "apply_router_headers", "route_options"]

ROUTE_FIELDS = ("strategy", "selection", "timeout")


def route_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """``strategy``, ``selection`` and ``timeout`` checked, for the manager's keywords."""
    from router.strategies import STRATEGIES

    strategy = values.get("strategy")
    if strategy is not None and (not isinstance(strategy, str) or strategy not in STRATEGIES):
        raise BodyError(f"'strategy' must be one of: {', '.join(STRATEGIES)}", "strategy")
    selection = values.get("selection")
    if selection is not None:
        if not isinstance(selection, dict):
            raise BodyError("'selection' must be an object", "selection")
        try:
            selection = ProviderSelection.model_validate(selection)
        except ValidationError as error:
            raise validation_error(error, ["selection"]) from None
    timeout = values.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise BodyError("'timeout' must be a number of seconds", "timeout")
        if not 0 < timeout < math.inf:
            raise BodyError("'timeout' must be greater than 0", "timeout")
    return {"strategy": strategy, "selection": selection, "timeout": timeout}


# Router options an SDK cannot put in its body travel as headers, the same on every door.
STRATEGY_HEADER = "x-router-strategy"
BUDGET_HEADER = "x-router-budget-limit"
PROVIDERS_HEADER = "x-router-providers"
TIMEOUT_HEADER = "x-router-timeout"


def apply_router_headers(
    request: Any, ai_request: AIRequest, options: dict[str, Any], providers: Iterable[str]
) -> tuple[AIRequest, dict[str, Any]]:
    """``x-router-strategy``, ``x-router-budget-limit``, ``x-router-providers`` (a comma list:
    only these providers may serve) and ``x-router-timeout`` applied to a request and its
    options. What the body already says wins; a bad header is a 400 naming it.
    """
    options = dict(options)
    strategy = request.header(STRATEGY_HEADER)
    if strategy is not None and options.get("strategy") is None:
        from router.strategies import STRATEGIES

        if strategy.strip() not in STRATEGIES:
            raise BodyError(
                f"'{STRATEGY_HEADER}' must be one of: {', '.join(STRATEGIES)}", STRATEGY_HEADER
            )
        options["strategy"] = strategy.strip()
    timeout = request.header(TIMEOUT_HEADER)
    if timeout is not None and options.get("timeout") is None:
        options["timeout"] = _header_number(TIMEOUT_HEADER, timeout, positive=True)
    limit = request.header(BUDGET_HEADER)
    if limit is not None and ai_request.budget_limit is None:
        value = _header_number(BUDGET_HEADER, limit, positive=False)
        ai_request = ai_request.model_copy(update={"budget_limit": value})
    only = request.header(PROVIDERS_HEADER)
    if only is not None:
        known = set(providers)
        wanted = {name.strip() for name in only.split(",") if name.strip()}
        unknown = sorted(wanted - known)
        if not wanted or unknown:
            raise BodyError(
                f"'{PROVIDERS_HEADER}' must list configured providers "
                f"(unknown: {', '.join(unknown) or 'none given'}; "
                f"configured: {', '.join(sorted(known))})",
                PROVIDERS_HEADER,
            )
        selection = options.get("selection") or ProviderSelection()
        excluded = tuple(sorted(set(selection.exclude_providers) | (known - wanted)))
        options["selection"] = selection.model_copy(update={"exclude_providers": excluded})
    return ai_request, options


def _header_number(name: str, raw: str, *, positive: bool) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise BodyError(f"'{name}' must be a number", name) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise BodyError(f"'{name}' must be a number {'>' if positive else '>='} 0", name)
    return value
