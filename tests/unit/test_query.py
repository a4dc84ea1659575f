"""Query evaluation: select, reduce each series over the window, aggregate; stale data is an error."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Histogram as OtlpHistogram,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler.errors import InsufficientData, StaleData
from scaler.expression import parse_query
from scaler.otlp import Histogram, Kind, Sample, decode_export_request
from scaler.query import OPERATIONS, QueryResult, evaluate_query, mean, reduce_over_time, select, total
from scaler.store import Store

STALE_AFTER = 15.0


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k.replace("__", "."), v) for k, v in values.items()))


def feed(store: Store, name: str, kind: Kind, points: list[tuple[float, float]], **label_values: str) -> None:
    for now, value in points:
        store.append([Sample(name, labels(**label_values), kind, value)], now=now)


def run(store: Store, text: str, operation: str = "last_one", window: float = 25.0, now: float = 30.0) -> QueryResult:
    result = evaluate_query(store, parse_query(text), operation, window, now, STALE_AFTER)
    assert result is not None
    return result


@pytest.fixture
def store() -> Store:
    """Two pods of a gauge, sampled every 10 s up to t=30, and a counter."""
    s = Store(retention=120, max_series=100)
    feed(s, "load", Kind.GAUGE, [(0, 1), (10, 3), (20, 5), (30, 7)], pod="a", app="x")
    feed(s, "load", Kind.GAUGE, [(0, 2), (10, 2), (20, 8), (30, 4)], pod="b", app="x")
    feed(s, "tokens", Kind.COUNTER, [(0, 100), (10, 160), (20, 220), (30, 280)], pod="a")
    return s


# -- operationOverTime, worked numbers (window 25 s at t=30: rows at 10, 20, 30) -------------------


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("last_one", 7 + 4),
        ("avg", (3 + 5 + 7) / 3 + (2 + 8 + 4) / 3),
        ("min", 3 + 2),
        ("max", 7 + 8),
        ("count", 3 + 3),
    ],
)
def test_operations_over_time_on_a_gauge(store: Store, operation: str, expected: float) -> None:
    assert run(store, "sum(load)", operation).value == pytest.approx(expected)


def test_rate_of_a_counter(store: Store) -> None:
    # rows at 10, 20, 30: (280 - 160) / 20 s
    assert run(store, "tokens", "rate").value == pytest.approx(6.0)


def test_rate_of_a_gauge_is_its_slope(store: Store) -> None:
    result = run(store, 'load{pod="a"}', "rate")
    assert result.value == pytest.approx((7 - 3) / 20)


def test_operations_list_is_what_kedify_offers() -> None:
    assert set(OPERATIONS) == {"last_one", "rate", "count", "avg", "min", "max"}


def test_rate_across_a_counter_reset() -> None:
    s = Store(retention=120, max_series=10)
    feed(s, "c", Kind.COUNTER, [(0, 50), (10, 90), (20, 10), (30, 40)])
    # 40 + 10 (restart from 0) + 30 = 80 over 30 s
    assert run(s, "c", "rate", window=60).value == pytest.approx(80 / 30)
    assert run(s, "c", "last_one", window=60).value == 40.0


def test_rate_of_delta_samples() -> None:
    s = Store(retention=120, max_series=10)
    for now in (0, 10, 20, 30):
        s.append([Sample("d", (), Kind.COUNTER, 5.0, delta=True)], now=now)
    assert run(s, "d", "rate", window=60).value == pytest.approx(15 / 30)


# -- aggregations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("sum", 11.0), ("avg", 5.5), ("min", 4.0), ("max", 7.0), ("count", 2.0)],
)
def test_aggregations_combine_series(store: Store, aggregation: str, expected: float) -> None:
    assert run(store, f"{aggregation}(load)").value == expected


def test_aggregation_after_reduction(store: Store) -> None:
    # max over time per series (7 and 8), then the average of the two
    assert run(store, "avg(load)", "max").value == 7.5


def test_result_lists_each_series(store: Store) -> None:
    result = run(store, 'load{app="x"}')
    assert sorted((v.pod, v.value, v.samples, v.age) for v in result.series) == [
        ("/a", 7.0, 4, 0.0),
        ("/b", 4.0, 4, 0.0),
    ]
    assert result.stale_series == 0
    assert result.newest_sample_age == 0.0


def test_matchers_select_series(store: Store) -> None:
    assert run(store, 'load{pod="b"}').value == 4.0
    assert run(store, 'load{pod=~"a|b"}').value == 11.0
    assert run(store, 'load{pod!="a"}').value == 4.0


# -- windows -----------------------------------------------------------------------------------------


def test_window_start_is_inclusive(store: Store) -> None:
    assert run(store, 'load{pod="a"}', "avg", window=20).value == pytest.approx(5.0)  # rows 10, 20, 30
    assert run(store, 'load{pod="a"}', "avg", window=19.9).value == pytest.approx(6.0)  # rows 20, 30
    assert run(store, 'load{pod="a"}', "count", window=19.9).value == 2.0
    assert run(store, 'load{pod="a"}', "min", window=100).value == 1.0  # every row


def test_window_bounds_rate(store: Store) -> None:
    assert run(store, "tokens", "rate", window=100).value == pytest.approx(180 / 30)
    assert run(store, "tokens", "rate", window=10).value == pytest.approx(6.0)


def test_last_one_ignores_the_window(store: Store) -> None:
    assert run(store, 'load{pod="a"}', "last_one", window=0.001, now=35).value == 7.0


def test_windows_end_at_each_series_newest_sample(store: Store) -> None:
    # 10 s after the last samples (at 30), a 5 s window still holds each series' newest row
    assert run(store, "load", "avg", window=5, now=40).value == 11.0
    assert run(store, "load", "avg", window=10, now=40).value == 12.0  # rows at 20 and 30: 6 + 6


def test_rate_needs_two_rows_in_the_window(store: Store) -> None:
    with pytest.raises(InsufficientData, match="rate"):
        run(store, "tokens", "rate", window=5, now=35)


# -- histograms --------------------------------------------------------------------------------------


def hist(count: float, total: float, buckets: tuple[float, ...]) -> Sample:
    return Sample(
        "latency_seconds",
        labels(pod="a"),
        Kind.HISTOGRAM,
        count,
        histogram=Histogram(count, total, (0.1, 1.0), buckets),
    )


@pytest.fixture
def hstore() -> Store:
    s = Store(retention=120, max_series=100)
    s.append([hist(10, 5.0, (2, 5, 3))], now=10)
    s.append([hist(30, 12.0, (8, 15, 7))], now=20)
    s.append([hist(40, 20.0, (10, 20, 10))], now=30)
    return s


def test_histogram_count_and_sum_addressing(hstore: Store) -> None:
    assert run(hstore, "latency_seconds_count").value == 40.0
    assert run(hstore, "latency_seconds_sum").value == 20.0
    assert run(hstore, "latency_seconds_count", "rate", window=25).value == pytest.approx((40 - 10) / 20)
    assert run(hstore, "latency_seconds_sum", "rate", window=15).value == pytest.approx((20 - 12) / 10)
    assert run(hstore, 'latency_seconds_count{pod="a"}', "max", window=15).value == 40.0


def test_histogram_is_not_found_under_its_bare_name(hstore: Store) -> None:
    assert evaluate_query(hstore, parse_query("latency_seconds"), "last_one", 60, 30, STALE_AFTER) is None
    assert evaluate_query(hstore, parse_query("latency_seconds_bucket"), "last_one", 60, 30, STALE_AFTER) is None


def test_select_reports_the_column(hstore: Store) -> None:
    series, column = select(hstore, parse_query("latency_seconds_sum").selector)
    assert (len(series), column) == (1, 1)
    series, column = select(hstore, parse_query("latency_seconds_count").selector)
    assert (len(series), column) == (1, 0)


def test_a_plain_metric_wins_over_a_histogram_suffix(hstore: Store) -> None:
    feed(hstore, "latency_seconds_count", Kind.GAUGE, [(30, 99)])
    assert run(hstore, "latency_seconds_count").value == 99.0


def test_histogram_without_sum_has_no_sum_value() -> None:
    s = Store(retention=120, max_series=10)
    s.append([Sample("h", (), Kind.HISTOGRAM, 3, histogram=Histogram(3, math.nan))], now=10)
    assert run(s, "h_count", now=10).value == 3.0
    with pytest.raises(InsufficientData):
        run(s, "h_sum", now=10)
    with pytest.raises(InsufficientData):
        run(s, "h_sum", "avg", now=10)


# -- staleness and missing data ----------------------------------------------------------------------


def test_stale_series_are_excluded(store: Store) -> None:
    feed(store, "load", Kind.GAUGE, [(40, 10)], pod="a", app="x")
    # at t=50, pod b (last sample at 30) is 20 s old: stale; pod a is 10 s old
    result = run(store, "sum(load)", now=50)
    assert result.value == 10.0
    assert result.stale_series == 1
    assert [v.pod for v in result.series] == ["/a"]
    assert result.newest_sample_age == 10.0


def test_freshness_limit_is_inclusive(store: Store) -> None:
    assert run(store, "sum(load)", now=30 + STALE_AFTER).value == 11.0


def test_all_stale_raises_naming_the_selector_and_age(store: Store) -> None:
    with pytest.raises(StaleData) as info:
        run(store, 'sum(load{app="x"})', now=47.5)
    message = str(info.value)
    assert 'sum(load{app="x"})' in message
    assert "17.5s ago" in message
    assert "2 series matched" in message
    assert not isinstance(info.value, InsufficientData)


def test_ended_series_is_stale() -> None:
    s = Store(retention=120, max_series=10)
    feed(s, "g", Kind.GAUGE, [(10, 3)], pod="p")
    s.append([Sample("g", labels(pod="p"), Kind.GAUGE, math.nan, no_value=True)], now=11)
    with pytest.raises(StaleData, match=r"last sample 2\.0s ago"):
        run(s, "g", now=12)


def test_rate_with_one_sample_is_insufficient() -> None:
    s = Store(retention=120, max_series=10)
    feed(s, "c", Kind.COUNTER, [(10, 5)])
    with pytest.raises(InsufficientData) as info:
        run(s, "c", "rate", now=12)
    assert "rate" in str(info.value)
    assert "sum(c)" in str(info.value)
    assert isinstance(info.value, StaleData)  # KEDA's fallback handles it like stale data


def test_rate_uses_series_that_have_two_samples() -> None:
    s = Store(retention=120, max_series=10)
    feed(s, "c", Kind.COUNTER, [(0, 0), (10, 50)], pod="old")
    feed(s, "c", Kind.COUNTER, [(10, 7)], pod="new")
    result = run(s, "c", "rate", window=60, now=10)
    assert result.value == 5.0
    assert sorted((v.pod, v.value) for v in result.series) == [("/new", None), ("/old", 5.0)]


def test_no_match_returns_none(store: Store) -> None:
    assert evaluate_query(store, parse_query("missing"), "last_one", 60, 30, STALE_AFTER) is None
    assert evaluate_query(store, parse_query('load{pod="zzz"}'), "last_one", 60, 30, STALE_AFTER) is None


def test_reduce_over_time_directly(store: Store) -> None:
    (series,) = [s for s in store.series_named("load") if s.pod == "/a"]
    assert reduce_over_time(series, 0, "last_one", 0) == 7.0
    assert reduce_over_time(series, 0, "avg", 15) == 6.0
    assert reduce_over_time(series, 0, "count", 31) == 0.0
    assert reduce_over_time(series, 0, "avg", 31) is None
    assert reduce_over_time(series, 0, "rate", 25) is None


# -- from OTLP to a value ----------------------------------------------------------------------------


def _pod_request(pod: str, running: int, tokens: int, latency_count: int) -> ExportMetricsServiceRequest:
    def kv(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(
                    attributes=[
                        kv("k8s.namespace.name", "ns"),
                        kv("k8s.deployment.name", "isvc-predictor"),
                        kv("k8s.pod.name", pod),
                    ]
                ),
                scope_metrics=[
                    ScopeMetrics(
                        metrics=[
                            Metric(
                                name="vllm.num_requests_running",
                                gauge=Gauge(data_points=[NumberDataPoint(as_int=running)]),
                            ),
                            Metric(
                                name="vllm:generation_tokens_total",
                                sum=Sum(
                                    aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE,
                                    is_monotonic=True,
                                    data_points=[NumberDataPoint(as_int=tokens)],
                                ),
                            ),
                            Metric(
                                name="vllm:e2e_request_latency_seconds",
                                histogram=OtlpHistogram(
                                    aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE,
                                    data_points=[
                                        HistogramDataPoint(
                                            count=latency_count,
                                            sum=latency_count * 0.5,
                                            explicit_bounds=[1.0],
                                            bucket_counts=[latency_count, 0],
                                        )
                                    ],
                                ),
                            ),
                        ]
                    )
                ],
            )
        ]
    )


def test_kserve_query_over_decoded_otlp() -> None:
    s = Store(retention=120, max_series=100)
    for now, (r0, r1) in [(0, (1, 2)), (5, (3, 4))]:
        for pod, running in (("p0", r0), ("p1", r1)):
            decoded = decode_export_request(_pod_request(pod, running, tokens=100 * (now + 1), latency_count=now))
            assert s.append(decoded.samples, now=now) == {}
    query = 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})'
    assert run(s, query, now=6).value == 7.0
    assert run(s, 'sum(vllm:generation_tokens{namespace="ns"})', "rate", now=6).value == pytest.approx(2 * 500 / 5)
    assert run(s, "sum(vllm:generation_tokens_total)", "rate", now=6).value == pytest.approx(200.0)
    assert run(s, "vllm:e2e_request_latency_seconds_count", "rate", now=6).value == pytest.approx(2.0)
    assert run(s, "vllm:e2e_request_latency_seconds_sum", now=6).value == pytest.approx(5.0)
    assert evaluate_query(s, parse_query(query.replace('"ns"', '"other"')), "last_one", 60, 6, STALE_AFTER) is None


def test_sums_past_the_float_range_are_infinite_not_an_error() -> None:
    """Three of the largest float: both fsum attempts used to raise OverflowError on ingest (a view update)."""
    largest = 1.7976931348623157e308
    assert total([largest] * 3) == math.inf
    assert total([-largest] * 3) == -math.inf
    assert mean([largest] * 3) == largest
    assert total([largest, -largest, largest]) == largest


aggregated = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(["p0", "p1", "p2", "p3"]), st.floats(allow_nan=False)),
        st.tuples(
            st.just("push"), st.sampled_from(["p0", "p1"]), st.sampled_from([0.1, 0.2, 0.3, -0.0, 1e-310, 1e300])
        ),
        st.tuples(st.just("wait"), st.just(""), st.floats(0.5, 8.0)),
        st.tuples(st.just("ask"), st.just(""), st.just(0.0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(aggregated, st.sampled_from(["sum", "avg", "min", "max", "count"]))
def test_a_view_keeps_the_aggregate_a_list_of_its_values_gives(script: list[tuple[str, str, float]], how: str) -> None:
    """The view's running sum is exact (math.fsum's answer, ±inf past the float range), min and max the
    same values, as values come and go; infinities pushed are left out of both."""
    store = Store(retention=20.0, max_series=100)
    query = parse_query(f"{how}(load)")
    now = 0.0

    def both() -> tuple[object, object]:
        answers: list[object] = []
        for maintained in (True, False):
            try:
                result = evaluate_query(store, query, "avg", 10.0, now, STALE_AFTER, maintained)
            except StaleData as exc:
                answers.append(type(exc).__name__)
            else:
                answers.append(None if result is None else result.value)
        return answers[0], answers[1]

    for action, pod, number in script:
        if action == "push":
            store.append([Sample("load", (("pod", pod),), Kind.GAUGE, number)], now)
        elif action == "wait":
            now += number
        else:
            kept, scanned = both()
            assert kept == scanned
    kept, scanned = both()
    assert kept == scanned


def test_min_and_max_follow_values_that_leave() -> None:
    store = Store(retention=60.0, max_series=100)
    for now, pod, value in ((0.0, "a", 1.0), (0.0, "b", 5.0), (1.0, "c", 3.0)):
        store.append([Sample("load", (("pod", pod),), Kind.GAUGE, value)], now)

    def ask(how: str, now: float) -> float:
        result = evaluate_query(store, parse_query(f"{how}(load)"), "last_one", 10.0, now, STALE_AFTER)
        assert result is not None
        return result.value

    assert (ask("min", 2.0), ask("max", 2.0), ask("sum", 2.0)) == (1.0, 5.0, 9.0)
    store.append([Sample("load", (("pod", "a"),), Kind.GAUGE, 7.0)], 3.0)  # a's old 1.0 leaves
    assert (ask("min", 3.0), ask("max", 3.0), ask("sum", 3.0)) == (3.0, 7.0, 15.0)
    assert (ask("min", 15.5), ask("max", 15.5), ask("count", 15.5)) == (3.0, 7.0, 2.0)  # b went stale at 15
