"""The model catalog: built-in data, user overrides, the pricing function and token estimates."""

from __future__ import annotations

import importlib.util
import json
import re
import textwrap
from pathlib import Path

import pytest

from router.catalog import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_OVERHEAD_TOKENS,
    TIERS,
    TOOL_OVERHEAD_TOKENS,
    ModelInfo,
    builtin_catalog_path,
    estimate_request_tokens,
    estimate_tokens,
    load_catalog,
    price,
)
from router.errors import ConfigError
from router.models import AIRequest, MCPTool, ProviderCapability, ProviderType, Usage

REPO = Path(__file__).resolve().parent.parent
WIRE = REPO / "tests" / "fixtures" / "wire"
MCP_TOOLS = REPO / "tests" / "fixtures" / "mcp_tools"

SEED_MODELS = [
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet-20240620",
    "claude-3-haiku-20240307",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-3.5-turbo",
    "gemini-1.5-pro",
    "gemini-1.5-flash",
    "gemini-pro",
    "gemini-1.0-pro",
]
CURRENT_MODELS = [
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-3-5-haiku-20241022",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "o3",
    "o4-mini",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
]


def write(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def catalog_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    return str(caught.value)


def recorded_models() -> set[str]:
    """Every model id a recorded request or answer names, except those answered with 404."""
    spec = importlib.util.spec_from_file_location("cassette_io", WIRE / "cassette_io.py")
    assert spec and spec.loader
    cassette_io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cassette_io)
    models: set[str] = set()
    for path in sorted(WIRE.glob("*/*.yaml")):
        for interaction in cassette_io.load_interactions(str(path)):
            if interaction["status"] == 404:  # deliberately misspelled ids
                continue
            body = interaction["request_json"]
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                models.add(body["model"])
            found = re.search(r"/models/([^/:?]+):", interaction["uri"])
            if found:
                models.add(found.group(1))
            if interaction["status"] == 200:  # answers name the exact version that served
                text = interaction["response_bytes"].decode("utf-8", "replace")
                models.update(re.findall(r'"model(?:Version)?"\s*:\s*"([^"]+)"', text))
    return models


# --- the built-in catalog ------------------------------------------------------------------


def test_builtin_catalog_loads_once() -> None:
    catalog = load_catalog()
    assert len(catalog) > 40
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", catalog.prices_as_of)
    assert load_catalog() is catalog
    assert set(catalog.sources) == {"anthropic", "openai", "google"}


@pytest.mark.parametrize("model_id", SEED_MODELS + CURRENT_MODELS)
def test_seed_and_current_models_are_present(model_id: str) -> None:
    assert model_id in load_catalog()


def test_every_model_in_the_recorded_traffic_can_be_priced() -> None:
    catalog = load_catalog()
    models = recorded_models()
    assert {"gpt-4o-mini-2024-07-18", "claude-haiku-4-5-20251001", "gemini-2.5-flash"} <= models
    assert sorted(m for m in models if m not in catalog) == []


def test_every_entry_is_sane() -> None:
    for info in load_catalog():
        assert info.input_price > 0 and info.output_price > 0 and info.cached_input_price > 0
        assert info.cached_input_price <= info.input_price, info.id
        assert info.output_price >= info.input_price, info.id
        assert 0 < info.max_output_tokens <= info.context_window, info.id
        assert info.tier in TIERS, info.id
        assert ProviderCapability.TEXT in info.capabilities, info.id
        assert info.provider is not ProviderType.OPENAI_COMPATIBLE


def test_known_prices() -> None:
    catalog = load_catalog()
    sonnet = catalog.require("claude-3-5-sonnet-20241022")
    assert (sonnet.input_price, sonnet.output_price, sonnet.cached_input_price) == (3.0, 15.0, 0.3)
    mini = catalog.require("gpt-4o-mini")
    assert (mini.input_price, mini.output_price, mini.cached_input_price) == (0.15, 0.6, 0.075)
    assert mini.context_window == 128000 and mini.max_output_tokens == 16384
    flash = catalog.require("gemini-1.5-flash")
    assert flash.provider is ProviderType.GOOGLE and flash.tier == "legacy"


def test_aliases_share_their_targets_numbers() -> None:
    catalog = load_catalog()
    alias = catalog.require("claude-sonnet-4-5")
    target = catalog.require("claude-sonnet-4-5-20250929")
    assert alias.alias_of == target.id and target.alias_of is None
    assert (alias.input_price, alias.capabilities, alias.tier) == (
        target.input_price,
        target.capabilities,
        target.tier,
    )
    assert catalog.require("gemini-pro").alias_of == "gemini-1.0-pro"


