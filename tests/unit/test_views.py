"""Views maintained on ingest answer exactly what a scan of the store answers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.errors import StaleData
from scaler.expression import parse_query
from scaler.otlp import Histogram, Kind, Sample
from scaler.query import OPERATIONS, Basis, QueryResult, evaluate_query
from scaler.store import Store
from scaler.views import ExactSum

QUERIES = ("sum(load)", 'max(load{pod=~"p[01]"})', "avg(load)", "count(load)", 'min(load{pod!="p2"})')
STALE_AFTER = 5.0

steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(["p0", "p1", "p2", "p3"]), st.floats(-50, 50)),
        st.tuples(st.just("end"), st.sampled_from(["p0", "p1", "p2", "p3"]), st.just(0.0)),
        st.tuples(st.just("wait"), st.just(""), st.floats(0.1, 8.0)),
        st.tuples(st.just("ask"), st.just(""), st.just(0.0)),
        st.tuples(st.just("sweep"), st.just(""), st.just(0.0)),
    ),
    max_size=40,
)


def outcome(result: QueryResult | None | Exception) -> object:
    if result is None or isinstance(result, Exception):
        return type(result).__name__
    return round(result.value, 9), result.stale_series, len(result.items)


def answer(store: Store, text: str, operation: str, now: float, maintained: bool) -> QueryResult | None | Exception:
    try:
        return evaluate_query(store, parse_query(text), operation, 10.0, now, STALE_AFTER, maintained)
    except StaleData as exc:  # InsufficientData included
        return exc


def play(store: Store, script: list[tuple[str, str, float]]) -> Iterator[float]:
    """Carry out the script on the store; yield the time at each "ask", and once more at the end."""
    now = 0.0
    for action, pod, number in script:
        if action == "push":
            store.append([Sample("load", (("pod", pod),), Kind.GAUGE, number)], now)
        elif action == "end":
            store.append([Sample("load", (("pod", pod),), Kind.GAUGE, math.nan, no_value=True)], now)
        elif action == "wait":
            now += number
        elif action == "sweep":
            store.sweep(now)
        else:
            yield now
    yield now


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from(QUERIES), st.sampled_from(OPERATIONS))
def test_a_view_answers_what_a_scan_answers(script: list[tuple[str, str, float]], query: str, operation: str) -> None:
    store = Store(retention=20.0, max_series=100)
    for now in play(store, script):
        maintained = answer(store, query, operation, now, True)
        assert outcome(maintained) == outcome(answer(store, query, operation, now, False))


def test_views_are_dropped_when_idle_and_release_their_series() -> None:
    store = Store(retention=60.0, max_series=10)
    store.append([Sample("load", (("pod", "p0"),), Kind.GAUGE, 1.0)], 0.0)
    result = evaluate_query(store, parse_query("sum(load)"), "last_one", 10.0, 1.0, STALE_AFTER)
    assert result is not None and result.value == 1.0
    [series] = store.series_named("load")
    assert len(series.views) == 1
    assert store.drop_idle_views(now=700.0, idle=600.0) == 1
    assert series.views == ()


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op != "rate"])  # rate needs two rows
def test_a_view_made_after_the_data_sees_the_stale_series_first(operation: str) -> None:
    store = Store(retention=60.0, max_series=10)
    store.append([Sample("load", (("pod", "b"),), Kind.GAUGE, 4.0)], 30.0)
    store.append([Sample("load", (("pod", "a"),), Kind.GAUGE, 10.0)], 40.0)
    result = evaluate_query(store, parse_query("sum(load)"), operation, 10.0, 50.0, STALE_AFTER + 10)
    assert result is not None and result.stale_series == 1 and len(result.items) == 1


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from(QUERIES), st.sampled_from(OPERATIONS))
def test_an_answer_whose_basis_holds_is_the_answer_again(
    script: list[tuple[str, str, float]], query: str, operation: str
) -> None:
    """The soundness an open StreamIsActive relies on to skip a re-check (scaler.streams)."""
    store = Store(retention=20.0, max_series=100)
    last = None
    for now in play(store, script):
        held = last is not None and last[0].holds(now)
        result = answer(store, query, operation, now, True)
        if held:
            assert last is not None and outcome(result) == last[1]
        basis = result.basis if isinstance(result, QueryResult) else None
        last = None if basis is None else (basis, outcome(result))


def basis_of(store: Store, text: str, now: float) -> Basis:
    result = evaluate_query(store, parse_query(text), "last_one", 10.0, now, STALE_AFTER)
    assert result is not None and result.basis is not None
    return result.basis


def push(store: Store, pod: str, value: float, now: float, name: str = "load") -> None:
    store.append([Sample(name, (("pod", pod),), Kind.GAUGE, value)], now)


def test_a_basis_holds_through_pushes_that_change_nothing_it_answers() -> None:
    store = Store(retention=60.0, max_series=10)
    push(store, "p0", 1.0, 0.0)
    push(store, "p2", 7.0, 0.0)
    basis = basis_of(store, 'sum(load{pod="p0"})', 0.5)
    push(store, "p0", 1.0, 1.0)  # the same value again
    push(store, "p2", 8.0, 1.0)  # a series the selector does not match
    push(store, "p0", 1.0, 1.0, name="other")  # another metric
    assert basis.holds(1.5)
    assert not basis.holds(STALE_AFTER)  # p0's sample of time 0 goes stale then, whatever came since


def expire(store: Store, now: float) -> None:
    with contextlib.suppress(StaleData):  # the only series went stale
        evaluate_query(store, parse_query("sum(load)"), "last_one", 10.0, now, STALE_AFTER)


@pytest.mark.parametrize(
    "change",
    [
        lambda store: push(store, "p0", 2.0, 1.0),  # a new value
        lambda store: push(store, "p1", 1.0, 1.0),  # a series joins
        lambda store: store.append([Sample("load", (("pod", "p0"),), Kind.GAUGE, math.nan, no_value=True)], 1.0),
        lambda store: store.drop_idle_views(now=700.0, idle=600.0),  # the view gets no more updates
        lambda store: store.sweep(100.0),  # the series leaves the store
        lambda store: expire(store, 9.0),
    ],
    ids=["new value", "series joins", "end marker", "view dropped", "series swept", "series expired"],
)
def test_a_basis_ends_with_any_change_to_what_it_answers(change: Callable[[Store], object]) -> None:
    store = Store(retention=60.0, max_series=10)
    push(store, "p0", 1.0, 0.0)
    basis = basis_of(store, "sum(load)", 0.5)
    assert basis.holds(0.5)
    change(store)
    assert not basis.holds(0.5)


def test_a_histogram_selector_basis_ends_when_a_plain_series_takes_the_name() -> None:
    """`resolve` prefers a plain series named `load_count` to a histogram's `_count` column."""
    store = Store(retention=60.0, max_series=10)
    point = Sample("load", (("pod", "p0"),), Kind.HISTOGRAM, 3.0, histogram=Histogram(3.0, 6.0))
    store.append([point], 0.0)
    basis = basis_of(store, "sum(load_count)", 0.5)
    push(store, "p0", 1.0, 1.0, name="load_count")
    assert not basis.holds(1.0)


