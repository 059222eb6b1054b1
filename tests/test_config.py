"""Configuration loading: the example file, env vars, interpolation and one clear line per error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router.config import (
    LedgerConfig,
    ProviderConfig,
    RouterConfig,
    config_from_dict,
    default_config_path,
    interpolate,
    load_config,
)
from router.errors import ConfigError
from router.models import ProviderType

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "conf" / "ai_providers.yaml"

ANTHROPIC_KEY = "sk-ant-test-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
OPENAI_KEY = "sk-test-XXXXXXXXXXXXXXXXXXXXXXXXXXXX"
GOOGLE_KEY = "AIzaTestGGGGGGGGGGGGGGGGGGGGGGGGGGGGGGG"
ALL_KEYS = {
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    "OPENAI_API_KEY": OPENAI_KEY,
    "GOOGLE_API_KEY": GOOGLE_KEY,
    "HOME": "/home/tester",
}
SECRETS = (ANTHROPIC_KEY, OPENAI_KEY, GOOGLE_KEY)


def write(tmp_path: Path, text: str, name: str = "ai_providers.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ALL_KEYS if environ is None else environ)
    message = str(caught.value)
    for secret in SECRETS:
        assert secret not in message
    return message


def minimal(**extra: object) -> dict[str, object]:
    return {"providers": [{"type": "openai"}], **extra}


# --- the example file ----------------------------------------------------------------------


def test_example_file_loads_with_keys_from_the_environment() -> None:
    config = load_config(EXAMPLE, environ=ALL_KEYS)

    assert [p.name for p in config.providers] == ["anthropic", "openai", "google"]
    assert [p.priority for p in config.providers] == [1, 2, 3]
    assert all(p.usable for p in config.providers)
    assert config.provider("openai").api_key.get_secret_value() == OPENAI_KEY
    assert (
        config.provider("google").effective_base_url == "https://generativelanguage.googleapis.com"
    )
    daily, monthly = config.budgets
    assert (daily.name, daily.daily_limit, daily.period) == ("Daily Budget", 10.0, "daily")
    assert daily.alert_thresholds == (0.5, 0.8, 0.95)
    assert monthly.monthly_limit == 300.0 and monthly.period == "monthly"
    assert monthly.provider_limits == {"anthropic": 150.0, "openai": 100.0, "google": 50.0}
    assert config.default_strategy == "cost"
    assert config.source == str(EXAMPLE)
    assert config.ledger.type == "sqlite"
    assert config.ledger.path == "/home/tester/.local/share/router/ledger.db"


def test_provider_without_key_is_disabled_with_the_reason() -> None:
    config = load_config(EXAMPLE, environ={"OPENAI_API_KEY": OPENAI_KEY})

    assert [p.name for p in config.usable_providers()] == ["openai"]
    anthropic = config.provider("anthropic")
    assert anthropic.api_key is None
    assert not anthropic.usable
    assert anthropic.disabled_reason == "no API key (set ANTHROPIC_API_KEY or api_key)"
    assert config.provider("google").disabled_reason == (
        "no API key (set GOOGLE_API_KEY or GEMINI_API_KEY or api_key)"
    )


def test_gemini_api_key_is_accepted_for_google() -> None:
    config = load_config(EXAMPLE, environ={"GEMINI_API_KEY": GOOGLE_KEY})
    assert config.provider("google").api_key.get_secret_value() == GOOGLE_KEY
    assert config.provider("google").usable


def test_disabled_provider_says_so() -> None:
    config = config_from_dict(
        {"providers": [{"type": "openai", "enabled": False}]}, environ=ALL_KEYS
    )
    assert config.providers[0].disabled_reason == "enabled: false"
    assert config.usable_providers() == ()


def test_openai_compatible_needs_no_key() -> None:
    config = config_from_dict(
        {
            "providers": [
                {
                    "name": "local",
                    "type": "openai_compatible",
                    "base_url": "http://127.0.0.1:8000/v1/",
                }
            ]
        },
        environ={},
    )
    local = config.provider("local")
    assert local.usable and local.api_key is None
    assert local.base_url == "http://127.0.0.1:8000/v1"


def test_unknown_provider_name_lists_the_configured_ones() -> None:
    config = load_config(EXAMPLE, environ=ALL_KEYS)
    with pytest.raises(
        ConfigError,
        match=r"unknown provider 'opnai'; did you mean 'openai'\? "
        r"\(configured: anthropic, openai, google\)",
    ):
        config.provider("opnai")


# --- one precise line per problem ------------------------------------------------------------


def test_unknown_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - type: openai
            api_key: sk-test-XXXXXXXXXXXXXXXXXXXXXXXXXXXX
            timout: 10
    """,
    )
    assert config_error(path) == f"{path}: providers[0]: unknown key 'timout'"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: [{type: openai}]\nbudget: []\n")
    assert config_error(path) == f"{path}: unknown key 'budget'"


