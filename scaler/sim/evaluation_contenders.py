"""What `keda-llm-scaler evaluate` compares: each contender's fleet, ScaledObjects and metrics path.

Per-pod targets come from the hardware profile alone (its ceilings times a headroom), never from
the trace, and the static fleet is sized from the trace's peak with the same cost model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from scaler.sim.fleet_spec import PoolSpec
from scaler.sim.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, Behavior, ScalingRules
from scaler.sim.keda import Fallback, ScaledObject, Trigger
from scaler.sim.profiles import HardwareProfile
from scaler.sim.trace import TraceRow

NAMESPACE = "llm"
MODEL = "llama"
UNIFIED, PREFILL, DECODE = "llama", "llama-prefill", "llama-decode"
HEADROOM = 0.75  # run a pod at 3/4 of what the profile says it can do, as one would a queue
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
    name: str
    fleet: str  # "unified" or "pd"
    metrics_path: str  # OTLP push, Prometheus scrape, or none
    pools: tuple[PoolPlan, ...]
    summary: str

    @property
    def deployments(self) -> tuple[str, ...]:
        return tuple(p.spec.deployment for p in self.pools)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every autoscaled pool shares, so contenders differ only in their triggers and behavior."""

    profile: HardwareProfile
    ttft_slo: float
    itl_slo: float
    max_replicas: int = 10


# README's advice for policy triggers: the policy already smooths scale-down, keep the HPA's short.
OURS_BEHAVIOR = Behavior(DEFAULT_SCALE_UP, ScalingRules(60.0, DEFAULT_SCALE_DOWN.policies))
# kedify/otel-add-on examples/vllm/sidecar/model-so.yaml: scaleDown 1200 s, scaleUp 1 s.
KEDIFY_BEHAVIOR = Behavior(
    ScalingRules(1.0, DEFAULT_SCALE_UP.policies), ScalingRules(1200.0, DEFAULT_SCALE_DOWN.policies)
)


def _scaled(deployment: str, env: Envelope, triggers: Sequence[dict[str, str]], **options: Any) -> ScaledObject:
    """A ScaledObject in the shared envelope; `options` are the contender's own (behavior, polling...)."""
    triggered = tuple(Trigger.of(t) for t in triggers)
    base = ScaledObject(NAMESPACE, deployment, triggered, min_replicas=1, max_replicas=env.max_replicas)
    return replace(base, **options)


def _pool(deployment: str, role: str, env: Envelope, replicas: int = 1) -> PoolSpec:
    return PoolSpec(deployment, role, env.profile, replicas)


def _policy(deployment: str, phase: str, env: Envelope) -> dict[str, str]:
    targets = pod_targets(env.profile)
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
    return metadata


def ours_pd(env: Envelope) -> Contender:
    pools = tuple(
        PoolPlan(_pool(d, phase, env), _scaled(d, env, [_policy(d, phase, env)], behavior=OURS_BEHAVIOR))
        for d, phase in ((PREFILL, "prefill"), (DECODE, "decode"))
    )
    return Contender("ours-pd", "pd", OTLP, pools, "policy: vllm, phase prefill + phase decode, OTLP push")


def ours_unified(env: Envelope) -> Contender:
    so = _scaled(UNIFIED, env, [_policy(UNIFIED, "unified", env)], behavior=OURS_BEHAVIOR)
    pools = (PoolPlan(_pool(UNIFIED, "unified", env), so),)
    return Contender("ours-unified", "unified", OTLP, pools, "policy: vllm, phase unified, OTLP push")


def _selector(metric: str) -> str:
    return f'sum({metric}{{namespace="{NAMESPACE}", deployment="{UNIFIED}"}})'


def kserve_seed(env: Envelope) -> Contender:
    """KServe's KEDA example: running requests, 2 per pod, through Prometheus (scrape, then KEDA's query)."""
    trigger = {"metricQuery": _selector("vllm:num_requests_running"), "targetValue": "2.000000"}
    so = _scaled(UNIFIED, env, [trigger], polling_interval=30.0)
    pools = (PoolPlan(_pool(UNIFIED, "unified", env), so),)
    return Contender("kserve-seed", "unified", PROMETHEUS, pools, "sum(running) / 2 per pod, Prometheus path")


def kedify_vllm_example(env: Envelope) -> Contender:
    """kedify/otel-add-on's vLLM sidecar example: KV usage 0.5 and waiting 40 per pod, averaged over time."""
    triggers = [
        {"metricQuery": _selector("vllm:gpu_cache_usage_perc"), "operationOverTime": "avg", "targetValue": ".5"},
        {"metricQuery": _selector("vllm:num_requests_waiting"), "operationOverTime": "avg", "targetValue": "40"},
    ]
    so = _scaled(UNIFIED, env, triggers, behavior=KEDIFY_BEHAVIOR, fallback=Fallback(10, 1))
    pools = (PoolPlan(_pool(UNIFIED, "unified", env), so),)
    return Contender("kedify-vllm-example", "unified", OTLP, pools, "KV 0.5 + waiting 40 per pod, OTLP push")


def static(env: Envelope, replicas: int) -> Contender:
    pools = (PoolPlan(_pool(UNIFIED, "unified", env, replicas)),)
    return Contender("static", "unified", NO_METRICS, pools, f"{replicas} pods, the trace's peak minute")


def contenders(env: Envelope, rows: Sequence[TraceRow]) -> tuple[Contender, ...]:
    replicas = static_replicas(rows, env.profile, pod_targets(env.profile))
    return (ours_pd(env), ours_unified(env), kserve_seed(env), kedify_vllm_example(env), static(env, replicas))


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
    c = contender
    return {"fleet": c.fleet, "metrics_path": c.metrics_path, "summary": c.summary, "pools": pools}
