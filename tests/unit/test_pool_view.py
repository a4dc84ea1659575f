"""A pool view kept on ingest answers what a scan of the store answers, at any time and after any push,
and the policy decides from it what it decides from a scan."""

from __future__ import annotations

import math
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.explain import describe_decision
from scaler.expression import Matcher, Selector
from scaler.otlp import Histogram, Kind, Labels, Sample
from scaler.policy import PolicyState, recommend
from scaler.policy_spec import PolicySpec
from scaler.signals import (
    ADMISSION_REJECTIONS,
    GENERATION_TOKENS,
    ITL,
    KV,
    POOL_FIGURES,
    POOL_METRICS,
    PREEMPTIONS,
    PROMPT_TOKENS,
    RUNNING,
    SLEEP_STATE,
    TTFT,
    WAITING,
    WAITING_BY_REASON,
    PodSignals,
    PoolWindow,
    read_pools,
    read_pools_scan,
)
from scaler.store import Store
from scaler.triggers import parse_trigger

STALE_AFTER = 5.0
WINDOWS = (10.0, 3.0)
BOUNDS = ((0.1, 0.5, 1.0), (0.2, 1.0))  # the second: a producer that changed its bucket layout
PODS = ("p0", "p1")
FIELDS = tuple(f.name for f in fields(PodSignals))
SELECTOR = Selector("", (Matcher("deployment", "=", "llama"),))

GAUGES = {RUNNING: (), WAITING: (), KV: (), WAITING_BY_REASON: ("capacity", "deferred", "other")}
COUNTERS = (GENERATION_TOKENS, PROMPT_TOKENS, ADMISSION_REJECTIONS, PREEMPTIONS)
POLICY = {
    "policy": "vllm",
    "deployment": "llama",
    "phase": "unified",
    "ttftSeconds": "0.5",
    "itlSeconds": "0.05",
    "stableWindow": "10s",
    "panicWindow": "3s",
}
HISTOGRAMS = (TTFT, ITL)

KINDS = {
    **dict.fromkeys(GAUGES, "gauge"),
    **dict.fromkeys(COUNTERS, "counter"),
    **dict.fromkeys(HISTOGRAMS, "histogram"),
}
KINDS[SLEEP_STATE] = "sleep"
pod = st.sampled_from(PODS)
engine = st.sampled_from(("0",) * 7 + ("1",))  # mostly one engine: series that get several rows
VALUES = {"gauge": st.floats(0, 50), "counter": st.floats(0, 1e4), "histogram": st.floats(0, 1)}
VALUES["sleep"] = st.sampled_from((0.0, 1.0))
CHOICES = {"gauge": st.integers(0, 2), "counter": st.integers(0, 3), "histogram": st.integers(0, 3)}
CHOICES["sleep"] = st.integers(0, 1)


Step = tuple[str, str, str, str, int, float]  # (kind, pod, engine, metric, choice, number)


def pushes(names: list[str]) -> st.SearchStrategy[Step]:
    """Pushes of a few metrics only, so that series get several rows within a window."""
    return st.sampled_from(names).flatmap(
        lambda name: st.tuples(
            st.just(KINDS[name]), pod, engine, st.just(name), CHOICES[KINDS[name]], VALUES[KINDS[name]]
        )
    )


end = st.tuples(st.just("end"), pod, engine, st.sampled_from(POOL_METRICS), st.just(0), st.just(0.0))
wait = st.tuples(
    st.just("wait"),
    st.just(""),
    st.just(""),
    st.just(""),
    st.just(0),
    st.sampled_from((0.0, 0.5, 0.5, 1.0, 1.0, 2.5, 7.0)),
)
ask = st.tuples(st.just("ask"), st.just(""), st.just(""), st.just(""), st.integers(-2, 0), st.just(0.0))
sweep = st.tuples(st.just("sweep"), st.just(""), st.just(""), st.just(""), st.just(0), st.just(0.0))
steps = st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.lists(
        st.one_of(pushes(names), pushes(names), pushes(names), pushes([RUNNING]), end, wait, wait, ask, sweep),
        min_size=5,
        max_size=80,
    )
)


