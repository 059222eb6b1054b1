"""Fault rules: which request gets which injected failure.

A rule matches a request by provider, base-URL prefix and model (``fnmatch`` glob), then
decides whether it *fires* for that request by one of: ``schedule`` (a list of booleans, one
per matching request; the rule is spent once the list is used up), ``count`` (fires for the
next N matching requests, then is spent) or ``probability`` (0..1, default 1, drawn from the
rule's own ``random.Random(seed)``). Rules are tried in order and the first that fires wins;
rules after it do not see that request. The lock guards only this bookkeeping.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = ("openai", "anthropic", "google")
PROVIDER_ALIASES = {"gemini": "google", "claude": "anthropic"}

#: Every fault kind and its default parameters.
KINDS: dict[str, dict[str, Any]] = {
    "rate_limit": {"retry_after": 1},
    "insufficient_quota": {},
    "server_error": {},
    "unavailable": {},
    "overloaded": {},
    "timeout": {"delay": 30.0},
    "reset": {},
    "malformed": {},
    "cut_stream": {"after_events": 2},
    "stream_error": {"after_events": 2},
    "auth": {},
}
_RULE_KEYS = {"provider", "prefix", "model", "kind", "probability", "count", "schedule", "seed"}
_RULE_KEYS |= {key for params in KINDS.values() for key in params}


def normalize_provider(name: str | None) -> str | None:
    """Map a provider name or alias to ``openai``/``anthropic``/``google``; None stays None."""
    if name is None:
        return None
    key = str(name).strip().lower()
    key = PROVIDER_ALIASES.get(key, key)
    if key not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}: expected one of {', '.join(PROVIDERS)}")
    return key


def normalize_prefix(prefix: str | None) -> str:
    """A base-URL prefix in canonical form: ``""`` or ``"/a/b"`` (leading, no trailing slash)."""
    if not prefix:
        return ""
    prefix = "/" + str(prefix).strip("/")
    return "" if prefix == "/" else prefix


@dataclass
class FaultRule:
    """One fault rule; build it with :meth:`from_dict` so input is validated."""

    kind: str
    provider: str | None = None
    prefix: str | None = None
    model: str | None = None
    probability: float = 1.0
    count: int | None = None
    schedule: list[bool] | None = None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FaultRule:
        """Validate a rule as given in YAML or JSON; errors name the offending key."""
        if not isinstance(raw, dict):
            raise ValueError(f"a fault rule must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            raise ValueError(f"fault rule: unknown key(s) {', '.join(unknown)}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise ValueError(f"fault rule: kind {kind!r} is not one of {', '.join(KINDS)}")
        params = dict(KINDS[kind])
        for key in params:
            if key in raw and raw[key] is not None:
                value = raw[key]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"fault rule: {key} must be a number >= 0, got {value!r}")
                params[key] = value
        probability = raw.get("probability", 1.0)
        if probability is None:
            probability = 1.0
        if not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise ValueError(f"fault rule: probability must be within 0..1, got {probability!r}")
        count = raw.get("count")
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 0
        ):
            raise ValueError(f"fault rule: count must be an integer >= 0, got {count!r}")
        schedule = raw.get("schedule")
        if schedule is not None:
            if not isinstance(schedule, list) or not all(
                isinstance(s, (bool, int)) for s in schedule
            ):
                raise ValueError("fault rule: schedule must be a list of true/false")
            schedule = [bool(s) for s in schedule]
        if count is not None and schedule is not None:
            raise ValueError("fault rule: give either count or schedule, not both")
        seed = raw.get("seed")
        model = raw.get("model")
        return cls(
            kind=kind,
            provider=normalize_provider(raw.get("provider")),
            prefix=normalize_prefix(raw["prefix"]) if raw.get("prefix") is not None else None,
            model=str(model) if model is not None else None,
            probability=float(probability),
            count=count,
            schedule=schedule,
            seed=seed,
            params=params,
            _rng=random.Random(seed),
        )

    def matches(self, provider: str, prefix: str, model: str | None) -> bool:
        """Whether this rule targets a request (ignoring whether it fires)."""
        if self.provider is not None and self.provider != provider:
            return False
        if self.prefix is not None and self.prefix != prefix:
            return False
        if self.model is not None:
            return model is not None and fnmatch.fnmatchcase(model, self.model)
        return True

    @property
    def spent(self) -> bool:
        """True once a ``count`` or ``schedule`` rule can no longer fire."""
        if self.schedule is not None:
            return self.seen >= len(self.schedule)
        return self.count is not None and self.fired >= self.count

    def _fires(self) -> bool:
        index = self.seen
        self.seen += 1
        if self.schedule is not None:
            fires = self.schedule[index]
        elif self.count is not None:
            fires = self.fired < self.count
        else:
            fires = self.probability >= 1 or self._rng.random() < self.probability
        if fires:
            self.fired += 1
        return fires

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON, with its bookkeeping (``seen``, ``fired``, ``spent``)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "provider": self.provider,
            "prefix": self.prefix,
            "model": self.model,
            "probability": self.probability,
            "count": self.count,
            "schedule": self.schedule,
            "seed": self.seed,
        }
        out.update(self.params)
        out.update(seen=self.seen, fired=self.fired, spent=self.spent)
        return out


@dataclass(frozen=True)
class Fault:
    """A fired fault: its kind and parameters (``retry_after``, ``delay``, ``after_events``)."""

    kind: str
    params: dict[str, Any]


class FaultBook:
    """The current fault rules; thread-safe, with the lock held only for bookkeeping."""

    def __init__(self, rules: list[dict[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = [FaultRule.from_dict(r) for r in rules or []]

    def replace(self, rules: list[dict[str, Any]]) -> None:
        """Replace all rules (validated first, so a bad list leaves the old rules in place)."""
        if not isinstance(rules, list):
            raise ValueError("faults must be a list of rules")
        parsed = [FaultRule.from_dict(r) for r in rules]
        with self._lock:
            self._rules = parsed

    def add(self, rule: dict[str, Any]) -> None:
        """Append one rule."""
        parsed = FaultRule.from_dict(rule)
        with self._lock:
            self._rules.append(parsed)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules = []

    def to_list(self) -> list[dict[str, Any]]:
        """All rules as JSON, in evaluation order."""
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def pick(self, provider: str, prefix: str, model: str | None) -> Fault | None:
        """The fault to inject for this request, if any rule fires."""
        with self._lock:
            for rule in self._rules:
                if rule.spent or not rule.matches(provider, prefix, model):
                    continue
                if rule._fires():
                    return Fault(rule.kind, dict(rule.params))
        return None
