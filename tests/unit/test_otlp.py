"""Decoding OTLP export requests into samples, built with the generated opentelemetry-proto classes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler.admission import Limits
from scaler.errors import DecodeError
from scaler.otlp import (
    STEP_POINTS,
    Decoded,
    Kind,
    LabelCache,
    Labels,
    PointLimits,
    Sample,
    count_datapoints,
    decode_export_request,
    decode_steps,
    read_json,
    read_protobuf,
)
from scaler.otlp import _canonical as _canonical  # the canonical-name cache

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
STRUCTURED = settings(FAST, max_examples=100)


# -- builders ----------------------------------------------------------------------------------------


def attrs(**values: Any) -> list[KeyValue]:
    """KeyValues from keyword arguments; `__` in a keyword stands for `.` (k8s__pod__name -> k8s.pod.name)."""
    out = []
    for key, value in values.items():
        out.append(KeyValue(key=key.replace("__", "."), value=any_value(value)))
    return out


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(
            kvlist_value=KeyValueList(values=[KeyValue(key=k, value=any_value(v)) for k, v in value.items()])
        )
    return AnyValue(string_value=str(value))


def request(*metrics: Metric, resource: list[KeyValue] | None = None) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(attributes=resource or []),
                scope_metrics=[ScopeMetrics(metrics=list(metrics))],
            )
        ]
    )


def decode(*metrics: Metric, resource: list[KeyValue] | None = None) -> Decoded:
    return decode_export_request(request(*metrics, resource=resource))


def only(decoded: Decoded) -> Sample:
    assert not decoded.refused, decoded.refused
    assert len(decoded.samples) == 1, decoded.samples
    return decoded.samples[0]


# -- numbers -----------------------------------------------------------------------------------------


def test_gauge_double_and_int_values() -> None:
    metric = Metric(
        name="vllm:num_requests_running",
        gauge=Gauge(
            data_points=[
                NumberDataPoint(as_double=3.5, attributes=attrs(engine="0")),
                NumberDataPoint(as_int=7, attributes=attrs(engine="1")),
            ]
        ),
    )
    decoded = decode(metric)
    assert decoded.refused_total == 0
    assert [(s.name, s.labels, s.kind, s.value, s.delta) for s in decoded.samples] == [
        ("vllm:num_requests_running", (("engine", "0"),), Kind.GAUGE, 3.5, False),
        ("vllm:num_requests_running", (("engine", "1"),), Kind.GAUGE, 7.0, False),
    ]
    assert isinstance(decoded.samples[1].value, float)


def test_name_is_canonicalised_at_ingest() -> None:
    metric = Metric(name="vllm.prompt_tokens_total", gauge=Gauge(data_points=[NumberDataPoint(as_int=1)]))
    assert only(decode(metric)).name == "vllm:prompt_tokens"


def test_negative_values_are_kept() -> None:
    metric = Metric(name="g", gauge=Gauge(data_points=[NumberDataPoint(as_double=-2.25), NumberDataPoint(as_int=-9)]))
    decoded = decode(metric)
    assert [s.value for s in decoded.samples] == [-2.25, -9.0]
    assert decoded.refused_total == 0


def test_monotonic_cumulative_sum_is_a_counter_with_its_start_time() -> None:
    metric = Metric(
        name="vllm:prompt_tokens_total",
        sum=Sum(
            aggregation_temporality=CUMULATIVE,
            is_monotonic=True,
            data_points=[NumberDataPoint(as_int=1200, start_time_unix_nano=1_700_000_000_500_000_000)],
        ),
    )
    sample = only(decode(metric))
    assert sample.kind is Kind.COUNTER
    assert sample.name == "vllm:prompt_tokens"
    assert sample.value == 1200.0
    assert sample.start == pytest.approx(1_700_000_000.5)
    assert sample.delta is False
    assert sample.histogram is None


def test_non_monotonic_cumulative_sum_is_a_gauge() -> None:
    metric = Metric(
        name="updown",
        sum=Sum(aggregation_temporality=CUMULATIVE, is_monotonic=False, data_points=[NumberDataPoint(as_double=-4.0)]),
    )
    sample = only(decode(metric))
    assert (sample.kind, sample.value, sample.delta) == (Kind.GAUGE, -4.0, False)


@pytest.mark.parametrize(("monotonic", "kind"), [(True, Kind.COUNTER), (False, Kind.GAUGE)])
def test_delta_sums_are_marked_delta(monotonic: bool, kind: Kind) -> None:
    metric = Metric(
        name="d",
        sum=Sum(aggregation_temporality=DELTA, is_monotonic=monotonic, data_points=[NumberDataPoint(as_int=5)]),
    )
    sample = only(decode(metric))
    assert (sample.kind, sample.value, sample.delta) == (kind, 5.0, True)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_and_counted(bad: float) -> None:
    metric = Metric(
        name="g",
        gauge=Gauge(data_points=[NumberDataPoint(as_double=bad), NumberDataPoint(as_double=1.0)]),
    )
    decoded = decode(metric)
    assert decoded.refused == {"non_finite": 1}
    assert decoded.refused_total == 1
    assert [s.value for s in decoded.samples] == [1.0]


def test_a_number_point_with_no_value_is_refused_not_read_as_zero() -> None:
    """OTLP's value is a oneof: neither member set is no number (and not a no-recorded-value marker)."""
    metric = Metric(
        name="g",
        gauge=Gauge(
            data_points=[NumberDataPoint(attributes=attrs(engine="0")), NumberDataPoint(as_int=0), NumberDataPoint()]
        ),
    )
    decoded = decode(metric)
    assert decoded.refused == {"missing_value": 2}
    assert [s.value for s in decoded.samples] == [0.0]  # an explicit 0 is a 0