class Fleet:
    """The producers: counters that grow, restart (a new start time) or send a late, lower point."""

    def __init__(self) -> None:
        self.totals: dict[Labels, float] = {}
        self.starts: dict[Labels, float] = {}
        self.buckets: dict[Labels, list[int]] = {}

    def sample(self, kind: str, pod: str, engine: str, name: str, choice: int, number: float, now: float) -> Sample:
        labels: tuple[tuple[str, str], ...] = (("deployment", "llama"), ("engine", engine), ("pod", pod))
        if kind == "gauge":
            reasons = GAUGES[name]
            if reasons:
                labels = (*labels, ("reason", reasons[choice]))
            return Sample(name, labels, Kind.GAUGE, number)
        if kind == "sleep":
            state = ("awake", "weights_offloaded")[choice]
            return Sample(SLEEP_STATE, (*labels, ("sleep_state", state)), Kind.GAUGE, number)
        if kind == "end":
            found = Kind.HISTOGRAM if name in HISTOGRAMS else Kind.COUNTER if name in COUNTERS else Kind.GAUGE
            return Sample(name, labels, found, math.nan, no_value=True)
        if choice == 3:  # the producer restarted: a new start time, counting from zero again
            self.starts[labels] = now + 1000.0
            self.totals[labels], self.buckets[labels] = 0.0, []
        start = self.starts.setdefault(labels, 1.0)
        if kind == "counter":
            total = self.totals.get(labels, 0.0) + number
            if choice != 1:  # 1: a late point, lower than the last one sent, with the same start
                self.totals[labels] = total
            return Sample(name, labels, Kind.COUNTER, total if choice != 1 else total / 3, start=start)
        bounds = BOUNDS[1] if choice == 2 else BOUNDS[0]
        counts = self.buckets.get(labels, [])
        if len(counts) != len(bounds) + 1:
            counts = [0] * (len(bounds) + 1)
        counts[min(int(number * len(counts)), len(counts) - 1)] += 1 + choice
        self.buckets[labels] = counts
        summed = Histogram(float(sum(counts)), number, bounds, tuple(float(c) for c in counts))
        return Sample(name, labels, Kind.HISTOGRAM, summed.count, start=start, histogram=summed)


def same(kept: float | None, scanned: float | None) -> bool:
    if kept is None or scanned is None:
        return kept is scanned
    return kept == scanned or math.isclose(kept, scanned, rel_tol=1e-12, abs_tol=1e-12)


def assert_same(kept: list[PoolWindow], scanned: list[PoolWindow]) -> None:
    assert len(kept) == len(scanned)
    for a, b in zip(kept, scanned, strict=True):
        assert (a.window, a.matched_series, a.newest_age) == (b.window, b.matched_series, b.newest_age)
        assert a.pods.keys() == b.pods.keys()
        for name, pod in a.pods.items():
            for f in FIELDS:
                assert same(getattr(pod, f), getattr(b.pods[name], f)), (name, f, pod, b.pods[name])
        assert (a.ttft.bounds, a.ttft.counts) == (b.ttft.bounds, b.ttft.counts)
        assert (a.itl.bounds, a.itl.counts) == (b.itl.bounds, b.itl.counts)
        assert {p.pod for p in a.serving} == {p.pod for p in b.serving}
        assert {p.pod for p in a.asleep} == {p.pod for p in b.asleep}
        for f in FIELDS[1:-2]:
            assert {p.pod for p in a.reporting(f)} == {p.pod for p in b.reporting(f)}
        for f in POOL_FIGURES:  # what the policy reads: kept exactly, fsum's own answer
            assert (a.total(f), a.count(f)) == (b.total(f), b.count(f)), f
        assert (a.pod_count, a.asleep_count, a.youngest_age) == (b.pod_count, b.asleep_count, b.youngest_age)
        assert [p.pod for p in a.by_name()] == [p.pod for p in b.by_name()] == sorted(b.pods)