def test_bad_type(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - type: openai\n    timeout: fast\n    priority: high\n")
    assert config_error(path).splitlines() == [
        f"{path}: providers[0].priority: must be an integer",
        f"{path}: providers[0].timeout: must be a number",
    ]


def test_negative_timeout(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - type: anthropic
          - type: openai
            timeout: -1
    """,
    )
    assert config_error(path) == f"{path}: providers[1].timeout: must be > 0"


def test_bad_provider_type(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - type: azure\n")
    assert config_error(path) == (
        f"{path}: providers[0].type: must be one of "
        "'anthropic', 'openai', 'google' or 'openai_compatible'"
    )


def test_bad_yaml_names_file_and_line_but_not_the_content(tmp_path: Path) -> None:
    path = write(tmp_path, f"providers:\n  - type: openai\n    api_key: {OPENAI_KEY}: oops\n")
    message = config_error(path)
    assert message.startswith(f"{path}:3: invalid YAML: ")
    assert "mapping values are not allowed here" in message


def test_duplicate_provider_names(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - type: openai\n  - type: anthropic\n  - type: openai\n")
    assert config_error(path) == (
        f"{path}: providers[2].name: duplicate provider name 'openai' (also providers[0]); "
        "give each instance a distinct 'name'"
    )


def test_two_instances_of_one_type_with_names() -> None:
    config = config_from_dict(
        {"providers": [{"type": "openai"}, {"type": "openai", "name": "openai-backup"}]},
        environ=ALL_KEYS,
    )
    assert [p.name for p in config.providers] == ["openai", "openai-backup"]
    assert config.provider("openai-backup").api_key.get_secret_value() == OPENAI_KEY


def test_bad_provider_name(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - {type: openai, name: 'my openai'}\n")
    assert config_error(path) == (
        f"{path}: providers[0].name: must contain only letters, digits, '_', '.' and '-'"
    )


def test_unknown_provider_in_model_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - type: openai
          - type: anthropic
        model_groups:
          fast:
            - {provider: openai, model: gpt-4o-mini}
            - {provider: antropic, model: claude-haiku-4-5}
    """,
    )
    assert config_error(path) == (
        f"{path}: model_groups.fast[1].provider: unknown provider 'antropic'; "
        "did you mean 'anthropic'? (configured: openai, anthropic)"
    )


def test_unknown_provider_in_provider_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers: [{type: openai}]
        budgets:
          - name: Monthly
            monthly_limit: 100
            provider_limits: {openai: 50, gogle: 10}
    """,
    )
    assert config_error(path) == (
        f"{path}: budgets[0].provider_limits.gogle: unknown provider 'gogle'; did you mean "
        "'google'?; use a provider name (openai) or type (anthropic, openai, google, "
        "openai_compatible)"
    )


def test_provider_limits_may_name_a_type_or_an_instance() -> None:
    config = config_from_dict(
        minimal(budgets=[{"name": "b", "provider_limits": {"openai": 5, "google": 1}}]),
        environ=ALL_KEYS,
    )
    assert config.budgets[0].provider_limits == {"openai": 5.0, "google": 1.0}
    assert config.budgets[0].period == "monthly"  # provider limits alone: monthly


def test_bad_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: [{type: openai}]\ntimezone: Mars/Olympus_Mons\n")
    assert config_error(path) == (
        f"{path}: timezone: unknown time zone 'Mars/Olympus_Mons' "
        "(use an IANA name such as 'UTC' or 'Europe/Berlin')"
    )


def test_good_timezone() -> None:
    assert (
        config_from_dict(minimal(timezone="Europe/Berlin"), environ={}).timezone == "Europe/Berlin"
    )


def test_bad_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: [{type: openai}]\ndefault_strategy: cheapest\n")
    assert config_error(path) == (
        f"{path}: default_strategy: must be one of 'cost', 'priority', 'capability_based', "
        "'load_balanced', 'failover' or 'round_robin'"
    )


def test_missing_base_url_for_openai_compatible(tmp_path: Path) -> None:
    path = write(
        tmp_path, "providers:\n  - type: openai\n  - {name: local, type: openai_compatible}\n"
    )
    assert config_error(path) == (
        f"{path}: providers[1].base_url: is required for type 'openai_compatible'"
    )


def test_base_url_must_be_http(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - {type: openai, base_url: 'ftp://example.com'}\n")
    assert config_error(path) == (
        f"{path}: providers[0].base_url: must be an http:// or https:// URL"
    )


def test_several_problems_give_several_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - type: openai
            timeout: 0
            max_retries: -1
            retry: {base_delay: 5, max_delay: 1}
        budgets:
          - name: empty
          - name: bad
            daily_limit: 5
            alert_thresholds: [0.5, 1.5]
        request_timeout: -3
    """,
    )
    assert config_error(path).splitlines() == [
        f"{path}: providers[0].timeout: must be > 0",
        f"{path}: providers[0].max_retries: must be >= 0",
        f"{path}: providers[0].retry.max_delay: must be >= base_delay",
        f"{path}: budgets[0]: needs at least one of daily_limit, monthly_limit, provider_limits",
        f"{path}: budgets[1].alert_thresholds[1]: must be <= 1",
        f"{path}: request_timeout: must be > 0",
    ]