def test_a_name_far_over_the_limit_is_refused_without_filling_the_name_cache() -> None:
    huge = "x" * 10_000
    before = _canonical.cache_info()
    refused = decode_export_request(
        request(Metric(name=huge, gauge=Gauge(data_points=[NumberDataPoint(as_int=1)]))),
        limits=PointLimits(max_name_length=253),
    )
    assert refused.refused == {"label_too_long": 1} and not refused.samples
    after = _canonical.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # never looked up, so never kept
    kept = decode_export_request(  # within _total of the limit: canonicalised, then judged
        request(Metric(name="y" * 253 + "_total", sum=Sum(is_monotonic=True, data_points=[NumberDataPoint(as_int=1)]))),
        limits=PointLimits(max_name_length=253),
    )
    assert [s.name for s in kept.samples] == ["y" * 253]


def test_non_finite_counter_is_refused() -> None:
    metric = Metric(
        name="c",
        sum=Sum(
            aggregation_temporality=CUMULATIVE, is_monotonic=True, data_points=[NumberDataPoint(as_double=math.inf)]
        ),
    )
    decoded = decode(metric)
    assert decoded.samples == []
    assert decoded.refused == {"non_finite": 1}


def test_no_recorded_value_flag_gives_a_marker_sample() -> None:
    metric = Metric(
        name="g",
        gauge=Gauge(data_points=[NumberDataPoint(as_double=math.nan, flags=NO_VALUE, attributes=attrs(pod="p"))]),
    )
    sample = only(decode(metric))
    assert sample.no_value is True
    assert sample.labels == (("pod", "p"),)
    assert sample.kind is Kind.GAUGE
    assert math.isnan(sample.value)


def test_no_recorded_value_on_a_counter_keeps_the_kind() -> None:
    metric = Metric(
        name="c",
        sum=Sum(
            aggregation_temporality=CUMULATIVE,
            is_monotonic=True,
            data_points=[NumberDataPoint(as_int=3, flags=NO_VALUE)],
        ),
    )
    sample = only(decode(metric))
    assert (sample.kind, sample.no_value) == (Kind.COUNTER, True)


def test_metric_without_data_yields_nothing() -> None:
    decoded = decode(Metric(name="empty"))
    assert decoded.samples == []
    assert decoded.refused_total == 0


# -- histograms and summaries ------------------------------------------------------------------------


def test_histogram_keeps_count_sum_bounds_and_buckets() -> None:
    metric = Metric(
        name="vllm:e2e_request_latency_seconds",
        histogram=Histogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[
                HistogramDataPoint(
                    count=10,
                    sum=12.5,
                    explicit_bounds=[0.5, 1.0, 2.5],
                    bucket_counts=[2, 3, 4, 1],
                    start_time_unix_nano=2_000_000_000,
                )
            ],
        ),
    )
    sample = only(decode(metric))
    assert sample.kind is Kind.HISTOGRAM
    assert sample.value == 10.0
    assert sample.start == 2.0
    assert sample.delta is False
    assert sample.histogram is not None
    assert sample.histogram.count == 10.0
    assert sample.histogram.sum == 12.5
    assert sample.histogram.bounds == (0.5, 1.0, 2.5)
    assert sample.histogram.buckets == (2.0, 3.0, 4.0, 1.0)


