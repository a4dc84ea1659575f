"""The sweep runs in slices, so housekeeping never holds the event loop for a whole pass."""

from __future__ import annotations

from scaler.otlp import Kind, Sample
from scaler.store import Store


def sample(i: int, name: str = "m") -> Sample:
    return Sample(name, (("k8s.pod.name", f"p{i // 4}"), ("i", str(i % 4))), Kind.GAUGE, float(i))


def test_slices_free_what_a_whole_sweep_frees() -> None:
    sliced, whole = Store(retention=10.0, max_series=1000), Store(retention=10.0, max_series=1000)
    for store in (sliced, whole):
        store.append([sample(i) for i in range(100)] + [sample(i, "n") for i in range(50)], now=0.0)
        store.append([sample(i) for i in range(0, 100, 3)], now=8.0)
    steps = list(sliced.sweep_slices(now=15.0, size=7))
    assert len(steps) == 150 // 7 + 1
    assert sum(steps) == whole.sweep(now=15.0) == 150 - 34
    assert len(sliced) == len(whole) == 34
    assert sliced.names() == whole.names() == ["m"]
    assert sliced.stats(15.0, 30.0) == whole.stats(15.0, 30.0)


def test_appends_between_slices_are_kept() -> None:
    store = Store(retention=10.0, max_series=1000)
    store.append([sample(i) for i in range(20)], now=0.0)
    slices = store.sweep_slices(now=15.0, size=5)
    assert next(slices) == 5
    store.append([sample(i) for i in range(20)] + [sample(i, "late") for i in range(3)], now=15.0)
    assert sum(slices) == 0  # the rest were refreshed before the sweep reached them
    assert len(store) == 20 - 5 + 5 + 3
    assert store.names() == ["late", "m"]
