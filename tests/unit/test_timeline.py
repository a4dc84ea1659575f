"""The time column a pod's series share (scaler.series.Timeline): the same answers as a column each.

A store with `share_times` off keeps a time array per series, as every series did before; it is the
reference. Pushes carry any subset of a pod's series, end markers, repeated series, the same instant
again, a clock that steps back, restarts, late points and bucket-layout changes.
"""

from __future__ import annotations

import math
import sys
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.otlp import Decoded, Histogram, Kind, Sample
from scaler.series import Series
from scaler.signals import read_pools, read_pools_scan
from scaler.store import Store
from tests.unit.test_pool_view import KINDS, SELECTOR, STALE_AFTER, WINDOWS, Fleet, assert_same

PODS = ("a", "b")
NAMES = ("g", "c", "d", "h")  # a gauge, a cumulative counter, a delta counter, a histogram


def sample(pod: str, name: str, value: int, start: int, layout: int, end: bool) -> Sample:
    labels = (("k8s.namespace.name", "ns"), ("k8s.pod.name", pod))
    if name == "g":
        return Sample(name, labels, Kind.GAUGE, float(value), no_value=end)
    if name == "c":
        return Sample(name, labels, Kind.COUNTER, float(value), float(start), no_value=end)
    if name == "d":
        return Sample(name, labels, Kind.COUNTER, float(value), 0.0, True, no_value=end)
    bounds = (1.0, 2.0) if layout == 0 else (1.0, 2.0, 4.0)
    buckets = tuple(float(value + i) for i in range(len(bounds) + 1))
    hist = Histogram(float(value), value / 2, bounds, buckets)
    return Sample(name, labels, Kind.HISTOGRAM, float(value), float(start), histogram=hist, no_value=end)


Point = tuple[str, str, int, int, int, bool]
Step = tuple[str, float, list[Point]]
point = st.tuples(
    st.sampled_from(PODS),
    st.sampled_from(NAMES),
    st.integers(0, 50),  # value
    st.integers(0, 2),  # start time: a new one is a restart
    st.integers(0, 1),  # bucket layout
    st.integers(0, 9).map(lambda n: n == 0),  # an end marker now and then
)
step = st.one_of(
    st.tuples(st.just("push"), st.floats(-2.0, 12.0).map(lambda f: round(f, 1)), st.lists(point, max_size=10)),
    st.tuples(st.just("sweep"), st.just(0.0), st.just([])),
)


def readings(series: Series, now: float, retention: float) -> tuple[object, ...]:
    """What a reader can see of a series within retention (a store may hold older rows until it sweeps)."""
    horizon = now - retention
    start = series.first_index(horizon)
    rows = [
        (series.times[i], tuple(series.value_at(i, c) for c in range(series.width)))
        for i in range(start, len(series.times))
    ]
    windows = [series.delta_since(max(horizon, now - w)) for w in (1.0, 5.0, retention)]
    return (
        rows,
        series.has_data(),
        series.last_time() if series.has_data() else None,
        series.last() if series.has_data() else None,
        series.ended,
        series.resets,
        series.bounds,
        windows,
        series.mean_and_peak_from(start) if series.has_data() else None,
    )


def views_of(store: Store, now: float, retention: float) -> dict[tuple[str, object], tuple[object, ...]]:
    return {(name, s.labels): readings(s, now, retention) for name in store.names() for s in store.series_named(name)}


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(step, max_size=30), st.sampled_from((6.0, 20.0, 1e9)))
def test_shared_times_answer_what_a_column_each_answers(script: list[Step], retention: float) -> None:
    shared = Store(retention, max_series=100)
    own = Store(retention, max_series=100, share_times=False)
    now = 0.0
    for kind, dt, points in script:
        if kind == "sweep":
            assert shared.sweep(now) == own.sweep(now)
        else:
            now += dt
            samples = [sample(*p) for p in points]
            assert shared.append(samples, now) == own.append(samples, now)
        assert len(shared) == len(own)
        assert views_of(shared, now, retention) == views_of(own, now, retention)


def push(store: Store, now: float, names: tuple[str, ...] = NAMES, pod: str = "a", value: int = 1) -> None:
    store.append([sample(pod, name, value, 0, 0, False) for name in names], now)


def test_the_series_of_a_pod_share_one_time_column() -> None:
    store = Store(retention=60, max_series=100)
    for t in range(5):
        push(store, float(t), value=t)
        push(store, float(t), pod="b", value=t)
    a = [s for name in NAMES for s in store.series_named(name) if s.pod == "ns/a"]
    b = [s for name in NAMES for s in store.series_named(name) if s.pod == "ns/b"]
    assert len({id(s.times) for s in a}) == 1
    assert len({id(s.times) for s in b}) == 1
    assert a[0].times is not b[0].times
    assert list(a[0].times) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [s.sample_count() for s in a] == [5, 5, 5, 5]


def test_a_series_missing_from_a_push_goes_on_with_its_own_times() -> None:
    store = Store(retention=60, max_series=100)
    push(store, 0.0)
    push(store, 1.0, names=("g", "c", "h"))  # the delta counter had nothing new
    push(store, 2.0)
    (delta,) = store.series_named("d")
    (gauge,) = store.series_named("g")
    assert delta.timeline is None and gauge.timeline is not None
    assert list(delta.times) == [0.0, 2.0]
    assert list(gauge.times) == [0.0, 1.0, 2.0]
    assert delta.column(0, -math.inf) == [1.0, 2.0]  # delta points add up


