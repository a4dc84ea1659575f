"""Per-pod vLLM signals for one pool over one window, read from the store.

Engines (the `engine` label, several per pod under data parallelism) are summed within a pod, except
KV-cache usage, which takes the fullest engine. Gauges give the window's mean and peak (the queue also
its growth per second); counters a per-second rate; latency histograms their bucket increases,
merged over the pool for quantiles.
Which vLLM metrics these are, and how they changed between versions: docs/vllm-metrics.md.

`read_pools` answers from a pool view that ingest keeps (scaler.pool_view); `read_pools_scan` reads
every series instead, with the same per-series readers, when no view can answer (a clock that went
back, arithmetic that overflowed). The policy reads a window through `total` and `count` of
POOL_FIGURES, which a view keeps on ingest, so a call costs the same at 10 pods as at 5,000.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, overload

from scaler.expression import Selector
from scaler.histograms import merge, quantile
from scaler.otlp import Kind
from scaler.series import Series

if TYPE_CHECKING:
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


def _kv_load(pod: PodSignals) -> float | None:
    """A pod that preempts has run out of KV cache, whatever its mean usage says."""
    if pod.kv is None:
        return None
    return 1.0 if (pod.preemption_rate or 0.0) > 0 else pod.kv or 0.0


def _kv_peak_load(pod: PodSignals) -> float | None:
    if pod.kv is None:
        return None
    return 1.0 if (pod.preemption_rate or 0.0) > 0 else pod.kv_peak or 0.0


def _kv_preempting(pod: PodSignals) -> float | None:
    return 1.0 if pod.kv is not None and (pod.preemption_rate or 0.0) > 0 else None


def _saturated(pod: PodSignals, rate: float | None) -> float | None:
    """A pod's token rate while it had a queue (it ran flat out), for learning per-pod capacity."""
    return rate if (pod.waiting or 0.0) >= 1.0 and rate is not None and rate > 0 else None


def _saturated_prompt_rate(pod: PodSignals) -> float | None:
    return _saturated(pod, pod.prompt_rate)


def _saturated_generation_rate(pod: PodSignals) -> float | None:
    return _saturated(pod, pod.generation_rate)


def _serving(pod: PodSignals) -> float | None:
    return 1.0


def _waiting_split(pod: PodSignals) -> float | None:
    """1 for a pod whose waiting figure is the capacity split (num_requests_waiting_by_reason)."""
    return 1.0 if pod.waiting is not None and pod.waiting_by_reason else None


def _split_deferred(pod: PodSignals) -> float | None:
    """The deferred queue of a pod whose waiting figure is the capacity split."""
    return (pod.waiting_deferred or 0.0) if pod.waiting is not None and pod.waiting_by_reason else None


_SUMMED = (
    "running",
    "running_peak",
    "waiting",
    "waiting_peak",
    "waiting_growth",
    "waiting_deferred",
    "kv",
    "kv_peak",
    "prompt_rate",
    "generation_rate",
    "preemption_rate",
    "requests_rate",
    "rejection_rate",
)
# What the policy reads of a window's serving pods: per pod a figure (None: the pod does not count),
# summed (math.fsum) and counted over the serving pods. A pool view keeps each on ingest, so a call
# reads them without visiting the pods. The rules are functions called on each read, not closures
# built at import, so that mutation testing (pyproject.toml, [tool.mutmut]) reaches them.
POOL_FIGURES: dict[str, Callable[[PodSignals], float | None]] = {
    **{name: operator.attrgetter(name) for name in _SUMMED},
    "serving": _serving,
    "waiting_split": _waiting_split,
    "waiting_split_deferred": _split_deferred,
    "kv_load": _kv_load,
    "kv_peak_load": _kv_peak_load,
    "kv_preempting": _kv_preempting,
    "saturated_prompt_rate": _saturated_prompt_rate,
    "saturated_generation_rate": _saturated_generation_rate,
}


@dataclass(frozen=True, slots=True)
class Kept:
    """A pool view's answer for one window at one read: POOL_FIGURES' totals (None where only math.fsum
    over the pods says what the sum is) and counts over the serving pods, how many pods there are, the
    youngest one's age, and the pods themselves, built from the read's snapshot when first asked for."""

    totals: dict[str, float | None]
    counts: dict[str, int]
    pods: int
    youngest_age: float | None
    build: Callable[[], dict[str, PodSignals]]


