"""The pool upkeep (Store.advance_views, scaler/app.py `_pool_upkeep`): between calls, time's changes to
pool views are made in slices, so the read that comes after a fleet's rows left a window has none to do."""

from __future__ import annotations

import math

from scaler.otlp import Kind, Sample
from scaler.signals import RUNNING, read_pools, read_pools_scan
from scaler.store import Store
from tests.unit.test_pool_view import SELECTOR, STALE_AFTER, assert_same

PODS = [f"p{i}" for i in range(6)]


def push_all(store: Store, now: float, value: float) -> None:
    store.append(
        [
            Sample(RUNNING, (("deployment", "llama"), ("namespace", "llm"), ("pod", pod)), Kind.GAUGE, value)
            for pod in PODS
        ],
        now,
    )


def test_time_changes_are_made_in_slices_and_leave_the_read_nothing_to_do() -> None:
    store = Store(retention=60.0, max_series=100)
    read_pools(store, SELECTOR, 0.0, (10.0,), STALE_AFTER, (RUNNING,))  # the view exists
    push_all(store, 0.0, 4.0)
    push_all(store, 3.0, 2.0)
    [view] = store._pool_views.values()
    assert 3.0 < store.next_due() <= 3.0 + STALE_AFTER  # never later than the pods' going stale at 8
    assert not view.due(4.0)  # (it may say due early, for entries an earlier push made outdated)
    assert view.due(8.5)
    slices = list(store.advance_views(8.5, budget=2))
    assert len(slices) >= math.ceil(len(PODS) / 2)  # six pods went stale: two a slice
    assert not view.due(8.5)
    assert store.next_due() > 8.5
    [kept] = read_pools(store, SELECTOR, 8.5, (10.0,), STALE_AFTER, (RUNNING,))
    assert_same([kept], read_pools_scan(store, SELECTOR, 8.5, (10.0,), STALE_AFTER, (RUNNING,)))
    assert kept.pods == {}  # all of them stale


def test_nothing_is_due_without_a_pool_view() -> None:
    store = Store(retention=60.0, max_series=100)
    push_all(store, 0.0, 1.0)
    assert store.next_due() == math.inf
    assert list(store.advance_views(100.0)) == []


def test_a_pod_whose_figures_overflow_leaves_the_upkeep_idle() -> None:
    """Its huge rows stay in the window for as long as a sender likes: the upkeep must not recompute it at
    every pass (it did, every millisecond); the reads retry it and answer by a scan meanwhile."""
    store = Store(retention=60.0, max_series=100)
    read_pools(store, SELECTOR, 0.0, (10.0,), STALE_AFTER, (RUNNING,))  # the view exists
    push_all(store, 0.0, 1.7e308)
    push_all(store, 1.0, 1.7e308)  # two such rows in a window overflow math.fsum
    [view] = store._pool_views.values()
    view.advance(1.5)
    assert view.broken
    assert store.next_due() > 1.5
    assert list(store.advance_views(1.6)) == []
    push_all(store, 12.0, 3.0)  # the huge rows have left the 10 s window: a read recovers the pods
    [kept] = read_pools(store, SELECTOR, 12.0, (10.0,), STALE_AFTER, (RUNNING,))
    assert not view.broken and kept.total("running") == 3.0 * len(PODS)
