"""The model catalog: prices, context windows and capabilities, and the one pricing function.

The catalog is data (``router/data/models.yaml``, also reachable as ``conf/models.yaml``), read
from disk when first asked for and never fetched from the network. A user catalog file in the
same format extends it: new ids are added, and an entry whose id already exists is merged onto
the built-in entry key by key (so ``{gpt-4o: {input_price: 2.0}}`` changes only that price).

:func:`price` is the only place where tokens become dollars; tracking, budgets, recommendations
and the cost strategy all call it. Token estimates and the input bound budgets reserve live in
:mod:`router.tokens` (the estimates are re-exported here).
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from router.errors import ConfigError
from router.models import ProviderCapability, ProviderType, Usage
from router.tokens import (  # re-exported: estimates used to live here
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_OVERHEAD_TOKENS,
    TOOL_OVERHEAD_TOKENS,
    estimate_request_tokens,
    estimate_tokens,
)

__all__ = [
    "ModelInfo",
    "Catalog",
    "TIERS",
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "TOOL_OVERHEAD_TOKENS",
    "REPLY_OVERHEAD_TOKENS",
    "builtin_catalog_path",
    "load_catalog",
    "price",
    "estimate_tokens",
    "estimate_request_tokens",
]

#: The tiers the built-in catalog uses. ``flagship``: the provider's most capable and dearest
#: models; ``balanced``: mid-priced general models; ``fast``: small, cheap, low-latency models;
#: ``legacy``: deprecated or retired by the provider, kept so old configs and ledgers still price.
#: User catalogs may use other tier names.
TIERS: tuple[str, ...] = ("flagship", "balanced", "fast", "legacy")

_MILLION = 1_000_000.0
_FIELDS = (
    "provider",
    "input_price",
    "output_price",
    "cached_input_price",
    "cache_write_price",
    "cache_write_1h_price",
    "context_window",
    "max_output_tokens",
    "capabilities",
    "tier",
)
_OPTIONAL = ("cached_input_price", "cache_write_price", "cache_write_1h_price")
_REQUIRED = tuple(field for field in _FIELDS if field not in _OPTIONAL)
_TOP_LEVEL = ("prices_as_of", "sources", "models")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model's prices (USD per million tokens), limits and capabilities.

    ``alias_of`` names the entry this id is an alias of (e.g. ``claude-sonnet-4-5`` ->
    ``claude-sonnet-4-5-20250929``); the numbers are the same.
    """

    id: str
    provider: ProviderType
    input_price: float
    output_price: float
    cached_input_price: float
    context_window: int
    max_output_tokens: int
    capabilities: frozenset[ProviderCapability]
    tier: str
    alias_of: str | None = None
    # Writing the prompt cache (Anthropic: 1.25x input for the 5-minute cache, 2x for the
    # 1-hour one); None means the input price (OpenAI and Gemini bill no writes).
    cache_write_5m_price: float | None = None
    cache_write_1h_price: float | None = None

    def cache_write_price(self, ttl: str | None = "5m") -> float:
        """USD per million tokens written to the prompt cache with ``ttl`` (``5m``/``1h``)."""
        if ttl == "1h" and self.cache_write_1h_price is not None:
            return self.cache_write_1h_price
        if self.cache_write_5m_price is not None:
            return self.cache_write_5m_price
        return self.input_price

    def supports(self, *capabilities: ProviderCapability) -> bool:
        """Whether the model has every one of ``capabilities``."""
        return all(capability in self.capabilities for capability in capabilities)