@dataclass(slots=True)
class PoolWindow:
    """Everything the policy reads about one pool over one window.

    Built by hand (or by a scan), `pods` holds every figure and the pool's figures are computed from
    it on each call; built by a pool view (`kept`), they come from what ingest kept, and `pods` is
    built only when something lists them (an explanation).
    """

    window: float
    ttft: Latency = field(default_factory=Latency)
    itl: Latency = field(default_factory=Latency)
    matched_series: int = 0  # fresh or stale: tells "never seen" from "gone quiet"
    newest_age: float | None = None
    kept: Kept | None = field(default=None, repr=False, compare=False)
    _pods: dict[str, PodSignals] | None = field(default=None, repr=False)

    @property
    def pods(self) -> dict[str, PodSignals]:
        if self._pods is None:
            self._pods = self.kept.build() if self.kept is not None else {}
        return self._pods

    @property
    def serving(self) -> list[PodSignals]:
        """The pods whose engines are awake: the only ones whose load and capacity mean anything."""
        return [p for p in self.pods.values() if not p.asleep]

    @property
    def asleep(self) -> list[PodSignals]:
        return [p for p in self.pods.values() if p.asleep]

    @property
    def pod_count(self) -> int:
        return self.kept.pods if self.kept is not None else len(self.pods)

    @property
    def asleep_count(self) -> int:
        return self.pod_count - self.count("serving")

    @property
    def youngest_age(self) -> float | None:
        """The least age of a pod (since its newest load sample); None with no pod."""
        if self.kept is not None:
            return self.kept.youngest_age
        return min((p.age for p in self.pods.values()), default=None)

    def total(self, name: str) -> float:
        """math.fsum of a POOL_FIGURES figure over the serving pods."""
        if self.kept is not None and (kept := self.kept.totals[name]) is not None:
            return kept
        figure = POOL_FIGURES[name]
        return math.fsum(v for p in self.serving if (v := figure(p)) is not None)

    def count(self, name: str) -> int:
        """The serving pods a POOL_FIGURES figure counts (those that report it)."""
        if self.kept is not None:
            return self.kept.counts[name]
        figure = POOL_FIGURES[name]
        return sum(1 for p in self.serving if figure(p) is not None)

    def reporting(self, name: str) -> list[PodSignals]:
        """The serving pods that report a field or a POOL_FIGURES figure."""
        figure = POOL_FIGURES.get(name) or operator.attrgetter(name)
        return [p for p in self.serving if figure(p) is not None]

    def by_name(self) -> Sequence[PodSignals]:
        """The pods sorted by name; from a view, built when first read (a decision keeps it for /debug)."""
        if self.kept is None:
            return tuple(sorted(self.pods.values(), key=_name))
        return PodsByName(self)


def _name(pod: PodSignals) -> str:
    return pod.pod


class PodsByName(Sequence[PodSignals]):
    """A view-built window's pods sorted by name, built on first use: GetMetrics never lists them."""

    __slots__ = ("_pool", "_sorted")

    def __init__(self, pool: PoolWindow) -> None:
        self._pool: PoolWindow | None = pool
        self._sorted: tuple[PodSignals, ...] = ()

    def _pods(self) -> tuple[PodSignals, ...]:
        if self._pool is not None:
            self._sorted = tuple(sorted(self._pool.pods.values(), key=_name))
            self._pool = None
        return self._sorted

    @overload
    def __getitem__(self, index: int) -> PodSignals: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PodSignals]: ...

    def __getitem__(self, index: int | slice) -> PodSignals | Sequence[PodSignals]:
        return self._pods()[index]

    def __len__(self) -> int:
        return len(self._pods())

    def __iter__(self) -> Iterator[PodSignals]:
        return iter(self._pods())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PodsByName | tuple):
            return self._pods() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._pods())


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
    """The same pool read over several windows: from the pool view ingest keeps, else by a scan."""
    names = tuple(dict.fromkeys(metrics))  # a name listed twice is still one metric, read once
    pools = store.pool_view(selector, names, tuple(windows), stale_after, now).read(store, now)
    if pools is not None:
        return pools
    return read_pools_scan(store, selector, now, windows, stale_after, names)