def test_histogram_without_sum_reads_nan_sum() -> None:
    metric = Metric(
        name="h",
        histogram=Histogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[HistogramDataPoint(count=4, explicit_bounds=[1.0], bucket_counts=[1, 3])],
        ),
    )
    sample = only(decode(metric))
    assert sample.histogram is not None
    assert sample.histogram.count == 4.0
    assert math.isnan(sample.histogram.sum)


def test_delta_histogram_is_marked_delta() -> None:
    metric = Metric(
        name="h",
        histogram=Histogram(
            aggregation_temporality=DELTA,
            data_points=[HistogramDataPoint(count=2, sum=1.0, explicit_bounds=[1.0], bucket_counts=[1, 1])],
        ),
    )
    assert only(decode(metric)).delta is True


@pytest.mark.parametrize(
    ("bounds", "buckets"),
    [
        ([1.0, 2.0], [1, 2]),  # one bucket too few
        ([1.0, 2.0], [1, 2, 3, 4]),  # one bucket too many
        ([2.0, 1.0], [1, 2, 3]),  # bounds out of order
        ([1.0, math.inf], [1, 2, 3]),  # an infinite bound
        ([math.nan], [1, 2]),  # a NaN bound
    ],
)
def test_malformed_histogram_is_refused(bounds: list[float], buckets: list[int]) -> None:
    metric = Metric(
        name="h",
        histogram=Histogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[
                HistogramDataPoint(count=sum(buckets), sum=1.0, explicit_bounds=bounds, bucket_counts=buckets),
                HistogramDataPoint(count=1, sum=1.0, explicit_bounds=[1.0], bucket_counts=[0, 1]),
            ],
        ),
    )
    decoded = decode(metric)
    assert decoded.refused == {"malformed_histogram": 1}
    assert len(decoded.samples) == 1
    assert decoded.samples[0].histogram is not None
    assert decoded.samples[0].histogram.bounds == (1.0,)


def test_histogram_with_infinite_sum_is_refused() -> None:
    metric = Metric(
        name="h",
        histogram=Histogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[HistogramDataPoint(count=1, sum=math.inf, explicit_bounds=[1.0], bucket_counts=[0, 1])],
        ),
    )
    decoded = decode(metric)
    assert decoded.samples == []
    assert decoded.refused == {"non_finite": 1}


def test_histogram_no_recorded_value_gives_a_marker() -> None:
    metric = Metric(
        name="h",
        histogram=Histogram(aggregation_temporality=CUMULATIVE, data_points=[HistogramDataPoint(flags=NO_VALUE)]),
    )
    sample = only(decode(metric))
    assert (sample.kind, sample.no_value, sample.histogram) == (Kind.HISTOGRAM, True, None)


def test_exponential_histogram_keeps_count_and_sum() -> None:
    metric = Metric(
        name="eh",
        exponential_histogram=ExponentialHistogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[
                ExponentialHistogramDataPoint(
                    count=6,
                    sum=9.0,
                    scale=2,
                    zero_count=1,
                    positive=ExponentialHistogramDataPoint.Buckets(offset=0, bucket_counts=[2, 3]),
                    attributes=attrs(model="m"),
                )
            ],
        ),
    )
    sample = only(decode(metric))
    assert sample.kind is Kind.HISTOGRAM
    assert sample.value == 6.0
    assert sample.labels == (("model", "m"),)
    assert sample.histogram is not None
    assert (sample.histogram.count, sample.histogram.sum) == (6.0, 9.0)
    assert (sample.histogram.bounds, sample.histogram.buckets) == ((), ())


def test_exponential_histogram_without_sum_and_with_delta() -> None:
    metric = Metric(
        name="eh",
        exponential_histogram=ExponentialHistogram(
            aggregation_temporality=DELTA, data_points=[ExponentialHistogramDataPoint(count=3)]
        ),
    )
    sample = only(decode(metric))
    assert sample.delta is True
    assert sample.histogram is not None
    assert math.isnan(sample.histogram.sum)


def test_exponential_histogram_infinite_sum_refused_and_no_value_marker() -> None:
    metric = Metric(
        name="eh",
        exponential_histogram=ExponentialHistogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[
                ExponentialHistogramDataPoint(count=1, sum=-math.inf),
                ExponentialHistogramDataPoint(flags=NO_VALUE),
            ],
        ),
    )
    decoded = decode(metric)
    assert decoded.refused == {"non_finite": 1}
    assert [(s.kind, s.no_value) for s in decoded.samples] == [(Kind.HISTOGRAM, True)]