def test_missing_providers(tmp_path: Path) -> None:
    path = write(tmp_path, "budgets: []\n")
    assert config_error(path) == f"{path}: providers: is required"
    path = write(tmp_path, "providers: []\n")
    assert config_error(path) == f"{path}: providers: at least one provider is required"


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert config_error(path) == f"{path}: the configuration file is empty"
    path = write(tmp_path, "- just\n- a list\n")
    assert config_error(path) == f"{path}: must be a mapping with a 'providers' list"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert config_error(path) == f"{path}: configuration file not found"


def test_alert_thresholds_are_sorted() -> None:
    config = config_from_dict(
        minimal(budgets=[{"name": "b", "daily_limit": 1, "alert_thresholds": [0.9, 0.25, 0.9]}]),
        environ={},
    )
    assert config.budgets[0].alert_thresholds == (0.25, 0.9)


def test_duplicate_budget_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers: [{type: openai}]
        budgets:
          - {name: b, daily_limit: 1}
          - {name: b, monthly_limit: 1}
    """,
    )
    assert (
        config_error(path)
        == f"{path}: budgets[1].name: duplicate budget name 'b' (also budgets[0])"
    )


# --- the catalog as a reference --------------------------------------------------------------


def test_unknown_model_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - type: openai
            models: [gpt-4o-mini, gpt-4o-mnii]
          - type: anthropic
            default_model: claude-sonet-4-5
    """,
    )
    assert config_error(path).splitlines() == [
        f"{path}: providers[0].models[1]: unknown openai model 'gpt-4o-mnii'; "
        "did you mean 'gpt-4o-mini'?",
        f"{path}: providers[1].default_model: unknown anthropic model 'claude-sonet-4-5'; "
        "did you mean 'claude-sonnet-4-5'?",
    ]


