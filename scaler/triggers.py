"""Trigger metadata, the metric names we give KEDA, and each trigger's evaluation with its memory.

Two kinds of trigger: query triggers (kedify-compatible `metricQuery`) and policy triggers
(`policy: vllm`, a recommended replica count for one pool). A trigger remembers when it last saw
data, so that data which went away reads as an error (KEDA's `fallback` then holds a safe replica
count) and never as a 0 that scales a fleet down. Only a selector that has never matched anything
answers 0, and during warm-up after start-up not even that. A policy pool whose pods vanish after we
recommended zero was scaled to zero on purpose, and keeps answering 0.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

from scaler.durations import format_duration, parse_duration
from scaler.errors import (
    InvalidTrigger,
    LimitExceeded,
    MissingLabel,
    NothingReceived,
    OutOfRange,
    QuerySyntaxError,
    StaleData,
    WarmingUp,
)
from scaler.expression import Matcher, Query, Selector, parse_query
from scaler.policy import Decision, GatewayDemand, PolicyState, pool_metrics, recommend
from scaler.policy_spec import PolicySpec, parse_policy
from scaler.quantities import parse_quantity
from scaler.query import OPERATIONS, QueryResult, evaluate_query, missing_label
from scaler.signals import read_pools
from scaler.store import Store

# Keys KEDA's external and external-push scalers read themselves, and still pass to the scaler with the
# rest of the metadata (kedacore/keda `pkg/scalers/external_scaler.go`: `externalScalerMetadata`, and
# `originalMetadata` built from every TriggerMetadata key). `tlsCertFile` is what KEDA before #6338 read.
PASS_THROUGH_KEYS = frozenset(
    {"scalerAddress", "enableTLS", "unsafeSsl", "caCert", "tlsClientCert", "tlsClientKey", "tlsCertFile"}
)
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
# KEDA sends value x 1000 to the HPA as an int64 milli-quantity: beyond ~9.2e15 it wraps, and NaN or
# infinity read as 0 (kedacore/keda#7441, #7534). Such an answer is an error, so KEDA's fallback holds.
KEDA_MAX_VALUE = 9e15
MAX_METADATA_VALUE = 4096  # a metricQuery is at most 4096 characters too (scaler.expression)
MAX_OBJECT_NAME = 253  # a Kubernetes object name (DNS subdomain); namespaces are 63


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


Trigger = QueryTrigger | PolicySpec


def parse_trigger(metadata: Mapping[str, str], namespace: str = "", isolate: bool = False) -> Trigger:
    """Parse scalerMetadata; raise InvalidTrigger naming the key at fault.

    `namespace` is the ScaledObject's, the default pool namespace of a policy trigger. With
    `isolate`, every selector is confined to that namespace, whatever the metadata says. KEDA's own
    keys are dropped first, so their values (PEM certificates) are neither checked nor cached.
    """
    check_name("namespace", namespace)
    items = tuple(sorted((k, v) for k, v in metadata.items() if not is_pass_through(k)))
    for key, value in items:
        if len(key) > MAX_METADATA_VALUE or len(value) > MAX_METADATA_VALUE:
            shown = key if len(key) <= 64 else key[:64] + "..."
            raise InvalidTrigger(f"{shown}: longer than {MAX_METADATA_VALUE} characters")
    return _parse_cached(items, namespace, isolate)


def check_name(what: str, value: str) -> None:
    """ScaledObject names and namespaces are Kubernetes names: a longer one is no ScaledObject's."""
    if len(value) > MAX_OBJECT_NAME:
        raise InvalidTrigger(f"the ScaledObjectRef's {what} is longer than {MAX_OBJECT_NAME} characters")