def test_summary_gives_count_sum_and_quantile_gauges() -> None:
    metric = Metric(
        name="rpc_latency",
        summary=Summary(
            data_points=[
                SummaryDataPoint(
                    count=20,
                    sum=4.0,
                    start_time_unix_nano=3_000_000_000,
                    attributes=attrs(pod="p"),
                    quantile_values=[
                        SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.1),
                        SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.8),
                        SummaryDataPoint.ValueAtQuantile(quantile=0.9, value=math.nan),  # refused, and said so
                    ],
                )
            ]
        ),
    )
    decoded = decode(metric)
    assert decoded.refused == {"non_finite": 1}
    head, *quantiles = decoded.samples
    assert (head.name, head.kind, head.value, head.start, head.labels) == (
        "rpc_latency",
        Kind.HISTOGRAM,
        20.0,
        3.0,
        (("pod", "p"),),
    )
    assert head.histogram is not None
    assert (head.histogram.count, head.histogram.sum, head.histogram.buckets) == (20.0, 4.0, ())
    assert [(q.kind, q.labels, q.value) for q in quantiles] == [
        (Kind.GAUGE, (("pod", "p"), ("quantile", "0.5")), 0.1),
        (Kind.GAUGE, (("pod", "p"), ("quantile", "0.99")), 0.8),
    ]


def test_summary_with_non_finite_sum_is_refused_and_no_value_is_a_marker() -> None:
    metric = Metric(
        name="s",
        summary=Summary(
            data_points=[
                SummaryDataPoint(count=1, sum=math.nan),
                SummaryDataPoint(flags=NO_VALUE, attributes=attrs(pod="q")),
            ]
        ),
    )
    decoded = decode(metric)
    assert decoded.refused == {"non_finite": 1}
    assert [(s.kind, s.no_value, s.labels) for s in decoded.samples] == [(Kind.HISTOGRAM, True, (("pod", "q"),))]


def test_summary_quantile_label_replaces_a_quantile_attribute() -> None:
    metric = Metric(
        name="s",
        summary=Summary(
            data_points=[
                SummaryDataPoint(
                    count=2,
                    sum=1.0,
                    attributes=attrs(quantile="attr", pod="p"),
                    quantile_values=[SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.3)],
                )
            ]
        ),
    )
    decoded = decode(metric)
    assert [s.labels for s in decoded.samples] == [
        (("pod", "p"), ("quantile", "attr")),
        (("pod", "p"), ("quantile", "0.5")),
    ]


# -- labels ------------------------------------------------------------------------------------------


def test_resource_attributes_merge_with_point_attributes_winning() -> None:
    metric = Metric(
        name="g",
        gauge=Gauge(data_points=[NumberDataPoint(as_int=1, attributes=attrs(engine="0", zone="point"))]),
    )
    resource = attrs(k8s__pod__name="vllm-0", k8s__namespace__name="ns", zone="resource")
    sample = only(decode(metric, resource=resource))
    assert sample.labels == (
        ("engine", "0"),
        ("k8s.namespace.name", "ns"),
        ("k8s.pod.name", "vllm-0"),
        ("zone", "point"),
    )


def test_resource_attributes_alone_are_the_labels() -> None:
    metric = Metric(name="g", gauge=Gauge(data_points=[NumberDataPoint(as_int=1)]))
    sample = only(decode(metric, resource=attrs(b="2", a="1")))
    assert sample.labels == (("a", "1"), ("b", "2"))


def test_attribute_values_are_stringified() -> None:
    resource = attrs(
        s="text",
        t=True,
        f=False,
        i=-42,
        d=0.25,
        raw=b"\x01\xff",
        arr=["x", 1, True],
        kv={"k": "v", "n": 2},
    )
    resource.append(KeyValue(key="empty", value=AnyValue()))
    metric = Metric(name="g", gauge=Gauge(data_points=[NumberDataPoint(as_int=1)]))
    assert dict(only(decode(metric, resource=resource)).labels) == {
        "s": "text",
        "t": "true",
        "f": "false",
        "i": "-42",
        "d": "0.25",
        "raw": "01ff",
        "arr": "[x,1,true]",
        "kv": "{k=v,n=2}",
        "empty": "",
    }


