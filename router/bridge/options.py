"""The router's own options for a request (strategy, selection, timeout), checked once for
every door, as the manager's keywords.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from router.bridge.errors import BodyError, validation_error
from router.models import ProviderSelection

__all__ = ["ROUTE_FIELDS", "route_options"]

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