def read_pools_scan(
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
    for name in sorted(metrics, key=read_order):
        for series in store.select(name, selector):
            matched += 1
            if not series.has_data():
                continue
            last = series.times[-1]
            newest = last if newest is None else max(newest, last)
            if series.ended or now - last > stale_after:
                continue
            if name == SLEEP_STATE:
                read_sleep(sleeping.setdefault(series.pod, {}), series)
                continue
            for pool in pools:
                pod = pool.pods.get(series.pod)
                if pod is None:
                    if name in ANNOTATIONS:
                        continue
                    pod = pool.pods[series.pod] = PodSignals(series.pod)
                if name not in ANNOTATIONS:
                    pod.age = min(pod.age, now - last)
                apply_reading(pod, name, series, measure(series, name, now - pool.window), _merge_into(pool))
    for pool in pools:
        pool.matched_series = matched
        pool.newest_age = None if newest is None else now - newest
        for pod in pool.pods.values():
            pod.asleep = is_asleep(sleeping.get(pod.pod, {}))
    return pools


def read_order(name: str) -> int:
    return 0 if name == WAITING_BY_REASON else 2 if name in ANNOTATIONS else 1


def is_asleep(engines: dict[str, bool]) -> bool:
    return bool(engines) and all(engines.values())


def read_sleep(engines: dict[str, bool], series: Series) -> None:
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
_GAUGES = frozenset({KV, RUNNING, WAITING, WAITING_BY_REASON})
LATENCIES = (TTFT, ITL)
LatencySink = Callable[[str, Series, list[float]], None]  # (metric, series, its per-column increases)


class Reading(NamedTuple):
    """What one series says over one window, and for which window starts that holds."""

    until: float  # the same for every window start below this
    oldest: float  # receive time of the oldest row read (inf: none)
    span: tuple[list[float], float] | None = None  # counters, histograms: (per-column increase, seconds)
    mean: float = 0.0  # gauges
    peak: float = 0.0
    growth: tuple[float, float] | None = None  # the queue's (increase, seconds) from first row to last


UNREAD = Reading(math.inf, math.inf)


def _merge_into(pool: PoolWindow) -> LatencySink:
    def merge_latency(name: str, series: Series, deltas: list[float]) -> None:
        (pool.ttft if name == TTFT else pool.itl).add(series, deltas)

    return merge_latency


def measure(series: Series, name: str, since: float) -> Reading:
    """The part of a read that visits rows: a cache of it stays right while the series gets no sample
    and the window's start stays below `until`."""
    times = series.times
    if series.kind is not Kind.GAUGE:
        if not (name in _RATES if series.kind is Kind.COUNTER else name in LATENCIES):
            return UNREAD
        base = series.base_index(since)  # the same row until the window's start reaches the next one
        until = times[base + 1] if base + 1 < len(times) else math.inf
        return Reading(until, times[base], series.delta_from(base))
    if name not in _GAUGES:
        return UNREAD
    start = series.first_index(since)  # rows at or after `since`: the same until it passes the first one
    mean, peak = series.mean_and_peak_from(start)
    growth = series.increase_from(start) if name != KV and name != RUNNING else None
    if start < len(times):
        return Reading(math.nextafter(times[start], math.inf), times[start], None, mean, peak, growth)
    return Reading(math.inf, times[-1], None, mean, peak, growth)


def apply_reading(pod: PodSignals, name: str, series: Series, reading: Reading, latency: LatencySink) -> None:
    """Add what one series says over a window to its pod (and its latency buckets to `latency`)."""
    if reading is UNREAD:
        return
    if series.kind is not Kind.GAUGE:
        if reading.span is None:
            return
        deltas, seconds = reading.span
        if series.kind is Kind.HISTOGRAM:
            latency(name, series, deltas)
            if name == TTFT and seconds > 0:
                pod.requests_rate = (pod.requests_rate or 0.0) + deltas[0] / seconds
        elif seconds > 0:
            attr = _RATES[name]
            setattr(pod, attr, (getattr(pod, attr) or 0.0) + deltas[0] / seconds)
        return
    mean, peak = reading.mean, reading.peak
    if name == KV:
        pod.kv = max(pod.kv or 0.0, mean)
        pod.kv_peak = max(pod.kv_peak or 0.0, peak)
    elif name == RUNNING:
        pod.running = (pod.running or 0.0) + mean
        pod.running_peak = (pod.running_peak or 0.0) + peak
    elif name == WAITING:
        if not pod.waiting_by_reason:  # the split, read first, supersedes the total
            _add_waiting(pod, reading)
    else:
        reason = series.label_map.get("reason")
        if reason == "capacity":
            pod.waiting_by_reason = True
            _add_waiting(pod, reading)
        elif reason == "deferred":
            pod.waiting_deferred = (pod.waiting_deferred or 0.0) + mean


def _add_waiting(pod: PodSignals, reading: Reading) -> None:
    pod.waiting = (pod.waiting or 0.0) + reading.mean
    pod.waiting_peak = (pod.waiting_peak or 0.0) + reading.peak
    growth = reading.growth  # a gauge's change from the window's first sample to its last
    if growth is not None and growth[1] > 0:
        pod.waiting_growth = (pod.waiting_growth or 0.0) + growth[0] / growth[1]