def test_models_for_a_provider_type() -> None:
    catalog = load_catalog()
    anthropic = catalog.models_for(ProviderType.ANTHROPIC)
    assert anthropic and all(m.provider is ProviderType.ANTHROPIC for m in anthropic)
    concrete = catalog.models_for("openai", include_aliases=False)
    assert "gpt-4o-mini-2024-07-18" not in [m.id for m in concrete]
    assert catalog.models_for(ProviderType.OPENAI_COMPATIBLE) == []


def test_unknown_model() -> None:
    catalog = load_catalog()
    assert catalog.get("gpt-9") is None
    with pytest.raises(
        ConfigError, match=r"^unknown model 'gpt-4o-mnii'; did you mean 'gpt-4o-mini'"
    ):
        catalog.require("gpt-4o-mnii")
    with pytest.raises(ConfigError, match=r"^unknown model 'zzz'$"):
        catalog.require("zzz")


def test_conf_models_yaml_is_the_builtin_catalog() -> None:
    link = REPO / "conf" / "models.yaml"
    assert link.is_symlink()
    assert link.resolve() == builtin_catalog_path().resolve()


# --- a user catalog ------------------------------------------------------------------------


def test_user_catalog_extends_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        prices_as_of: 2026-11-01
        sources: {openai_compatible: "our own GPUs"}
        models:
          gpt-4o:
            input_price: 2.0
          claude-haiku-4-5:
            tier: balanced
          llama3.1:8b:
            provider: openai_compatible
            input_price: 0
            output_price: 0
            context_window: 131072
            max_output_tokens: 8192
            capabilities: [text, streaming, tools]
            tier: fast
          local-default:
            alias_of: llama3.1:8b
    """,
    )
    builtin = load_catalog()
    catalog = load_catalog(path)

    assert catalog.prices_as_of == "2026-11-01"
    assert catalog.sources["openai_compatible"] == "our own GPUs"
    assert catalog.sources["openai"] == builtin.sources["openai"]
    gpt4o = catalog.require("gpt-4o")
    assert gpt4o.input_price == 2.0
    assert gpt4o.output_price == builtin.require("gpt-4o").output_price  # merged, not replaced
    assert catalog.require("gpt-4o-2024-08-06").input_price == 2.0  # aliases follow the target
    haiku = catalog.require("claude-haiku-4-5")
    assert haiku.tier == "balanced" and haiku.alias_of is None
    assert haiku.input_price == builtin.require("claude-haiku-4-5").input_price
    llama = catalog.require("llama3.1:8b")
    assert llama.cached_input_price == 0.0  # defaults to the input price
    local = [m.id for m in catalog.models_for(ProviderType.OPENAI_COMPATIBLE)]
    assert local == ["llama3.1:8b", "local-default"]
    assert len(catalog) == len(builtin) + 2
    assert builtin.require("gpt-4o").input_price == 2.5  # the built-in catalog is untouched
    assert load_catalog().require("gpt-4o").input_price == 2.5


def test_user_catalog_errors_one_line_each(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        models:
          gpt-4o:
            input_price: -1
            colour: blue
          my-model:
            provider: openai_compatible
            input_price: 1
            output_price: "two"
            context_window: 1000
            max_output_tokens: 2000
            capabilities: [text, tool]
            tier: fast
          half-done:
            provider: openai
          pointer:
            alias_of: gpt-4x
    """,
    )
    assert catalog_error(path).splitlines() == [
        f"{path}: models.gpt-4o: unknown key 'colour'",
        f"{path}: models.gpt-4o.input_price: must be >= 0",
        f"{path}: models.my-model.output_price: must be a number",
        f"{path}: models.my-model.max_output_tokens: must be <= context_window",
        f"{path}: models.my-model.capabilities[1]: unknown capability 'tool'; did you mean "
        "'tools'? (known: text, streaming, tools, parallel_tools, vision, json_mode, "
        "system_prompt, reasoning, structured_outputs, reasoning_effort)",
        f"{path}: models.half-done.input_price: is required",
        f"{path}: models.half-done.output_price: is required",
        f"{path}: models.half-done.context_window: is required",
        f"{path}: models.half-done.max_output_tokens: is required",
        f"{path}: models.half-done.capabilities: is required",
        f"{path}: models.half-done.tier: is required",
        f"{path}: models.pointer.alias_of: unknown model 'gpt-4x'; did you mean 'gpt-4'?",
    ]


