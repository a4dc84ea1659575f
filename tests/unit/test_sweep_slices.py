"""The sweep runs in slices, so housekeeping never holds the event loop for a whole pass."""

from __future__ import annotations

from scaler.otlp import Kind, Sample
from scaler.store import FREE_COST, Store


def sample(i: int, name: str = "m") -> Sample:
    return Sample(name, (("k8s.pod.name", f"p{i // 4}"), ("i", str(i % 4))), Kind.GAUGE, float(i))


def test_slices_free_what_a_whole_sweep_frees() -> None:
    sliced, whole = Store(retention=10.0, max_series=1000), Store(retention=10.0, max_series=1000)
    for store in (sliced, whole):
        store.append([sample(i) for i in range(100)] + [sample(i, "n") for i in range(50)], now=0.0)
        store.append([sample(i) for i in range(0, 100, 3)], now=8.0)
    steps = list(sliced.sweep_slices(now=15.0, size=7))
    assert max(steps) == -(-7 // FREE_COST)  # a slice frees fewer series than it would only trim
    assert len(steps) >= (34 + FREE_COST * (150 - 34)) // (7 + FREE_COST - 1)
    assert sum(steps) == whole.sweep(now=15.0) == 150 - 34
    assert len(sliced) == len(whole) == 34
    assert sliced.names() == whole.names() == ["m"]
    assert sliced.stats(15.0, 30.0) == whole.stats(15.0, 30.0)


def test_appends_between_slices_are_kept() -> None:
    store = Store(retention=10.0, max_series=1000)
    store.append([sample(i) for i in range(20)], now=0.0)
    slices = store.sweep_slices(now=15.0, size=2 * FREE_COST)
    assert next(slices) == 2  # freeing weighs FREE_COST visits
    store.append([sample(i) for i in range(20)] + [sample(i, "late") for i in range(3)], now=15.0)
    assert sum(slices) == 0  # the rest were refreshed before the sweep reached them
    assert len(store) == 20 - 2 + 2 + 3
    assert store.names() == ["late", "m"]


def test_a_series_replaced_between_slices_is_not_freed_by_the_pass_that_saw_the_old_one() -> None:
    store = Store(retention=10.0, max_series=1000)
    store.append([sample(i) for i in range(3)], now=0.0)
    slices = store.sweep_slices(now=15.0, size=FREE_COST)
    assert next(slices) == 1
    replaced = Sample("m", sample(2).labels, Kind.COUNTER, 5.0)  # another kind: a new series under the same labels
    store.append([replaced], now=15.0)
    assert sum(slices) == 1  # the second; the third's old series was replaced after the pass listed it
    [kept] = store.series_named("m")
    assert (kept.kind, kept.last(), len(store)) == (Kind.COUNTER, 5.0, 1)
