"""Round-robin stays fair when the supervisor skips candidates (issue 12, item 7).

The regression runs through a manager against the emulator; the property drives the real
``SupervisorActor`` (its strategy state and skip rule) with random skips, recording which
provider each request was handed to.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pykka
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from support import router_config

from router.actors.messages import Attempt, Dispatch
from router.actors.supervisor import SupervisorActor
from router.catalog import load_catalog
from router.config import config_from_dict
from router.errors import NoProviderAvailableError
from router.health import HealthSnapshot, HealthStatus
from router.jobs import Job, JobRegistry
from router.models import AIRequest
from router.planner import Planner

NAMES = ("anthropic", "google", "openai")


def test_a_disabled_provider_does_not_double_its_neighbours_turns(make_manager, emulator):
    config = router_config(emulator)
    next(p for p in config["providers"] if p["name"] == "google")["enabled"] = False
    manager = make_manager(config)
    request = AIRequest(model="fast", messages=[{"role": "user", "content": "Hi"}])
    served = Counter(
        manager.process_request(request, strategy="round_robin").provider_name for _ in range(30)
    )
    # Before the fix the provider after the disabled one also got its turn: 20/10.
    assert served == {"anthropic": 15, "openai": 15}


# --- property: fairness under random skips ------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for a provider actor's ref: records the attempt and answers at once."""

    def __init__(self, name: str, served: list[str]) -> None:
        self.name, self.served = name, served

    def tell(self, message: Any) -> None:
        assert isinstance(message, Attempt)
        self.served.append(self.name)
        message.job.fail(RuntimeError("recorded"))  # the answer does not matter here


def snapshot(name: str, **changes: Any) -> HealthSnapshot:
    base = HealthSnapshot(
        name=name,
        provider_type=name,
        status=HealthStatus.HEALTHY,
        enabled=True,
        disabled_reason=None,
        priority=1,
        circuit_state="closed",
        circuit_retry_at=None,
        consecutive_failures=0,
        uptime_percentage=100.0,
        avg_latency_ms=0.0,
        p50_latency_ms=0.0,
        p95_latency_ms=0.0,
        in_flight=0,
        max_concurrency=16,
        requests=0,
        successes=0,
        failures=0,
        input_tokens=0,
        output_tokens=0,
        cost=0.0,
        last_error=None,
    )
    return dataclasses.replace(base, **changes)


def make_supervisor(clock: FakeClock, snapshots: dict[str, HealthSnapshot], served: list[str]):
    config = config_from_dict(
        {
            "providers": [{"name": n, "type": n, "api_key": f"key-{n}-0123456789"} for n in NAMES],
            "model_groups": {
                "fast": [
                    {"provider": "openai", "model": "gpt-4o-mini"},
                    {"provider": "anthropic", "model": "claude-3-haiku-20240307"},
                    {"provider": "google", "model": "gemini-1.5-flash"},
                ]
            },
            "ledger": {"type": "memory"},
        }
    )
    planner = Planner(config, load_catalog())
    ref = SupervisorActor.start(planner, has_budgets=False, clock=clock, snapshots=snapshots)
    ref.tell(("wire", {n: Recorder(n, served) for n in NAMES}, None))
    return ref


class RoundRobinUnderSkips(RuleBasedStateMachine):
    """Providers are disabled, re-enabled and have their circuit opened at random between
    requests. Checked after every step:

    - every request goes to a provider the supervisor may use, if any;
    - while the set of usable providers is the same at every served request, they take
      turns: their counts within that stretch differ by at most one (a skipped provider's
      turn is not handed to a neighbour on top of the neighbour's own; a request nobody could
      serve gives nobody a turn);
    - a provider that stays usable is served at least once every three requests.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.snapshots = {n: snapshot(n) for n in NAMES}
        self.served: list[str] = []
        self.supervisor = make_supervisor(self.clock, self.snapshots, self.served)
        self.registry = JobRegistry()
        self.stretch: Counter[str] = Counter()
        self.stretch_usable: frozenset[str] | None = None
        self.waiting = {n: 0 for n in NAMES}  # usable requests since last served

    def teardown(self) -> None:
        self.supervisor.stop()

    def usable(self) -> frozenset[str]:
        return frozenset(
            n
            for n, snap in self.snapshots.items()
            if snap.disabled_reason is None
            and not (snap.circuit_retry_at is not None and snap.circuit_retry_at > self.clock.now)
        )

    @rule(name=st.sampled_from(NAMES))
    def disable(self, name: str) -> None:
        self.snapshots[name] = snapshot(name, enabled=False, disabled_reason="disabled")

    @rule(name=st.sampled_from(NAMES))
    def open_circuit(self, name: str) -> None:
        self.snapshots[name] = snapshot(
            name, circuit_state="open", circuit_retry_at=self.clock.now + 30
        )

    @rule(name=st.sampled_from(NAMES))
    def recover(self, name: str) -> None:
        self.snapshots[name] = snapshot(name)

    @rule(seconds=st.sampled_from([1.0, 31.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(count=st.integers(min_value=1, max_value=6))
    def requests(self, count: int) -> None:
        for _ in range(count):
            usable = self.usable()
            before = len(self.served)
            job = Job(
                AIRequest(model="fast", messages=[{"role": "user", "content": "Hi"}]),
                strategy="round_robin",
                selection=None,
                timeout=60,
                registry=self.registry,
            )
            self.supervisor.tell(Dispatch(job))
            try:
                job.future.get(timeout=10)
            except NoProviderAvailableError:
                assert not usable, "refused although a provider was usable"
                continue
            except RuntimeError:
                pass  # the Recorder's answer
            assert len(self.served) == before + 1
            chosen = self.served[-1]
            assert chosen in usable, f"{chosen} was served while skipped"
            if usable != self.stretch_usable:
                self.stretch_usable, self.stretch = usable, Counter()
            self.stretch[chosen] += 1
            for name in NAMES:
                self.waiting[name] = (
                    0 if name == chosen or name not in usable else (self.waiting[name] + 1)
                )

    @invariant()
    def usable_providers_take_turns(self) -> None:
        if self.stretch_usable:
            counts = [self.stretch[n] for n in self.stretch_usable]
            assert max(counts) - min(counts) <= 1, (self.stretch_usable, dict(self.stretch))

    @invariant()
    def nobody_waits_a_full_round(self) -> None:
        assert max(self.waiting.values()) < len(NAMES), self.waiting


TestRoundRobinUnderSkips = RoundRobinUnderSkips.TestCase
TestRoundRobinUnderSkips.settings = settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _stop_actors():
    yield
    pykka.ActorRegistry.stop_all()
