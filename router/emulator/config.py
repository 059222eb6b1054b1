"""Emulator configuration: a mapping or a YAML file with ``faults``, ``pacing``, ``keys``, ``models``.

```yaml
faults:                       # fault rules, see router.emulator.faults
  - {provider: openai, kind: rate_limit, retry_after: 2, count: 1}
pacing: {ttft: 0.2, token_delay: 0.05}      # for every provider, or per provider:
# pacing: {anthropic: {ttft: 0.5, token_delay: 0.02}, default: {token_delay: 0.01}}
keys:                         # pin the accepted API keys per provider (others: any key
  openai: [sk-test-1]         #   not starting with "invalid")
models:                       # pin the served models (others: 404); a list applies to all
  openai: [gpt-4o-mini]       #   providers. Without it any model id is accepted.
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from .faults import PROVIDERS, FaultRule, normalize_provider

_TOP_KEYS = {"faults", "pacing", "keys", "models"}


@dataclass(frozen=True)
class EmulatorConfig:
    """Validated emulator configuration."""

    faults: list[dict[str, Any]] = field(default_factory=list)
    # provider name or None (all) -> (ttft, token_delay)
    pacing: dict[str | None, tuple[float, float]] = field(default_factory=dict)
    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)


def load_config(source: dict[str, Any] | str | os.PathLike[str] | None) -> EmulatorConfig:
    """Read and validate a configuration mapping or YAML file; errors name the key at fault."""
    where = "emulator config"
    if source is None:
        return EmulatorConfig()
    if isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        try:
            with open(source, encoding="utf-8") as fh:
                raw = yaml.safe_load(fh)
        except OSError as exc:
            raise ValueError(f"{where}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not valid YAML: {exc}") from None
        raw = raw or {}
    else:
        raw = source
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping with keys {', '.join(sorted(_TOP_KEYS))}")
    try:
        return _parse(raw)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _parse(raw: dict[str, Any]) -> EmulatorConfig:
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    faults = raw.get("faults") or []
    if not isinstance(faults, list):
        raise ValueError("faults: must be a list of rules")
    for i, rule in enumerate(faults):
        try:
            FaultRule.from_dict(rule)
        except ValueError as exc:
            raise ValueError(f"faults[{i}]: {exc}") from None
    return EmulatorConfig(
        faults=list(faults),
        pacing=_pacing(raw.get("pacing") or {}),
        keys=_keys(raw.get("keys") or {}),
        models=_models(raw.get("models")),
    )


def _pace(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a mapping with ttft and/or token_delay")
    extra = sorted(set(value) - {"ttft", "token_delay"})
    if extra:
        raise ValueError(f"{where}: unknown key(s) {', '.join(extra)}")
    out = []
    for key in ("ttft", "token_delay"):
        number = value.get(key, 0.0)
        if not isinstance(number, (int, float)) or isinstance(number, bool) or number < 0:
            raise ValueError(f"{where}.{key}: must be a number >= 0, got {number!r}")
        out.append(float(number))
    return out[0], out[1]


def _pacing(raw: Any) -> dict[str | None, tuple[float, float]]:
    if not isinstance(raw, dict):
        raise ValueError("pacing: must be a mapping")
    if set(raw) <= {"ttft", "token_delay"}:
        return {None: _pace(raw, "pacing")} if raw else {}
    out: dict[str | None, tuple[float, float]] = {}
    for name, value in raw.items():
        if name in ("default", "all", "*"):
            out[None] = _pace(value, f"pacing.{name}")
            continue
        try:
            provider = normalize_provider(name)
        except ValueError as exc:
            raise ValueError(f"pacing: {exc}") from None
        out[provider] = _pace(value, f"pacing.{name}")
    return out


def _keys(raw: Any) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        raise ValueError("keys: must map a provider to a list of accepted keys")
    out: dict[str, frozenset[str]] = {}
    for name, value in raw.items():
        try:
            provider = normalize_provider(name)
        except ValueError as exc:
            raise ValueError(f"keys: {exc}") from None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            # Never echo the values: they are secrets.
            raise ValueError(f"keys.{name}: must be a list of non-empty strings")
        out[str(provider)] = frozenset(value)
    return out


def _models(raw: Any) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if isinstance(raw, list):
        if not all(isinstance(m, str) and m for m in raw):
            raise ValueError("models: must be a list of model ids")
        return {p: tuple(raw) for p in PROVIDERS}
    if not isinstance(raw, dict):
        raise ValueError("models: must be a list of model ids or a mapping provider -> list")
    out: dict[str, tuple[str, ...]] = {}
    for name, value in raw.items():
        try:
            provider = normalize_provider(name)
        except ValueError as exc:
            raise ValueError(f"models: {exc}") from None
        if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
            raise ValueError(f"models.{name}: must be a list of model ids")
        out[str(provider)] = tuple(value)
    return out
