"""The store: series by name and labels, pods, caps, sweeping and memory that stays flat."""

from __future__ import annotations

import gc
import math
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.names import pod_of
from scaler.otlp import Histogram, Kind, Sample
from scaler.store import Store, StoreStats


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k.replace("__", "."), v) for k, v in values.items()))


def gauge(name: str, value: float, **label_values: str) -> Sample:
    return Sample(name, labels(**label_values), Kind.GAUGE, value)


def counter(name: str, value: float, **label_values: str) -> Sample:
    return Sample(name, labels(**label_values), Kind.COUNTER, value)


def values_of(store: Store, name: str) -> dict[tuple[tuple[str, str], ...], list[float]]:
    return {s.labels: s.column(0, -math.inf) for s in store.series_named(name)}


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retention"):
        Store(retention=0, max_series=10)


def test_append_groups_samples_into_series() -> None:
    store = Store(retention=60, max_series=100)
    assert store.append([gauge("a", 1, pod="p1"), gauge("a", 2, pod="p2"), gauge("b", 3, pod="p1")], now=10) == {}
    assert store.append([gauge("a", 4, pod="p1")], now=11) == {}
    assert len(store) == 3
    assert store.names() == ["a", "b"]
    assert values_of(store, "a") == {labels(pod="p1"): [1.0, 4.0], labels(pod="p2"): [2.0]}
    assert [s.pod for s in store.series_named("b")] == ["/p1"]
    assert list(store.series_named("missing")) == []
    assert store.generation == 2


def test_series_knows_its_pod_and_labels() -> None:
    store = Store(retention=60, max_series=100)
    store.append([gauge("a", 1, k8s__pod__name="vllm-0", k8s__namespace__name="ns", engine="0")], now=5)
    (series,) = store.series_named("a")
    assert series.pod == "ns/vllm-0"
    assert series.label_map == {"k8s.pod.name": "vllm-0", "k8s.namespace.name": "ns", "engine": "0"}
    assert store.pod_last_seen("ns/vllm-0") == 5
    assert store.pod_last_seen("ns/other") is None


def test_pod_last_seen_follows_the_newest_sample() -> None:
    store = Store(retention=60, max_series=100)
    store.append([gauge("a", 1, pod="p"), gauge("b", 1, pod="p")], now=5)
    store.append([gauge("b", 2, pod="p")], now=9)
    assert store.pod_last_seen("/p") == 9


def test_max_series_refuses_new_series_without_touching_existing_data() -> None:
    store = Store(retention=60, max_series=2)
    store.append([gauge("a", 1, pod="p1"), gauge("a", 2, pod="p2")], now=1)
    refused = store.append([gauge("a", 3, pod="p3"), gauge("a", 10, pod="p1"), gauge("b", 4, pod="p4")], now=2)
    assert refused == {"series_limit": 2}
    assert len(store) == 2
    assert values_of(store, "a") == {labels(pod="p1"): [1.0, 10.0], labels(pod="p2"): [2.0]}
    assert store.names() == ["a"]
    assert store.pod_last_seen("/p3") is None
    assert store.stats(now=2, stale_after=30) == StoreStats(series=2, pods=2, stale_pods=0, samples=3)


def test_a_freed_slot_can_be_reused_after_sweep() -> None:
    store = Store(retention=10, max_series=1)
    store.append([gauge("a", 1, pod="p1")], now=0)
    assert store.append([gauge("a", 2, pod="p2")], now=5) == {"series_limit": 1}
    assert store.sweep(now=20) == 1
    assert store.append([gauge("a", 3, pod="p2")], now=20) == {}
    assert values_of(store, "a") == {labels(pod="p2"): [3.0]}


def test_kind_change_replaces_the_series_without_counting_twice() -> None:
    store = Store(retention=60, max_series=1)
    store.append([gauge("a", 5, pod="p")], now=1)
    assert store.append([counter("a", 7, pod="p")], now=2) == {}
    assert len(store) == 1
    (series,) = store.series_named("a")
    assert series.kind is Kind.COUNTER
    assert series.column(0, -math.inf) == [7.0]
    assert store.stats(now=2, stale_after=30).pods == 1


