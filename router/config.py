"""Configuration: YAML file + environment -> a validated, immutable :class:`RouterConfig`.

The file format is the product document's (``providers:`` list, ``budgets:`` list) plus the extras
a user needs: ``name`` (several instances of one provider type), ``base_url``, ``models``,
``model_groups``, ``retry``, ``circuit_breaker``, ``ledger``, ``catalog``. Every string value may
use ``${VAR}`` or ``${VAR:-default}``; ``$${`` writes a literal ``${``. A value that is exactly
``${VAR}`` with ``VAR`` unset or empty counts as not given, so a provider whose key variable is
unset is reported disabled with the reason instead of failing the whole file.

Environment variables (the product document's table): ``AI_PROVIDER_CONFIG_PATH`` (where the
file is), ``AI_PROVIDER_ENABLED``, ``AI_PROVIDER_DEFAULT_STRATEGY`` and
``AI_PROVIDER_MAX_RETRIES`` (defaults used when the file does not set the value),
``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, ``GOOGLE_API_KEY`` (or ``GEMINI_API_KEY``) (keys used when
the file gives none). The file always wins over the environment.

Relative paths in a file (``catalog``, ``ledger.path``, ``audit_log``, ``mcp_servers[].cwd``)
are relative to the file's directory. Every problem is reported as one line
``<file>: <key path>: <problem>``, all of them in one :class:`~router.errors.ConfigError`; no
message ever contains an API key.
"""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.budget import provider_limit_period
from router.catalog import Catalog, load_catalog
from router.errors import ConfigError
from router.ledger.sqlite import default_ledger_path
from router.models import ProviderType

__all__ = [
    "Strategy",
    "RetryStrategy",
    "STRATEGIES",
    "ENV_ENABLED",
    "ENV_DEFAULT_STRATEGY",
    "ENV_MAX_RETRIES",
    "ENV_CONFIG_PATH",
    "KEY_ENV_VARS",
    "DEFAULT_CONFIG_LOCATIONS",
    "RetrySettings",
    "CircuitBreakerSettings",
    "ProviderConfig",
    "BudgetConfig",
    "ModelGroupMember",
    "LedgerConfig",
    "MCPServerConfig",
    "CacheConfig",
    "TracingConfig",
    "RouterConfig",
    "load_config",
    "config_from_dict",
    "default_config_path",
    "interpolate",
]

Strategy = Literal[
    "cost", "priority", "capability_based", "load_balanced", "failover", "round_robin"
]
STRATEGIES: tuple[str, ...] = Strategy.__args__  # type: ignore[attr-defined]
RetryStrategy = Literal["exponential_backoff", "linear_backoff", "jittered_exponential", "fixed"]

ENV_ENABLED = "AI_PROVIDER_ENABLED"
ENV_DEFAULT_STRATEGY = "AI_PROVIDER_DEFAULT_STRATEGY"
ENV_MAX_RETRIES = "AI_PROVIDER_MAX_RETRIES"
ENV_CONFIG_PATH = "AI_PROVIDER_CONFIG_PATH"

#: Environment variables a provider type's key is read from when the file gives none, in order.
KEY_ENV_VARS: Mapping[ProviderType, tuple[str, ...]] = {
    ProviderType.ANTHROPIC: ("ANTHROPIC_API_KEY",),
    ProviderType.OPENAI: ("OPENAI_API_KEY",),
    ProviderType.GOOGLE: ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
}

#: Where :func:`load_config` looks when neither a path nor ``AI_PROVIDER_CONFIG_PATH`` is given.
DEFAULT_CONFIG_LOCATIONS: tuple[str, ...] = ("config/ai_providers.yaml", "conf/ai_providers.yaml")

_CONFIG = ConfigDict(extra="forbid", frozen=True)
_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]+$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

PositiveFloat = Annotated[float, Field(gt=0)]