def test_model_of_another_provider_type(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - {type: anthropic, models: [gpt-4o]}\n")
    assert config_error(path) == (
        f"{path}: providers[0].models[0]: 'gpt-4o' is a openai model, not anthropic"
    )


def test_default_model_outside_the_providers_models(tmp_path: Path) -> None:
    path = write(
        tmp_path, "providers:\n  - {type: openai, models: [gpt-4o], default_model: gpt-4o-mini}\n"
    )
    assert config_error(path) == (
        f"{path}: providers[0].default_model: 'gpt-4o-mini' is not in this provider's models"
    )


def test_model_groups_and_default_model() -> None:
    config = config_from_dict(
        {
            "providers": [{"type": "openai"}, {"type": "anthropic"}],
            "model_groups": {
                "fast": [
                    {"provider": "openai", "model": "gpt-4o-mini"},
                    {"provider": "anthropic", "model": "claude-haiku-4-5"},
                ]
            },
            "default_model": "fast",
        },
        environ=ALL_KEYS,
    )
    assert [m.provider for m in config.model_groups["fast"]] == ["openai", "anthropic"]
    assert config.default_model == "fast"


def test_model_group_member_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - {type: openai, models: [gpt-4o]}
          - {type: google}
        model_groups:
          smart:
            - {provider: openai, model: gpt-4.1}
            - {provider: google, model: claude-sonnet-4-5}
            - {provider: google, model: gemini-2.5-pro}
          gpt-4o:
            - {provider: openai, model: gpt-4o}
        default_model: smrt
    """,
    )
    assert config_error(path).splitlines() == [
        f"{path}: model_groups.smart[2].provider: provider 'google' appears twice; a group has "
        "one model per provider",
        f"{path}: model_groups.smart[0].model: provider 'openai' does not serve 'gpt-4.1' "
        "(its models: gpt-4o)",
        f"{path}: model_groups.smart[1].model: 'claude-sonnet-4-5' is a anthropic model, not google",
        f"{path}: model_groups.gpt-4o: has the id of a catalog model; choose another alias name",
        f"{path}: default_model: unknown model or model group 'smrt'; did you mean 'smart'?",
    ]


def test_default_model_nobody_serves(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: [{type: openai}]\ndefault_model: gemini-2.5-flash\n")
    assert config_error(path) == (
        f"{path}: default_model: no configured provider serves 'gemini-2.5-flash' (a google model)"
    )


def test_user_catalog_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write(
        tmp_path / "conf",
        """
        models:
          llama3.1:8b:
            provider: openai_compatible
            input_price: 0
            output_price: 0
            context_window: 131072
            max_output_tokens: 8192
            capabilities: [text, streaming, tools]
            tier: fast
    """,
        name="my_models.yaml",
    )
    path = write(
        tmp_path / "conf",
        """
        providers:
          - {name: local, type: openai_compatible, base_url: 'http://127.0.0.1:11434/v1'}
        catalog: my_models.yaml
        default_model: llama3.1:8b
    """,
    )
    config = load_config(path, environ={})
    assert config.catalog == str(tmp_path / "conf" / "my_models.yaml")
    catalog = config.load_catalog()
    assert [m.id for m in catalog.models_for(ProviderType.OPENAI_COMPATIBLE)] == ["llama3.1:8b"]


def test_broken_user_catalog_is_reported(tmp_path: Path) -> None:
    catalog = write(tmp_path, "models:\n  gpt-4o: {input_price: cheap}\n", name="cat.yaml")
    path = write(tmp_path, "providers: [{type: openai}]\ncatalog: cat.yaml\n")
    assert config_error(path) == f"{catalog}: models.gpt-4o.input_price: must be a number"


# --- interpolation -------------------------------------------------------------------------


def test_interpolation_rules() -> None:
    env = {"HOST": "example.com", "EMPTY": ""}
    assert interpolate(
        {
            "a": "https://${HOST}/v1",
            "b": "${MISSING:-fallback}",
            "c": "${EMPTY:-used-when-empty}",
            "d": "x${MISSING}y",
            "e": "$${HOST}",
            "f": "${MISSING}",
            "g": ["${HOST}", "${MISSING}"],
            "h": 3,
        },
        env,
    ) == {
        "a": "https://example.com/v1",
        "b": "fallback",
        "c": "used-when-empty",
        "d": "xy",
        "e": "${HOST}",
        "g": ["example.com", None],
        "h": 3,
    }


def test_interpolated_values_are_validated_and_unset_ones_fall_back_to_defaults(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - name: ${NAME:-primary}
            type: openai
            timeout: ${OPENAI_TIMEOUT}
            connect_timeout: ${CONNECT_TIMEOUT:-2.5}
            max_retries: ${RETRIES}
            enabled: ${OPENAI_ENABLED:-true}
            api_key: ${MY_OPENAI_KEY}
    """,
    )
    config = load_config(path, environ={"RETRIES": "7", "MY_OPENAI_KEY": OPENAI_KEY})
    provider = config.provider("primary")
    assert provider.timeout == 30.0  # ${OPENAI_TIMEOUT} unset -> the default
    assert provider.connect_timeout == 2.5
    assert provider.max_retries == 7
    assert provider.enabled is True
    assert provider.api_key.get_secret_value() == OPENAI_KEY


