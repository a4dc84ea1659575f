"""What `keda-llm-scaler evaluate` compares: each contender's fleet, ScaledObjects and metrics path.

Per-pod targets come from the hardware profile alone (its ceilings times a headroom), never from
the trace, and the static fleet is sized from the trace's peak with the same cost model. Each
contender family has one knob (`FAMILIES`): ours its headroom, kserve-seed its target, kedify's
example a scale on its KV and waiting targets, static its pod count; `--sweep` replays every value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from scaler.sim.fleet_spec import PoolSpec
from scaler.sim.gateway import FlowControl
from scaler.sim.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, Behavior, ScalingPolicy, ScalingRules
from scaler.sim.keda import Fallback, ScaledObject, Trigger
from scaler.sim.ours import PROFILE_HEADROOM, default_headroom, fleet_flow_control, ours_extras, target_share
from scaler.sim.profiles import HardwareProfile
from scaler.sim.trace import TraceRow
from scaler.triggers import parse_trigger

NAMESPACE = "llm"
MODEL = "llama"
UNIFIED, PREFILL, DECODE = "llama", "llama-prefill", "llama-decode"
HEADROOM = PROFILE_HEADROOM  # static's sizing: a pod at 3/4 of what the profile says it can do
STATIC_WINDOW = 60.0  # the static fleet covers the busiest minute (sliding) of the trace
OTLP, PROMETHEUS, NO_METRICS = "otlp", "prometheus", "none"


@dataclass(frozen=True, slots=True)
class PodTargets:
    """Per-pod targets for policy triggers, read off a hardware profile."""

    prefill_tokens_per_s: int  # HEADROOM of pure prefill compute, 1 / prefill_per_token
    running: int  # HEADROOM of max_num_seqs
    decode_tokens_per_s: int  # tokens/s of a decode batch of `running`
    waiting: int = 5  # the policy's default: ~5 mean prompts queued is well under a second of prefill
    kv: float = 0.8  # the policy's default (llm-d WVA's saturation threshold)


def pod_targets(profile: HardwareProfile, headroom: float = HEADROOM) -> PodTargets:
    running = max(1, math.floor(headroom * profile.max_num_seqs))
    return PodTargets(
        prefill_tokens_per_s=round(headroom / profile.prefill_per_token),
        running=running,
        decode_tokens_per_s=round(running / profile.step_seconds(running, 0)),
    )


def request_gpu_seconds(row: TraceRow, profile: HardwareProfile, targets: PodTargets) -> float:
    """GPU time one request costs: its prefill, plus its share of decode steps at the target batch."""
    per_token = profile.step_seconds(targets.running, 0) / targets.running
    return row.prompt_tokens * profile.prefill_per_token + row.output_tokens * per_token


def static_replicas(
    rows: Sequence[TraceRow],
    profile: HardwareProfile,
    targets: PodTargets,
    window: float = STATIC_WINDOW,
    headroom: float = HEADROOM,
) -> int:
    """Pods for the busiest `window` of the trace (sliding), each loaded to `headroom`."""
    costs = [request_gpu_seconds(r, profile, targets) for r in rows]
    peak = total = 0.0
    start = 0
    for end, row in enumerate(rows):
        total += costs[end]
        while rows[start].t_seconds <= row.t_seconds - window:
            total -= costs[start]
            start += 1
        peak = max(peak, total)
    return max(1, math.ceil(peak / window / headroom - 1e-9))


@dataclass(frozen=True, slots=True)
class PoolPlan:
    spec: PoolSpec
    scaled_object: ScaledObject | None = None  # None: a fixed replica count


@dataclass(frozen=True, slots=True)
class Contender:
    name: str  # the family: every point of a sweep shares it
    fleet: str  # "unified" or "pd"
    metrics_path: str  # OTLP push, Prometheus scrape, or none
    pools: tuple[PoolPlan, ...]
    summary: str
    knob: str = ""
    value: float = 0.0
    flow_control: FlowControl | None = None  # the gateway's, in front of the fleet
    default: bool = True  # the family's default setting

    @property
    def deployments(self) -> tuple[str, ...]:
        return tuple(p.spec.deployment for p in self.pools)

    @property
    def point(self) -> str:
        return f"{self.name} {self.knob}={self.value:g}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every autoscaled pool shares, so contenders differ only in their triggers and behavior."""

    profile: HardwareProfile
    ttft_slo: float
    itl_slo: float
    max_replicas: int = 10
    gateway_demand: bool = True  # ours reads the gateway's queue (demandQuery), behind its flow control
    cold_start: float = 60.0  # what ours is told as coldStart (scaler/sim/ours.py)