class _Problems(ValueError):
    """Several problems found by one validator, each ``(relative key path, message)``.

    The formatter joins each relative path onto the location of the failing model, so a
    validator on ``ProviderConfig`` can say ``("base_url", "is required ...")`` and the user reads
    ``providers[1].base_url: is required ...``.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in problems))
        self.problems = problems


def _context(info: ValidationInfo) -> Mapping[str, Any]:
    return info.context if isinstance(info.context, Mapping) else {}


# --- settings ------------------------------------------------------------------------------


class RetrySettings(BaseModel):
    """How a provider retries a retryable failure (the retry policy's parameters, seconds)."""

    model_config = _CONFIG

    strategy: RetryStrategy = "exponential_backoff"
    base_delay: float = Field(default=0.5, gt=0)
    max_delay: float = Field(default=30.0, gt=0)
    max_retry_after: float = Field(default=60.0, gt=0)
    # A server-requested wait longer than this moves the request to the next candidate at
    # once (when there is one) instead of parking it on this provider.
    failover_after: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _check_delays(self) -> RetrySettings:
        if self.max_delay < self.base_delay:
            raise _Problems([("max_delay", "must be >= base_delay")])
        return self


class CircuitBreakerSettings(BaseModel):
    """When a provider's breaker opens (consecutive failures) and half-opens (seconds)."""

    model_config = _CONFIG

    failure_threshold: int = Field(default=5, ge=1)
    recovery_timeout: float = Field(default=30.0, gt=0)


class ProviderConfig(BaseModel):
    """One provider instance.

    ``name`` defaults to the type's value; give each instance a distinct name to configure one
    type several times (two OpenAI accounts, a local vLLM next to Ollama). ``priority``: higher
    is preferred. ``models`` lists the models this instance serves; empty means every catalog
    model of its type. ``disabled_reason`` says why the instance cannot be used (no key,
    ``enabled: false``, router switched off); :attr:`usable` is its negation.
    """

    model_config = _CONFIG

    name: str = ""
    type: ProviderType
    api_key: SecretStr | None = None
    enabled: bool = True
    priority: int = 0
    timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    base_url: str | None = None
    models: tuple[str, ...] = ()
    default_model: str | None = None
    retry: RetrySettings = RetrySettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    # Attempts in flight to this provider on all threads; None (the default): no cap of the
    # router's own, the provider's limits (its 429s, the rpm/tpm set here) are what hold.
    max_concurrency: int | None = Field(default=None, ge=1)
    health_check_interval: float | None = Field(default=None, gt=0)

    _disabled_reason: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_environment(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        ctx = _context(info)
        data = dict(data)
        if "max_retries" not in data and "default_max_retries" in ctx:
            data["max_retries"] = ctx["default_max_retries"]
        key = data.get("api_key")
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        if isinstance(key, str):
            key = key.strip()
            data["api_key"] = key or None
        if not data.get("api_key"):
            try:
                kind = ProviderType(data.get("type"))
            except ValueError:
                return data
            environ: Mapping[str, str] = ctx.get("environ", os.environ)
            for var in KEY_ENV_VARS.get(kind, ()):
                value = (environ.get(var) or "").strip()
                if value:
                    data["api_key"] = value
                    break
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value and not _NAME_RE.match(value):
            raise ValueError("must contain only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("base_url", mode="before")
    @classmethod
    def _check_base_url(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not re.match(r"^https?://[^/\s]+", value):
                raise ValueError("must be an http:// or https:// URL")
            return value.rstrip("/")
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _single_model(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_provider(self) -> ProviderConfig:
        if not self.name:
            object.__setattr__(self, "name", self.type.value)
        problems: list[tuple[str, str]] = []
        if self.type is ProviderType.OPENAI_COMPATIBLE and self.base_url is None:
            problems.append(("base_url", "is required for type 'openai_compatible'"))
        if self.models and len(set(self.models)) != len(self.models):
            problems.append(("models", "lists a model more than once"))
        if self.default_model and self.models and self.default_model not in self.models:
            problems.append(
                ("default_model", f"{self.default_model!r} is not in this provider's models")
            )
        if problems:
            raise _Problems(problems)
        self._disabled_reason = self._own_disabled_reason()
        return self

    def _own_disabled_reason(self) -> str | None:
        if not self.enabled:
            return "enabled: false"
        if self.api_key is None and self.type in KEY_ENV_VARS:
            names = " or ".join((*KEY_ENV_VARS[self.type], "api_key"))
            return f"no API key (set {names})"
        return None

    @property
    def disabled_reason(self) -> str | None:
        """Why this provider cannot be used, or None when it can."""
        return self._disabled_reason

    @property
    def usable(self) -> bool:
        """Enabled, has what it needs, and the router is switched on."""
        return self.enabled and self._disabled_reason is None

    @property
    def effective_base_url(self) -> str:
        """``base_url``, or the provider type's public API root (the adapter knows it)."""
        from router.providers import get_adapter

        return (self.base_url or get_adapter(self.type).default_base_url).rstrip("/")

    def with_disabled_reason(self, reason: str | None) -> ProviderConfig:
        """A copy whose ``disabled_reason`` is ``reason`` (e.g. the router is switched off)."""
        copy = self.model_copy()
        copy._disabled_reason = reason
        return copy


class BudgetConfig(BaseModel):
    """A spending limit in USD.

    ``provider_limits`` (keyed by provider instance name or provider type) count daily when the
    budget has a ``daily_limit`` and no ``monthly_limit``, otherwise monthly (also when the
    budget has provider limits alone). Alerts fire once per threshold (fractions of the limit)
    per period.
    """

    model_config = _CONFIG

    name: str = Field(min_length=1)
    daily_limit: float | None = Field(default=None, gt=0)
    monthly_limit: float | None = Field(default=None, gt=0)
    provider_limits: dict[str, PositiveFloat] = Field(default_factory=dict)
    alert_thresholds: tuple[Annotated[float, Field(gt=0, le=1)], ...] = (0.5, 0.8, 0.95)
    enabled: bool = True

    @field_validator("alert_thresholds")
    @classmethod
    def _sort_thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _check_limits(self) -> BudgetConfig:
        if self.daily_limit is None and self.monthly_limit is None and not self.provider_limits:
            raise _Problems(
                [("", "needs at least one of daily_limit, monthly_limit, provider_limits")]
            )
        return self

    @property
    def period(self) -> Literal["daily", "monthly"]:
        """The period ``provider_limits`` apply to (:func:`router.budget.provider_limit_period`)."""
        return provider_limit_period(self.daily_limit, self.monthly_limit)


class ModelGroupMember(BaseModel):
    """One provider's model in a model group."""

    model_config = _CONFIG

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)


class LedgerConfig(BaseModel):
    """Where spend is recorded.

    ``sqlite`` (default) keeps it in a file (``path``; default
    ``$XDG_DATA_HOME/router/ledger.db`` or ``~/.local/share/router/ledger.db``; ``":memory:"``
    allowed); ``redis`` shares it between processes (``url`` required); ``memory`` forgets it on
    exit. ``fail_open``: when the store is unreachable, serve requests without recording (True)
    or refuse them (False). ``reservation_ttl``: seconds after which an unsettled reservation is
    released (a crashed process must not hold budget forever). ``share_limits`` (redis only,
    default on): also share client-side rpm/tpm windows, circuit states and health figures
    with every process on the same Redis and prefix (``router.fleet``).
    """

    model_config = _CONFIG

    type: Literal["sqlite", "redis", "memory"] = "sqlite"
    path: str | None = None
    # The URL may hold a password, so it is kept out of repr.
    url: str | None = Field(default=None, repr=False)
    key_prefix: str = Field(default="router", min_length=1)
    fail_open: bool = False
    reservation_ttl: float = Field(default=600.0, gt=0)
    share_limits: bool = True

    @model_validator(mode="after")
    def _check_store(self, info: ValidationInfo) -> LedgerConfig:
        problems: list[tuple[str, str]] = []
        if self.type == "redis":
            if not self.url:
                problems.append(("url", "is required for type 'redis'"))
            elif not re.match(r"^(rediss?|unix)://", self.url):
                problems.append(("url", "must start with redis://, rediss:// or unix://"))
        elif self.url is not None:
            problems.append(("url", "is only used with type 'redis'"))
        if self.type != "sqlite" and self.path is not None:
            problems.append(("path", "is only used with type 'sqlite'"))
        if problems:
            raise _Problems(problems)
        if self.type == "sqlite" and not self.path:
            environ: Mapping[str, str] = _context(info).get("environ", os.environ)
            object.__setattr__(self, "path", str(default_ledger_path(environ)))
        return self

    @property
    def display_url(self) -> str | None:
        """``url`` with any password replaced by ``***`` (safe to print)."""
        if self.url is None:
            return None
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.url)


class CacheConfig(BaseModel):
    """The opt-in response cache (see ``router/cache``).

    ``store``: where entries live; by default the ledger's kind (``redis`` with the ledger's URL
    and key prefix when the ledger is on Redis, so every process shares it; ``sqlite`` in
    ``cache.db`` next to the ledger file; ``memory`` with a memory ledger). ``path`` overrides
    the SQLite file. ``ttl`` seconds an answer is served; ``max_entries`` bounds the store (the
    oldest go first); answers larger than ``max_entry_bytes`` are not stored.
    ``any_temperature``: also cache requests with ``temperature > 0`` (off: they bypass).
    ``recent_entries``: answers kept decoded in this process's memory (0: read the store on
    every hit).
    """

    model_config = _CONFIG

    enabled: bool = False
    ttl: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, gt=0)
    max_entry_bytes: int = Field(default=1_000_000, gt=0)
    any_temperature: bool = False
    recent_entries: int = Field(default=256, ge=0)
    store: Literal["sqlite", "redis", "memory"] | None = None
    path: str | None = None


class TracingConfig(BaseModel):
    """OpenTelemetry spans (``router.tracing``), made only when ``opentelemetry-api`` is
    installed and a tracer provider is configured. ``enabled: false`` turns them off even then;
    ``capture_content`` records messages and answers on the spans (off: never)."""

    model_config = _CONFIG

    enabled: bool = True
    capture_content: bool = False


class MCPServerConfig(BaseModel):
    """An MCP server the agent loop may use (see ``docs/agents.md``).

    Either a local process spoken to over stdio (``command``, ``args``, ``env``, ``cwd``) or a
    streamable-HTTP endpoint (``url``, ``headers``). ``allowed_tools`` (when given) and
    ``denied_tools`` filter the tools the model is offered; a call to a filtered tool is never
    sent to the server. ``timeout``: seconds a tool call may take before the model is told it
    timed out; ``startup_timeout``: seconds to start the server and complete the handshake;
    ``max_result_chars``: longer tool results are cut (the start is kept) with a note.
    """

    model_config = _CONFIG

    name: str = Field(min_length=1)
    command: str | None = None
    args: tuple[str, ...] = ()
    # Values may be secrets (tokens for the server): kept out of repr.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = Field(default=None, repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    allowed_tools: tuple[str, ...] | None = None
    denied_tools: tuple[str, ...] = ()
    timeout: float = Field(default=60.0, gt=0)
    startup_timeout: float = Field(default=30.0, gt=0)
    max_result_chars: int = Field(default=20_000, ge=100)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must contain only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("args", "allowed_tools", "denied_tools", mode="before")
    @classmethod
    def _no_single_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("must be a list of strings")
        return value

    @model_validator(mode="after")
    def _check_transport(self) -> MCPServerConfig:
        problems: list[tuple[str, str]] = []
        if self.command is None and self.url is None:
            problems.append(("", "needs 'command' (stdio) or 'url' (streamable HTTP)"))
        elif self.command is not None and self.url is not None:
            problems.append(("", "has both 'command' and 'url'; give one"))
        elif self.command is not None:
            if not self.command.strip():
                problems.append(("command", "must not be empty"))
            for key in ("headers",):
                if getattr(self, key):
                    problems.append((key, "is only used with 'url'"))
        else:
            if not re.match(r"^https?://[^/\s]+", self.url or ""):
                problems.append(("url", "must be an http:// or https:// URL"))
            for key in ("args", "env", "cwd"):
                if getattr(self, key):
                    problems.append((key, "is only used with 'command'"))
        if problems:
            raise _Problems(problems)
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    @property
    def display_target(self) -> str:
        """The command line or the URL without credentials (safe to print)."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return re.sub(r"(://)[^/@]*@", r"\1", self.url or "")

    def offers(self, tool: str) -> bool:
        """Whether ``tool`` passes ``allowed_tools`` / ``denied_tools``."""
        if self.allowed_tools is not None and tool not in self.allowed_tools:
            return False
        return tool not in self.denied_tools


class RouterConfig(BaseModel):
    """The whole router configuration. Immutable; build it with :func:`load_config`."""

    model_config = _CONFIG

    providers: tuple[ProviderConfig, ...]
    budgets: tuple[BudgetConfig, ...] = ()
    model_groups: dict[str, tuple[ModelGroupMember, ...]] = Field(default_factory=dict)
    default_strategy: Strategy = "cost"
    default_model: str | None = None
    request_timeout: float = Field(default=120.0, gt=0)
    timezone: str = "UTC"
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    catalog: str | None = None
    enabled: bool = True
    audit_log: str | None = None
    mcp_servers: tuple[MCPServerConfig, ...] = ()
    source: str = "<dict>"

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("providers")
    @classmethod
    def _some_providers(cls, value: tuple[ProviderConfig, ...]) -> tuple[ProviderConfig, ...]:
        if not value:
            raise ValueError("at least one provider is required")
        return value

    @model_validator(mode="after")
    def _check_references(self, info: ValidationInfo) -> RouterConfig:
        problems = self._structural_problems()
        catalog = _context(info).get("catalog_obj")
        if catalog is None:
            catalog = load_catalog(self.catalog)
        problems += self._catalog_problems(catalog)
        if problems:
            raise _Problems(problems)
        if not self.enabled:
            reason = _context(info).get("disabled_by") or "enabled: false (top level)"
            object.__setattr__(
                self, "providers", tuple(p.with_disabled_reason(reason) for p in self.providers)
            )
        return self

    def _structural_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        first_index: dict[str, int] = {}
        for index, provider in enumerate(self.providers):
            if provider.name in first_index:
                problems.append(
                    (
                        f"providers[{index}].name",
                        f"duplicate provider name {provider.name!r} (also providers"
                        f"[{first_index[provider.name]}]); give each instance a distinct 'name'",
                    )
                )
            else:
                first_index[provider.name] = index
        names = list(first_index)
        server_names: dict[str, int] = {}
        for index, server in enumerate(self.mcp_servers):
            if server.name in server_names:
                problems.append(
                    (
                        f"mcp_servers[{index}].name",
                        f"duplicate MCP server name {server.name!r} (also mcp_servers"
                        f"[{server_names[server.name]}])",
                    )
                )
            server_names.setdefault(server.name, index)
        budget_names: dict[str, int] = {}
        kinds = [kind.value for kind in ProviderType]
        for index, budget in enumerate(self.budgets):
            if budget.name in budget_names:
                problems.append(
                    (
                        f"budgets[{index}].name",
                        f"duplicate budget name {budget.name!r} (also budgets"
                        f"[{budget_names[budget.name]}])",
                    )
                )
            else:
                budget_names[budget.name] = index
            for key in budget.provider_limits:
                if key not in first_index and key not in kinds:
                    problems.append(
                        (
                            f"budgets[{index}].provider_limits.{key}",
                            f"unknown provider {key!r}{_suggest(key, names + kinds)}; use a "
                            f"provider name ({_listing(names)}) or type ({_listing(kinds)})",
                        )
                    )
        cache = self.cache
        if cache.store == "redis" and self.ledger.type != "redis":
            problems.append(
                ("cache.store", "'redis' uses the ledger's Redis: set ledger.type to 'redis'")
            )
        if cache.path is not None and (cache.store or self.ledger.type) != "sqlite":
            problems.append(("cache.path", "is only used with store 'sqlite'"))
        for alias, members in self.model_groups.items():
            if not members:
                problems.append((f"model_groups.{alias}", "must list at least one member"))
            seen: set[str] = set()
            for index, member in enumerate(members):
                where = f"model_groups.{alias}[{index}].provider"
                if member.provider not in first_index:
                    problems.append(
                        (
                            where,
                            f"unknown provider {member.provider!r}"
                            f"{_suggest(member.provider, names)} (configured: {_listing(names)})",
                        )
                    )
                elif member.provider in seen:
                    problems.append(
                        (
                            where,
                            f"provider {member.provider!r} appears twice; a group has one model per provider",
                        )
                    )
                seen.add(member.provider)
        return problems

    def _catalog_problems(self, catalog: Catalog) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        by_name = {provider.name: provider for provider in self.providers}
        for index, provider in enumerate(self.providers):
            for position, model in enumerate(provider.models):
                message = _model_problem(catalog, provider, model)
                if message:
                    problems.append((f"providers[{index}].models[{position}]", message))
            if provider.default_model and not provider.models:
                message = _model_problem(catalog, provider, provider.default_model)
                if message:
                    problems.append((f"providers[{index}].default_model", message))
        for alias, members in self.model_groups.items():
            if alias in catalog:
                problems.append(
                    (
                        f"model_groups.{alias}",
                        "has the id of a catalog model; choose another alias name",
                    )
                )
            for index, member in enumerate(members):
                provider = by_name.get(member.provider)
                if provider is None:
                    continue  # reported by the structural check
                where = f"model_groups.{alias}[{index}].model"
                if provider.models and member.model not in provider.models:
                    problems.append(
                        (
                            where,
                            f"provider {provider.name!r} does not serve {member.model!r} "
                            f"(its models: {_listing(provider.models)})",
                        )
                    )
                    continue
                message = _model_problem(catalog, provider, member.model)
                if message:
                    problems.append((where, message))
        if self.default_model and self.default_model not in self.model_groups:
            info = catalog.get(self.default_model)
            served = any(self.default_model in p.models for p in self.providers)
            if info is None and not served:
                pool = [*self.model_groups, *catalog.ids()]
                problems.append(
                    (
                        "default_model",
                        f"unknown model or model group {self.default_model!r}"
                        f"{_suggest(self.default_model, pool)}",
                    )
                )
            elif (
                info is not None
                and not served
                and not any(p.type is info.provider and not p.models for p in self.providers)
            ):
                problems.append(
                    (
                        "default_model",
                        f"no configured provider serves {self.default_model!r} "
                        f"(a {info.provider.value} model)",
                    )
                )
        return problems

    def provider(self, name: str) -> ProviderConfig:
        """The provider named ``name``; a :class:`ConfigError` naming the known ones if none."""
        for provider in self.providers:
            if provider.name == name:
                return provider
        names = [provider.name for provider in self.providers]
        raise ConfigError(
            f"unknown provider {name!r}{_suggest(name, names)} (configured: {_listing(names)})"
        )

    def usable_providers(self) -> tuple[ProviderConfig, ...]:
        """The providers that can take requests (enabled, keyed, router switched on)."""
        return tuple(provider for provider in self.providers if provider.usable)

    def load_catalog(self) -> Catalog:
        """The model catalog this configuration uses (built-in plus ``catalog`` if set)."""
        return load_catalog(self.catalog)


def _model_problem(catalog: Catalog, provider: ProviderConfig, model: str) -> str | None:
    if provider.type is ProviderType.OPENAI_COMPATIBLE:
        return None  # such servers name their own models; the catalog may not know them
    info = catalog.get(model)
    if info is None:
        own = [m.id for m in catalog.models_for(provider.type)]
        return f"unknown {provider.type.value} model {model!r}{_suggest(model, own)}"
    if info.provider is not provider.type:
        return f"{model!r} is a {info.provider.value} model, not {provider.type.value}"
    return None


def _suggest(value: str, pool: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, list(pool), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listing(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names) if names else "none"


# --- interpolation -------------------------------------------------------------------------

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class _Unset:
    """Marks a value that was exactly ``${VAR}`` with VAR unset: the key counts as not given."""


_UNSET = _Unset()


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` replaced in every string, recursively.

    A mapping entry whose value is exactly ``${VAR}`` with VAR unset or empty is dropped (the
    key counts as not given); elsewhere an unset VAR becomes ``""``. ``$${`` is a literal ``${``.
    """
    result = _interpolate(value, environ)
    return None if result is _UNSET else result


def _interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        whole = _WHOLE_REF.match(value)
        if whole and not environ.get(whole.group(1)):
            return _UNSET
        return _REF.sub(lambda m: _substitute(m, environ), value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            resolved = _interpolate(item, environ)
            if resolved is not _UNSET:
                out[key] = resolved
        return out
    if isinstance(value, list):
        return [None if (r := _interpolate(item, environ)) is _UNSET else r for item in value]
    return value


def _substitute(match: re.Match[str], environ: Mapping[str, str]) -> str:
    if match.group(0) == "$${":
        return "${"
    name, default = match.group(1), match.group(2)
    current = environ.get(name, "")
    if not current and default is not None:
        return default
    return current


# --- loading -------------------------------------------------------------------------------


def default_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$AI_PROVIDER_CONFIG_PATH``, else the first of :data:`DEFAULT_CONFIG_LOCATIONS` that
    exists (relative to the working directory), else None."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_CONFIG_PATH)
    if configured:
        return Path(configured)
    for candidate in DEFAULT_CONFIG_LOCATIONS:
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> RouterConfig:
    """Read, interpolate and validate a configuration file.

    ``path`` None means :func:`default_config_path`; finding no file is a :class:`ConfigError`
    that lists where it looked.
    """
    env = os.environ if environ is None else environ
    if path is None:
        found = default_config_path(env)
        if found is None:
            places = ", ".join(f"./{p}" for p in DEFAULT_CONFIG_LOCATIONS)
            raise ConfigError(
                f"no configuration file found: {ENV_CONFIG_PATH} is not set and none of "
                f"{places} exists"
            )
        file = found
        from_env = bool(env.get(ENV_CONFIG_PATH))
    else:
        file = Path(path)
        from_env = False
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f" (from {ENV_CONFIG_PATH})" if from_env else ""
        raise ConfigError(f"{file}: configuration file not found{hint}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read configuration file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        # A binary or Latin-1 file; found by fuzzing (it escaped as a bare UnicodeDecodeError).
        raise ConfigError(
            f"{file}: the configuration file is not UTF-8 text (byte {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # Built from the problem and its position only: str(exc) quotes the offending line,
        # which may hold a key.
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML ({type(exc).__name__})") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level (found by fuzzing).
        raise ConfigError(f"{file}: invalid YAML (nested too deeply)") from None
    if data is None:
        raise ConfigError(f"{file}: the configuration file is empty")
    return config_from_dict(data, source=str(file), environ=env, base_dir=file.parent)


def config_from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "<dict>",
    environ: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> RouterConfig:
    """Validate a configuration mapping (as read from YAML) against ``environ``.

    ``base_dir`` anchors relative paths (default: the working directory).
    """
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: must be a mapping with a 'providers' list")
    _check_shape(data, source)
    document = interpolate(dict(data), env)
    problems: list[str] = []
    if "source" in document:
        problems.append(f"{source}: unknown key 'source'")
        document.pop("source")
    context: dict[str, Any] = {"environ": env}

    # Environment defaults, each validated here so a bad value names its variable.
    if "enabled" not in document and env.get(ENV_ENABLED, "").strip():
        flag = _parse_bool(env[ENV_ENABLED])
        if flag is None:
            problems.append(f"environment variable {ENV_ENABLED}: must be true or false")
        else:
            document["enabled"] = flag
            if not flag:
                context["disabled_by"] = f"{ENV_ENABLED}=false"
    if "default_strategy" not in document and env.get(ENV_DEFAULT_STRATEGY, "").strip():
        strategy = env[ENV_DEFAULT_STRATEGY].strip()
        if strategy not in STRATEGIES:
            problems.append(
                f"environment variable {ENV_DEFAULT_STRATEGY}: must be one of "
                f"{', '.join(STRATEGIES)}{_suggest(strategy, STRATEGIES)}"
            )
        else:
            document["default_strategy"] = strategy
    if env.get(ENV_MAX_RETRIES, "").strip():
        raw = env[ENV_MAX_RETRIES].strip()
        if not raw.isdigit():
            problems.append(f"environment variable {ENV_MAX_RETRIES}: must be an integer >= 0")
        else:
            context["default_max_retries"] = int(raw)
    if problems:
        raise ConfigError("\n".join(problems))

    anchor = Path(base_dir) if base_dir is not None else Path.cwd()
    for key in ("catalog", "audit_log"):
        document[key] = _anchored(document.get(key), anchor)
    servers = document.get("mcp_servers")
    if isinstance(servers, list):
        document["mcp_servers"] = [
            {**server, "cwd": _anchored(server["cwd"], anchor)}
            if isinstance(server, dict) and server.get("cwd")
            else server
            for server in servers
        ]
    ledger = document.get("ledger")
    if ledger is None:
        document["ledger"] = {}
    elif isinstance(ledger, dict) and ledger.get("path") not in (None, ":memory:"):
        document["ledger"] = {**ledger, "path": _anchored(ledger["path"], anchor)}
    cache = document.get("cache")
    if isinstance(cache, dict) and cache.get("path") not in (None, ":memory:"):
        document["cache"] = {**cache, "path": _anchored(cache["path"], anchor)}
    document["source"] = source

    # Errors in a user catalog name the catalog file itself, which is what needs fixing.
    user_catalog = document["catalog"] if isinstance(document["catalog"], str) else None
    context["catalog_obj"] = load_catalog(user_catalog)
    try:
        return RouterConfig.model_validate(document, context=context)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(exc, source))) from None


# Bounds on a configuration document; a real one has a few hundred values a few levels deep.
# Without them a deeply nested document overflowed the stack, and a YAML "billion laughs" (aliases
# of aliases of a list) kept interpolation and validation busy for hours (found by fuzzing).
_MAX_DEPTH = 64
_MAX_VALUES = 100_000


def _check_shape(document: Any, source: str) -> None:
    """ConfigError when ``document`` nests too deeply or is too large once aliases expand."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > _MAX_VALUES:
            raise ConfigError(
                f"{source}: the configuration is too large (more than {_MAX_VALUES} values, "
                "counting each use of a YAML alias)"
            )
        if depth > _MAX_DEPTH:
            raise ConfigError(f"{source}: the configuration nests more than {_MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1) for item in value)


def _anchored(value: Any, anchor: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else anchor / path)


def _parse_bool(raw: str) -> bool | None:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


# --- error messages ------------------------------------------------------------------------


def _join(path: str, tail: str) -> str:
    if not tail:
        return path
    if not path:
        return tail
    return f"{path}{tail}" if tail.startswith("[") else f"{path}.{tail}"


def _loc_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, f"[{part}]" if isinstance(part, int) else str(part))
    return path


_TYPE_MESSAGES = {
    "missing": "is required",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _describe(exc: ValidationError, source: str) -> list[str]:
    """One line per problem, built from ``loc``/``type``/``ctx`` only (never the input value)."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if kind == "extra_forbidden":
            lines.append(_line(source, _loc_path(loc[:-1]), f"unknown key {loc[-1]!r}"))
            continue
        if kind == "value_error" and isinstance(ctx.get("error"), _Problems):
            for tail, message in ctx["error"].problems:
                lines.append(_line(source, _join(_loc_path(loc), tail), message))
            continue
        if kind in ("value_error", "assertion_error"):
            message = str(ctx.get("error") or error["msg"])
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
            bound = next(iter(ctx.values()), "")
            shown = f"{bound:g}" if isinstance(bound, int | float) else str(bound)
            message = f"must be {op} {shown}"
        elif kind in ("literal_error", "enum"):
            message = f"must be one of {ctx.get('expected', '')}"
        elif kind in _TYPE_MESSAGES:
            message = _TYPE_MESSAGES[kind]
        else:
            message = str(error["msg"]).replace("Input should be", "must be")
        lines.append(_line(source, _loc_path(loc), message))
    return lines


def _line(source: str, path: str, message: str) -> str:
    return f"{source}: {path}: {message}" if path else f"{source}: {message}"