def test_user_catalog_file_problems(tmp_path: Path) -> None:
    assert (
        catalog_error(tmp_path / "missing.yaml")
        == f"{tmp_path / 'missing.yaml'}: catalog file not found"
    )
    path = write(tmp_path, "models:\n  a: [unclosed\n", name="bad.yaml")
    assert re.fullmatch(rf"{re.escape(str(path))}:\d+: invalid YAML: .+", catalog_error(path))
    path = write(tmp_path, "model: {}\n", name="typo.yaml")
    assert catalog_error(path).splitlines() == [
        f"{path}: unknown key 'model' (expected one of prices_as_of, sources, models)",
        f"{path}: models: is required",
    ]


# --- pricing -------------------------------------------------------------------------------


def info(input_price: float, output_price: float, cached_input_price: float) -> ModelInfo:
    return ModelInfo(
        id="m",
        provider=ProviderType.OPENAI,
        input_price=input_price,
        output_price=output_price,
        cached_input_price=cached_input_price,
        context_window=1000,
        max_output_tokens=100,
        capabilities=frozenset({ProviderCapability.TEXT}),
        tier="fast",
    )


def test_price_charges_cached_tokens_at_the_cached_rate() -> None:
    usage = Usage(input_tokens=1000, cached_input_tokens=400, output_tokens=500)
    # (600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6
    assert price(load_catalog().require("gpt-4o"), usage) == pytest.approx(0.007)
    assert price(info(3.0, 15.0, 0.3), Usage(input_tokens=1_000_000)) == pytest.approx(3.0)
    assert price(info(3.0, 15.0, 0.3), Usage(output_tokens=2_000_000)) == pytest.approx(30.0)
    assert price(
        info(3.0, 15.0, 0.3), Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000)
    ) == pytest.approx(0.3)
    assert price(info(3.0, 15.0, 0.3), Usage()) == 0.0


def test_price_never_counts_more_cached_than_input_tokens() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=500, output_tokens=0)
    assert price(info(1.0, 1.0, 0.5), usage) == pytest.approx(100 * 0.5 / 1e6)


# --- estimates -----------------------------------------------------------------------------


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("日本語") == 3
    assert estimate_tokens("ab日本") == 3
    assert estimate_tokens("x" * 400_000) == 100_000


def test_estimate_request_tokens_counts_messages_images_and_tools() -> None:
    text_only = AIRequest(
        messages=[
            {"role": "system", "content": "Be brief."},  # 9 chars -> 3
            {"role": "user", "content": "Hello, world!"},  # 13 chars -> 4
        ]
    )
    expected = REPLY_OVERHEAD_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS + 3 + 4
    assert estimate_request_tokens(text_only) == expected

    with_image = AIRequest(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},  # 13 chars -> 4
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ]
    )
    assert estimate_request_tokens(with_image) == (
        REPLY_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 4 + 2 * IMAGE_TOKENS
    )

    tool = MCPTool(name="get_weather", description="Weather", inputSchema={"type": "object"})
    definition = '{"name":"get_weather","description":"Weather","parameters":{"type":"object"}}'
    assert estimate_request_tokens(text_only.with_tools([tool])) == (
        expected + TOOL_OVERHEAD_TOKENS + estimate_tokens(definition)
    )


def test_estimate_counts_tool_calls_and_real_mcp_schemas() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"city":"Tokyo"}'},
    }
    request = AIRequest(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
    )
    assert estimate_request_tokens(request) == (
        REPLY_OVERHEAD_TOKENS
        + 3 * MESSAGE_OVERHEAD_TOKENS
        + estimate_tokens("Weather?")
        + estimate_tokens("lookup")
        + estimate_tokens('{"city":"Tokyo"}')
        + estimate_tokens("sunny")
    )
    schema = json.loads((MCP_TOOLS / "github-mcp-server__create_pull_request.json").read_text())
    big = MCPTool.model_validate(schema)
    with_tool = estimate_request_tokens(request.with_tools([big]))
    schema_size = len(json.dumps(big.inputSchema, separators=(",", ":")))
    assert with_tool - estimate_request_tokens(request) >= schema_size // 4
