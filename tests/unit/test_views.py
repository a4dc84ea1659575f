"""Views maintained on ingest answer exactly what a scan of the store answers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.errors import StaleData
from scaler.expression import parse_query
from scaler.otlp import Kind, Sample
from scaler.query import OPERATIONS, QueryResult, evaluate_query
from scaler.store import Store

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


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from(QUERIES), st.sampled_from(OPERATIONS))
def test_a_view_answers_what_a_scan_answers(script: list[tuple[str, str, float]], query: str, operation: str) -> None:
    store = Store(retention=20.0, max_series=100)
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
            maintained = answer(store, query, operation, now, True)
            assert outcome(maintained) == outcome(answer(store, query, operation, now, False))
    final = answer(store, query, operation, now, True)
    assert outcome(final) == outcome(answer(store, query, operation, now, False))


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