@lru_cache(maxsize=4096)
def _parse_cached(items: tuple[tuple[str, str], ...], namespace: str, isolate: bool) -> Trigger:
    metadata = dict(items)
    if isolate and not namespace:
        raise InvalidTrigger("the ScaledObjectRef has no namespace, and the scaler isolates namespaces")
    if "policy" in metadata:
        if isolate and metadata.get("namespace", namespace) != namespace:
            raise InvalidTrigger(
                f"namespace: {metadata['namespace']!r} is not this ScaledObject's namespace {namespace!r}, "
                "and the scaler isolates namespaces"
            )
        spec = parse_policy(metadata, namespace)
        name = f"{_slug(f'vllm-{spec.phase}-{spec.pool}')}-{_digest(metadata, namespace)}"
        spec = replace(spec, metric_name=name)
        if isolate and spec.activation is not None:
            query = confine(spec.activation.query, namespace)
            spec = replace(spec, activation=replace(spec.activation, query=query))
        if isolate and spec.demand is not None:
            spec = replace(spec, demand=replace(spec.demand, query=confine(spec.demand.query, namespace)))
        return spec
    trigger = _parse_query_trigger(metadata)
    return replace(trigger, query=confine(trigger.query, namespace)) if isolate else trigger


def confine(query: Query, namespace: str) -> Query:
    """The query restricted to series labelled with `namespace` (or k8s.namespace.name)."""
    matchers = (*query.selector.matchers, Matcher("namespace", "=", namespace))
    return replace(query, selector=replace(query.selector, matchers=matchers))


def _parse_query_trigger(metadata: Mapping[str, str]) -> QueryTrigger:
    unknown = sorted(set(metadata) - set(QUERY_KEYS))
    if unknown:
        raise InvalidTrigger(
            f"unknown metadata key {unknown[0]!r}; known keys: {', '.join(QUERY_KEYS)} (or policy: vllm)"
        )
    if "metricQuery" not in metadata:
        raise InvalidTrigger("metadata key 'metricQuery' is required (or 'policy: vllm')")
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
    name = f"{_slug(query.selector.name)}-{_digest(metadata, '')}"
    return QueryTrigger(query, target, operation, window, clamp_min, clamp_max, activation, name)


def _number(metadata: Mapping[str, str], key: str) -> float | None:
    if key not in metadata:
        return None
    try:
        return parse_quantity(metadata[key])
    except ValueError as exc:
        raise InvalidTrigger(f"{key}: {exc}") from None


def _duration(metadata: Mapping[str, str], key: str) -> float:
    try:
        value = parse_duration(metadata[key])
    except ValueError as exc:
        raise InvalidTrigger(f"{key}: {exc}") from None
    if value <= 0:
        raise InvalidTrigger(f"{key}: must be longer than 0")
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-") or "metric"


def _digest(metadata: Mapping[str, str], namespace: str) -> str:
    canonical = "\n".join(f"{k}={v}" for k, v in sorted(metadata.items()) if not is_pass_through(k))
    return hashlib.sha256(f"{namespace}\n{canonical}".encode()).hexdigest()[:10]


def metric_name_matches(asked: str, ours: str) -> bool:
    """KEDA and the HPA may lowercase the name, and may keep KEDA's `s<N>-` prefix."""
    asked = asked.lower()
    if asked == ours:
        return True
    prefix = asked[: -len(ours) - 1]
    return asked.endswith("-" + ours) and re.fullmatch(r"s\d+", prefix) is not None


def answer_query(
    store: Store,
    query: Query,
    operation: str,
    window: float,
    now: float,
    stale_after: float,
    seen: float | None,
    warmup_until: float,
    maintained: bool = True,
) -> tuple[float, QueryResult | None, float | None]:
    """A query's value under the no-data rules; also returns when data was last seen (the memory).

    Within warm-up every answer is an error (`check_warm`): pods push at their own phases, so a value
    before each had its chance is a partial sum.
    """
    check_warm(now, warmup_until)
    try:
        result = evaluate_query(store, query, operation, window, now, stale_after, maintained)
    except StaleData as exc:
        diagnosis = missing_label(store, query.selector, now, stale_after) if type(exc) is StaleData else None
        if diagnosis is not None:
            raise MissingLabel(f"{exc}; {diagnosis}") from None
        raise
    if result is not None:
        if result.newest_sample_age is not None:
            seen = now - result.newest_sample_age
        return result.value, result, seen
    diagnosis = missing_label(store, query.selector, now, stale_after)
    if diagnosis is not None:
        raise MissingLabel(diagnosis)
    if seen is not None:
        age = format_duration(round(now - seen, 1))
        raise StaleData(f"no data for {query} any more: its series expired; last sample {age} ago")
    check_received(store)
    return 0.0, None, seen


