"""Budget and cost corners from issue 12 (items 8 and 9), against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import router_config

from router.config import BudgetConfig, config_from_dict
from router.errors import BudgetExceededError
from router.ledger import default_ledger_path, open_ledger
from router.models import AIRequest, ProviderType


def ask(text: str = "Hello there", model: str | None = "cheap", **extra) -> AIRequest:
    return AIRequest(model=model, messages=[{"role": "user", "content": text}], **extra)


def haiku_and_mini(emulator) -> dict:
    config = router_config(emulator)
    config["model_groups"]["cheap"] = [
        {"provider": "anthropic", "model": "claude-3-haiku-20240307"},
        {"provider": "openai", "model": "gpt-4o-mini"},
    ]
    return config


# --- item 8: the cost strategy ranks by expected cost ----------------------------------------


def test_cost_strategy_prefers_gpt_4o_mini_over_claude_3_haiku(make_manager, emulator):
    # gpt-4o-mini is cheaper than claude-3-haiku per input and per output token, but may write
    # 16,384 tokens against haiku's 4,096: ranked by worst case, haiku came first.
    manager = make_manager(haiku_and_mini(emulator))
    response = manager.process_request(ask(), strategy="cost")
    assert (response.provider_name, response.model) == ("openai", "gpt-4o-mini")


def test_max_cost_per_request_still_checks_the_worst_case(make_manager, emulator):
    # Expected cost of either model is far below $0.004; the worst case (each model's maximum
    # output) is above it, so both are refused before anything is sent.
    manager = make_manager(haiku_and_mini(emulator))
    with pytest.raises(BudgetExceededError):
        manager.process_request(ask(), selection={"max_cost_per_request": 0.004})
    assert emulator.requests() == []


# --- item 9: provider_limits alone count monthly -----------------------------------------------


def test_a_budget_of_provider_limits_alone_is_monthly_in_config_and_in_enforcement(
    make_manager, emulator
):
    budget = {"name": "Caps", "provider_limits": {"openai": 5.0}}
    assert BudgetConfig(**budget).period == "monthly"
    manager = make_manager(router_config(emulator, budgets=[budget]))
    manager.process_request(ask(model="gpt-4o-mini", max_tokens=5))
    status = manager.get_budget_status()
    (row,) = [b for b in status["budgets"] if b["budget"] == "Caps"]
    assert (row["scope"], row["period"]) == ("provider_monthly", status["periods"]["month"])
    assert row["spent"] > 0


def test_a_daily_budget_with_provider_limits_counts_them_daily():
    budget = BudgetConfig(name="Day", daily_limit=1.0, provider_limits={"openai": 0.5})
    assert budget.period == "daily"
    both = BudgetConfig(name="Both", daily_limit=1.0, monthly_limit=9.0, provider_limits={"a": 1})
    assert both.period == "monthly"


# --- item 9: one default ledger path -------------------------------------------------------------


def test_the_default_ledger_path_is_the_one_the_config_uses(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    config = config_from_dict({"providers": [{"type": "openai", "api_key": "sk-x-0123456789"}]})
    assert Path(config.ledger.path) == tmp_path / "router" / "ledger.db"
    assert default_ledger_path() == Path(config.ledger.path)
    store = open_ledger(type("Ledger", (), {"type": "sqlite", "path": None})())
    try:
        assert (tmp_path / "router" / "ledger.db").exists()
    finally:
        store.close()


# --- item 9: recommendations in the product document's shape ---------------------------------


def test_recommendations_are_keyed_by_provider_type_with_the_cheapest_model(make_manager, emulator):
    config = router_config(emulator)
    openai = next(p for p in config["providers"] if p["name"] == "openai")
    openai["default_model"] = "gpt-4o"
    config["providers"].append({**openai, "name": "openai-mini", "default_model": "gpt-4o-mini"})
    manager = make_manager(config)
    request = AIRequest(messages=[{"role": "user", "content": "Summarise this"}], max_tokens=300)

    recommendations = manager.get_cost_recommendations(request)
    assert set(recommendations) == {
        ProviderType.OPENAI,
        ProviderType.ANTHROPIC,
        ProviderType.GOOGLE,
    }
    openai_rec = recommendations[ProviderType.OPENAI]
    assert (openai_rec["provider"], openai_rec["model"]) == ("openai-mini", "gpt-4o-mini")
    assert openai_rec["candidate"] == "openai-mini/gpt-4o-mini"
    for rec in recommendations.values():  # the product document prints these
        assert rec["estimated_cost"] >= rec["expected_cost"] > 0
        assert 0 <= rec["health_score"] <= 100

    detail = manager.get_cost_recommendations(request, by="model")
    assert {"openai/gpt-4o", "openai-mini/gpt-4o-mini"} <= set(detail)
    assert detail["openai-mini/gpt-4o-mini"]["rank"] < detail["openai/gpt-4o"]["rank"]
    with pytest.raises(ValueError, match="by must be"):
        manager.get_cost_recommendations(request, by="provider")