class Catalog:
    """An immutable set of :class:`ModelInfo` keyed by model id."""

    __slots__ = ("_models", "prices_as_of", "sources", "origin")

    def __init__(
        self,
        models: Mapping[str, ModelInfo],
        *,
        prices_as_of: str,
        sources: Mapping[str, str] | None = None,
        origin: str = "<catalog>",
    ) -> None:
        self._models: Mapping[str, ModelInfo] = MappingProxyType(dict(models))
        #: The date the prices were taken from the providers' price lists.
        self.prices_as_of = prices_as_of
        #: Where the numbers come from, per provider type.
        self.sources: Mapping[str, str] = MappingProxyType(dict(sources or {}))
        #: The file(s) this catalog was read from, for messages.
        self.origin = origin

    def get(self, model_id: str) -> ModelInfo | None:
        """The model's entry, or None when the catalog does not know it."""
        return self._models.get(model_id)

    def require(self, model_id: str) -> ModelInfo:
        """The model's entry; a :class:`ConfigError` with "did you mean" when unknown."""
        info = self._models.get(model_id)
        if info is None:
            raise ConfigError(f"unknown model {model_id!r}{self.suggest(model_id)}")
        return info

    def suggest(self, model_id: str, candidates: Iterator[str] | None = None) -> str:
        """``"; did you mean 'x'?"`` for the closest known ids, or ``""``."""
        pool = list(candidates) if candidates is not None else list(self._models)
        close = difflib.get_close_matches(model_id, pool, n=3, cutoff=0.6)
        if not close:
            return ""
        return "; did you mean " + " or ".join(repr(name) for name in close) + "?"

    def models_for(
        self, provider: ProviderType | str, *, include_aliases: bool = True
    ) -> list[ModelInfo]:
        """The models a provider type serves, in catalog order.

        ``openai_compatible`` gets the entries listed with that provider type (local or
        third-party models a user catalog adds), not OpenAI's own models.
        """
        kind = ProviderType(provider)
        return [
            info
            for info in self._models.values()
            if info.provider is kind and (include_aliases or info.alias_of is None)
        ]

    def ids(self) -> tuple[str, ...]:
        """Every model id, in catalog order."""
        return tuple(self._models)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __repr__(self) -> str:
        return (
            f"Catalog({len(self)} models, prices_as_of={self.prices_as_of!r}, "
            f"origin={self.origin!r})"
        )


# --- loading -------------------------------------------------------------------------------


def builtin_catalog_path() -> Path:
    """Where the built-in catalog file lives (package data)."""
    return Path(str(resources.files("router").joinpath("data", "models.yaml")))


