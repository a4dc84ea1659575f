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
    ResourceMetrics,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler.errors import DecodeError
from scaler.names import canonical_name

Labels = tuple[tuple[str, str], ...]

_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
MAX_BUCKETS = 200  # per point: vLLM's histograms have at most 22 buckets, OTel's exponential ones 160 a sign
LABEL_CACHE_BYTES = 128 * 1024 * 1024
_ENTRY_BYTES = 160  # a cache entry's dict slot, key object and tuple headers
_PAIR_BYTES = 160  # a (name, value) tuple and its two string headers
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


@dataclass(frozen=True, slots=True)
class PointLimits:
    """What one point may carry before it is refused, checked before anything is built from it."""

    max_buckets: int = MAX_BUCKETS  # explicit buckets, exponential buckets per sign, or quantiles
    max_attributes: int = 1 << 30  # the point's or its resource's own attributes (admission judges the merge)


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


def decode_export_request(
    request: ExportMetricsServiceRequest,
    cache: LabelCache | LabelReader | None = None,
    limits: PointLimits = PointLimits(),
) -> Decoded:
    """Turn an OTLP export request into samples and counts of refused points.

    The request is consumed: each point's fields are cleared once read, so that what remains (its
    attributes) serializes into a cache key. A long-lived `cache` lets label sets, which collectors
    resend every interval, be built once instead of once per point. Given a LabelCache, what this
    request adds to it is kept; given one request's LabelReader, the caller keeps what it stores.
    """
    if cache is None:
        cache = LabelCache()
    reader = cache if isinstance(cache, LabelReader) else cache.reader()
    out = Decoded()
    for resource_metrics in request.resource_metrics:
        if len(resource_metrics.resource.attributes) > limits.max_attributes:
            out.refused["too_many_labels"] += count_points(resource_metrics)
            continue
        resource = reader.resource(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _decode_metric(metric, resource, reader, limits, out)
    if not isinstance(cache, LabelReader):
        reader.keep(out.samples)
    return out


def count_points(resource_metrics: ResourceMetrics) -> int:
    """Datapoints under one resource, as OTLP counts them (a histogram point is one)."""
    total = 0
    for scope_metrics in resource_metrics.scope_metrics:
        for metric in scope_metrics.metrics:
            which = metric.WhichOneof("data")
            if which is not None:
                total += len(getattr(metric, which).data_points)
    return total


@dataclass(slots=True)
class _Resource:
    """One resource's attributes and the label sets of the points under it, keyed by their attributes."""

    key: bytes
    pairs: dict[str, tuple[str, str]]  # shared by every label set made under it
    plain: Labels
    by_key: dict[bytes, Labels] = field(default_factory=dict)


class LabelCache:
    """Label sets by resource, and bucket bounds, bounded by bytes: past `max_bytes` it starts over.

    Sizes are estimated as if nothing were shared with the store, so the cache holds at most its
    budget even after every series is freed. Entries come only from what a request stored (see
    LabelReader.keep): a refused label set is never held.
    """

    def __init__(self, max_bytes: int = LABEL_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._resources: dict[bytes, _Resource] = {}
        self._bounds: dict[tuple[float, ...], tuple[float, ...]] = {}

    def reader(self) -> LabelReader:
        return LabelReader(self)

    def __len__(self) -> int:
        return len(self._resources) + sum(len(r.by_key) for r in self._resources.values()) + len(self._bounds)

    def _room(self, size: int) -> bool:
        if size > self.max_bytes:
            return False
        if self.bytes + size > self.max_bytes:
            self._resources.clear()
            self._bounds.clear()
            self.bytes = 0
        self.bytes += size
        return True

    def _adopt(self, seen: _Resource) -> None:
        if seen.key not in self._resources and self._room(_resource_bytes(seen)):
            self._resources[seen.key] = _Resource(seen.key, seen.pairs, seen.plain)

    def _add_labels(self, seen: _Resource, key: bytes, labels: Labels) -> None:
        held = self._resources.get(seen.key)
        if held is not None and key in held.by_key:
            return
        if not self._room(_ENTRY_BYTES + len(key) + labels_bytes(labels) + _resource_bytes(seen)):
            return
        held = self._resources.get(seen.key)  # gone if the cache just started over
        if held is None:
            held = self._resources[seen.key] = _Resource(seen.key, seen.pairs, seen.plain)
        else:
            self.bytes -= _resource_bytes(seen)  # reserved in case it had to be added
        held.by_key[key] = labels

    def _add_bounds(self, bounds: tuple[float, ...]) -> None:
        if bounds not in self._bounds and self._room(_ENTRY_BYTES + 32 * len(bounds)):
            self._bounds[bounds] = bounds


class LabelReader:
    """One request's use of the cache: hits come from it, and what this request builds waits here until
    `keep` learns which samples were stored. Each request has its own, so interleaved requests never
    see each other's unjudged entries."""

    __slots__ = ("cache", "_seen", "_labels", "_bounds")

    def __init__(self, cache: LabelCache) -> None:
        self.cache = cache
        self._seen: dict[bytes, _Resource] = {}
        self._labels: dict[tuple[bytes, bytes], Labels] = {}
        self._bounds: dict[tuple[float, ...], tuple[float, ...]] = {}

    def resource(self, resource: Resource) -> _Resource:
        key = resource.SerializeToString()
        found = self._seen.get(key) or self.cache._resources.get(key)
        if found is None:
            pairs = {k: (k, v) for k, v in attributes_of(resource.attributes).items()}
            found = _Resource(key, pairs, tuple(sorted(pairs.values())))
        self._seen[key] = found
        return found

    def labels_of(self, resource: _Resource, point: Any, varying: tuple[str, ...]) -> Labels:
        """The merged labels of a point whose values have been read; clears its `varying` fields first.

        The key is what remains of the point: its attributes, plus anything rarer (exemplars) that
        only costs a cache miss. Labels always come from the attributes themselves.
        """
        if not point.attributes:
            return resource.plain
        for name in varying:
            point.ClearField(name)
        key = point.SerializeToString()
        held = self.cache._resources.get(resource.key)
        labels = held.by_key.get(key) if held is not None else None
        if labels is None:
            labels = self._labels.get((resource.key, key))
            if labels is None:
                merged = dict(resource.pairs)
                for name, value in attributes_of(point.attributes).items():
                    merged[name] = (name, value)
                labels = self._labels[(resource.key, key)] = tuple(sorted(merged.values()))
        return labels

    def bounds(self, bounds: tuple[float, ...]) -> tuple[float, ...] | None:
        """Bounds if finite and ascending (checked once per distinct layout), else None."""
        found = self.cache._bounds.get(bounds) or self._bounds.get(bounds)
        if found is not None or not bounds:
            return found if found is not None else bounds
        if any(not math.isfinite(b) for b in bounds) or any(a > b for a, b in zip(bounds, bounds[1:], strict=False)):
            return None
        self._bounds[bounds] = bounds
        return bounds

    def keep(self, stored: Iterable[Sample]) -> None:
        """Cache what this request built that `stored` uses, and let the rest (what was refused) go."""
        stored = list(stored)
        used = {id(s.labels) for s in stored}
        used_bounds = {id(s.histogram.bounds) for s in stored if s.histogram is not None and s.histogram.bounds}
        cache = self.cache
        for seen in self._seen.values():
            if id(seen.plain) in used:
                cache._adopt(seen)
        for (resource_key, key), labels in self._labels.items():
            if id(labels) in used:
                cache._add_labels(self._seen[resource_key], key, labels)
        for bounds in self._bounds.values():
            if id(bounds) in used_bounds:
                cache._add_bounds(bounds)
        self._labels.clear()
        self._bounds.clear()
        self._seen.clear()


def _resource_bytes(resource: _Resource) -> int:
    return _ENTRY_BYTES + len(resource.key) + 2 * labels_bytes(resource.plain)  # the pairs and the tuple


def labels_bytes(labels: Labels) -> int:
    """Rough bytes one label set holds (its tuples and strings), counted as if it shared nothing."""
    return 64 + sum(_PAIR_BYTES + len(k) + len(v) for k, v in labels)


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


def _decode_metric(metric: Metric, resource: _Resource, reader: LabelReader, limits: PointLimits, out: Decoded) -> None:
    which = metric.WhichOneof("data")
    name = _canonical(metric.name, which in _HISTOGRAM_TYPES)
    if which == "gauge":
        _decode_numbers(name, metric.gauge.data_points, Kind.GAUGE, False, resource, reader, limits, out)
    elif which == "sum":
        kind = Kind.COUNTER if metric.sum.is_monotonic else Kind.GAUGE
        delta = metric.sum.aggregation_temporality == _DELTA
        _decode_numbers(name, metric.sum.data_points, kind, delta, resource, reader, limits, out)
    elif which == "histogram":
        delta = metric.histogram.aggregation_temporality == _DELTA
        for point in metric.histogram.data_points:
            if _oversized(point, limits, out, len(point.bucket_counts), len(point.explicit_bounds)):
                continue
            _decode_histogram(name, point, delta, resource, reader, out)
    elif which == "exponential_histogram":
        delta = metric.exponential_histogram.aggregation_temporality == _DELTA
        for exp_point in metric.exponential_histogram.data_points:
            sizes = len(exp_point.positive.bucket_counts), len(exp_point.negative.bucket_counts)
            if _oversized(exp_point, limits, out, *sizes):
                continue
            has_sum = exp_point.HasField("sum")
            histogram = Histogram(float(exp_point.count), exp_point.sum if has_sum else math.nan)
            flags, start = exp_point.flags, exp_point.start_time_unix_nano
            labels = reader.labels_of(resource, exp_point, _EXP_HISTOGRAM_VARYING)
            _add_histogram(name, labels, flags, start, histogram, delta, out)
    elif which == "summary":
        for summary_point in metric.summary.data_points:
            if not _oversized(summary_point, limits, out, len(summary_point.quantile_values)):
                _decode_summary(name, summary_point, resource, reader, out)
    elif which is not None:
        out.refused["unsupported_type"] += 1


def _oversized(point: Any, limits: PointLimits, out: Decoded, *sizes: int) -> bool:
    """Refuse a point with too many buckets or attributes before building anything from it."""
    if any(size > limits.max_buckets for size in sizes):
        out.refused["too_many_buckets"] += 1
        return True
    if len(point.attributes) > limits.max_attributes:
        out.refused["too_many_labels"] += 1
        return True
    return False


def _decode_numbers(
    name: str,
    points: Sequence[NumberDataPoint],
    kind: Kind,
    delta: bool,
    resource: _Resource,
    reader: LabelReader,
    limits: PointLimits,
    out: Decoded,
) -> None:
    monotonic_delta = delta and kind is Kind.COUNTER
    for point in points:
        if _oversized(point, limits, out):
            continue
        flags, start = point.flags, point.start_time_unix_nano
        which = point.WhichOneof("value")
        value = point.as_double if which == "as_double" else float(point.as_int)
        labels = reader.labels_of(resource, point, _NUMBER_VARYING[which])
        if flags & _NO_RECORDED_VALUE:
            out.samples.append(Sample(name, labels, kind, math.nan, no_value=True))
        elif not math.isfinite(value):
            out.refused["non_finite"] += 1
        elif monotonic_delta and value < 0:
            out.refused["negative_delta"] += 1  # a monotonic sum cannot go down
        else:
            out.samples.append(Sample(name, labels, kind, value, start / 1e9, delta))


def _decode_histogram(
    name: str, point: HistogramDataPoint, delta: bool, resource: _Resource, reader: LabelReader, out: Decoded
) -> None:
    bounds = reader.bounds(tuple(point.explicit_bounds))
    buckets = tuple(map(float, point.bucket_counts))
    if bounds is None or (buckets and len(buckets) != len(bounds) + 1):
        out.refused["malformed_histogram"] += 1
        return
    hist_sum = point.sum if point.HasField("sum") else math.nan
    histogram = Histogram(float(point.count), hist_sum, bounds, buckets)
    flags, start = point.flags, point.start_time_unix_nano
    labels = reader.labels_of(resource, point, _HISTOGRAM_VARYING)
    _add_histogram(name, labels, flags, start, histogram, delta, out)


@lru_cache(maxsize=4096)
def _canonical(name: str, histogram: bool) -> str:
    return canonical_name(name, histogram)


def _add_histogram(
    name: str, labels: Labels, flags: int, start_ns: int, histogram: Histogram, delta: bool, out: Decoded
) -> None:
    if flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
    elif math.isinf(histogram.sum):
        out.refused["non_finite"] += 1
    else:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, histogram.count, start_ns / 1e9, delta, histogram))


def _decode_summary(name: str, point: SummaryDataPoint, resource: _Resource, reader: LabelReader, out: Decoded) -> None:
    quantiles = [(q.quantile, q.value) for q in point.quantile_values]
    count, total, flags, start_ns = float(point.count), point.sum, point.flags, point.start_time_unix_nano
    labels = reader.labels_of(resource, point, _SUMMARY_VARYING)
    if flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
        return
    if not math.isfinite(total):
        out.refused["non_finite"] += 1
        return
    histogram = Histogram(count, total)
    out.samples.append(Sample(name, labels, Kind.HISTOGRAM, count, start_ns / 1e9, histogram=histogram))
    for quantile, value in quantiles:
        if math.isfinite(value) and math.isfinite(quantile):
            q_labels = tuple(sorted({**dict(labels), "quantile": repr(quantile)}.items()))
            out.samples.append(Sample(name, q_labels, Kind.GAUGE, value))
        else:
            out.refused["non_finite"] += 1  # a quantile without a number is reported, not dropped in silence
