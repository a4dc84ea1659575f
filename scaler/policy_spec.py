"""Metadata of `policy: vllm` triggers, parsed into a frozen PolicySpec.

A policy trigger selects one pool's pods (namespace, deployment and/or podSelector) and answers a
recommended replica count for it; GetMetricSpec's target is 1, so HPA's AverageValue arithmetic
turns the answer into exactly that many replicas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from scaler.durations import parse_duration
from scaler.errors import InvalidTrigger, QuerySyntaxError
from scaler.expression import Matcher, Query, Selector, compile_regex, parse_query, parse_selector
from scaler.quantities import parse_quantity
from scaler.query import OPERATIONS

PHASES = ("unified", "prefill", "decode")
POLICY_KEYS = (
    "policy",
    "namespace",
    "deployment",
    "podSelector",
    "phase",
    "targetRunningPerPod",
    "targetWaitingPerPod",
    "targetKvCacheUsage",
    "ttftSeconds",
    "ttftQuantile",
    "itlSeconds",
    "itlQuantile",
    "prefillTokensPerSecondPerPod",
    "decodeTokensPerSecondPerPod",
    "stableWindow",
    "panicWindow",
    "panicThreshold",
    "maxScaleUpRate",
    "minReplicas",
    "maxReplicas",
    "activationReplicas",
    "activationQuery",
    "activationOperationOverTime",
    "activationThreshold",
    "overflowOf",
    "primaryMaxReplicas",
    "coldStart",
    "forecast",
    "headroom",
    "demandQuery",
    "demandOperationOverTime",
    "demandPerReplica",
)


@dataclass(frozen=True, slots=True)
class Activation:
    """A wake-up signal from in front of the pool (a router's queue), for scaling from zero."""

    query: Query
    operation: str = "last_one"
    threshold: float = 0.0


@dataclass(frozen=True, slots=True)
class Demand:
    """Demand seen in front of the pool (a gateway's queue or request rate), in replicas at `per_replica`
    (for a decode pool's queue, requests a replica takes into its batch: targetRunningPerPod by default).

    `per_replica` None (a `rate` without `demandPerReplica`): arrivals are turned into replicas by the
    pool's own figures, the replicas its pods' load needs per request/s they serve (Little's law)."""

    query: Query
    operation: str = "last_one"
    per_replica: float | None = 5.0


@dataclass(frozen=True, slots=True)
class PolicySpec:
    selector: Selector
    pool: str  # for people: "ns/deployment" or the selector
    phase: str = "unified"
    target_running: float | None = None
    target_waiting: float = 5.0
    target_kv: float = 0.8
    ttft: float | None = None
    ttft_quantile: float = 0.9
    itl: float | None = None
    itl_quantile: float = 0.9
    prefill_capacity: float | None = None  # prompt tokens per second per pod
    decode_capacity: float | None = None  # generated tokens per second per pod
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 2.0
    min_replicas: int | None = None
    max_replicas: int | None = None
    activation_replicas: float = 0.0
    activation: Activation | None = None
    overflow_of: str | None = None
    primary_max_replicas: int | None = None
    cold_start: float | None = None  # None: learned from the pool's own scale-ups (60 s until then)
    forecast: bool = False
    headroom: float = 1.0  # target utilisation: absolute demand is divided by it
    demand: Demand | None = None
    metric_name: str = ""
    target: float = 1.0  # GetMetricSpec target: the answer is a replica count


T = TypeVar("T")


def parse_policy(metadata: Mapping[str, str], namespace: str) -> PolicySpec:
    """Parse policy metadata (pass-through keys already removed); raise InvalidTrigger naming the key."""
    unknown = sorted(set(metadata) - set(POLICY_KEYS))
    if unknown:
        raise InvalidTrigger(
            f"unknown metadata key {unknown[0]!r} for policy: vllm; known keys: {', '.join(POLICY_KEYS)}"
        )
    if metadata["policy"] != "vllm":
        raise InvalidTrigger(f"policy: {metadata['policy']!r} is not a known policy; use 'vllm'")
    get = _Reader(metadata)
    phase = metadata.get("phase", "unified")
    if phase not in PHASES:
        raise InvalidTrigger(f"phase: {phase!r} is not one of {', '.join(PHASES)}")
    selector, pool = _pool_selector(metadata, namespace)
    stable = get("stableWindow", _duration, 60.0)
    panic = get("panicWindow", _duration, 6.0)
    if panic > stable:
        raise InvalidTrigger(f"panicWindow ({panic:g}s) must not be longer than stableWindow ({stable:g}s)")
    min_replicas = get.optional("minReplicas", _count)
    max_replicas = get.optional("maxReplicas", _count)
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        raise InvalidTrigger(f"minReplicas ({min_replicas}) is greater than maxReplicas ({max_replicas})")
    overflow_of = metadata.get("overflowOf") or None
    primary_max = get.optional("primaryMaxReplicas", _count)
    if (overflow_of is None) != (primary_max is None):
        raise InvalidTrigger("overflowOf and primaryMaxReplicas go together: set both or neither")
    target_waiting = get("targetWaitingPerPod", _positive, 5.0)
    target_running = get.optional("targetRunningPerPod", _positive)
    return PolicySpec(
        selector=selector,
        pool=pool,
        phase=phase,
        target_running=target_running,
        target_waiting=target_waiting,
        target_kv=get("targetKvCacheUsage", _fraction, 0.8),
        ttft=get.optional("ttftSeconds", _positive),
        ttft_quantile=get("ttftQuantile", _fraction, 0.9),
        itl=get.optional("itlSeconds", _positive),
        itl_quantile=get("itlQuantile", _fraction, 0.9),
        prefill_capacity=get.optional("prefillTokensPerSecondPerPod", _positive),
        decode_capacity=get.optional("decodeTokensPerSecondPerPod", _positive),
        stable_window=stable,
        panic_window=panic,
        panic_threshold=get("panicThreshold", _at_least_one, 2.0),
        max_scale_up_rate=get("maxScaleUpRate", _at_least_one, 2.0),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        activation_replicas=get("activationReplicas", _non_negative, 0.0),
        activation=_activation(metadata, get),
        overflow_of=overflow_of,
        primary_max_replicas=primary_max,
        cold_start=get.optional("coldStart", _duration),
        forecast=get("forecast", _boolean, False),
        headroom=get("headroom", _fraction, 1.0),
        demand=_demand(metadata, get, phase, target_waiting, target_running),
    )


class _Reader:
    def __init__(self, metadata: Mapping[str, str]) -> None:
        self.metadata = metadata

    def optional(self, key: str, parse: Callable[[str], T]) -> T | None:
        if key not in self.metadata:
            return None
        try:
            return parse(self.metadata[key])
        except ValueError as exc:
            raise InvalidTrigger(f"{key}: {exc}") from None

    def __call__(self, key: str, parse: Callable[[str], T], default: T) -> T:
        value = self.optional(key, parse)
        return default if value is None else value


def _checked(rule: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """A number parser that also checks a range, saying the rule when the value breaks it."""

    def parse(text: str) -> float:
        value = parse_quantity(text)
        if not ok(value):
            raise ValueError(f"must {rule}, got {text!r}")
        return value

    return parse


_positive = _checked("be greater than 0", lambda v: v > 0)
_non_negative = _checked("not be negative", lambda v: v >= 0)
_fraction = _checked("be in (0, 1]", lambda v: 0 < v <= 1)
_at_least_one = _checked("be at least 1", lambda v: v >= 1)


def _count(text: str) -> int:
    value = parse_quantity(text)
    if value < 0 or value != int(value):
        raise ValueError(f"must be a whole number of replicas, got {text!r}")
    return int(value)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f'must be "true" or "false", got {text!r}')
    return value == "true"


def _duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be longer than 0")
    return value


def _pool_selector(metadata: Mapping[str, str], namespace: str) -> tuple[Selector, str]:
    namespace = metadata.get("namespace") or namespace
    matchers: list[Matcher] = []
    if namespace:
        matchers.append(Matcher("namespace", "=", namespace))
    deployments = [d for d in (metadata.get("overflowOf"), metadata.get("deployment")) if d]
    if len(deployments) == 1:
        matchers.append(Matcher("deployment", "=", deployments[0]))
    elif deployments:
        pattern = "|".join(re.escape(d) for d in deployments)
        matchers.append(Matcher("deployment", "=~", pattern, compile_regex(pattern)))
    pod_selector = metadata.get("podSelector", "").strip()
    if pod_selector:
        try:
            matchers.extend(parse_selector(pod_selector).matchers)
        except QuerySyntaxError as exc:
            raise InvalidTrigger(f"podSelector: {exc}") from None
    if not deployments and not pod_selector:
        raise InvalidTrigger("policy: vllm needs 'deployment' or 'podSelector' to select the pool's pods")
    pool = "/".join(p for p in (namespace, "+".join(deployments)) if p) or pod_selector
    if pod_selector and deployments:
        pool += "{" + pod_selector + "}"
    return Selector("", tuple(matchers)), pool


def _activation(metadata: Mapping[str, str], get: _Reader) -> Activation | None:
    found = _query(metadata, "activation", ("activationOperationOverTime", "activationThreshold"))
    if found is None:
        return None
    return Activation(*found, get("activationThreshold", _non_negative, 0.0))


def _demand(
    metadata: Mapping[str, str], get: _Reader, phase: str, target_waiting: float, target_running: float | None
) -> Demand | None:
    found = _query(metadata, "demand", ("demandOperationOverTime", "demandPerReplica"))
    if found is None:
        return None
    query, operation = found
    per_replica = get.optional("demandPerReplica", _positive)
    if per_replica is None and operation != "rate":
        # a queue: requests per replica, as the pods' own target; a decode pod takes queued requests
        # into its batch (scaler.policy: each will want a batch slot), a prefill pod into its queue
        if phase != "decode":
            per_replica = target_waiting
        elif target_running is not None:
            per_replica = target_running
        else:
            raise InvalidTrigger(
                "demandQuery on a decode pool counts queued requests that will each want a batch slot: "
                "set targetRunningPerPod or demandPerReplica"
            )
    return Demand(query, operation, per_replica)


def _query(metadata: Mapping[str, str], prefix: str, companions: tuple[str, ...]) -> tuple[Query, str] | None:
    """`<prefix>Query` and `<prefix>OperationOverTime`, parsed as a query trigger's; None without the query."""
    key = f"{prefix}Query"
    text = metadata.get(key)
    if not text:
        for companion in companions:
            if companion in metadata:
                raise InvalidTrigger(f"{companion} needs {key}")
        return None
    try:
        query = parse_query(text)
    except QuerySyntaxError as exc:
        raise InvalidTrigger(f"{key}: {exc}") from None
    operation = metadata.get(f"{prefix}OperationOverTime", "last_one")
    if operation not in OPERATIONS:
        raise InvalidTrigger(f"{prefix}OperationOverTime: {operation!r} is not one of {', '.join(OPERATIONS)}")
    return query, operation
