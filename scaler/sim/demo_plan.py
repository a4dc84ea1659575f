"""What `keda-llm-scaler demo` runs: the timeline, the two ScaledObjects, and the numbers it reports.

Pure: the driver (scaler/sim/demo.py) asks this module how many clients to run at time t, which
ScaledObjects to emulate, and how to summarise what it saw. `speed` shortens the control plane's
clock (polling, HPA sync and stabilization, cooldown, policy windows, cold start, the burst
schedule) but never the engines' physics, so latencies stay what the hardware profile gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from scaler.sim.hpa import Behavior, ScalingPolicy, ScalingRules
from scaler.sim.keda import ScaledObject, Trigger

NAMESPACE = "demo"
PREFILL = "qwen-prefill"
DECODE = "qwen-decode"


@dataclass(frozen=True, slots=True)
class DemoPlan:
    duration: float = 180.0
    speed: float = 1.0
    base_clients: int = 2
    burst_clients: int = 24
    burst_start: float = 30.0
    burst_end: float = 90.0
    cold_start: float = 15.0
    export_interval: float = 1.0
    report_every: float = 5.0
    prompt_tokens: int = 400
    max_tokens: int = 160
    max_replicas: int = 6

    def seconds(self, at_full_speed: float) -> float:
        """A control-plane duration on this run's clock."""
        return at_full_speed / self.speed

    @property
    def run_seconds(self) -> float:
        return self.seconds(self.duration)

    def clients_at(self, t: float) -> int:
        """Concurrent clients t seconds into the run: a base load with one burst."""
        if self.seconds(self.burst_start) <= t < self.seconds(self.burst_end):
            return self.burst_clients
        return self.base_clients


def scaled_objects(plan: DemoPlan, scaler_address: str) -> list[ScaledObject]:
    """One ScaledObject per pool: policy triggers, with the short timings a three-minute demo needs.

    KEDA's and the HPA's defaults (30 s polling, 15 s sync, 300 s scale-down stabilization and
    cooldown) would hide the scale-down; these are the same knobs a user sets in
    `pollingInterval`, `cooldownPeriod` and `advanced.horizontalPodAutoscalerConfig.behavior`.
    """
    windows = {"stableWindow": f"{plan.seconds(30):g}s", "panicWindow": f"{plan.seconds(5):g}s"}
    common = {"scalerAddress": scaler_address, "policy": "vllm", **windows, "maxReplicas": str(plan.max_replicas)}
    prefill = {
        **common,
        "deployment": PREFILL,
        "phase": "prefill",
        "targetWaitingPerPod": "2",
        "ttftSeconds": "1.0",
    }
    decode = {
        **common,
        "deployment": DECODE,
        "phase": "decode",
        "targetRunningPerPod": "6",
        "targetKvCacheUsage": "0.8",
        "itlSeconds": "0.06",
    }
    down = ScalingRules(plan.seconds(20), (ScalingPolicy("Percent", 100, plan.seconds(15)),))
    up = ScalingRules(
        0.0, (ScalingPolicy("Percent", 100, plan.seconds(15)), ScalingPolicy("Pods", 4, plan.seconds(15)))
    )
    return [
        ScaledObject(
            NAMESPACE,
            deployment,
            (Trigger.of(metadata),),
            min_replicas=1,
            max_replicas=plan.max_replicas,
            polling_interval=plan.seconds(5),
            cooldown_period=plan.seconds(30),
            behavior=Behavior(scale_up=up, scale_down=down),
            hpa_sync_period=plan.seconds(5),
        )
        for deployment, metadata in ((PREFILL, prefill), (DECODE, decode))
    ]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    started: float  # seconds into the run
    ok: bool
    ttft: float | None = None
    itl: float | None = None  # mean gap between streamed tokens


@dataclass(frozen=True, slots=True)
class PoolRow:
    replicas: int
    ready: int
    recommendation: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    t: float
    clients: int
    completed_per_s: float
    ttft_p90: float | None
    itl_p90: float | None
    pools: dict[str, PoolRow] = field(default_factory=dict)


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def row_for(t: float, clients: int, since: float, finished: Sequence[RequestRecord], pools: dict[str, PoolRow]) -> Row:
    """One line of the live table from the requests that finished in (since, t]."""
    ok = [r for r in finished if r.ok]
    rate = len(finished) / (t - since) if t > since else 0.0
    ttft = quantile([r.ttft for r in ok if r.ttft is not None], 0.9)
    itl = quantile([r.itl for r in ok if r.itl is not None], 0.9)
    return Row(t, clients, rate, ttft, itl, pools)


def header() -> str:
    return (
        f"{'t':>5}  {'clients':>7}  {'req/s':>5}  {'ttft p90':>8}  {'itl p90':>7}  "
        f"{'prefill pods':>12}  {'rec':>3}  {'decode pods':>11}  {'rec':>3}"
    )


def format_row(row: Row) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    def pool(name: str, width: int) -> str:
        info = row.pools.get(name)
        if info is None:
            return f"{'-':>{width}}  {'-':>3}"
        rec = "-" if info.recommendation is None else str(info.recommendation)
        return f"{f'{info.ready}/{info.replicas}':>{width}}  {rec:>3}"

    return (
        f"{row.t:5.0f}  {row.clients:7d}  {row.completed_per_s:5.1f}  {seconds(row.ttft_p90):>8}  "
        f"{seconds(row.itl_p90):>7}  {pool(PREFILL, 12)}  {pool(DECODE, 11)}"
    )


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    failed: int
    peak: dict[str, int]
    final: dict[str, int]
    first_scale_up: dict[str, float | None]  # seconds after the burst began
    scaled_down: dict[str, bool]

    def lines(self) -> list[str]:
        out = [f"requests: {self.requests}, failed: {self.failed}"]
        for pool in (PREFILL, DECODE):
            up = self.first_scale_up.get(pool)
            up_text = "never" if up is None else f"{up:.1f}s after the burst began"
            down = "scaled back down" if self.scaled_down.get(pool) else "did not scale back down"
            out.append(
                f"{pool}: peak {self.peak.get(pool, 0)} replicas, first scale-up {up_text}, "
                f"{down} (ends at {self.final.get(pool, 0)})"
            )
        return out


Timeline = Sequence[tuple[float, dict[str, PoolRow]]]


def summarize(plan: DemoPlan, timeline: Timeline, records: Sequence[RequestRecord]) -> Summary:
    """Peaks, reaction and recovery per pool, from replica counts sampled through the run."""
    burst = plan.seconds(plan.burst_start)
    peak: dict[str, int] = {}
    final: dict[str, int] = {}
    first_up: dict[str, float | None] = {}
    down: dict[str, bool] = {}
    for pool in (PREFILL, DECODE):
        counts = [(t, pools[pool].replicas) for t, pools in timeline if pool in pools]
        if not counts:
            continue
        start = counts[0][1]
        peak[pool] = max(c for _, c in counts)
        final[pool] = counts[-1][1]
        first_up[pool] = next((t - burst for t, c in counts if t >= burst and c > start), None)
        down[pool] = peak[pool] > start and final[pool] < peak[pool]
    failed = sum(1 for r in records if not r.ok)
    return Summary(len(records), failed, peak, final, first_up, down)
