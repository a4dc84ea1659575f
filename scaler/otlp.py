"""Decoding OTLP metrics into plain samples: a pure function shared by the gRPC and HTTP receivers.

Resource attributes are merged into each point's labels (point attributes win). Points we cannot
store are counted by reason, so the receivers can report them through OTLP partial success.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from scaler.errors import DecodeError
from scaler.names import canonical_name

Labels = tuple[tuple[str, str], ...]

_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


class Kind(enum.Enum):
    GAUGE = "gauge"  # a level; also non-monotonic cumulative sums
    COUNTER = "counter"  # a monotonic cumulative sum
    HISTOGRAM = "histogram"  # count, sum and bucket counts, cumulative


@dataclass(frozen=True, slots=True)
class Histogram:
    count: float
    sum: float  # NaN when the producer left it out
    bounds: tuple[float, ...] = ()
    buckets: tuple[float, ...] = ()  # cumulative per-bucket counts (not Prometheus' `le` sums)


@dataclass(frozen=True, slots=True)
class Sample:
    """One decoded datapoint. `delta` samples are added to the series' running total by the store."""

    name: str
    labels: Labels
    kind: Kind
    value: float  # the number, or a histogram's count
    start: float = 0.0  # start time in seconds, 0 when unknown; a change means a counter reset
    delta: bool = False
    histogram: Histogram | None = None
    no_value: bool = False  # a staleness marker: the producer says this series has ended


@dataclass(slots=True)
class Decoded:
    samples: list[Sample] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> datapoints

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


def read_protobuf(body: bytes) -> ExportMetricsServiceRequest:
    """Parse a binary OTLP metrics request, raising DecodeError on anything unreadable."""
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"invalid OTLP protobuf payload: {exc}") from exc
    return request


def read_json(body: bytes) -> ExportMetricsServiceRequest:
    """Parse an OTLP/JSON metrics request (protobuf JSON mapping, unknown fields ignored)."""
    if not body.lstrip().startswith(b"{"):
        raise DecodeError("invalid OTLP JSON payload: the body must be a JSON object")
    request = ExportMetricsServiceRequest()
    try:
        json_format.Parse(body, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RuntimeError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"invalid OTLP JSON payload: {exc}") from exc
    return request


def decode_export_request(request: ExportMetricsServiceRequest) -> Decoded:
    """Turn an OTLP export request into samples and counts of refused points."""
    out = Decoded()
    for resource_metrics in request.resource_metrics:
        resource = attributes_of(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _decode_metric(metric, resource, out)
    return out


def attributes_of(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: _stringify(kv.value) for kv in attributes}


def _stringify(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "array_value":
        return "[" + ",".join(_stringify(v) for v in value.array_value.values) + "]"
    if which == "kvlist_value":
        return "{" + ",".join(f"{kv.key}={_stringify(kv.value)}" for kv in value.kvlist_value.values) + "}"
    return ""


def _labels(resource: dict[str, str], attributes: Sequence[KeyValue]) -> Labels:
    if not attributes:
        return tuple(sorted(resource.items()))
    merged = dict(resource)
    merged.update(attributes_of(attributes))
    return tuple(sorted(merged.items()))


def _decode_metric(metric: Metric, resource: dict[str, str], out: Decoded) -> None:
    which = metric.WhichOneof("data")
    name = canonical_name(metric.name)
    if which == "gauge":
        _decode_numbers(name, metric.gauge.data_points, Kind.GAUGE, False, resource, out)
    elif which == "sum":
        kind = Kind.COUNTER if metric.sum.is_monotonic else Kind.GAUGE
        delta = metric.sum.aggregation_temporality == _DELTA
        _decode_numbers(name, metric.sum.data_points, kind, delta, resource, out)
    elif which == "histogram":
        delta = metric.histogram.aggregation_temporality == _DELTA
        for point in metric.histogram.data_points:
            _decode_histogram(name, point, delta, resource, out)
    elif which == "exponential_histogram":
        delta = metric.exponential_histogram.aggregation_temporality == _DELTA
        for exp_point in metric.exponential_histogram.data_points:
            has_sum = exp_point.HasField("sum")
            histogram = Histogram(float(exp_point.count), exp_point.sum if has_sum else math.nan)
            labels = _labels(resource, exp_point.attributes)
            _add_histogram(name, labels, exp_point.flags, exp_point.start_time_unix_nano, histogram, delta, out)
    elif which == "summary":
        for summary_point in metric.summary.data_points:
            _decode_summary(name, summary_point, resource, out)
    elif which is not None:
        out.refused["unsupported_type"] += 1


def _decode_numbers(
    name: str,
    points: Sequence[NumberDataPoint],
    kind: Kind,
    delta: bool,
    resource: dict[str, str],
    out: Decoded,
) -> None:
    for point in points:
        labels = _labels(resource, point.attributes)
        if point.flags & _NO_RECORDED_VALUE:
            out.samples.append(Sample(name, labels, kind, math.nan, no_value=True))
            continue
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        if not math.isfinite(value):
            out.refused["non_finite"] += 1
            continue
        out.samples.append(Sample(name, labels, kind, value, point.start_time_unix_nano / 1e9, delta))


def _decode_histogram(
    name: str, point: HistogramDataPoint, delta: bool, resource: dict[str, str], out: Decoded
) -> None:
    bounds = tuple(point.explicit_bounds)
    buckets = tuple(float(c) for c in point.bucket_counts)
    if buckets and len(buckets) != len(bounds) + 1:
        out.refused["malformed_histogram"] += 1
        return
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(bounds):
        out.refused["malformed_histogram"] += 1
        return
    hist_sum = point.sum if point.HasField("sum") else math.nan
    histogram = Histogram(float(point.count), hist_sum, bounds, buckets)
    labels = _labels(resource, point.attributes)
    _add_histogram(name, labels, point.flags, point.start_time_unix_nano, histogram, delta, out)


def _add_histogram(
    name: str, labels: Labels, flags: int, start_ns: int, histogram: Histogram, delta: bool, out: Decoded
) -> None:
    if flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
    elif math.isinf(histogram.sum):
        out.refused["non_finite"] += 1
    else:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, histogram.count, start_ns / 1e9, delta, histogram))


def _decode_summary(name: str, point: SummaryDataPoint, resource: dict[str, str], out: Decoded) -> None:
    labels = _labels(resource, point.attributes)
    if point.flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
        return
    if not math.isfinite(point.sum):
        out.refused["non_finite"] += 1
        return
    start = point.start_time_unix_nano / 1e9
    out.samples.append(
        Sample(
            name, labels, Kind.HISTOGRAM, float(point.count), start, histogram=Histogram(float(point.count), point.sum)
        )
    )
    for quantile in point.quantile_values:
        if math.isfinite(quantile.value):
            q_labels = tuple(sorted({**dict(labels), "quantile": repr(quantile.quantile)}.items()))
            out.samples.append(Sample(name, q_labels, Kind.GAUGE, quantile.value))