def test_unset_key_variable_falls_back_to_the_standard_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  - {type: openai, api_key: '${MY_OPENAI_KEY}'}\n")
    config = load_config(path, environ={"OPENAI_API_KEY": OPENAI_KEY})
    assert config.providers[0].api_key.get_secret_value() == OPENAI_KEY


# --- environment variables from the product document -----------------------------------------


def test_ai_provider_enabled_false_disables_every_provider() -> None:
    config = load_config(EXAMPLE, environ={**ALL_KEYS, "AI_PROVIDER_ENABLED": "false"})
    assert config.enabled is False
    assert config.usable_providers() == ()
    assert {p.disabled_reason for p in config.providers} == {"AI_PROVIDER_ENABLED=false"}


def test_the_file_wins_over_ai_provider_enabled() -> None:
    config = config_from_dict(
        minimal(enabled=True), environ={**ALL_KEYS, "AI_PROVIDER_ENABLED": "0"}
    )
    assert config.enabled and config.providers[0].usable
    config = config_from_dict(minimal(enabled=False), environ=ALL_KEYS)
    assert config.providers[0].disabled_reason == "enabled: false (top level)"


def test_bad_ai_provider_enabled() -> None:
    with pytest.raises(
        ConfigError, match="^environment variable AI_PROVIDER_ENABLED: must be true or false$"
    ):
        config_from_dict(minimal(), environ={"AI_PROVIDER_ENABLED": "maybe"})


def test_ai_provider_default_strategy() -> None:
    env = {"AI_PROVIDER_DEFAULT_STRATEGY": "priority"}
    assert config_from_dict(minimal(), environ=env).default_strategy == "priority"
    assert (
        config_from_dict(minimal(default_strategy="failover"), environ=env).default_strategy
        == "failover"
    )
    with pytest.raises(
        ConfigError,
        match=r"AI_PROVIDER_DEFAULT_STRATEGY: must be one of cost, "
        r"priority, .*; did you mean 'round_robin'\?$",
    ):
        config_from_dict(minimal(), environ={"AI_PROVIDER_DEFAULT_STRATEGY": "round-robin"})


def test_ai_provider_max_retries() -> None:
    config = config_from_dict(
        {"providers": [{"type": "openai"}, {"type": "anthropic", "max_retries": 1}]},
        environ={"AI_PROVIDER_MAX_RETRIES": "5"},
    )
    assert [p.max_retries for p in config.providers] == [5, 1]
    with pytest.raises(ConfigError, match="AI_PROVIDER_MAX_RETRIES: must be an integer >= 0"):
        config_from_dict(minimal(), environ={"AI_PROVIDER_MAX_RETRIES": "-2"})