def test_each_resource_keeps_its_own_attributes() -> None:
    metric = Metric(name="g", gauge=Gauge(data_points=[NumberDataPoint(as_int=1)]))
    req = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(attributes=attrs(pod="a")), scope_metrics=[ScopeMetrics(metrics=[metric])]
            ),
            ResourceMetrics(
                resource=Resource(attributes=attrs(pod="b")), scope_metrics=[ScopeMetrics(metrics=[metric])]
            ),
        ]
    )
    decoded = decode_export_request(req)
    assert [s.labels for s in decoded.samples] == [(("pod", "a"),), (("pod", "b"),)]


# -- reading bytes -----------------------------------------------------------------------------------


def _sample_request() -> ExportMetricsServiceRequest:
    return request(
        Metric(name="vllm:num_requests_waiting", gauge=Gauge(data_points=[NumberDataPoint(as_double=2.0)])),
        resource=attrs(pod="p0"),
    )


def test_read_protobuf_reads_a_serialized_request() -> None:
    parsed = read_protobuf(_sample_request().SerializeToString())
    assert parsed == _sample_request()
    sample = only(decode_export_request(parsed))
    assert (sample.name, sample.value, sample.labels) == ("vllm:num_requests_waiting", 2.0, (("pod", "p0"),))


def test_read_json_reads_the_otlp_json_mapping() -> None:
    body = json_format.MessageToJson(_sample_request()).encode()
    assert b"resourceMetrics" in body
    parsed = read_json(body)
    assert parsed == _sample_request()


def test_read_json_ignores_unknown_fields_and_takes_string_int64() -> None:
    body = json.dumps(
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "vllm.num_requests_running",
                                    "futureField": 1,
                                    "gauge": {"dataPoints": [{"asInt": "12", "startTimeUnixNano": "1000000000"}]},
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    ).encode()
    sample = only(decode_export_request(read_json(body)))
    assert (sample.name, sample.value, sample.start) == ("vllm:num_requests_running", 12.0, 1.0)


@pytest.mark.parametrize(
    "body",
    [b"\x00", b"\xff\xff\xff", b"\x0a\x05abc", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"not protobuf"],
)
def test_read_protobuf_garbage_raises_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="invalid OTLP protobuf payload"):
        read_protobuf(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"null",
        b"1",
        b"\xff\xfe",
        b'{"resourceMetrics": 5}',
        b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [{"asInt": "x"}]}}]}]}]}',
    ],
)
def test_read_json_garbage_raises_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="invalid OTLP JSON payload"):
        read_json(body)


def test_decode_error_is_invalid_input() -> None:
    with pytest.raises(DecodeError) as info:
        read_protobuf(b"\x00")
    assert (info.value.grpc_code, info.value.http_status) == ("INVALID_ARGUMENT", 400)


# -- properties --------------------------------------------------------------------------------------


def _check_decoded(decoded: Decoded) -> None:
    for sample in decoded.samples:
        assert isinstance(sample.name, str)
        keys = [k for k, _ in sample.labels]
        assert keys == sorted(set(keys))
        if sample.no_value:
            assert math.isnan(sample.value)
            continue
        assert math.isfinite(sample.value)
        if sample.histogram is not None:
            assert not math.isinf(sample.histogram.sum)
            if sample.histogram.buckets:
                assert len(sample.histogram.buckets) == len(sample.histogram.bounds) + 1
    assert all(count > 0 for count in decoded.refused.values())


@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_to_read_protobuf(body: bytes) -> None:
    try:
        parsed = read_protobuf(body)
    except DecodeError:
        return
    assert isinstance(parsed, ExportMetricsServiceRequest)
    _check_decoded(decode_export_request(parsed))


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_to_read_json(text: str) -> None:
    try:
        parsed = read_json(text.encode("utf-8", "surrogatepass"))
    except DecodeError:
        return
    _check_decoded(decode_export_request(parsed))


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_to_read_json(body: bytes) -> None:
    try:
        parsed = read_json(body)
    except DecodeError:
        return
    _check_decoded(decode_export_request(parsed))


_OTLP_KEYS = [
    "resourceMetrics",
    "resource",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "bytesValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "scopeMetrics",
    "metrics",
    "name",
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    "dataPoints",
    "asDouble",
    "asInt",
    "flags",
    "isMonotonic",
    "aggregationTemporality",
    "startTimeUnixNano",
    "count",
    "explicitBounds",
    "bucketCounts",
    "quantileValues",
    "quantile",
    "positive",
    "offset",
]
_json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.sampled_from(["NaN", "1"])
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_OTLP_KEYS), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # st.recursive, now and then
@STRUCTURED
@given(st.dictionaries(st.sampled_from(_OTLP_KEYS), _json_value, max_size=3))
def test_otlp_shaped_json_is_a_request_or_a_decode_error(document: dict[str, Any]) -> None:
    try:
        parsed = read_json(json.dumps(document).encode())
    except DecodeError:
        return
    _check_decoded(decode_export_request(parsed))


