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
from functools import lru_cache
from typing import Any

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
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler.errors import DecodeError
from scaler.names import canonical_name

Labels = tuple[tuple[str, str], ...]

_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
# Fields that change at every export, cleared before a point's remains key the label cache.
_TIMES = ("time_unix_nano", "start_time_unix_nano")
_NUMBER_VARYING = {
    "as_double": (*_TIMES, "as_double"),
    "as_int": (*_TIMES, "as_int"),
    None: _TIMES,
}
_HISTOGRAM_VARYING = (*_TIMES, "count", "sum", "bucket_counts", "min", "max")
_EXP_HISTOGRAM_VARYING = (*_TIMES, "count", "sum", "zero_count", "positive", "negative", "min", "max")
_SUMMARY_VARYING = (*_TIMES, "count", "sum", "quantile_values")
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_HISTOGRAM_TYPES = frozenset({"histogram", "exponential_histogram", "summary"})  # keep their names whole


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


def decode_export_request(request: ExportMetricsServiceRequest, cache: LabelCache | None = None) -> Decoded:
    """Turn an OTLP export request into samples and counts of refused points.

    The request is consumed: each point's fields are cleared once read, so that what remains (its
    attributes) serializes into a cache key. A long-lived `cache` lets label sets, which collectors
    resend every interval, be built once instead of once per point.
    """
    cache = cache if cache is not None else LabelCache()
    out = Decoded()
    for resource_metrics in request.resource_metrics:
        resource = cache.resource(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _decode_metric(metric, resource, out)
    cache.trim()
    return out


class ResourceLabels:
    """One resource's attributes and the label sets of the points under it, keyed by their attributes."""

    __slots__ = ("attributes", "plain", "_by_key", "_count")

    def __init__(self, attributes: dict[str, str], count: list[int] | None = None) -> None:
        self._count = count if count is not None else [0]  # shared with the cache: entries made
        self.attributes = attributes
        self.plain: Labels = tuple(sorted(attributes.items()))
        self._by_key: dict[bytes, Labels] = {}

    def labels_of(self, point: Any, varying: tuple[str, ...]) -> Labels:
        """The merged labels of a point whose values have been read; clears its `varying` fields first.

        The key is what remains of the point: its attributes, plus anything rarer (exemplars) that
        only costs a cache miss. Labels always come from the attributes themselves.
        """
        if not point.attributes:
            return self.plain
        for name in varying:
            point.ClearField(name)
        key = point.SerializeToString()
        labels = self._by_key.get(key)
        if labels is None:
            merged = dict(self.attributes)
            merged.update(attributes_of(point.attributes))
            labels = self._by_key[key] = tuple(sorted(merged.items()))
            self._count[0] += 1
        return labels

    def __len__(self) -> int:
        return len(self._by_key) + 1


class LabelCache:
    """Label sets by resource, bounded: past `limit` entries it starts over."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self._resources: dict[bytes, ResourceLabels] = {}
        self._count = [0]  # label sets held, kept as they are made so trimming costs nothing

    def resource(self, resource: Resource) -> ResourceLabels:
        key = resource.SerializeToString()
        found = self._resources.get(key)
        if found is None:
            found = self._resources[key] = ResourceLabels(attributes_of(resource.attributes), self._count)
            self._count[0] += 1
        return found

    def trim(self) -> None:
        if self._count[0] > self.limit:
            self._resources.clear()
            self._count[0] = 0


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


def _decode_metric(metric: Metric, resource: ResourceLabels, out: Decoded) -> None:
    which = metric.WhichOneof("data")
    name = _canonical(metric.name, which in _HISTOGRAM_TYPES)
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
            flags, start = exp_point.flags, exp_point.start_time_unix_nano
            labels = resource.labels_of(exp_point, _EXP_HISTOGRAM_VARYING)
            _add_histogram(name, labels, flags, start, histogram, delta, out)
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
    resource: ResourceLabels,
    out: Decoded,
) -> None:
    for point in points:
        flags, start = point.flags, point.start_time_unix_nano
        which = point.WhichOneof("value")
        value = point.as_double if which == "as_double" else float(point.as_int)
        labels = resource.labels_of(point, _NUMBER_VARYING[which])
        if flags & _NO_RECORDED_VALUE:
            out.samples.append(Sample(name, labels, kind, math.nan, no_value=True))
        elif not math.isfinite(value):
            out.refused["non_finite"] += 1
        else:
            out.samples.append(Sample(name, labels, kind, value, start / 1e9, delta))


def _decode_histogram(
    name: str, point: HistogramDataPoint, delta: bool, resource: ResourceLabels, out: Decoded
) -> None:
    bounds = _bounds(tuple(point.explicit_bounds))
    buckets = tuple(map(float, point.bucket_counts))
    if bounds is None or (buckets and len(buckets) != len(bounds) + 1):
        out.refused["malformed_histogram"] += 1
        return
    hist_sum = point.sum if point.HasField("sum") else math.nan
    histogram = Histogram(float(point.count), hist_sum, bounds, buckets)
    flags, start = point.flags, point.start_time_unix_nano
    _add_histogram(name, resource.labels_of(point, _HISTOGRAM_VARYING), flags, start, histogram, delta, out)


@lru_cache(maxsize=4096)
def _canonical(name: str, histogram: bool) -> str:
    return canonical_name(name, histogram)


@lru_cache(maxsize=1024)
def _bounds(bounds: tuple[float, ...]) -> tuple[float, ...] | None:
    """Bounds if finite and ascending (checked once per distinct layout), else None."""
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(bounds):
        return None
    return bounds


def _add_histogram(
    name: str, labels: Labels, flags: int, start_ns: int, histogram: Histogram, delta: bool, out: Decoded
) -> None:
    if flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
    elif math.isinf(histogram.sum):
        out.refused["non_finite"] += 1
    else:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, histogram.count, start_ns / 1e9, delta, histogram))


def _decode_summary(name: str, point: SummaryDataPoint, resource: ResourceLabels, out: Decoded) -> None:
    quantiles = [(q.quantile, q.value) for q in point.quantile_values]
    count, total, flags, start_ns = float(point.count), point.sum, point.flags, point.start_time_unix_nano
    labels = resource.labels_of(point, _SUMMARY_VARYING)
    if flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
        return
    if not math.isfinite(total):
        out.refused["non_finite"] += 1
        return
    histogram = Histogram(count, total)
    out.samples.append(Sample(name, labels, Kind.HISTOGRAM, count, start_ns / 1e9, histogram=histogram))
    for quantile, value in quantiles:
        if math.isfinite(value):
            q_labels = tuple(sorted({**dict(labels), "quantile": repr(quantile)}.items()))
            out.samples.append(Sample(name, q_labels, Kind.GAUGE, value))