# README's advice for policy triggers: the policy already smooths scale-down, keep the HPA's short;
# and it asks for absolute demand with the pods in flight accounted for, so let the HPA take the whole
# step at once (+900 % per 15 s) instead of its default ladder (double, or +4 pods, per 15 s).
OURS_SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Percent", 900, 15.0),))
OURS_BEHAVIOR = Behavior(OURS_SCALE_UP, ScalingRules(60.0, DEFAULT_SCALE_DOWN.policies))
# kedify/otel-add-on examples/vllm/sidecar/model-so.yaml: scaleDown 1200 s, scaleUp 1 s.
KEDIFY_BEHAVIOR = Behavior(
    ScalingRules(1.0, DEFAULT_SCALE_UP.policies), ScalingRules(1200.0, DEFAULT_SCALE_DOWN.policies)
)
KEDIFY_KV, KEDIFY_WAITING = 0.5, 40.0


def _scaled(deployment: str, env: Envelope, triggers: Sequence[dict[str, str]], **options: Any) -> ScaledObject:
    """A ScaledObject in the shared envelope; `options` are the contender's own (behavior, polling...)."""
    triggered = tuple(Trigger.of(t) for t in triggers)
    base = ScaledObject(NAMESPACE, deployment, triggered, min_replicas=1, max_replicas=env.max_replicas)
    return replace(base, **options)


def _pool(deployment: str, role: str, env: Envelope, replicas: int = 1) -> PoolSpec:
    return PoolSpec(deployment, role, env.profile, replicas)


def ours_metadata(deployment: str, phase: str, env: Envelope, headroom: float) -> dict[str, str]:
    """A policy trigger for one pool: per-pod targets off the profile, then `ours.ours_extras`."""
    targets = pod_targets(env.profile, target_share(headroom))
    metadata = {"policy": "vllm", "deployment": deployment, "phase": phase}
    if phase in ("prefill", "unified"):
        metadata |= {
            "targetWaitingPerPod": str(targets.waiting),
            "prefillTokensPerSecondPerPod": str(targets.prefill_tokens_per_s),
            "ttftSeconds": f"{env.ttft_slo:g}",
        }
    if phase in ("decode", "unified"):
        metadata |= {
            "targetRunningPerPod": str(targets.running),
            "targetKvCacheUsage": f"{targets.kv:g}",
            "decodeTokensPerSecondPerPod": str(targets.decode_tokens_per_s),
            "itlSeconds": f"{env.itl_slo:g}",
        }
    return metadata | ours_extras(NAMESPACE, MODEL, headroom, env.gateway_demand, env.cold_start)


def _ours(name: str, env: Envelope, headroom: float, phases: Sequence[tuple[str, str]], path: str) -> Contender:
    """Our policy on `phases` (deployment, phase); over Prometheus, KEDA polls as it would the Prometheus scaler."""
    options: dict[str, Any] = {"behavior": OURS_BEHAVIOR}
    if path == PROMETHEUS:
        options["polling_interval"] = 30.0
    pools = tuple(
        PoolPlan(_pool(d, phase, env), _scaled(d, env, [ours_metadata(d, phase, env, headroom)], **options))
        for d, phase in phases
    )
    fleet = "pd" if len(phases) == 2 else "unified"
    kinds = " + ".join(f"phase {p}" for _, p in phases)
    flow = fleet_flow_control(env.gateway_demand)
    gateway = ", gateway demand" if flow is not None else ""
    summary = f"policy: vllm, {kinds}, {'OTLP push' if path == OTLP else 'Prometheus path'}{gateway}"
    return Contender(name, fleet, path, pools, summary, "headroom", headroom, flow)


def ours_pd(env: Envelope, headroom: float | None = None) -> Contender:
    h = default_headroom() if headroom is None else headroom
    return _ours("ours-pd", env, h, ((PREFILL, "prefill"), (DECODE, "decode")), OTLP)


def ours_unified(env: Envelope, headroom: float | None = None) -> Contender:
    h = default_headroom() if headroom is None else headroom
    return _ours("ours-unified", env, h, ((UNIFIED, "unified"),), OTLP)


def ours_prometheus(env: Envelope, headroom: float | None = None) -> Contender:
    """The same unified policy, fed as kserve-seed is: Prometheus scrapes, KEDA's 30 s poll, the HPA's 15 s."""
    h = default_headroom() if headroom is None else headroom
    return _ours("ours-prometheus", env, h, ((UNIFIED, "unified"),), PROMETHEUS)


def _selector(metric: str) -> str:
    return f'sum({metric}{{namespace="{NAMESPACE}", deployment="{UNIFIED}"}})'


def kserve_seed(env: Envelope, target: float = 2.0) -> Contender:
    """KServe's KEDA example: running requests, 2 per pod, through Prometheus (scrape, then KEDA's query)."""
    trigger = {"metricQuery": _selector("vllm:num_requests_running"), "targetValue": f"{target:f}"}
    so = _scaled(UNIFIED, env, [trigger], polling_interval=30.0)
    pools = (PoolPlan(_pool(UNIFIED, "unified", env), so),)
    summary = f"sum(running) / {target:g} per pod, Prometheus path"
    return Contender("kserve-seed", "unified", PROMETHEUS, pools, summary, "target", target)


