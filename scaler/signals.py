"""Per-pod vLLM signals for one pool over one window, read from the store.

Engines (the `engine` label, several per pod under data parallelism) are summed within a pod, except
KV-cache usage, which takes the fullest engine. Gauges give the window's mean and peak (the queue also
its growth per second); counters a per-second rate; latency histograms their bucket increases,
merged over the pool for quantiles.
Which vLLM metrics these are, and how they changed between versions: docs/vllm-metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scaler.expression import Selector
from scaler.histograms import merge, quantile
from scaler.otlp import Kind
from scaler.series import Series
from scaler.store import Store

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens"
GENERATION_TOKENS = "vllm:generation_tokens"
PREEMPTIONS = "vllm:num_preemptions"
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
WAITING_BY_REASON = "vllm:num_requests_waiting_by_reason"  # reason="capacity" | "deferred"
SLEEP_STATE = "vllm:engine_sleep_state"  # sleep_state="awake" | "weights_offloaded" | "discard_all"
ADMISSION_REJECTIONS = "vllm:admission_rejections"  # a counter, stored without `_total`
POOL_METRICS = (
    RUNNING,
    WAITING,
    WAITING_BY_REASON,
    KV,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREEMPTIONS,
    TTFT,
    ITL,
    ADMISSION_REJECTIONS,
    SLEEP_STATE,
)
# Metrics that describe a pod reporting load and never make one alone: a pod seen only through them
# would count as reporting with no load, and its "zero" would answer 0 for a pool we know nothing of.
ANNOTATIONS = frozenset({ADMISSION_REJECTIONS, SLEEP_STATE})
_SLEEP_LEVELS = frozenset({"weights_offloaded", "discard_all"})


@dataclass(slots=True)
class PodSignals:
    """One pod's inputs over a window; None where the pod does not report the metric."""

    pod: str
    running: float | None = None
    running_peak: float | None = None
    waiting: float | None = None  # the queue that wants capacity (see `waiting_by_reason`)
    waiting_peak: float | None = None
    waiting_growth: float | None = None  # requests/s the queue grew by over the window (first to last sample)
    waiting_by_reason: bool = False  # waiting is num_requests_waiting_by_reason{reason="capacity"}
    waiting_deferred: float | None = None  # reason="deferred" (LoRA budget, KV transfer): not counted
    kv: float | None = None
    kv_peak: float | None = None
    prompt_rate: float | None = None
    generation_rate: float | None = None
    preemption_rate: float | None = None
    requests_rate: float | None = None  # first tokens per second (TTFT observations)
    rejection_rate: float | None = None  # requests refused at admission per second
    asleep: bool = False  # every engine says so in engine_sleep_state
    age: float = math.inf  # seconds since the pod's newest load sample


@dataclass(slots=True)
class Latency:
    """Merged bucket increases of one latency histogram over the pool."""

    bounds: tuple[float, ...] = ()
    counts: list[float] = field(default_factory=list)

    def add(self, series: Series, deltas: list[float]) -> None:
        buckets = deltas[2:]
        if not buckets:
            return
        if not self.counts:
            self.bounds, self.counts = series.bounds, [0.0] * len(buckets)
        if series.bounds == self.bounds:
            merge(self.counts, buckets)

    def quantile(self, q: float) -> float | None:
        return quantile(q, self.bounds, self.counts)

    @property
    def observations(self) -> float:
        return sum(self.counts)


@dataclass(slots=True)
class PoolWindow:
    """Everything the policy reads about one pool over one window."""

    window: float
    pods: dict[str, PodSignals] = field(default_factory=dict)
    ttft: Latency = field(default_factory=Latency)
    itl: Latency = field(default_factory=Latency)
    matched_series: int = 0  # fresh or stale: tells "never seen" from "gone quiet"
    newest_age: float | None = None

    @property
    def serving(self) -> list[PodSignals]:
        """The pods whose engines are awake: the only ones whose load and capacity mean anything."""
        return [p for p in self.pods.values() if not p.asleep]

    @property
    def asleep(self) -> list[PodSignals]:
        return [p for p in self.pods.values() if p.asleep]

    def total(self, name: str) -> float:
        return math.fsum(v for p in self.serving if (v := getattr(p, name)) is not None)

    def reporting(self, name: str) -> list[PodSignals]:
        return [p for p in self.serving if getattr(p, name) is not None]


def read_pool(
    store: Store,
    selector: Selector,
    now: float,
    window: float,
    stale_after: float,
    metrics: Iterable[str] = POOL_METRICS,
) -> PoolWindow:
    """Collect a pool's per-pod signals over [now - window, now] from its fresh series."""
    return read_pools(store, selector, now, (window,), stale_after, metrics)[0]