def check_received(store: Store) -> None:
    """Raise NothingReceived when no datapoint has reached the store since start-up (see the error)."""
    if store.generation == 0:
        raise NothingReceived(
            "no OTLP datapoint has reached this scaler since it started: check that the collectors export to it "
            "(every replica, with HA); a pool that has never reported reads 0 only once others push here"
        )


def check_warm(now: float, warmup_until: float) -> None:
    """Raise WarmingUp while the scaler is within `--warmup` of its start."""
    if now < warmup_until:
        left = format_duration(max(0.1, round(warmup_until - now, 1)))
        raise WarmingUp(f"warming up, {left} left: pods push at their own phases, so any value now could be partial")


# -- evaluation with memory ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerKey:
    namespace: str
    name: str
    metric_name: str


class Prepared(NamedTuple):
    key: TriggerKey
    spec: Trigger


@dataclass(slots=True)
class TriggerState:
    key: TriggerKey
    spec: Trigger
    last_asked: float
    last_data: float | None = None  # receive time of the newest sample it has seen
    value: float | None = None
    active: bool = False
    error: str | None = None
    result: QueryResult | None = field(default=None, repr=False)
    policy: PolicyState = field(default_factory=PolicyState)
    activation_seen: float | None = None
    demand_seen: float | None = None
    decision: Decision | None = field(default=None, repr=False)
    decided_at: float | None = None  # when the policy decision was last computed


@dataclass(frozen=True, slots=True)
class Evaluation:
    value: float
    active: bool
    spec: Trigger
    result: QueryResult | None = None  # query triggers; None when the selector has never matched
    decision: Decision | None = None  # policy triggers