def test_a_view_s_version_moves_when_a_series_it_holds_leaves_and_only_then() -> None:
    store = Store(retention=60.0, max_series=10)
    push(store, "p0", 1.0, 0.0)
    basis = basis_of(store, "sum(load)", 0.5)
    view = basis.view
    [series] = store.series_named("load")
    version = view.version
    view.detach(series)
    assert view.version > version
    version = view.version
    view.detach(series)  # no longer held: nothing changed
    assert view.version == version


def test_a_series_back_from_stale_ends_a_basis() -> None:
    store = Store(retention=60.0, max_series=10)
    push(store, "p0", 1.0, 0.0)
    push(store, "p1", 2.0, 4.0)
    basis = basis_of(store, "sum(load)", 6.0)  # p0 went stale at 5
    assert basis.holds(6.0)
    push(store, "p0", 1.0, 7.0)  # the same value as before it went stale: it counts again
    assert not basis.holds(7.0)


def test_a_fresh_series_without_a_value_yet_that_goes_stale_and_comes_back_ends_a_basis() -> None:
    store = Store(retention=60.0, max_series=10)
    store.append([Sample("hits", (("pod", "p0"),), Kind.COUNTER, 1.0)], 0.0)  # rate needs two samples
    store.append([Sample("hits", (("pod", "p1"),), Kind.COUNTER, 1.0)], 4.0)
    store.append([Sample("hits", (("pod", "p1"),), Kind.COUNTER, 3.0)], 4.5)
    result = evaluate_query(store, parse_query("sum(hits)"), "rate", 5.0, 6.0, STALE_AFTER)
    assert result is not None and result.basis is not None and len(result.items) == 1  # p0 is stale
    store.append([Sample("hits", (("pod", "p0"),), Kind.COUNTER, 1.0)], 7.0)  # back, no rate in 5 s
    assert not result.basis.holds(7.0)


def test_a_repeated_nan_leaves_a_basis_standing() -> None:
    store = Store(retention=60.0, max_series=10)
    push(store, "p0", 1.0, 0.0)
    push(store, "p1", math.nan, 0.0)
    basis = basis_of(store, "sum(load)", 0.5)
    push(store, "p1", math.nan, 1.0)
    assert basis.holds(1.0)


def test_exact_sum_counts_terms_it_cannot_hold_and_recovers_when_they_leave() -> None:
    total = ExactSum(limit=1e200)
    total.add(1.0, 1)
    for odd in (math.inf, 1e300, 1e200):  # not finite, over the limit, at the limit
        total.add(odd, 1)
        total.add(odd, 1)
        total.add(odd, -1)
        assert total.value() is None, odd  # one of them is still in
        total.add(odd, -1)
        assert total.value() == 1.0, odd


def test_exact_sum_past_the_float_range_is_infinite_with_its_sign() -> None:
    total = ExactSum()
    total.add(1.7e308, 1)
    total.add(1.7e308, 1)
    assert total.value() == math.inf
    assert total.value(2) == 1.7e308  # the exact sum, divided, is back in range
    negative = ExactSum()
    negative.add(-1.7e308, 1)
    negative.add(-1.7e308, 1)
    assert negative.value() == -math.inf


def test_a_view_s_mean_of_values_whose_sum_overflows_is_the_exact_mean() -> None:
    store = Store(retention=60.0, max_series=10)
    push(store, "p0", 1.7e308, 0.0)
    push(store, "p1", 1.7e308, 0.0)
    for maintained in (True, False):
        result = evaluate_query(store, parse_query("avg(load)"), "last_one", 10.0, 0.5, STALE_AFTER, maintained)
        assert result is not None and result.value == 1.7e308, maintained