# Structured requests: every kind of metric with any values, flags, bounds and attributes.

_scalar_value = st.one_of(
    st.builds(AnyValue, string_value=st.text(max_size=5)),
    st.builds(AnyValue, bool_value=st.booleans()),
    st.builds(AnyValue, int_value=st.integers(-(2**63), 2**63 - 1)),
    st.builds(AnyValue, double_value=st.floats()),
    st.builds(AnyValue, bytes_value=st.binary(max_size=4)),
    st.just(AnyValue()),
)
_any_value = _scalar_value | st.builds(
    lambda vs, kvs: (
        AnyValue(
            array_value=ArrayValue(values=vs),
        )
        if kvs is None
        else AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
    ),
    st.lists(_scalar_value, max_size=2),
    st.none() | st.lists(st.tuples(st.text(max_size=2), _scalar_value), max_size=2),
)
_attributes = st.lists(
    st.builds(
        KeyValue, key=st.sampled_from(["pod", "k8s.pod.name", "namespace", "engine", "quantile", "x"]), value=_any_value
    ),
    max_size=3,
)
_u64 = st.integers(0, 2**64 - 1)
_flags = st.sampled_from([0, 0, 1, 2, 3])
_temporality = st.sampled_from([0, 1, 2])
_number_point = st.one_of(
    st.builds(NumberDataPoint, as_double=st.floats(), attributes=_attributes, flags=_flags, start_time_unix_nano=_u64),
    st.builds(
        NumberDataPoint,
        as_int=st.integers(-(2**63), 2**63 - 1),
        attributes=_attributes,
        flags=_flags,
        start_time_unix_nano=_u64,
    ),
    st.builds(NumberDataPoint, attributes=_attributes),
)


@st.composite
def _histogram_point(draw: st.DrawFn) -> HistogramDataPoint:
    bounds = draw(st.lists(st.floats(), max_size=4))
    if draw(st.booleans()):
        bounds = sorted(b for b in bounds if math.isfinite(b))
    n = len(bounds) + 1 if draw(st.booleans()) else draw(st.integers(0, 6))
    point = HistogramDataPoint(
        count=draw(_u64),
        explicit_bounds=bounds,
        bucket_counts=draw(st.lists(_u64, min_size=n, max_size=n)),
        attributes=draw(_attributes),
        flags=draw(_flags),
        start_time_unix_nano=draw(_u64),
    )
    if draw(st.booleans()):
        point.sum = draw(st.floats())
    return point


@st.composite
def _exp_point(draw: st.DrawFn) -> ExponentialHistogramDataPoint:
    point = ExponentialHistogramDataPoint(
        count=draw(_u64), scale=draw(st.integers(-10, 20)), attributes=draw(_attributes), flags=draw(_flags)
    )
    if draw(st.booleans()):
        point.sum = draw(st.floats())
    return point


_summary_point = st.builds(
    SummaryDataPoint,
    count=_u64,
    sum=st.floats(),
    attributes=_attributes,
    flags=_flags,
    quantile_values=st.lists(
        st.builds(SummaryDataPoint.ValueAtQuantile, quantile=st.floats(), value=st.floats()), max_size=3
    ),
)
_names = st.sampled_from(["vllm.x_total", "vllm:gpu_cache_usage_perc", "y_created", "", "h"]) | st.text(max_size=6)
_metric = st.one_of(
    st.builds(lambda n, ps: Metric(name=n, gauge=Gauge(data_points=ps)), _names, st.lists(_number_point, max_size=3)),
    st.builds(
        lambda n, ps, t, m: Metric(name=n, sum=Sum(data_points=ps, aggregation_temporality=t, is_monotonic=m)),
        _names,
        st.lists(_number_point, max_size=3),
        _temporality,
        st.booleans(),
    ),
    st.builds(
        lambda n, ps, t: Metric(name=n, histogram=Histogram(data_points=ps, aggregation_temporality=t)),
        _names,
        st.lists(_histogram_point(), max_size=3),
        _temporality,
    ),
    st.builds(
        lambda n, ps, t: Metric(
            name=n, exponential_histogram=ExponentialHistogram(data_points=ps, aggregation_temporality=t)
        ),
        _names,
        st.lists(_exp_point(), max_size=3),
        _temporality,
    ),
    st.builds(
        lambda n, ps: Metric(name=n, summary=Summary(data_points=ps)), _names, st.lists(_summary_point, max_size=3)
    ),
    st.builds(Metric, name=_names),
)
_request = st.builds(
    lambda groups: ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(resource=Resource(attributes=res), scope_metrics=[ScopeMetrics(metrics=ms)])
            for res, ms in groups
        ]
    ),
    st.lists(st.tuples(_attributes, st.lists(_metric, max_size=3)), max_size=2),
)