class Decide:
    """The policy over the view's windows and over a scan's, each carrying its own state."""

    def __init__(self) -> None:
        spec = parse_trigger(POLICY, "llm")
        assert isinstance(spec, PolicySpec)
        self.spec, self.kept, self.scanned = spec, PolicyState(), PolicyState()

    def same(self, kept: list[PoolWindow], scanned: list[PoolWindow], now: float) -> None:
        decision, self.kept = recommend(self.spec, self.kept, *kept, now)
        expected, self.scanned = recommend(self.spec, self.scanned, *scanned, now)
        assert describe_decision(decision) == describe_decision(expected)
        assert self.kept == self.scanned


@settings(max_examples=400, deadline=None)
@given(steps, st.sampled_from((30.0, 8.0)), st.sampled_from((0, 1, 50)))
def test_a_pool_view_answers_what_a_scan_answers(script: list[Step], retention: float, budget: int) -> None:
    """Pushes, restarts, late points, end markers, layout changes, expiry and sweeps, read at any time
    (also before the latest push: a clock that went back is answered by a scan), whatever share of
    the expiries ingest takes on."""
    store = Store(retention=retention, max_series=1000, expiry_budget=budget)
    fleet, decide = Fleet(), Decide()
    held: tuple[list[PoolWindow], list[PoolWindow]] | None = None
    now = 0.0
    for kind, pod_name, engine_name, name, choice, number in script:
        if kind == "wait":
            now += number
        elif kind == "sweep":
            store.sweep(now)
        elif kind == "ask":
            at = now + choice
            if held is not None:  # an earlier read lists its own pods, whatever came after it
                assert_same(*held)
            kept = read_pools(store, SELECTOR, at, WINDOWS, STALE_AFTER)
            scanned = read_pools_scan(store, SELECTOR, at, WINDOWS, STALE_AFTER)
            held = read_pools(store, SELECTOR, at, WINDOWS, STALE_AFTER), scanned  # its pods not built yet
            assert_same(kept, scanned)
            if at >= now:  # a policy never goes back in time
                decide.same(kept, scanned, at)
        else:
            store.append([fleet.sample(kind, pod_name, engine_name, name, choice, number, now)], now)
    for later in (now, now + 2.0, now + STALE_AFTER + 0.5, now + 20.0):
        kept = read_pools(store, SELECTOR, later, WINDOWS, STALE_AFTER)
        scanned = read_pools_scan(store, SELECTOR, later, WINDOWS, STALE_AFTER)
        assert_same(kept, scanned)
        decide.same(kept, scanned, later)


def push(store: Store, now: float, pod: str, value: float, name: str = RUNNING) -> None:
    labels = (("deployment", "llama"), ("namespace", "llm"), ("pod", pod))
    store.append([Sample(name, labels, Kind.GAUGE, value)], now)


def test_a_window_start_passing_a_row_changes_the_mean_without_a_push() -> None:
    store = Store(retention=60.0, max_series=100)
    for t, value in ((0.0, 10.0), (2.0, 2.0), (4.0, 4.0)):
        push(store, t, "p0", value)
    [pool] = read_pools(store, SELECTOR, 4.0, (5.0,), STALE_AFTER, (RUNNING,))
    assert pool.pods["llm/p0"].running == 16.0 / 3
    [pool] = read_pools(store, SELECTOR, 5.5, (5.0,), STALE_AFTER, (RUNNING,))  # the row at 0 left
    assert pool.pods["llm/p0"].running == 3.0
    assert pool.pods["llm/p0"].age == 1.5


def test_a_pod_leaves_the_pool_when_its_series_go_stale_and_returns_with_a_push() -> None:
    store = Store(retention=60.0, max_series=100)
    push(store, 0.0, "p0", 1.0)
    push(store, 3.0, "p1", 2.0)
    [pool] = read_pools(store, SELECTOR, 6.0, (10.0,), STALE_AFTER, (RUNNING,))
    assert sorted(pool.pods) == ["llm/p1"] and pool.matched_series == 2 and pool.newest_age == 3.0
    assert pool.total("running") == 2.0
    push(store, 7.0, "p0", 5.0)
    [pool] = read_pools(store, SELECTOR, 7.0, (10.0,), STALE_AFTER, (RUNNING,))
    assert sorted(pool.pods) == ["llm/p0", "llm/p1"]
    assert pool.pods["llm/p0"].running == 3.0  # both rows of p0 are within the window
    assert pool.total("running") == 5.0


