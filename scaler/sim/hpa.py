"""The Kubernetes HPA's algorithm for external metrics, as pure functions and classes taking `now`.

Follows pkg/controller/podautoscaler (replica_calculator.go, horizontal.go):
- `AverageValue`: desired = ceil(sum / target), unless sum / (target * current) is within the
  tolerance (0.1) of 1. `Value`: desired = ceil(value / target * ready pods), same tolerance.
  Values are milli-quantities, as KEDA hands them over (`int(value * 1000)`).
- Several metrics: the largest proposal wins; if a metric failed and the rest would scale down, hold.
- Behavior: recommendations are stabilized (scale-up: the lowest over the up window, default 0 s;
  scale-down: the highest over the down window, default 300 s), then rate-limited by the policies
  (default up: +100 % or +4 pods per 15 s, whichever is more; down: -100 % per 15 s), then clamped
  to min/max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

TOLERANCE = 0.1
AVERAGE_VALUE = "AverageValue"
VALUE = "Value"
SYNC_PERIOD = 15.0  # --horizontal-pod-autoscaler-sync-period


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    kind: str  # "Pods" or "Percent"
    value: int
    period: float  # periodSeconds


@dataclass(frozen=True, slots=True)
class ScalingRules:
    stabilization_window: float
    policies: tuple[ScalingPolicy, ...]
    select_policy: str = "Max"  # "Max", "Min" or "Disabled"


DEFAULT_SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15.0), ScalingPolicy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN = ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15.0),))


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class MetricReading:
    value: float | None  # what the external metrics API returned (for KEDA, the scaler's value); None: failed
    target: float
    target_type: str = AVERAGE_VALUE


def milli(value: float) -> int:
    """KEDA's GenerateMetricInMili and GetMetricTargetMili: int64(value * 1000)."""
    return int(value * 1000)


def within_tolerance(ratio: float, tolerance: float = TOLERANCE) -> bool:
    return 1.0 - tolerance <= ratio <= 1.0 + tolerance


def replicas_for_metric(current: int, reading: MetricReading, ready: int, tolerance: float = TOLERANCE) -> int:
    """One metric's proposal (GetExternalPerPodMetricReplicas / GetExternalMetricReplicas)."""
    assert reading.value is not None
    usage, target = milli(reading.value), milli(reading.target)
    if target <= 0:
        raise ValueError("a metric target must be positive")
    if reading.target_type == AVERAGE_VALUE:
        if current > 0 and within_tolerance(usage / (target * current), tolerance):
            return current
        return math.ceil(usage / target)
    if reading.target_type != VALUE:
        raise ValueError(f"unsupported target type {reading.target_type!r}; use AverageValue or Value")
    ratio = usage / target
    if current == 0:
        return math.ceil(ratio)
    if within_tolerance(ratio, tolerance):
        return current
    return math.ceil(ratio * ready)


def hpa_desired_replicas(
    current: int, readings: Sequence[MetricReading], ready: int | None = None, tolerance: float = TOLERANCE
) -> int | None:
    """The largest proposal over all metrics; None (hold) if all failed, or some failed and the rest go down."""
    ready = current if ready is None else ready
    proposals = [replicas_for_metric(current, r, ready, tolerance) for r in readings if r.value is not None]
    failed = len(readings) - len(proposals)
    if not proposals or (failed and max(proposals) < current):
        return None
    return max(proposals)


class Stabilizer:
    """The recommendation history: scale-up takes the lowest, scale-down the highest, over their windows."""

    def __init__(self, behavior: Behavior = Behavior()) -> None:
        self.behavior = behavior
        self._history: list[tuple[float, int]] = []

    def stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.behavior.scale_up.stabilization_window
        down_cutoff = now - self.behavior.scale_down.stabilization_window
        up, down = desired, desired
        for at, recommended in self._history:
            if at > up_cutoff:
                up = min(up, recommended)
            if at > down_cutoff:
                down = max(down, recommended)
        horizon = min(up_cutoff, down_cutoff)
        self._history = [(at, r) for at, r in self._history if at >= horizon]
        self._history.append((now, desired))
        return min(max(current, up), down)


@dataclass(slots=True)
class RateLimiter:
    """Scale events per direction, and the policies' limit on how far one sync may move."""

    behavior: Behavior = field(default_factory=Behavior)
    _ups: list[tuple[float, int]] = field(default_factory=list)
    _downs: list[tuple[float, int]] = field(default_factory=list)

    def limit(self, now: float, current: int, desired: int, low: int, high: int) -> int:
        if desired > current:
            cap = max(current, self._bound(now, current, self.behavior.scale_up, up=True))
            return min(desired, high, cap)
        if desired < current:
            floor = min(current, self._bound(now, current, self.behavior.scale_down, up=False))
            return max(desired, low, floor)
        return desired

    def record(self, now: float, old: int, new: int) -> None:
        if new > old:
            self._ups.append((now, new - old))
        elif new < old:
            self._downs.append((now, old - new))

    def _bound(self, now: float, current: int, rules: ScalingRules, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            added = sum(n for at, n in self._ups if at > now - policy.period)
            removed = sum(n for at, n in self._downs if at > now - policy.period)
            start = current - added + removed
            if up:
                step = policy.value if policy.kind == "Pods" else math.ceil(start * policy.value / 100)
                proposals.append(start + step)
            else:
                step = policy.value if policy.kind == "Pods" else start - int(start * (1 - policy.value / 100))
                proposals.append(start - step)
        most_change = max if up else min
        least_change = min if up else max
        return (most_change if rules.select_policy == "Max" else least_change)(proposals)


@dataclass(frozen=True, slots=True)
class HpaDecision:
    replicas: int
    reason: str


class HorizontalPodAutoscaler:
    """One HPA object: reconcile(now, current, readings) as the controller does every sync period."""

    def __init__(
        self, min_replicas: int, max_replicas: int, behavior: Behavior = Behavior(), tolerance: float = TOLERANCE
    ) -> None:
        if not 1 <= min_replicas <= max_replicas:
            raise ValueError("HPA needs 1 <= minReplicas <= maxReplicas")
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.tolerance = tolerance
        self.stabilizer = Stabilizer(behavior)
        self.rate = RateLimiter(behavior)

    def reconcile(
        self, now: float, current: int, readings: Sequence[MetricReading], ready: int | None = None
    ) -> HpaDecision:
        if current == 0:
            return HpaDecision(0, "ScalingDisabled: scaled to zero")
        if current > self.max_replicas:
            desired, reason = self.max_replicas, "TooManyReplicas"
        elif current < self.min_replicas:
            desired, reason = self.min_replicas, "TooFewReplicas"
        else:
            proposal = hpa_desired_replicas(current, readings, ready, self.tolerance)
            if proposal is None:
                return HpaDecision(current, "FailedGetExternalMetric: holding")
            stable = self.stabilizer.stabilize(now, current, proposal)
            desired = self.rate.limit(now, current, stable, self.min_replicas, self.max_replicas)
            reason = f"proposal {proposal}, stabilized {stable}, limited {desired}"
        self.rate.record(now, current, desired)
        return HpaDecision(desired, reason)