def test_ai_provider_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "providers: [{type: google}]\n", name="elsewhere.yaml")
    env = {"AI_PROVIDER_CONFIG_PATH": str(path), "GOOGLE_API_KEY": GOOGLE_KEY}
    assert default_config_path(env) == path
    assert load_config(environ=env).providers[0].usable
    with pytest.raises(
        ConfigError, match=r"configuration file not found \(from AI_PROVIDER_CONFIG_PATH\)"
    ):
        load_config(environ={"AI_PROVIDER_CONFIG_PATH": str(tmp_path / "missing.yaml")})


def test_default_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(environ={})
    assert str(caught.value) == (
        "no configuration file found: AI_PROVIDER_CONFIG_PATH is not set and none of "
        "./config/ai_providers.yaml, ./conf/ai_providers.yaml exists"
    )
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "providers: [{type: openai}]\n")
    assert default_config_path({}) == Path("conf/ai_providers.yaml")
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "providers: [{type: anthropic}]\n")
    assert load_config(environ={}).providers[0].type is ProviderType.ANTHROPIC


def test_key_in_the_file_wins_over_the_environment() -> None:
    other = "sk-test-YYYYYYYYYYYYYYYYYYYYYYYYYYYY"
    config = config_from_dict(
        {"providers": [{"type": "openai", "api_key": other}]}, environ=ALL_KEYS
    )
    assert config.providers[0].api_key.get_secret_value() == other


# --- ledger --------------------------------------------------------------------------------


def test_ledger_defaults_and_choices(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": "/data"}
    assert config_from_dict(minimal(), environ=env).ledger.path == "/data/router/ledger.db"
    memory = config_from_dict(minimal(ledger={"path": ":memory:"}), environ=env).ledger
    assert memory.path == ":memory:"
    relative = config_from_dict(
        minimal(ledger={"path": "spend.db"}), environ=env, base_dir=tmp_path
    )
    assert relative.ledger.path == str(tmp_path / "spend.db")
    redis = config_from_dict(
        minimal(ledger={"type": "redis", "url": "redis://:hunter2secret@cache:6379/0"}), environ=env
    ).ledger
    assert redis.path is None
    assert "hunter2secret" not in repr(redis)
    assert redis.display_url == "redis://:***@cache:6379/0"


def test_redis_ledger_needs_a_url(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: [{type: openai}]\nledger: {type: redis}\n")
    assert config_error(path) == f"{path}: ledger.url: is required for type 'redis'"


# --- secrets never leak -----------------------------------------------------------------------


def test_repr_and_str_never_show_keys() -> None:
    config = load_config(EXAMPLE, environ=ALL_KEYS)
    shown = [repr(config), str(config), config.model_dump_json()]
    shown += [repr(p) for p in config.providers] + [str(p) for p in config.providers]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text
    assert "**********" in repr(config.provider("openai"))


def test_errors_never_show_keys(tmp_path: Path) -> None:
    # Problems next to the key, a key of the wrong type, and a key in a bad place.
    path = write(
        tmp_path,
        f"""
        providers:
          - type: openai
            api_key: {OPENAI_KEY}
            timeout: -1
            extra_field: {ANTHROPIC_KEY}
          - type: anthropic
            api_key: [{ANTHROPIC_KEY}]
          - type: google
            api_key: {{nested: {GOOGLE_KEY}}}
        timezone: Nowhere/Land
    """,
    )
    lines = config_error(path).splitlines()
    assert lines == [
        f"{path}: providers[0].timeout: must be > 0",
        f"{path}: providers[0]: unknown key 'extra_field'",
        f"{path}: providers[1].api_key: must be a string",
        f"{path}: providers[2].api_key: must be a string",
        f"{path}: timezone: unknown time zone 'Nowhere/Land' (use an IANA name such as 'UTC' "
        "or 'Europe/Berlin')",
    ]


def test_direct_construction_uses_the_same_rules() -> None:
    provider = ProviderConfig(type="openai", api_key=OPENAI_KEY)
    assert provider.name == "openai" and provider.usable
    assert OPENAI_KEY not in repr(provider)
    config = RouterConfig(providers=(provider,), ledger=LedgerConfig(type="memory"))
    assert config.usable_providers() == (provider,)
