"""Trigger metadata, the metric names we give KEDA, and each trigger's evaluation with its memory.

A trigger remembers when it last saw data, so that data which went away reads as an error (KEDA's
`fallback` then holds a safe replica count) and never as a 0 that scales a fleet down. Only a selector
that has never matched anything answers 0, and during warm-up after start-up not even that.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from scaler.durations import format_duration, parse_duration
from scaler.errors import InvalidTrigger, QuerySyntaxError, StaleData, WarmingUp
from scaler.expression import Query, parse_query
from scaler.query import OPERATIONS, QueryResult, evaluate_query
from scaler.store import Store

PASS_THROUGH_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})
QUERY_KEYS = (
    "metricQuery",
    "targetValue",
    "operationOverTime",
    "clampMin",
    "clampMax",
    "window",
    "activationThreshold",
)
IDLE_EXPIRY = 600.0  # a trigger not asked about for this long is forgotten


def is_pass_through(key: str) -> bool:
    """Keys that KEDA itself reads (connection settings, values resolved from env)."""
    return key in PASS_THROUGH_KEYS or key.endswith("FromEnv")


@dataclass(frozen=True, slots=True)
class QueryTrigger:
    query: Query
    target: float
    operation: str = "last_one"
    window: float | None = None  # None: the whole retention
    clamp_min: float | None = None
    clamp_max: float | None = None
    activation_threshold: float = 0.0
    metric_name: str = ""


def parse_trigger(metadata: Mapping[str, str]) -> QueryTrigger:
    """Parse scalerMetadata; raise InvalidTrigger naming the key at fault."""
    return _parse_cached(tuple(sorted(metadata.items())))


@lru_cache(maxsize=4096)
def _parse_cached(items: tuple[tuple[str, str], ...]) -> QueryTrigger:
    metadata = {k: v for k, v in items if not is_pass_through(k)}
    unknown = sorted(set(metadata) - set(QUERY_KEYS))
    if unknown:
        raise InvalidTrigger(f"unknown metadata key {unknown[0]!r}; known keys: {', '.join(QUERY_KEYS)}")
    if "metricQuery" not in metadata:
        raise InvalidTrigger("metadata key 'metricQuery' is required")
    try:
        query = parse_query(metadata["metricQuery"])
    except QuerySyntaxError as exc:
        raise InvalidTrigger(f"metricQuery: {exc}") from exc
    operation = metadata.get("operationOverTime", "last_one")
    if operation not in OPERATIONS:
        raise InvalidTrigger(f"operationOverTime: {operation!r} is not one of {', '.join(OPERATIONS)}")
    window = None
    if "window" in metadata:
        window = _duration(metadata, "window")
    clamp_min = _number(metadata, "clampMin")
    clamp_max = _number(metadata, "clampMax")
    if clamp_min is not None and clamp_max is not None and clamp_min > clamp_max:
        raise InvalidTrigger(f"clampMin ({clamp_min:g}) is greater than clampMax ({clamp_max:g})")
    target = _number(metadata, "targetValue")
    if target is None:
        raise InvalidTrigger("metadata key 'targetValue' is required")
    if target <= 0:
        raise InvalidTrigger(f"targetValue: must be greater than 0, got {metadata['targetValue']!r}")
    activation = _number(metadata, "activationThreshold") or 0.0
    return QueryTrigger(
        query,
        target,
        operation,
        window,
        clamp_min,
        clamp_max,
        activation,
        metric_name_for(query, metadata),
    )


def _number(metadata: Mapping[str, str], key: str) -> float | None:
    if key not in metadata:
        return None
    try:
        value = float(metadata[key])
    except ValueError:
        raise InvalidTrigger(f"{key}: {metadata[key]!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidTrigger(f"{key}: {metadata[key]!r} is not a finite number")
    return value


def _duration(metadata: Mapping[str, str], key: str) -> float:
    try:
        value = parse_duration(metadata[key])
    except ValueError as exc:
        raise InvalidTrigger(f"{key}: {exc}") from None
    if value <= 0:
        raise InvalidTrigger(f"{key}: must be longer than 0")
    return value


def metric_name_for(query: Query, metadata: Mapping[str, str]) -> str:
    """A deterministic, lowercase, Kubernetes-safe name: the metric's name plus a hash of the metadata."""
    canonical = "\n".join(f"{k}={v}" for k, v in sorted(metadata.items()) if not is_pass_through(k))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", query.selector.name.lower()).strip("-")[:48].strip("-")
    return f"{slug or 'metric'}-{digest}"


def metric_name_matches(asked: str, ours: str) -> bool:
    """KEDA and the HPA may lowercase the name, and may keep KEDA's `s<N>-` prefix."""
    asked = asked.lower()
    return asked == ours or (asked.endswith("-" + ours) and re.fullmatch(r"s\d+", asked[: -len(ours) - 1]) is not None)


# -- evaluation with memory ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerKey:
    namespace: str
    name: str
    metric_name: str


@dataclass(slots=True)
class TriggerState:
    key: TriggerKey
    spec: QueryTrigger
    last_asked: float
    last_data: float | None = None  # receive time of the newest sample it has seen
    value: float | None = None
    active: bool = False
    error: str | None = None
    result: QueryResult | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Evaluation:
    value: float
    active: bool
    spec: QueryTrigger
    result: QueryResult | None  # None when the selector has never matched


class Triggers:
    """Evaluates triggers for the KEDA service and keeps what /debug and /metrics show about them."""

    def __init__(self, store: Store, stale_after: float, warmup_until: float) -> None:
        self.store = store
        self.stale_after = stale_after
        self.warmup_until = warmup_until
        self._states: dict[TriggerKey, TriggerState] = {}

    def evaluate(self, namespace: str, name: str, metadata: Mapping[str, str], now: float) -> Evaluation:
        spec = parse_trigger(metadata)
        key = TriggerKey(namespace, name, spec.metric_name)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = TriggerState(key, spec, now)
        state.last_asked = now
        try:
            evaluation = self._evaluate(spec, state, now)
        except StaleData as exc:
            state.error, state.value, state.active = str(exc), None, False
            raise
        state.error, state.value, state.active = None, evaluation.value, evaluation.active
        state.result = evaluation.result
        return evaluation

    def _evaluate(self, spec: QueryTrigger, state: TriggerState, now: float) -> Evaluation:
        window = spec.window if spec.window is not None else self.store.retention
        result = evaluate_query(self.store, spec.query, spec.operation, window, now, self.stale_after)
        if result is None:
            if state.last_data is not None:
                raise StaleData(
                    f"no data for {spec.query} any more: its series expired; last sample "
                    f"{format_duration(round(now - state.last_data, 1))} ago"
                )
            if now < self.warmup_until:
                raise WarmingUp(
                    f"warming up: no data yet for {spec.query}; answering in "
                    f"{format_duration(round(self.warmup_until - now, 1))} at most"
                )
            value = 0.0
        else:
            if result.newest_sample_age is not None:
                state.last_data = now - result.newest_sample_age
            value = result.value
        value = clamp(value, spec.clamp_min, spec.clamp_max)
        return Evaluation(value, value > spec.activation_threshold, spec, result)

    def expire(self, now: float, idle: float = IDLE_EXPIRY) -> int:
        gone = [k for k, s in self._states.items() if now - s.last_asked > idle]
        for key in gone:
            del self._states[key]
        return len(gone)

    def states(self) -> Iterator[TriggerState]:
        return iter(list(self._states.values()))


def clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value
