"""Helpers shared by the integration tests (importable as ``support``)."""

from __future__ import annotations

import json
import threading
from typing import Any

KEYS = {
    "openai": "sk-test-openai-0123456789abcdefghij",
    "anthropic": "sk-ant-test-0123456789abcdefghij",
    "google": "AIza-test-0123456789abcdefghij",
}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-haiku-20240307",
    "google": "gemini-1.5-flash",
}


def router_config(emulator: Any, **overrides: Any) -> dict[str, Any]:
    """A config dict with the three providers pointed at ``emulator``."""
    providers = []
    for priority, kind in zip((3, 2, 1), ("openai", "anthropic", "google"), strict=True):
        providers.append(
            {
                "name": kind,
                "type": kind,
                "api_key": KEYS[kind],
                "base_url": emulator.base_urls[kind],
                "priority": priority,
                "timeout": 10.0,
                "retry": {"base_delay": 0.01, "max_delay": 0.05},
                "circuit_breaker": {"failure_threshold": 5, "recovery_timeout": 0.5},
            }
        )
    config: dict[str, Any] = {
        "providers": providers,
        "model_groups": {
            "fast": [{"provider": kind, "model": MODELS[kind]} for kind in MODELS],
        },
        "ledger": {"type": "memory"},
        "request_timeout": 20.0,
    }
    config.update(overrides)
    return config


def one_openai_provider(base_url: str, **provider: Any) -> dict[str, Any]:
    """A config with one OpenAI provider at ``base_url`` (an upstream a test runs itself) and
    a memory ledger; ``provider`` overrides the provider's settings."""
    return {
        "providers": [
            {
                "name": "openai",
                "type": "openai",
                "api_key": "sk-test-FAKE-0123456789",
                "base_url": base_url,
                "timeout": 30.0,
                **provider,
            }
        ],
        "ledger": {"type": "memory"},
    }


ACTOR_THREAD_PREFIXES = ("router-", "SupervisorActor", "ProviderActor", "BudgetActor")


def router_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(ACTOR_THREAD_PREFIXES)]


# --- a mocked OpenAI host (``responses``) for tests that look at the HTTP calls themselves ------

FAKE_OPENAI = "https://api.openai.test/v1"
CHAT_URL = FAKE_OPENAI + "/chat/completions"


def ask_model(text: str = "Hello there", model: str = "gpt-4o-mini") -> Any:
    """A one-message request for one concrete model (one candidate: the direct path)."""
    from router.models import AIRequest

    return AIRequest(model=model, messages=[{"role": "user", "content": text}])


def completion(request_id: str = "chatcmpl-mock-1") -> str:
    """A minimal non-streamed OpenAI ``chat.completion`` body."""
    return json.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the mock"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
        }
    )