def test_a_read_costs_no_rescan_when_nothing_changed() -> None:
    store = Store(retention=60.0, max_series=100)
    for t in range(5):
        push(store, float(t), "p0", float(t))
    read_pools(store, SELECTOR, 4.0, (60.0,), STALE_AFTER, (RUNNING,))
    [view] = store._pool_views.values()
    versions = view.pods["llm/p0"].version
    read_pools(store, SELECTOR, 4.5, (60.0,), STALE_AFTER, (RUNNING,))
    assert view.pods["llm/p0"].version == versions  # the window and freshness still hold


def test_triggers_that_ask_alike_share_a_view_and_idle_views_let_go_of_their_series() -> None:
    store = Store(retention=60.0, max_series=100)
    push(store, 0.0, "p0", 1.0)
    read_pools(store, SELECTOR, 1.0, WINDOWS, STALE_AFTER, (RUNNING, WAITING))
    read_pools(store, SELECTOR, 1.0, WINDOWS, STALE_AFTER, (RUNNING, WAITING))
    [series] = store.series_named(RUNNING)
    assert len(series.views) == 1
    assert store.drop_idle_views(now=700.0, idle=600.0) == 1
    assert series.views == ()
    push(store, 701.0, "p0", 2.0)  # no view is kept up any more
    assert store._pool_views == {}


def test_totals_past_the_float_range_are_computed_as_a_scan_computes_them() -> None:
    store = Store(retention=60.0, max_series=100)
    push(store, 0.0, "p0", 1e308)
    push(store, 0.0, "p1", 1e308)
    [pool] = read_pools(store, SELECTOR, 1.0, (10.0,), STALE_AFTER, (RUNNING,))
    assert pool.pods["llm/p0"].running == 1e308
    try:
        total: float | str = pool.total("running")
    except OverflowError:
        total = "overflow"
    assert total == "overflow"  # what math.fsum over the pods says


def test_rows_a_sweep_drops_leave_the_windows_that_reach_past_the_retention() -> None:
    store = Store(retention=8.0, max_series=100)
    push(store, 0.0, "p0", 10.0)
    push(store, 4.0, "p0", 2.0)
    [pool] = read_pools(store, SELECTOR, 5.0, (10.0,), STALE_AFTER, (RUNNING,))
    assert pool.pods["llm/p0"].running == 6.0
    store.sweep(9.0)  # drops the row at 0: the series itself is still fresh
    [pool] = read_pools(store, SELECTOR, 9.0, (10.0,), STALE_AFTER, (RUNNING,))
    assert pool.pods["llm/p0"].running == 2.0
    assert_same([pool], read_pools_scan(store, SELECTOR, 9.0, (10.0,), STALE_AFTER, (RUNNING,)))


def test_a_pod_whose_figures_overflow_raises_as_a_scan_does_then_recovers() -> None:
    store = Store(retention=60.0, max_series=100)
    push(store, 0.0, "p0", 1.0, name=WAITING)
    push(store, 0.0, "p0", 1.7e308)  # two such rows in a window overflow math.fsum
    push(store, 1.0, "p0", 1.7e308)
    push(store, 1.0, "p0", 2.0, name=WAITING)
    for read in (read_pools, read_pools_scan):
        try:
            read(store, SELECTOR, 2.0, (10.0,), STALE_AFTER, (RUNNING, WAITING))
        except OverflowError as exc:
            assert "overflow" in str(exc)
        else:
            raise AssertionError(f"{read.__name__} answered past the float range")
    push(store, 12.0, "p0", 3.0)  # the huge rows have left the 10 s window
    push(store, 12.0, "p0", 4.0, name=WAITING)
    kept = read_pools(store, SELECTOR, 12.0, (10.0,), STALE_AFTER, (RUNNING, WAITING))
    assert_same(kept, read_pools_scan(store, SELECTOR, 12.0, (10.0,), STALE_AFTER, (RUNNING, WAITING)))
    assert kept[0].pods["llm/p0"].running == 3.0