def test_a_sweep_drops_the_old_rows_of_every_member_and_frees_them_together() -> None:
    store = Store(retention=10, max_series=100)
    for t in range(0, 30, 5):
        push(store, float(t))
    (gauge,) = store.series_named("g")
    assert list(gauge.times[gauge.head :]) == [15.0, 20.0, 25.0]
    assert store.sweep(32.0) == 0  # horizon 22: 15 and 20 go from every member at once
    assert [list(s.times[s.head :]) for name in NAMES for s in store.series_named(name)] == [[25.0]] * len(NAMES)
    assert [s.sample_count() for name in NAMES for s in store.series_named(name)] == [1] * len(NAMES)
    assert store.sweep(36.0) == len(NAMES)
    assert len(store) == 0
    assert store.pod_last_seen("ns/a") is None


POOL_KINDS = {name: kind for name, kind in KINDS.items() if kind in ("gauge", "counter", "histogram")}
CHOICES = {name: 3 if kind == "gauge" else 4 for name, kind in POOL_KINDS.items()}  # a gauge's reason; restarts

# -- pool views over shared times: a pod pushes all its metrics at once, as a real pod does ----------

pod_push = st.tuples(
    st.just("push"),
    st.sampled_from(PODS),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 3), st.floats(0, 50)),
        min_size=len(POOL_KINDS),
        max_size=len(POOL_KINDS),
    ),
)
pool_step = st.one_of(
    pod_push,
    pod_push,
    st.tuples(st.just("wait"), st.sampled_from((0.0, 1.0, 2.5, 7.0)), st.just([])),
    st.tuples(st.just("ask"), st.integers(-2, 0), st.just([])),
    st.tuples(st.just("sweep"), st.just(0), st.just([])),
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(pool_step, min_size=5, max_size=40), st.sampled_from((30.0, 8.0)))
def test_pool_views_over_shared_times_answer_what_a_scan_of_a_column_each_answers(
    script: list[tuple[str, object, list[tuple[bool, int, float]]]], retention: float
) -> None:
    shared = Store(retention, max_series=1000)
    own = Store(retention, max_series=1000, share_times=False)
    fleets = (Fleet(), Fleet())
    now = 0.0
    for kind, arg, metrics in script:
        if kind == "wait":
            now += float(arg)  # type: ignore[arg-type]
        elif kind == "sweep":
            assert shared.sweep(now) == own.sweep(now)
        elif kind == "ask":
            at = now + float(arg)  # type: ignore[arg-type]
            kept = read_pools(shared, SELECTOR, at, WINDOWS, STALE_AFTER)
            assert_same(kept, read_pools_scan(shared, SELECTOR, at, WINDOWS, STALE_AFTER))
            assert_same(kept, read_pools_scan(own, SELECTOR, at, WINDOWS, STALE_AFTER))
        else:
            for store, fleet in zip((shared, own), fleets, strict=True):
                store.append(
                    [
                        fleet.sample(POOL_KINDS[name], str(arg), "0", name, choice % CHOICES[name], number, now)
                        for name, (sent, choice, number) in zip(POOL_KINDS, metrics, strict=True)
                        if sent or choice  # most pushes carry most metrics; some miss a few
                    ],
                    now,
                )
    for later in (now, now + 2.0, now + 20.0):
        kept = read_pools(shared, SELECTOR, later, WINDOWS, STALE_AFTER)
        assert_same(kept, read_pools_scan(own, SELECTOR, later, WINDOWS, STALE_AFTER))


def test_a_sweep_packs_the_shared_times_with_room_for_the_next_push() -> None:
    store = Store(retention=60, max_series=100)
    for t in range(0, 100, 5):
        push(store, float(t))
    (gauge,) = store.series_named("g")
    store.sweep(99.0)
    empty = sys.getsizeof(array("d"))
    assert sys.getsizeof(gauge.times) == empty + 8 * (len(gauge.times) + 1)  # a push adds before it drops
    assert all(s.times is gauge.times for name in NAMES for s in store.series_named(name))
    push(store, 100.0)
    assert sys.getsizeof(gauge.times) == empty + 8 * len(gauge.times)
    assert list(gauge.times[gauge.head :]) == [float(t) for t in range(40, 101, 5)]


def test_a_request_is_stored_in_runs_that_end_where_a_pod_ends() -> None:
    store = Store(retention=60, max_series=1000)
    pods = [f"p{i}" for i in range(5)]
    request = [sample(pod, name, 1, 0, 0, False) for pod in pods for name in NAMES]  # 4 series a pod
    starts = list(range(0, len(request), len(NAMES)))  # where each pod began, as the decoder records it
    decoded = Decoded(request, resource_starts=starts)
    runs = list(decoded.runs(6))
    assert [len(run) for run in runs] == [8, 8, 4]  # 6 reaches into the second pod: the run takes all of it
    assert [s for run in runs for s in run] == request
    assert list(decoded.runs(100)) == [request]
    assert [len(run) for run in decoded.runs(1)] == [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]  # grows by `size` at most
    for t in range(3):
        pushed = Decoded([sample(pod, name, t, 0, 0, False) for pod in pods for name in NAMES], resource_starts=starts)
        for run in pushed.runs(6):
            store.append(run, float(t))
    assert all(s.timeline is not None for name in NAMES for s in store.series_named(name))
