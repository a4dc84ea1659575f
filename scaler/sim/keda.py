"""KEDA's operator (activation, cooldown, fallback) and the HPA it creates, emulated for one ScaledObject.

Pure and clock-free. `KedaHpaEmulator` decides; a driver asks the scaler and applies the decisions.
The seam is `AskScaler`: given a trigger and `now`, return what the scaler answered to
GetMetricSpec, GetMetrics and IsActive. The live driver (`keda_grpc`) asks over real gRPC; a
virtual-time driver can call `scaler.triggers.Triggers.evaluate` instead (`triggers_asker`).

The rules, after kedacore/keda pkg/scaling/executor/scale_scaledobjects.go and pkg/fallback:
- every pollingInterval (30 s): when any trigger is active and replicas are 0, scale to
  max(minReplicaCount, 1) and note the time; while active, note the time; when none is active and
  minReplicaCount is 0, scale to 0 once cooldownPeriod (300 s) has passed since the last active time;
  when a trigger errs and fallback is set, leave the replicas to the HPA's fallback.
- StreamIsActive (external-push): a `true` acts at once, as a poll that found the trigger active.
- the HPA (minReplicas max(minReplicaCount, 1)) syncs every 15 s; a metric that failed more than
  fallback.failureThreshold times in a row reads as fallback.replicas x target.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from scaler.errors import ScalerError
from scaler.sim.hpa import AVERAGE_VALUE, SYNC_PERIOD, TOLERANCE, Behavior, HorizontalPodAutoscaler, MetricReading
from scaler.triggers import Evaluation, parse_trigger


@dataclass(frozen=True, slots=True)
class Fallback:
    failure_threshold: int
    replicas: int


@dataclass(frozen=True, slots=True)
class Trigger:
    metadata: tuple[tuple[str, str], ...]
    metric_type: str = AVERAGE_VALUE

    @classmethod
    def of(cls, metadata: Mapping[str, str], metric_type: str = AVERAGE_VALUE) -> Trigger:
        return cls(tuple(sorted(metadata.items())), metric_type)


@dataclass(frozen=True, slots=True)
class ScaledObject:
    namespace: str
    name: str
    triggers: tuple[Trigger, ...]
    min_replicas: int = 0
    max_replicas: int = 100
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    fallback: Fallback | None = None
    behavior: Behavior = field(default_factory=Behavior)
    hpa_sync_period: float = SYNC_PERIOD
    tolerance: float = TOLERANCE


@dataclass(frozen=True, slots=True)
class TriggerAnswer:
    """The scaler's answers for one trigger: GetMetricSpec's target, GetMetrics' value, IsActive."""

    metric_name: str
    target: float
    value: float | None  # None when a call failed
    active: bool
    error: str | None = None

    @classmethod
    def failed(cls, error: str, metric_name: str = "", target: float = 0.0) -> TriggerAnswer:
        return cls(metric_name, target, None, False, error)


AskScaler = Callable[[ScaledObject, Trigger, float], TriggerAnswer]
AsyncAskScaler = Callable[[ScaledObject, Trigger, float], Awaitable[TriggerAnswer]]


@dataclass(frozen=True, slots=True)
class Decision:
    at: float
    replicas: int
    by: str  # "keda" or "hpa"
    reason: str


class KedaActivation:
    """KEDA's 0 <-> 1 rule: activation on any active trigger, deactivation after cooldownPeriod."""

    def __init__(self, so: ScaledObject) -> None:
        self.so = so
        self.last_active: float | None = None

    def on_poll(self, now: float, current: int, active: bool, error: bool) -> tuple[int, str] | None:
        """The replicas KEDA itself sets after a poll, or None to leave them to the HPA."""
        so = self.so
        if active:
            if current == 0:
                self.last_active = now
                return max(so.min_replicas, 1), "activated: a trigger is active"
            if not error:  # KEDA notes activity only when no trigger errs (PartialTriggerError)
                self.last_active = now
            return None
        if error and so.fallback is not None:
            return None  # the HPA holds fallback.replicas once failureThreshold is passed
        if error:
            return None  # no fallback: keep what there is
        if current > 0 and so.min_replicas == 0:
            if self.last_active is None or now - self.last_active > so.cooldown_period:
                return 0, "deactivated: no trigger active for cooldownPeriod"
            return None
        if current < so.min_replicas:
            return so.min_replicas, "raised to minReplicaCount"
        return None