def load_catalog(override: str | os.PathLike[str] | None = None) -> Catalog:
    """The built-in catalog, extended and overridden by the user file ``override`` if given.

    The built-in file is parsed once per process; the user file is read on every call (it is
    small, and a user who edits it expects the change to show). Every problem in a file is
    reported, one line each, in one :class:`ConfigError`.
    """
    builtin, builtin_raw = _builtin()
    if override is None:
        return builtin
    path = Path(override)
    document = _read_yaml(path)
    label = str(path)
    problems: list[str] = []
    user_raw, prices_as_of, sources = _split_document(document, label, problems, user=True)
    merged: dict[str, dict[str, Any]] = {key: dict(value) for key, value in builtin_raw.items()}
    for model_id, entry in user_raw.items():
        if "alias_of" in entry or model_id not in merged:
            merged[model_id] = dict(entry)
        else:
            # Key-by-key merge onto what the id resolves to in the built-in catalog, so that
            # overriding an alias's price turns it into a full entry of its own.
            base = _resolved_fields(builtin_raw, model_id)
            merged[model_id] = {**base, **entry}
    origins = {model_id: label for model_id in user_raw}
    models = _build(merged, origins, builtin.origin, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return Catalog(
        models,
        prices_as_of=prices_as_of or builtin.prices_as_of,
        sources={**builtin.sources, **sources},
        origin=f"{builtin.origin} + {label}",
    )


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[Catalog, Mapping[str, Mapping[str, Any]]]:
    path = builtin_catalog_path()
    label = str(path)
    problems: list[str] = []
    raw, prices_as_of, sources = _split_document(_read_yaml(path), label, problems, user=False)
    models = _build(raw, {}, label, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    frozen_raw = MappingProxyType({key: MappingProxyType(value) for key, value in raw.items()})
    catalog = Catalog(models, prices_as_of=prices_as_of or "", sources=sources, origin=label)
    return catalog, frozen_raw


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: catalog file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read catalog file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({type(exc).__name__})") from None


def _yaml_problem(path: Path | str, exc: yaml.MarkedYAMLError) -> str:
    # Built from the problem and its position only: str(exc) quotes the offending line.
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = exc.problem or exc.context or "invalid YAML"
    return f"{where}: invalid YAML: {problem}"


def _split_document(
    document: Any, label: str, problems: list[str], *, user: bool
) -> tuple[dict[str, dict[str, Any]], str | None, dict[str, str]]:
    if document is None:
        problems.append(f"{label}: the catalog file is empty")
        return {}, None, {}
    if not isinstance(document, dict):
        problems.append(f"{label}: must be a mapping with a 'models' key")
        return {}, None, {}
    for key in document:
        if key not in _TOP_LEVEL:
            problems.append(
                f"{label}: unknown key {key!r} (expected one of {', '.join(_TOP_LEVEL)})"
            )
    prices_as_of = document.get("prices_as_of")
    if prices_as_of is not None:
        prices_as_of = str(prices_as_of)  # YAML reads an unquoted date as a date
    elif not user:
        problems.append(f"{label}: prices_as_of: is required")
    sources_raw = document.get("sources") or {}
    sources: dict[str, str] = {}
    if not isinstance(sources_raw, dict):
        problems.append(f"{label}: sources: must be a mapping of provider type to note")
    else:
        sources = {str(key): str(value) for key, value in sources_raw.items()}
    models_raw = document.get("models")
    if models_raw is None:
        problems.append(f"{label}: models: is required")
        return {}, prices_as_of, sources
    if not isinstance(models_raw, dict):
        problems.append(f"{label}: models: must be a mapping of model id to entry")
        return {}, prices_as_of, sources
    entries: dict[str, dict[str, Any]] = {}
    for model_id, entry in models_raw.items():
        where = f"{label}: models.{model_id}"
        if not isinstance(model_id, str) or not model_id.strip():
            problems.append(f"{label}: models: model ids must be non-empty strings")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        unknown = [key for key in entry if key not in (*_FIELDS, "alias_of")]
        for key in unknown:
            problems.append(f"{where}: unknown key {key!r}")
        if "alias_of" in entry and len(entry) > 1:
            problems.append(f"{where}: an alias_of entry takes no other keys")
        entries[model_id] = {key: value for key, value in entry.items() if key not in unknown}
    return entries, prices_as_of, sources


def _resolved_fields(raw: Mapping[str, Mapping[str, Any]], model_id: str) -> dict[str, Any]:
    seen: set[str] = set()
    entry = raw[model_id]
    while "alias_of" in entry and entry["alias_of"] in raw and model_id not in seen:
        seen.add(model_id)
        model_id = entry["alias_of"]
        entry = raw[model_id]
    return {key: value for key, value in entry.items() if key != "alias_of"}


def _build(
    raw: Mapping[str, Mapping[str, Any]],
    origins: Mapping[str, str],
    default_origin: str,
    problems: list[str],
) -> dict[str, ModelInfo]:
    concrete: dict[str, ModelInfo] = {}
    for model_id, entry in raw.items():
        if "alias_of" in entry:
            continue
        info = _model_info(model_id, entry, f"{origins.get(model_id, default_origin)}", problems)
        if info is not None:
            concrete[model_id] = info
    models: dict[str, ModelInfo] = {}
    for model_id, entry in raw.items():
        if "alias_of" not in entry:
            if model_id in concrete:
                models[model_id] = concrete[model_id]
            continue
        where = f"{origins.get(model_id, default_origin)}: models.{model_id}.alias_of"
        target = entry["alias_of"]
        chain = [model_id]
        while isinstance(target, str) and target in raw and "alias_of" in raw[target]:
            if target in chain:
                break
            chain.append(target)
            target = raw[target]["alias_of"]
        if not isinstance(target, str) or target in chain:
            problems.append(f"{where}: aliases form a cycle or are not a model id")
        elif target not in raw:
            close = difflib.get_close_matches(target, list(raw), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{where}: unknown model {target!r}{hint}")
        elif target in concrete:
            base = concrete[target]
            models[model_id] = ModelInfo(
                id=model_id,
                provider=base.provider,
                input_price=base.input_price,
                output_price=base.output_price,
                cached_input_price=base.cached_input_price,
                context_window=base.context_window,
                max_output_tokens=base.max_output_tokens,
                capabilities=base.capabilities,
                tier=base.tier,
                alias_of=target,
                cache_write_5m_price=base.cache_write_5m_price,
                cache_write_1h_price=base.cache_write_1h_price,
            )
    return models


def _model_info(
    model_id: str, entry: Mapping[str, Any], label: str, problems: list[str]
) -> ModelInfo | None:
    where = f"{label}: models.{model_id}"
    before = len(problems)
    for key in _REQUIRED:
        if key not in entry:
            problems.append(f"{where}.{key}: is required")
    if len(problems) > before:
        return None

    provider_raw = entry["provider"]
    try:
        provider = ProviderType(provider_raw)
    except ValueError:
        kinds = ", ".join(repr(kind.value) for kind in ProviderType)
        problems.append(f"{where}.provider: must be one of {kinds}")
        provider = ProviderType.OPENAI_COMPATIBLE

    def number(key: str, default: Any = None) -> float:
        value = entry.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            problems.append(f"{where}.{key}: must be a number")
            return 0.0
        if value < 0:
            problems.append(f"{where}.{key}: must be >= 0")
        return float(value)

    def count(key: str) -> int:
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}.{key}: must be an integer")
            return 1
        if value < 1:
            problems.append(f"{where}.{key}: must be >= 1")
        return value

    input_price = number("input_price")
    output_price = number("output_price")
    cached_input_price = number("cached_input_price", entry.get("input_price"))
    write_5m = number("cache_write_price") if "cache_write_price" in entry else None
    write_1h = number("cache_write_1h_price") if "cache_write_1h_price" in entry else None
    context_window = count("context_window")
    max_output_tokens = count("max_output_tokens")
    if max_output_tokens > context_window:
        problems.append(f"{where}.max_output_tokens: must be <= context_window")

    capabilities: set[ProviderCapability] = set()
    raw_caps = entry["capabilities"]
    if not isinstance(raw_caps, list):
        problems.append(f"{where}.capabilities: must be a list")
    else:
        for index, cap in enumerate(raw_caps):
            try:
                capabilities.add(ProviderCapability(cap))
            except ValueError:
                known = [c.value for c in ProviderCapability]
                close = difflib.get_close_matches(str(cap), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    f"{where}.capabilities[{index}]: unknown capability {cap!r}{hint} "
                    f"(known: {', '.join(known)})"
                )

    tier = entry["tier"]
    if not isinstance(tier, str) or not tier.strip():
        problems.append(f"{where}.tier: must be a non-empty string (e.g. {', '.join(TIERS)})")

    if len(problems) > before:
        return None
    return ModelInfo(
        id=model_id,
        provider=provider,
        input_price=input_price,
        output_price=output_price,
        cached_input_price=cached_input_price,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        capabilities=frozenset(capabilities),
        tier=tier,
        cache_write_5m_price=write_5m,
        cache_write_1h_price=write_1h,
    )


# --- pricing and estimates -----------------------------------------------------------------


def price(info: ModelInfo, usage: Usage) -> float:
    """The cost in USD of ``usage`` on ``info``'s model.

    ``usage.input_tokens`` includes ``cached_input_tokens`` (cache reads) and
    ``cache_write_tokens`` (cache writes, ``cache_write_1h_tokens`` of them with the one-hour
    TTL); reads are charged at the cached rate, writes at the cache-write rates and the rest at
    the input rate::

        ((input - cached - written) * input_price + cached * cached_input_price
         + written_5m * cache_write_price + written_1h * cache_write_1h_price
         + output * output_price) / 1e6
    """
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    written_1h = min(usage.cache_write_1h_tokens, written)
    uncached = usage.input_tokens - cached - written
    return (
        uncached * info.input_price
        + cached * info.cached_input_price
        + (written - written_1h) * info.cache_write_price("5m")
        + written_1h * info.cache_write_price("1h")
        + usage.output_tokens * info.output_price
    ) / _MILLION