def kedify_vllm_example(env: Envelope, scale: float = 1.0) -> Contender:
    """kedify/otel-add-on's vLLM sidecar example: KV usage 0.5 and waiting 40 per pod (both x `scale`),
    averaged over time."""
    kv, waiting = min(1.0, KEDIFY_KV * scale), KEDIFY_WAITING * scale
    triggers = [
        {"metricQuery": _selector(metric), "operationOverTime": "avg", "targetValue": f"{target:g}"}
        for metric, target in (("vllm:gpu_cache_usage_perc", kv), ("vllm:num_requests_waiting", waiting))
    ]
    so = _scaled(UNIFIED, env, triggers, behavior=KEDIFY_BEHAVIOR, fallback=Fallback(10, 1))
    pools = (PoolPlan(_pool(UNIFIED, "unified", env), so),)
    summary = f"KV {kv:g} + waiting {waiting:g} per pod, OTLP push"
    return Contender("kedify-vllm-example", "unified", OTLP, pools, summary, "scale", scale)


def static(env: Envelope, replicas: int) -> Contender:
    pools = (PoolPlan(_pool(UNIFIED, "unified", env, replicas)),)
    return Contender("static", "unified", NO_METRICS, pools, f"{replicas} pods", "replicas", float(replicas))


@dataclass(frozen=True, slots=True)
class Family:
    """One contender over its knob: the values a sweep replays, and the default setting."""

    name: str
    knob: str
    sweep: tuple[float, ...]
    build: Callable[[Envelope, float], Contender]
    default: Callable[[Envelope, Sequence[TraceRow]], float]


HEADROOMS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
FAMILIES = (
    Family("ours-pd", "headroom", HEADROOMS, ours_pd, lambda env, rows: default_headroom()),
    Family("ours-unified", "headroom", HEADROOMS, ours_unified, lambda env, rows: default_headroom()),
    Family("ours-prometheus", "headroom", HEADROOMS, ours_prometheus, lambda env, rows: default_headroom()),
    Family("kserve-seed", "target", (2.0, 4.0, 8.0, 16.0, 32.0), kserve_seed, lambda env, rows: 2.0),
    Family("kedify-vllm-example", "scale", (0.25, 0.5, 1.0, 1.5, 2.0), kedify_vllm_example, lambda env, rows: 1.0),
    Family(
        "static",
        "replicas",
        tuple(float(n) for n in range(1, 13)),
        lambda env, n: static(env, int(n)),
        lambda env, rows: float(static_replicas(rows, env.profile, pod_targets(env.profile))),
    ),
)
OURS = ("ours-pd", "ours-unified")  # our deployment: the policy over OTLP push
RIVALS = ("kserve-seed", "kedify-vllm-example", "static")


def contenders(
    env: Envelope, rows: Sequence[TraceRow], sweep: Sequence[Sequence[float]] | None = None
) -> tuple[Contender, ...]:
    """Every family at its default, then at each other value `sweep` gives it (per family, in FAMILIES order)."""
    defaults = [replace(f.build(env, f.default(env, rows)), default=True) for f in FAMILIES]
    points = list(defaults)
    for family, chosen, values in zip(FAMILIES, defaults, sweep or [()] * len(FAMILIES), strict=True):
        others = sorted(set(values) - {chosen.value})
        points += [replace(family.build(env, v), default=False) for v in others]
    for contender in points:
        check(contender)
    return tuple(points)


def check(contender: Contender) -> None:
    """Every trigger parses as the scaler will parse it (InvalidTrigger otherwise): a replay of a trigger
    the scaler refuses would only show an HPA holding still."""
    for plan in contender.pools:
        if plan.scaled_object is not None:
            for trigger in plan.scaled_object.triggers:
                parse_trigger(dict(trigger.metadata), NAMESPACE)


def describe(contender: Contender) -> dict[str, object]:
    """The contender as results.json records it: enough to rebuild its ScaledObjects."""
    pools: dict[str, object] = {}
    for plan in contender.pools:
        so = plan.scaled_object
        if so is None:
            pools[plan.spec.deployment] = {"role": plan.spec.role, "replicas": plan.spec.replicas}
            continue
        pools[plan.spec.deployment] = {
            "role": plan.spec.role,
            "min_replicas": so.min_replicas,
            "max_replicas": so.max_replicas,
            "polling_interval_s": so.polling_interval,
            "scale_up_stabilization_s": so.behavior.scale_up.stabilization_window,
            "scale_down_stabilization_s": so.behavior.scale_down.stabilization_window,
            "triggers": [dict(t.metadata) for t in so.triggers],
        }
    c, flow = contender, contender.flow_control
    return {
        "fleet": c.fleet,
        "metrics_path": c.metrics_path,
        "summary": c.summary,
        "knob": c.knob,
        "value": c.value,
        "gateway_flow_control": None if flow is None else {"queue_depth": flow.queue_depth, "kv_cache": flow.kv_cache},
        "pools": pools,
    }