class Triggers:
    """Evaluates triggers for the KEDA service and keeps what /debug and /metrics show about them."""

    def __init__(
        self,
        store: Store,
        stale_after: float,
        warmup_until: float,
        isolate: bool = False,
        policy_refresh: float = 0.0,
        max_triggers: int = 10_000,
    ) -> None:
        """`policy_refresh`: a policy decision younger than this is answered again instead of recomputed.

        Policy decisions rest on 6 s and 60 s windows, so recomputing them for every KEDA call and every
        StreamIsActive wake-up buys nothing but CPU; query triggers are cheap and always current.
        """
        self.store = store
        self.stale_after = stale_after
        self.warmup_until = warmup_until
        self.isolate = isolate
        self.policy_refresh = policy_refresh
        self.max_triggers = max_triggers
        self._states: dict[TriggerKey, TriggerState] = {}

    def evaluate(self, namespace: str, name: str, metadata: Mapping[str, str], now: float) -> Evaluation:
        return self.evaluate_prepared(self.prepare(namespace, name, metadata), now)

    def prepare(self, namespace: str, name: str, metadata: Mapping[str, str]) -> Prepared:
        """A ScaledObject's trigger parsed, for evaluating it again and again (an open StreamIsActive)."""
        check_name("name", name)
        spec = parse_trigger(metadata, namespace, self.isolate)
        return Prepared(TriggerKey(namespace, name, spec.metric_name), spec)

    def evaluate_prepared(self, prepared: Prepared, now: float) -> Evaluation:
        key, spec = prepared
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self.max_triggers:
                raise LimitExceeded(
                    f"{self.max_triggers} triggers are remembered already (--max-triggers); one KEDA has not "
                    f"asked about for {format_duration(IDLE_EXPIRY)} is forgotten"
                )
            state = self._states[key] = TriggerState(key, spec, now)
        state.last_asked = now
        if self._recent(state, now):
            assert state.value is not None
            return Evaluation(state.value, state.active, spec, decision=state.decision)
        try:
            check_warm(now, self.warmup_until)
            try:
                if isinstance(spec, PolicySpec):
                    evaluation = self._evaluate_policy(spec, state, now)
                else:
                    evaluation = self._evaluate_query(spec, state, now)
            except (ArithmeticError, ValueError) as exc:  # math.fsum/ceil on overflowed or NaN figures
                raise OutOfRange(f"the pushed values overflow this trigger's arithmetic: {exc}") from None
            if not abs(evaluation.value) <= KEDA_MAX_VALUE:  # NaN too
                raise OutOfRange(f"the value {evaluation.value:g} is beyond what KEDA can carry ({KEDA_MAX_VALUE:g})")
        except StaleData as exc:
            state.error, state.value, state.active = str(exc), None, False
            raise
        state.error, state.value, state.active = None, evaluation.value, evaluation.active
        state.result, state.decision = evaluation.result, evaluation.decision
        return evaluation

    def _recent(self, state: TriggerState, now: float) -> bool:
        """A decision to reuse; never for a pool at zero, whose wake-up must be answered at once (and is cheap)."""
        return (
            state.decision is not None
            and state.decision.reporting_pods > 0
            and state.error is None
            and state.decided_at is not None
            and 0 <= now - state.decided_at < self.policy_refresh
        )

    def _evaluate_query(self, spec: QueryTrigger, state: TriggerState, now: float) -> Evaluation:
        window = spec.window if spec.window is not None else self.store.retention
        value, result, state.last_data = answer_query(
            self.store, spec.query, spec.operation, window, now, self.stale_after, state.last_data, self.warmup_until
        )
        value = clamp(value, spec.clamp_min, spec.clamp_max)
        return Evaluation(value, value > spec.activation_threshold, spec, result=result)

    def _evaluate_policy(self, spec: PolicySpec, state: TriggerState, now: float) -> Evaluation:
        windows = (spec.stable_window, spec.panic_window)
        stable, panic = read_pools(self.store, spec.selector, now, windows, self.stale_after, pool_metrics(spec))
        activation_value = None
        if spec.activation is not None:
            activation = spec.activation
            activation_value, _, state.activation_seen = answer_query(
                self.store,
                activation.query,
                activation.operation,
                spec.panic_window,
                now,
                self.stale_after,
                state.activation_seen,
                self.warmup_until,
            )
        demand = None
        if spec.demand is not None:  # over each window, under the same no-data rules as activationQuery
            values = []
            for window in windows:
                value, _, state.demand_seen = answer_query(
                    self.store,
                    spec.demand.query,
                    spec.demand.operation,
                    window,
                    now,
                    self.stale_after,
                    state.demand_seen,
                    self.warmup_until,
                )
                values.append(value)
            demand = GatewayDemand(*values)
        youngest = stable.youngest_age
        if youngest is not None:
            state.last_data = now - youngest
        else:
            self._check_quiet_pool(spec, state, stable.newest_age, now)
        decision, state.policy = recommend(spec, state.policy, stable, panic, now, activation_value, demand)
        state.decided_at = now
        return Evaluation(float(decision.replicas), decision.active, spec, decision=decision)

    def _check_quiet_pool(self, spec: PolicySpec, state: TriggerState, newest_age: float | None, now: float) -> None:
        """No pod reports: fine if we never saw the pool or recommended zero last, unless its pods lack a label."""
        for metric in pool_metrics(spec):
            diagnosis = missing_label(self.store, Selector(metric, spec.selector.matchers), now, self.stale_after)
            if diagnosis is not None:
                raise MissingLabel(f"pool {spec.pool}: no pod reports; {diagnosis}")
        seen_replicas = state.policy.seen_replicas
        if state.last_data is None and newest_age is None:
            check_received(self.store)
            return
        if seen_replicas == 0:
            return
        age = newest_age if newest_age is not None else now - (state.last_data or now)
        since = f"while {seen_replicas} replicas were recommended" if seen_replicas is not None else "(none awake)"
        raise StaleData(f"pool {spec.pool}: no pod has reported for {format_duration(round(age, 1))} {since}")

    def expire(self, now: float, idle: float = IDLE_EXPIRY) -> int:
        gone = [k for k, s in self._states.items() if now - s.last_asked > idle]
        for key in gone:
            del self._states[key]
        self.store.drop_idle_views(now, idle)
        return len(gone)

    def states(self) -> Iterator[TriggerState]:
        return iter(list(self._states.values()))


def clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value