def _expected_outputs(req: ExportMetricsServiceRequest) -> int:
    """Samples plus refused points: one per point, plus a gauge per finite quantile of a stored summary point."""
    total = 0
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                which = metric.WhichOneof("data")
                if which is None:
                    continue
                points = getattr(metric, which).data_points
                total += len(points)
                if which == "summary":
                    for p in points:
                        if not p.flags & 1 and math.isfinite(p.sum):
                            total += len(p.quantile_values)  # a gauge each, or a refusal each
    return total


@STRUCTURED
@given(_request)
def test_decoding_any_parsed_request_never_raises(req: ExportMetricsServiceRequest) -> None:
    parsed = read_protobuf(req.SerializeToString())
    expected = _expected_outputs(parsed)  # before decoding, which consumes the request
    decoded = decode_export_request(parsed)
    _check_decoded(decoded)
    assert len(decoded.samples) + decoded.refused_total == expected
    assert set(decoded.refused) <= {"non_finite", "malformed_histogram", "negative_delta", "missing_value"}


def _outcome(decoded: Decoded) -> tuple[object, ...]:
    """What a decode gave, comparable with NaN equal to itself."""

    def same(value: object) -> object:
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    samples = [
        (s.name, s.labels, s.kind, same(s.value), s.start, s.delta, s.no_value)
        + (
            (same(s.histogram.count), same(s.histogram.sum), s.histogram.bounds, s.histogram.buckets)
            if s.histogram
            else ()
        )
        for s in decoded.samples
    ]
    return samples, dict(decoded.refused), decoded.datapoints, decoded.ended


class _FewLabels:
    """A judge that refuses label sets of more than two labels, and counts what it is asked."""

    def __init__(self) -> None:
        self.asked: list[Labels] = []

    def refuse_labels(self, labels: Labels) -> str:
        self.asked.append(labels)
        return "too_many_labels" if len(labels) > 2 else ""


@STRUCTURED
@given(_request, _request)
def test_a_cache_warmed_by_other_requests_changes_no_decode(
    earlier: ExportMetricsServiceRequest, req: ExportMetricsServiceRequest
) -> None:
    """The label cache keys a point by what is left of it once its values are cleared: whatever it holds
    (from this request or any other, judged or not), decoding gives what decoding without it gives."""
    body = req.SerializeToString()
    limits = PointLimits(max_buckets=2, max_attributes=2, judge=_FewLabels(), max_name_length=4)
    cold = decode_export_request(read_protobuf(body), limits=limits)
    cache = LabelCache()
    for warm in (earlier.SerializeToString(), body, body):
        decode_export_request(read_protobuf(warm), cache, limits)
    assert _outcome(decode_export_request(read_protobuf(body), cache, limits)) == _outcome(cold)


@STRUCTURED
@given(_request)
def test_decoding_counts_datapoints_as_the_request_limit_does(req: ExportMetricsServiceRequest) -> None:
    body = req.SerializeToString()
    for limits in (PointLimits(), PointLimits(max_buckets=1, max_attributes=1, judge=Limits(max_labels=1))):
        assert decode_export_request(read_protobuf(body), limits=limits).datapoints == count_datapoints(
            read_protobuf(body)
        )


@STRUCTURED
@given(_request)
def test_a_refused_name_refuses_exactly_what_its_metric_would_give(req: ExportMetricsServiceRequest) -> None:
    """Refused metrics go through the per-kind decoders, kept gauges and sums through the inlined loop: the
    two must agree on every point."""
    body = req.SerializeToString()
    kept = decode_export_request(read_protobuf(body))
    refused = decode_export_request(read_protobuf(body), limits=PointLimits(max_name_length=-1))
    assert not refused.samples and refused.datapoints == kept.datapoints
    assert refused.refused.pop("label_too_long", 0) == len(kept.samples)
    assert refused.refused == kept.refused


