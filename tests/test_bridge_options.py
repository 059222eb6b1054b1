"""The ``x-router-*`` headers every door reads (pure), and the route table's shared paths."""

from __future__ import annotations

from typing import Any

import pytest

from router.bridge.errors import BodyError
from router.bridge.options import apply_router_headers
from router.bridge.wire import Request
from router.models import AIRequest, ProviderSelection

PROVIDERS = ("openai", "anthropic", "google")
ASK = AIRequest(model="fast", messages=[{"role": "user", "content": "x"}])


def request_with(**headers: str) -> Request:
    environ = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    return Request(environ, "POST", "/v1/messages", 1000)


def apply(options: dict[str, Any] | None = None, **headers: str) -> tuple[AIRequest, dict]:
    return apply_router_headers(request_with(**headers), ASK, options or {}, PROVIDERS)


def test_headers_set_strategy_budget_timeout_and_providers():
    ai_request, options = apply(
        **{
            "x-router-strategy": "failover",
            "x-router-budget-limit": "0.25",
            "x-router-timeout": "12.5",
            "x-router-providers": "google, anthropic",
        }
    )
    assert ai_request.budget_limit == 0.25
    assert options["strategy"] == "failover" and options["timeout"] == 12.5
    assert options["selection"].exclude_providers == ("openai",)


def test_what_the_body_says_wins_and_selections_merge():
    body = {"strategy": "cost", "selection": ProviderSelection(exclude_providers=("google",))}
    _, options = apply(body, **{"x-router-strategy": "priority", "x-router-providers": "google"})
    assert options["strategy"] == "cost"
    assert options["selection"].exclude_providers == ("anthropic", "google", "openai")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-router-strategy", "fastest"),
        ("x-router-budget-limit", "-1"),
        ("x-router-budget-limit", "nan"),
        ("x-router-timeout", "0"),
        ("x-router-providers", "openai,nowhere"),
        ("x-router-providers", " , "),
    ],
)
def test_a_bad_header_is_a_400_naming_it(name, value):
    with pytest.raises(BodyError) as info:
        apply(**{name: value})
    assert info.value.param == name and name in str(info.value)