def test_end_marker_ends_a_known_series_and_ignores_unknown_ones() -> None:
    store = Store(retention=60, max_series=10)
    store.append([gauge("a", 5, pod="p")], now=1)
    marker = Sample("a", labels(pod="p"), Kind.GAUGE, math.nan, no_value=True)
    unknown = Sample("a", labels(pod="q"), Kind.GAUGE, math.nan, no_value=True)
    assert store.append([marker, unknown], now=2) == {}
    assert len(store) == 1
    (series,) = store.series_named("a")
    assert series.ended is True
    assert series.column(0, -math.inf) == [5.0]


def test_counter_reset_through_the_store() -> None:
    store = Store(retention=60, max_series=10)
    for now, value in [(0, 100), (10, 150), (20, 30), (30, 80)]:
        store.append([counter("c", value, pod="p")], now=now)
    (series,) = store.series_named("c")
    assert series.increase(0, -math.inf) == (130.0, 30.0)  # +50, restart to 30 (+30), +50


def test_delta_samples_accumulate_through_the_store() -> None:
    store = Store(retention=60, max_series=10)
    for now in (0, 10, 20):
        store.append([Sample("d", labels(pod="p"), Kind.COUNTER, 5.0, delta=True)], now=now)
    (series,) = store.series_named("d")
    assert series.column(0, -math.inf) == [5.0, 10.0, 15.0]


def test_histogram_layout_change_through_the_store_keeps_one_series() -> None:
    store = Store(retention=60, max_series=10)
    h1 = Sample("h", (), Kind.HISTOGRAM, 3, histogram=Histogram(3, 1.0, (1.0,), (1, 2)))
    h2 = Sample("h", (), Kind.HISTOGRAM, 1, histogram=Histogram(1, 1.0, (1.0, 2.0), (0, 1, 0)))
    store.append([h1], now=0)
    store.append([h2], now=1)
    assert len(store) == 1
    (series,) = store.series_named("h")
    assert (series.width, series.sample_count()) == (5, 1)


def test_same_instant_append_replaces() -> None:
    store = Store(retention=60, max_series=10)
    store.append([gauge("a", 1, pod="p")], now=3)
    store.append([gauge("a", 2, pod="p")], now=3)
    assert values_of(store, "a") == {labels(pod="p"): [2.0]}


def test_appends_trim_by_retention() -> None:
    store = Store(retention=30, max_series=10)
    for now in range(0, 100, 10):
        store.append([gauge("a", now, pod="p")], now=now)
    assert values_of(store, "a") == {labels(pod="p"): [60.0, 70.0, 80.0, 90.0]}


def test_sweep_frees_old_series_and_their_pods() -> None:
    store = Store(retention=60, max_series=100)
    store.append([gauge("a", 1, pod="old"), gauge("b", 1, pod="old"), gauge("a", 1, pod="mixed")], now=0)
    store.append([gauge("b", 2, pod="mixed"), gauge("c", 3)], now=50)
    assert store.sweep(now=60) == 0  # exactly at the horizon: still kept
    assert store.sweep(now=100) == 3
    assert len(store) == 2
    assert store.names() == ["b", "c"]
    assert store.pod_last_seen("/old") is None
    assert store.pod_last_seen("/mixed") == 50
    assert store.stats(now=100, stale_after=30) == StoreStats(series=2, pods=1, stale_pods=1, samples=2)
    assert store.sweep(now=111) == 2
    assert len(store) == 0
    assert store.names() == []
    assert store.stats(now=111, stale_after=30) == StoreStats(0, 0, 0, 0)


def test_stats_counts_stale_pods_and_samples() -> None:
    store = Store(retention=120, max_series=100)
    store.append([gauge("a", 1, pod="p1"), gauge("a", 1, pod="p2"), gauge("a", 1)], now=0)
    store.append([gauge("a", 2, pod="p1")], now=40)
    stats = store.stats(now=45, stale_after=30)
    assert stats == StoreStats(series=3, pods=2, stale_pods=1, samples=4)
    assert store.stats(now=45, stale_after=50).stale_pods == 0
    assert store.stats(now=80, stale_after=30).stale_pods == 2