def test_a_label_set_is_judged_once_then_found_in_the_cache() -> None:
    judge = _FewLabels()
    limits = PointLimits(judge=judge)
    cache = LabelCache()
    small = [NumberDataPoint(as_double=float(i), attributes=attrs(pod="p", engine=str(i))) for i in range(3)]
    wide = NumberDataPoint(as_double=1.0, attributes=attrs(pod="p", engine="9", model="m"))
    for tick in range(3):
        points = [NumberDataPoint(as_double=float(tick), time_unix_nano=tick, attributes=p.attributes) for p in small]
        wide.time_unix_nano = tick
        decoded = decode_export_request(
            request(Metric(name="g", gauge=Gauge(data_points=[*points, wide]))), cache, limits
        )
        assert [s.labels for s in decoded.samples] == [(("engine", str(i)), ("pod", "p")) for i in range(3)]
        assert decoded.refused == {"too_many_labels": 1}
    assert len(judge.asked) == 3 + 3  # three stored sets once; the refused one, never cached, at every request


def test_a_metric_name_over_the_length_limit_refuses_each_of_its_points() -> None:
    points = [NumberDataPoint(as_double=1.0, attributes=attrs(engine=str(i))) for i in range(3)]
    decoded = decode_export_request(
        request(Metric(name="x" * 9, gauge=Gauge(data_points=points))), limits=PointLimits(max_name_length=8)
    )
    assert not decoded.samples and decoded.refused == {"label_too_long": 3} and decoded.datapoints == 3


def test_a_metric_larger_than_a_step_decodes_in_steps_to_the_same_samples() -> None:
    points = [NumberDataPoint(as_int=i, attributes=attrs(engine=str(i))) for i in range(3 * STEP_POINTS + 1)]
    body = request(Metric(name="g", gauge=Gauge(data_points=points))).SerializeToString()
    out = Decoded()
    steps = list(decode_steps(read_protobuf(body), LabelCache().reader(), PointLimits(), out))
    assert len(steps) >= 4
    assert [s.value for s in out.samples] == [float(i) for i in range(3 * STEP_POINTS + 1)]
    assert _outcome(out) == _outcome(decode_export_request(read_protobuf(body)))


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1", b"null", b"  [ {} ]"])
def test_json_that_is_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(DecodeError, match="JSON object"):
        read_json(body)


def test_label_sets_of_different_pods_share_the_pairs_they_have_in_common() -> None:
    cache = LabelCache()
    decoded = [
        decode_export_request(
            request(
                Metric(
                    name="g", gauge=Gauge(data_points=[NumberDataPoint(as_double=1.0, attributes=attrs(engine="0"))])
                ),
                resource=attrs(k8s__pod__name=pod, k8s__namespace__name="ns"),
            ),
            cache,
        )
        for pod in ("a", "b", "c")
    ]
    [a], [b], [c] = (d.samples for d in decoded)
    assert a.labels == (("engine", "0"), ("k8s.namespace.name", "ns"), ("k8s.pod.name", "a"))
    assert a.labels[0] is b.labels[0] is c.labels[0]  # the first kept set's pair serves the later ones
    assert a.labels[1] is b.labels[1] is c.labels[1]  # resource pairs too
    assert b.labels[2] is not c.labels[2]
    cache._room(cache.max_bytes)  # full: the cache starts over, and forgets the pairs with the rest
    assert cache._pairs == {}


def test_decoding_in_steps_tells_where_the_resource_being_decoded_began() -> None:
    """A receiver that stores a request in runs cuts them there, so that a run holds whole pods."""
    points = [NumberDataPoint(as_double=1.0, attributes=attrs(engine=str(i))) for i in range(3)]
    pods = [request(Metric(name="g", gauge=Gauge(data_points=points)), resource=attrs(k8s__pod__name=p)) for p in "ab"]
    body = ExportMetricsServiceRequest(
        resource_metrics=[*pods[0].resource_metrics, *pods[1].resource_metrics]
    ).SerializeToString()
    out = Decoded()
    starts = [
        out.resource_starts[-1] for _ in decode_steps(read_protobuf(body), LabelCache().reader(), PointLimits(), out)
    ]
    assert len(out.samples) == 6
    assert out.resource_starts[-1] == 3  # the second pod's samples begin after the first pod's three
    assert set(starts) <= {0, 3}
    assert out.resource_starts == [0, 3]