def read_pools(
    store: Store,
    selector: Selector,
    now: float,
    windows: Sequence[float],
    stale_after: float,
    metrics: Iterable[str] = POOL_METRICS,
) -> list[PoolWindow]:
    """The same pool read over several windows in one pass over its series.

    The waiting split is read before the total it splits, so a pod that reports
    `num_requests_waiting_by_reason` has its `reason="capacity"` figure used instead (per pod: one
    without it keeps `num_requests_waiting`); annotations are read last, onto the pods already found.
    """
    pools = [PoolWindow(w) for w in windows]
    matched = 0
    newest: float | None = None
    sleeping: dict[str, dict[str, bool]] = {}  # pod -> engine -> asleep
    for name in sorted(metrics, key=_read_order):
        for series in store.select(name, selector):
            matched += 1
            if not series.has_data():
                continue
            last = series.times[-1]
            newest = last if newest is None else max(newest, last)
            if series.ended or now - last > stale_after:
                continue
            if name == SLEEP_STATE:
                _read_sleep(sleeping.setdefault(series.pod, {}), series)
                continue
            for pool in pools:
                pod = pool.pods.get(series.pod)
                if pod is None:
                    if name in ANNOTATIONS:
                        continue
                    pod = pool.pods[series.pod] = PodSignals(series.pod)
                if name not in ANNOTATIONS:
                    pod.age = min(pod.age, now - last)
                _read_series(pool, pod, name, series, now - pool.window)
    for pool in pools:
        pool.matched_series = matched
        pool.newest_age = None if newest is None else now - newest
        for pod in pool.pods.values():
            engines = sleeping.get(pod.pod, {})
            pod.asleep = bool(engines) and all(engines.values())
    return pools


def _read_order(name: str) -> int:
    return 0 if name == WAITING_BY_REASON else 2 if name in ANNOTATIONS else 1


def _read_sleep(engines: dict[str, bool], series: Series) -> None:
    """An engine sleeps when its `awake` series is 0 now, or a sleep level's is 1 (vLLM sets all three)."""
    state = series.label_map.get("sleep_state", "")
    value = series.last()
    if state == "awake":
        asleep = value < 0.5
    elif state in _SLEEP_LEVELS:
        asleep = value >= 0.5
    else:
        return
    engine = series.label_map.get("engine", "")
    engines[engine] = engines.get(engine, False) or asleep


_RATES = {
    PROMPT_TOKENS: "prompt_rate",
    GENERATION_TOKENS: "generation_rate",
    PREEMPTIONS: "preemption_rate",
    ADMISSION_REJECTIONS: "rejection_rate",
}


def _read_series(pool: PoolWindow, pod: PodSignals, name: str, series: Series, since: float) -> None:
    if series.kind is Kind.HISTOGRAM:
        span = series.delta_since(since)
        if span is None:
            return
        deltas, seconds = span
        if name == TTFT:
            pool.ttft.add(series, deltas)
            if seconds > 0:
                pod.requests_rate = (pod.requests_rate or 0.0) + deltas[0] / seconds
        elif name == ITL:
            pool.itl.add(series, deltas)
        return
    if series.kind is Kind.COUNTER:
        span = series.delta_since(since)
        if span is None or span[1] <= 0 or name not in _RATES:
            return
        attr = _RATES[name]
        setattr(pod, attr, (getattr(pod, attr) or 0.0) + span[0][0] / span[1])
        return
    mean, peak = series.mean_and_peak(since)
    if name == KV:
        pod.kv = max(pod.kv or 0.0, mean)
        pod.kv_peak = max(pod.kv_peak or 0.0, peak)
    elif name == RUNNING:
        pod.running = (pod.running or 0.0) + mean
        pod.running_peak = (pod.running_peak or 0.0) + peak
    elif name == WAITING and not pod.waiting_by_reason:  # the split, read first, supersedes the total
        _add_waiting(pod, series, since, mean, peak)
    elif name == WAITING_BY_REASON:
        reason = series.label_map.get("reason")
        if reason == "capacity":
            pod.waiting_by_reason = True
            _add_waiting(pod, series, since, mean, peak)
        elif reason == "deferred":
            pod.waiting_deferred = (pod.waiting_deferred or 0.0) + mean


def _add_waiting(pod: PodSignals, series: Series, since: float, mean: float, peak: float) -> None:
    pod.waiting = (pod.waiting or 0.0) + mean
    pod.waiting_peak = (pod.waiting_peak or 0.0) + peak
    span = series.increase(0, since)  # a gauge's change from the window's first sample to its last
    if span is not None and span[1] > 0:
        pod.waiting_growth = (pod.waiting_growth or 0.0) + span[0] / span[1]