class FallbackCounter:
    """Consecutive failures per metric; past failureThreshold a failed metric reads as fallback."""

    def __init__(self, fallback: Fallback | None) -> None:
        self.fallback = fallback
        self.failures: dict[str, int] = {}

    def reading(self, key: str, answer: TriggerAnswer, trigger: Trigger) -> MetricReading:
        if answer.value is not None:
            self.failures[key] = 0
            return MetricReading(answer.value, answer.target, trigger.metric_type)
        self.failures[key] = self.failures.get(key, 0) + 1
        fb = self.fallback
        usable = fb is not None and trigger.metric_type == AVERAGE_VALUE and answer.target > 0
        if usable and fb is not None and self.failures[key] > fb.failure_threshold:
            return MetricReading(fb.replicas * answer.target, answer.target, trigger.metric_type)
        return MetricReading(None, answer.target or 1.0, trigger.metric_type)


class KedaHpaEmulator:
    """KEDA's polling loop and the HPA's sync loop for one ScaledObject, on a schedule from `start`."""

    def __init__(self, so: ScaledObject, start: float) -> None:
        self.so = so
        self.activation = KedaActivation(so)
        self.hpa = HorizontalPodAutoscaler(max(so.min_replicas, 1), so.max_replicas, so.behavior, so.tolerance)
        self.fallback = FallbackCounter(so.fallback)
        self.next_poll = start
        self.next_sync = start
        self.last_answers: tuple[TriggerAnswer, ...] = ()
        self.history: list[Decision] = []

    def next_due(self) -> float:
        return min(self.next_poll, self.next_sync)

    def step(self, now: float, current: int, ask: AskScaler, ready: int | None = None) -> list[Decision]:
        """Run whatever loop is due at `now`, asking the scaler synchronously."""
        if now < self.next_due():
            return []
        answers = [ask(self.so, t, now) for t in self.so.triggers]
        return self.decide(now, current, answers, ready)

    async def astep(self, now: float, current: int, ask: AsyncAskScaler, ready: int | None = None) -> list[Decision]:
        if now < self.next_due():
            return []
        answers = [await ask(self.so, t, now) for t in self.so.triggers]
        return self.decide(now, current, answers, ready)

    def decide(
        self, now: float, current: int, answers: Sequence[TriggerAnswer], ready: int | None = None
    ) -> list[Decision]:
        """Given the scaler's answers at `now`, what KEDA and then the HPA set the replicas to."""
        self.last_answers = tuple(answers)
        decisions: list[Decision] = []
        if now >= self.next_poll:
            self.next_poll = now + self.so.polling_interval
            active = any(a.active and a.error is None for a in answers)
            error = any(a.error is not None for a in answers)
            change = self.activation.on_poll(now, current, active, error)
            if change is not None and change[0] != current:
                decisions.append(Decision(now, change[0], "keda", change[1]))
                current = change[0]
        if now >= self.next_sync:
            self.next_sync = now + self.so.hpa_sync_period
            readings = [
                self.fallback.reading(f"{i}:{a.metric_name}", a, t)
                for i, (a, t) in enumerate(zip(answers, self.so.triggers, strict=True))
            ]
            decision = self.hpa.reconcile(now, current, readings, ready)
            if decision.replicas != current:
                decisions.append(Decision(now, decision.replicas, "hpa", decision.reason))
        self.history += decisions
        return decisions

    def on_push_active(self, now: float, current: int) -> Decision | None:
        """StreamIsActive sent `true`: KEDA requests a scale with isActive=true at once."""
        change = self.activation.on_poll(now, current, active=True, error=False)
        if change is None or change[0] == current:
            return None
        decision = Decision(now, change[0], "keda", "activated by StreamIsActive")
        self.history.append(decision)
        return decision


def triggers_asker(evaluate: Callable[[str, str, Mapping[str, str], float], Evaluation]) -> AskScaler:
    """An AskScaler over `scaler.triggers.Triggers.evaluate`, answering as the KEDA service would."""

    def ask(so: ScaledObject, trigger: Trigger, now: float) -> TriggerAnswer:
        metadata = dict(trigger.metadata)
        try:
            spec = parse_trigger(metadata)
        except ScalerError as exc:
            return TriggerAnswer.failed(str(exc))
        try:
            evaluation = evaluate(so.namespace, so.name, metadata, now)
        except ScalerError as exc:
            return TriggerAnswer.failed(str(exc), spec.metric_name, spec.target)
        return TriggerAnswer(spec.metric_name, spec.target, evaluation.value, evaluation.active)

    return ask