# -- memory ------------------------------------------------------------------------------------------

PODS_PER_WAVE = 1_000
WAVES = 10  # 10,000 pods in all


def _wave(wave: int) -> list[Sample]:
    out = []
    for i in range(PODS_PER_WAVE):
        pod = labels(k8s__pod__name=f"vllm-{wave}-{i}", k8s__namespace__name="llm")
        out.append(Sample("vllm:num_requests_running", pod, Kind.GAUGE, float(i % 7)))
        out.append(Sample("vllm:prompt_tokens", pod, Kind.COUNTER, float(i), start=float(wave)))
    return out


def test_memory_stays_flat_as_pods_come_and_go() -> None:
    """Each wave brings new pods and the sweep frees the previous wave's: memory must not creep."""
    store = Store(retention=60, max_series=100_000)
    measured: list[int] = []
    tracemalloc.start()
    try:
        for wave in range(WAVES):
            base = 100.0 * wave  # virtual time: the previous wave went quiet 90 s ago
            batch = _wave(wave)
            store.append(batch, now=base)
            store.append(batch, now=base + 10)
            del batch
            freed = store.sweep(now=base + 10)
            assert freed == (2 * PODS_PER_WAVE if wave else 0)
            stats = store.stats(now=base + 10, stale_after=30)
            assert stats == StoreStats(
                series=2 * PODS_PER_WAVE, pods=PODS_PER_WAVE, stale_pods=0, samples=4 * PODS_PER_WAVE
            )
            assert store.pod_last_seen(f"llm/vllm-{wave - 1}-0") is None
            gc.collect()
            measured.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    shown = [f"{m / 1e6:.2f} MB" for m in measured]
    first, last = measured[0], measured[-1]
    assert first > 2 * PODS_PER_WAVE * 200, shown  # the measurement sees the store at all (>= 200 B a series)
    assert last <= first * 1.3, shown
    # once the dicts have grown to hold two waves at a time, nothing grows any more
    assert max(measured[3:]) - min(measured[3:]) <= 0.02 * first, shown


# -- properties --------------------------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"), st.integers(0, 5), st.sampled_from(["a", "b", "c"]), st.sampled_from(["p", "q", ""])
        ),
        st.tuples(st.just("sweep"), st.integers(0, 40), st.just(""), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, database=None)
@given(_ops, st.integers(1, 6))
def test_bookkeeping_matches_the_series_held(ops: list[tuple[str, int, str, str]], max_series: int) -> None:
    store = Store(retention=20, max_series=max_series)
    trimmed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}  # when each series last dropped old rows
    now = 0.0
    for op, n, name, pod in ops:
        now += n
        if op == "append":
            extra = {"pod": pod} if pod else {}
            sample = gauge(name, n, **extra)
            store.append([sample], now=now)
            trimmed[(sample.name, sample.labels)] = now  # an append trims the series it touches
        else:
            store.sweep(now)
            trimmed = dict.fromkeys(trimmed, now)  # a sweep trims them all
        held = [s for name in store.names() for s in store.series_named(name)]
        assert len(store) == len(held) <= max_series
        assert all(s.has_data() for s in held)
        pods = {pod_of(s.label_map) for s in held} - {""}
        stats = store.stats(now, stale_after=5)
        assert stats.series == len(held)
        assert stats.pods == len(pods)
        assert stats.samples == sum(s.sample_count() for s in held)
        for s in held:
            times = list(s.times[s.head :])
            assert times == sorted(times)
            assert all(trimmed[(s.name, s.labels)] - 20 <= t <= now for t in times), (s.name, s.labels, times)


def test_end_markers_do_not_keep_a_pod_alive() -> None:
    store = Store(retention=120, max_series=10)
    labels = (("k8s.pod.name", "p"), ("k8s.namespace.name", "ns"))
    store.append([Sample("g", labels, Kind.GAUGE, 1.0)], 0.0)
    store.append([Sample("g", labels, Kind.GAUGE, math.nan, no_value=True)], 50.0)
    assert store.pod_last_seen("ns/p") == 0.0
    assert store.stats(50.0, stale_after=30.0).stale_pods == 1
