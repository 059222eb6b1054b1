"""``router demo``: the product working end to end on the built-in emulator.

No keys and no network: an emulator on a free loopback port plays OpenAI, Anthropic and
Gemini. The demo runs a request under each strategy, a streamed answer, a tool-call round trip,
a structured (JSON Schema) answer and a reasoning answer from each provider, an agent run
against a local MCP server (the playground the tests use, when the ``mcp`` extra is installed),
a failover, a circuit opening and recovering, and a budget alert, then prints spend and health.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from router.emulator import EmulatorServer
from router.errors import RouterError
from router.manager import AIProviderManager
from router.models import AIRequest, MCPTool

__all__ = ["run_demo", "demo_config"]

DEMO_KEYS = {
    "openai": "demo-openai-key",
    "anthropic": "demo-anthropic-key",
    "google": "demo-google-key",
}
DEMO_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-haiku-20240307",
    "google": "gemini-1.5-flash",
}
STRATEGIES = ("cost", "priority", "capability_based", "load_balanced", "failover", "round_robin")

WEATHER_TOOL = MCPTool(
    name="get_weather",
    description="Get the current weather for a city",
    inputSchema={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
)


def demo_config(emulator: EmulatorServer, *, recovery_timeout: float = 1.0) -> dict[str, Any]:
    """A configuration with the three providers on ``emulator`` and a small daily budget."""
    providers = [
        {
            "name": kind,
            "type": kind,
            "api_key": DEMO_KEYS[kind],
            "base_url": emulator.base_urls[kind],
            "priority": priority,
            "timeout": 10.0,
            "max_retries": 1,
            "retry": {"base_delay": 0.05, "max_delay": 0.2},
            "circuit_breaker": {"failure_threshold": 3, "recovery_timeout": recovery_timeout},
        }
        for kind, priority in (("openai", 3), ("anthropic", 2), ("google", 1))
    ]
    return {
        "providers": providers,
        "model_groups": {
            "fast": [{"provider": kind, "model": model} for kind, model in DEMO_MODELS.items()]
        },
        "default_model": "fast",
        "budgets": [
            {"name": "Demo daily", "daily_limit": 0.0003, "alert_thresholds": [0.5, 0.8]},
        ],
        "ledger": {"type": "memory"},
        "request_timeout": 20.0,
        "mcp_servers": [
            {
                "name": "playground",
                "command": sys.executable,
                "args": ["-m", "router.emulator.mcp_server"],
                # The server imports this copy of the router, wherever it is installed.
                "env": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                "denied_tools": ["3d_render"],  # a name Gemini cannot take
                "startup_timeout": 60.0,
            }
        ],
    }


def _ask(text: str, **extra: Any) -> AIRequest:
    return AIRequest(
        model=extra.pop("model", "fast"),
        messages=[{"role": "user", "content": text}],
        max_tokens=extra.pop("max_tokens", 60),
        **extra,
    )


#: The answer's shape in the structured-output step.
EVENT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "event",
        "schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "day": {"type": "string", "format": "date"},
                "guests": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["title", "day", "guests"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
STRUCTURED_MODELS = ("gpt-5-mini", "claude-sonnet-4-6", "gemini-2.5-flash")
REASONING_MODELS = ("gpt-5-mini", "claude-sonnet-4-6", "gemini-2.5-flash")


def _structured_step(manager: AIProviderManager, say: Any) -> list[dict[str, Any]]:
    rows = []
    for model in STRUCTURED_MODELS:
        response = manager.process_request(
            _ask("Plan the launch party", model=model, response_format=EVENT_SCHEMA)
        )
        rows.append({"model": model, "provider": response.provider_name, "parsed": response.parsed})
        say(f"   {response.provider_name:<9} {model:<18} parsed: {json.dumps(response.parsed)}")
    return rows


def _reasoning_step(manager: AIProviderManager, say: Any) -> list[dict[str, Any]]:
    rows = []
    for model in REASONING_MODELS:
        response = manager.process_request(
            _ask("Why is the sky blue?", model=model, reasoning={"effort": "low"})
        )
        usage = response.usage
        rows.append(
            {
                "model": model,
                "reasoning": response.reasoning,
                "reasoning_tokens": usage.reasoning_tokens,
                "cost": response.cost,
            }
        )
        thought = f"thought: {response.reasoning!r}" if response.reasoning else "(no text)"
        say(
            f"   {response.provider_name:<9} {model:<18} {usage.reasoning_tokens} reasoning "
            f"tokens, {thought}"
        )
    return rows


def run_demo(out: TextIO | None = None) -> dict[str, Any]:
    """Run every scenario, writing a readable account to ``out`` (if any); return the results."""

    def say(text: str) -> None:
        if out is not None:
            out.write(text + "\n")
            out.flush()

    def inline(text: str) -> None:
        if out is not None:
            out.write(text)
            out.flush()

    results: dict[str, Any] = {}
    started = time.monotonic()
    alerts: list[dict[str, Any]] = []

    def on_alert(alert: Any) -> None:
        alerts.append(alert.to_dict())

    with EmulatorServer() as emulator:
        config = demo_config(emulator)
        with AIProviderManager(config, alert_callbacks=[on_alert]) as manager:
            say(f"router demo: emulator on {emulator.url} playing OpenAI, Anthropic and Gemini\n")
            if importlib.util.find_spec("mcp") is not None:
                # Start the MCP server now, so it is ready by the agent step.
                (playground,) = manager.mcp.resolve(["playground"])
                manager.mcp.submit(manager.mcp.session(playground).tools())

            say("1. One request under each strategy (model group 'fast')")
            rows = []
            for strategy in STRATEGIES:
                response = manager.process_request(_ask("Say hello"), strategy=strategy)
                rows.append(
                    {
                        "strategy": strategy,
                        "provider": response.provider_name,
                        "model": response.model,
                        "cost": response.cost,
                        "latency_ms": round(response.latency_ms, 1),
                    }
                )
                say(
                    f"   {strategy:<17} -> {response.provider_name:<9} {response.model:<24} "
                    f"${response.cost:.6f}"
                )
            results["strategies"] = rows

            say("\n2. A streamed answer (tokens as they arrive)")
            emulator.set_pacing("anthropic", token_delay=0.02)
            inline("   ")
            pieces, first_at, last_at = [], None, None
            t0 = time.monotonic()
            for chunk in manager.stream_request(
                _ask("Tell me about streaming answers", model="claude-3-haiku-20240307")
            ):
                if chunk.content:
                    now = time.monotonic() - t0
                    first_at = now if first_at is None else first_at
                    last_at = now
                    pieces.append(chunk.content)
                    inline(chunk.content)
                if chunk.is_complete:
                    final = chunk
            emulator.set_pacing("anthropic", token_delay=0.0)
            text = "".join(pieces)
            inline("\n")
            results["stream"] = {
                "provider": final.provider_name,
                "text": text,
                "chunks": len(pieces),
                "first_chunk_s": round(first_at or 0.0, 3),
                "last_chunk_s": round(last_at or 0.0, 3),
                "cost": final.cost,
            }
            say(
                f"   first chunk after {first_at or 0:.2f}s, last after {last_at or 0:.2f}s, "
                f"cost ${final.cost:.6f}"
            )

            say("\n3. A tool-call round trip (MCP tool get_weather)")
            request = AIRequest(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Use get_weather for Tokyo, please"}],
                tools=[WEATHER_TOOL],
                max_tokens=80,
            )
            first = manager.process_request(request)
            call = first.tool_calls[0]
            say(f"   model asked: {call.name}({json.dumps(call.arguments)})")
            follow_up = request.model_copy(
                update={
                    "messages": (
                        *request.messages,
                        *AIRequest(
                            messages=[
                                first.to_message(),
                                {
                                    "role": "tool",
                                    "tool_call_id": call.id,
                                    "content": '{"temperature_c": 18, "sky": "clear"}',
                                },
                            ]
                        ).messages,
                    )
                }
            )
            final_answer = manager.process_request(follow_up)
            say(f"   final answer: {final_answer.content}")
            results["tools"] = {
                "tool_call": {"name": call.name, "arguments": call.arguments},
                "answer": final_answer.content,
            }

            # Structured outputs, reasoning and the agent run reserve more than the demo's tiny
            # daily budget allows (a thinking budget; several turns, each reserving its provable
            # input bound): a manager without one, so step 9 still has its budget to spend.
            unbudgeted = {**config, "budgets": []}
            with AIProviderManager(unbudgeted) as plain:
                say("\n4. A structured answer (a JSON Schema) from each provider")
                results["structured"] = _structured_step(plain, say)

                say("\n5. Reasoning: the model thinks first (effort 'low')")
                results["reasoning"] = _reasoning_step(plain, say)

                say("\n6. An agent run: the router calls the tools of an MCP server itself")
                results["agent"] = _agent_step(plain, say)

            say("\n7. OpenAI fails (HTTP 500): the router fails over")
            emulator.add_fault(provider="openai", kind="server_error", count=2)
            response = manager.process_request(_ask("Are you there?"), strategy="priority")
            say(f"   priority prefers openai; answered by {response.provider_name}")
            results["failover"] = {"answered_by": response.provider_name}

            say("\n8. A circuit opens after 3 failures and recovers")
            emulator.add_fault(provider="openai", kind="unavailable")
            for _ in range(3):
                manager.process_request(_ask("ping"), strategy="priority")
            opened = manager.provider_health()["openai"].circuit_state
            say(f"   openai circuit: {opened}; requests skip it without waiting")
            emulator.clear_faults()
            time.sleep(1.2)  # the demo's recovery_timeout is 1 s
            response = manager.process_request(_ask("ping again"), strategy="priority")
            closed = manager.provider_health()["openai"].circuit_state
            say(
                f"   after the recovery timeout one trial went to {response.provider_name}; "
                f"circuit: {closed}"
            )
            results["circuit"] = {
                "opened": opened,
                "trial_served_by": response.provider_name,
                "after": closed,
            }

            say("\n9. Spending against the $0.0003 daily budget: alerts, then a refusal")
            spent_requests, refusal = 0, None
            for _ in range(60):
                try:
                    manager.process_request(_ask("Write a few words " * 8, max_tokens=200))
                except RouterError as error:
                    refusal = f"{type(error).__name__}: {error.message}"
                    break
                spent_requests += 1
            for alert in alerts:
                say(
                    f"   alert: {alert['budget_name']} at {alert['percentage']:.1f}% "
                    f"(threshold {alert['threshold']:.0%})"
                )
            say(f"   {spent_requests} requests fitted; then refused before spending: {refusal}")
            results["budget"] = {"requests": spent_requests, "alerts": alerts, "refusal": refusal}

            say("\n10. Spend and health")
            stats = manager.get_manager_stats()
            status = manager.get_budget_status()
            for name, snap in stats["providers"].items():
                spend = status["providers"].get(name, {})
                say(
                    f"   {name:<9} {snap['status']:<9} circuit={snap['circuit_state']:<6} "
                    f"uptime={snap['uptime_percentage']:5.1f}% requests={snap['requests']:<3} "
                    f"spent today=${spend.get('spent_today', 0.0):.6f}"
                )
            usage = stats["usage_stats"]
            say(
                f"   total: {usage['total_requests']} requests, success rate "
                f"{usage['success_rate']:.1%}, cost ${usage['total_cost']:.6f}"
            )
            results["summary"] = {
                "total_requests": usage["total_requests"],
                "success_rate": usage["success_rate"],
                "total_cost": usage["total_cost"],
                "providers": {
                    name: {
                        "status": snap["status"],
                        "circuit_state": snap["circuit_state"],
                        "requests": snap["requests"],
                    }
                    for name, snap in stats["providers"].items()
                },
            }
    results["elapsed_s"] = round(time.monotonic() - started, 2)
    say(f"\ndone in {results['elapsed_s']:.1f}s")
    return results


def _agent_step(manager: AIProviderManager, say: Any) -> dict[str, Any]:
    """Plan a trip with the playground MCP server's tools; print each call as it happens."""
    from router.agent import AgentEvent

    if importlib.util.find_spec("mcp") is None:
        say("   skipped: needs the MCP SDK (pip install 'router[mcp]')")
        return {"skipped": "the mcp package is not installed"}
    request = _ask("Plan a trip to Lisbon: use plan_trip", max_tokens=60)
    try:
        with manager.stream_agent(request, mcp_servers=["playground"], timeout=120) as stream:
            for item in stream:
                if isinstance(item, AgentEvent) and item.type == "tool_call_started":
                    say(
                        f"   turn {item.turn}: the model calls {item.tool}({json.dumps(item.arguments)})"
                    )
                elif isinstance(item, AgentEvent) and item.record is not None:
                    say(f"   turn {item.turn}: {item.tool} answered: {item.record.result}")
            result = stream.result()
    except RouterError as error:
        say(f"   the agent run failed: {type(error).__name__}: {error.message}")
        return {"error": f"{type(error).__name__}: {error.message}"}
    say(f"   final answer after {len(result.turns)} turns: {result.content}")
    say(f"   cost ${result.cost:.6f} ({', '.join(t.response.provider_name for t in result.turns)})")
    return {
        "turns": len(result.turns),
        "tool_calls": [call.tool for turn in result.turns for call in turn.tool_calls],
        "answer": result.content,
        "cost": result.cost,
    }
