"""What `keda-llm-scaler demo` runs: the timeline, the two ScaledObjects, and the numbers it reports.

Pure: the driver (scaler/sim/demo.py) asks this module how many clients to run at time t, which
ScaledObjects to emulate, and how to summarise what it saw: per pool, the signal that drives its
recommendation (`driving_signal`), which one drove its peak, and whether it rose after the burst
ended and why. `speed` shortens the control plane's clock (polling, HPA sync and stabilization,
cooldown, policy windows, cold start, the burst schedule) but never the engines' physics, so
latencies stay what the hardware profile gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from scaler.policy import Decision
from scaler.sim.hpa import Behavior, ScalingPolicy, ScalingRules
from scaler.sim.keda import ScaledObject, Trigger
from scaler.sim.ours import ours_extras

NAMESPACE = "demo"
MODEL = "qwen"  # also the gateway's InferencePool
PREFILL = "qwen-prefill"
DECODE = "qwen-decode"
SIGNAL_WIDTH = 24  # "decode_tokens/panic/peak"


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
    gateway_demand: bool = True  # the prefill pool reads the gateway's queue (see scaler/sim/ours.py)

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
        **ours_extras(NAMESPACE, MODEL, None, plan.gateway_demand, plan.seconds(plan.cold_start)),
    }
    decode = {
        **common,
        "deployment": DECODE,
        "phase": "decode",
        "targetRunningPerPod": "6",
        "targetKvCacheUsage": "0.8",
        "itlSeconds": "0.06",
        **ours_extras(NAMESPACE, MODEL, None, plan.gateway_demand, plan.seconds(plan.cold_start)),
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
    signal: str = ""  # `driving_signal` of the decision behind the recommendation


_BOUNDS = (  # qualifiers of a Decision's reason that changed the figure, and how the table shows them
    ("panic", "panic"),
    ("peak holds", "peak"),
    ("held at", "held"),
    ("capped at", "cap"),
    ("minReplicas", "min"),
    ("maxReplicas", "max"),
    ("woken by activation", "wake"),
)


def driving_signal(decision: Decision) -> str:
    """The signal whose figure set the recommendation (the reason's detail names it), then what bounded it.

    e.g. `waiting/panic`, `kv/peak`, `running/max`; `idle` when no signal had load.
    """
    head, _, tail = decision.reason.partition(" -> ")
    detail = head.partition(": ")[2]
    signals = (*decision.panic.signals, *decision.stable.signals)
    name = next((s.name for s in signals if s.detail == detail), "idle")
    qualifiers = tail.partition(" (")[2]
    return "/".join([name, *(short for text, short in _BOUNDS if text in qualifiers)])


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
    signal = f"{'signal':<{SIGNAL_WIDTH}}"
    return (
        f"{'t':>5}  {'clients':>7}  {'req/s':>5}  {'ttft p90':>8}  {'itl p90':>7}  "
        f"{'prefill pods':>12}  {'rec':>3}  {signal}  {'decode pods':>11}  {'rec':>3}  {signal}"
    )


def format_row(row: Row) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    def pool(name: str, width: int) -> str:
        info = row.pools.get(name)
        if info is None:
            return f"{'-':>{width}}  {'-':>3}  {'-':<{SIGNAL_WIDTH}}"
        rec = "-" if info.recommendation is None else str(info.recommendation)
        signal = (info.signal or "-")[:SIGNAL_WIDTH]
        return f"{f'{info.ready}/{info.replicas}':>{width}}  {rec:>3}  {signal:<{SIGNAL_WIDTH}}"

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
    peak_signal: dict[str, str] = field(default_factory=dict)  # what drove the recommendation to the peak
    after_burst: dict[str, str] = field(default_factory=dict)  # whether it rose after the burst ended, and why

    def lines(self) -> list[str]:
        out = [f"requests: {self.requests}, failed: {self.failed}"]
        for pool in (PREFILL, DECODE):
            up = self.first_scale_up.get(pool)
            up_text = "never" if up is None else f"{up:.1f}s after the burst began"
            down = "scaled back down" if self.scaled_down.get(pool) else "did not scale back down"
            line = (
                f"{pool}: peak {self.peak.get(pool, 0)} replicas, first scale-up {up_text}, "
                f"{down} (ends at {self.final.get(pool, 0)})"
            )
            if pool in self.peak_signal:
                line += f"; peak driven by {self.peak_signal[pool]}"
            out.append(line)
            if pool in self.after_burst:
                out.append(f"  after the burst: {self.after_burst[pool]}")
        return out


Timeline = Sequence[tuple[float, dict[str, PoolRow]]]


def summarize(plan: DemoPlan, timeline: Timeline, records: Sequence[RequestRecord]) -> Summary:
    """Peaks, reaction and recovery per pool, from replica counts sampled through the run."""
    burst = plan.seconds(plan.burst_start)
    peak: dict[str, int] = {}
    final: dict[str, int] = {}
    first_up: dict[str, float | None] = {}
    down: dict[str, bool] = {}
    peak_signal: dict[str, str] = {}
    after: dict[str, str] = {}
    for pool in (PREFILL, DECODE):
        rows = [(t, pools[pool]) for t, pools in timeline if pool in pools]
        if not rows:
            continue
        start = rows[0][1].replicas
        peak[pool] = max(r.replicas for _, r in rows)
        final[pool] = rows[-1][1].replicas
        first_up[pool] = next((t - burst for t, r in rows if t >= burst and r.replicas > start), None)
        down[pool] = peak[pool] > start and final[pool] < peak[pool]
        signal = peak_driver(rows, peak[pool])
        if signal:
            peak_signal[pool] = signal
        after[pool] = after_the_burst(rows, plan.seconds(plan.burst_end))
    failed = sum(1 for r in records if not r.ok)
    return Summary(len(records), failed, peak, final, first_up, down, peak_signal, after)


def peak_driver(rows: Sequence[tuple[float, PoolRow]], peak: int) -> str:
    """The signal behind the first recommendation that reached the peak (or the highest one)."""
    recommended = [(t, r) for t, r in rows if r.recommendation is not None]
    if not recommended:
        return ""
    top = max(r.recommendation or 0 for _, r in recommended)
    goal = min(peak, top)
    return next(r.signal for _, r in recommended if (r.recommendation or 0) >= goal)


def after_the_burst(rows: Sequence[tuple[float, PoolRow]], burst_end: float) -> str:
    """Whether the pool rose after the burst ended, and the reason of the recommendation that raised it."""
    before = [r for t, r in rows if t <= burst_end]
    if not before:
        return "no sample before the burst ended"
    at_end = before[-1].replicas
    later = [(t, r) for t, r in rows if t > burst_end]
    rose = next(((t, r) for t, r in later if r.replicas > at_end), None)
    if rose is None:
        return f"did not rise after the burst ended (held {at_end} or fewer)"
    t, row = rose
    cause = next((r for _, r in later if (r.recommendation or 0) > at_end), row)
    return (
        f"rose from {at_end} to {row.replicas} replicas {t - burst_end:.1f}s after the burst ended, "
        f"because {cause.reason or 'of a recommendation not seen'}"
    )
