"""Decoding OTLP metrics into plain samples: a pure function shared by the gRPC and HTTP receivers.

Resource attributes are merged into each point's labels (point attributes win). Points we cannot
store are counted by reason, so the receivers can report them through OTLP partial success.

One pass per request: datapoints are counted, label sets judged and samples built in the same walk.
A point's label set is looked up by the bytes of what remains of it once its values are read and
cleared, among the label sets of its resource: collectors resend the same sets every interval, and
reading a point's attributes one by one costs about five times more than serializing them.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    HistogramDataPoint,
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
LABEL_CACHE_BYTES = 128 * 1024 * 1024  # at least; the receivers allow more per series the store may hold
LABEL_CACHE_BYTES_PER_SERIES = 1024  # a vLLM pod: 40 series, 11 label sets, 19 KB of cache
_ENTRY_BYTES = 160  # a cache entry's dict slot, key object and tuple headers
_PAIR_BYTES = 160  # a (name, value) tuple and its two string headers
# Fields that change at every export, cleared before a point's remains key the label cache.
_TIMES = ("time_unix_nano", "start_time_unix_nano")
_HISTOGRAM_VARYING = (*_TIMES, "count", "sum", "bucket_counts", "min", "max")
_EXP_HISTOGRAM_VARYING = (*_TIMES, "count", "sum", "zero_count", "positive", "negative", "min", "max")
_SUMMARY_VARYING = (*_TIMES, "count", "sum", "quantile_values")
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
STEP_POINTS = 512  # points decoded between two steps, where a caller on an event loop may pause
_HISTOGRAM_TYPES = frozenset({"histogram", "exponential_histogram", "summary"})  # keep their names whole


class Kind(enum.Enum):
    GAUGE = "gauge"  # a level; also non-monotonic cumulative sums
    COUNTER = "counter"  # a monotonic cumulative sum
    HISTOGRAM = "histogram"  # count, sum and bucket counts, cumulative


# Sample and Histogram are values, but not frozen: ingest builds one per point, and a frozen
# dataclass's __init__ (object.__setattr__ per field) costs 4x a plain one's (830 vs 190 ns here).
@dataclass(slots=True)
class Histogram:
    count: float
    sum: float  # NaN when the producer left it out
    bounds: tuple[float, ...] = ()
    buckets: tuple[float, ...] = ()  # cumulative per-bucket counts (not Prometheus' `le` sums)


@dataclass(slots=True)
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
    datapoints: int = 0  # in the request, as count_datapoints counts them
    ended: int = 0  # samples that are end markers (no recorded value): stored, but no datapoint
    # where in `samples` each resource (a pod) began, ascending: the places a run of them may end
    resource_starts: list[int] = field(default_factory=list)

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def runs(self, size: int) -> Iterator[list[Sample]]:
        """`samples` in runs of about `size` for Store.append, each cut where a resource begins.

        The series of a pod share their times only while each push gives every one of them a row
        (scaler.series.Timeline): a pod cut in two would leave its second half on times of its own.
        A run grows by at most `size` to reach the next resource; the cuts cost no look at a sample.
        """
        samples, starts = self.samples, self.resource_starts
        first, length = 0, len(samples)
        while first < length:
            end = first + size
            if end < length:
                after = bisect.bisect_left(starts, end)
                end = min(starts[after] if after < len(starts) else length, end + size)
            end = min(end, length)
            yield samples if first == 0 and end == length else samples[first:end]
            first = end


class LabelJudge(Protocol):
    """What admission refuses of a label set, whatever the sender ('' to keep it).

    Asked once per new label set: the cache holds only label sets that were stored, so a set found
    there has passed already."""

    def refuse_labels(self, labels: Labels) -> str: ...


@dataclass(frozen=True, slots=True)
class PointLimits:
    """What one point may carry before it is refused, checked before anything is built from it."""

    max_buckets: int = MAX_BUCKETS  # explicit buckets, exponential buckets per sign, or quantiles
    max_attributes: int = 1 << 30  # the point's or its resource's own attributes (admission judges the merge)
    judge: LabelJudge | None = None  # the merged label sets
    max_name_length: int = 1 << 30  # longer metric names are refused as `label_too_long`


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
    for _ in decode_steps(request, reader, limits, out):
        pass
    if not isinstance(cache, LabelReader):
        reader.keep(out.samples)
    return out


def decode_steps(
    request: ExportMetricsServiceRequest, reader: LabelReader, limits: PointLimits, out: Decoded
) -> Iterator[None]:
    """decode_export_request into `out`, one step per STEP_POINTS points or so: a caller may pause at each.

    Points go to their kind's decoder a run at a time; _decode_numbers (gauges and sums, nine in ten) is
    the hot loop.
    """
    done = 0
    max_name = limits.max_name_length
    refused = out.refused
    for resource_metrics in request.resource_metrics:
        if len(resource_metrics.resource.attributes) > limits.max_attributes:
            out.datapoints += count_resource_datapoints(resource_metrics)
            refused["too_many_labels"] += count_points(resource_metrics)
            continue
        resource = reader.resource(resource_metrics.resource)
        if not out.resource_starts or out.resource_starts[-1] != len(out.samples):
            out.resource_starts.append(len(out.samples))
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                which = metric.WhichOneof("data")
                if which is None:
                    continue
                data = getattr(metric, which)
                points = data.data_points
                count = len(points)
                out.datapoints += count
                done += count
                # canonical names are never longer, at most `_total` shorter: a name far over the limit
                # is refused before it reaches (and fills) the canonical-name cache
                raw = metric.name
                name = (
                    raw[: max_name + 7]
                    if len(raw) > max_name + len("_total")
                    else _canonical(raw, which in _HISTOGRAM_TYPES)
                )
                if len(name) > max_name:
                    _refuse_all("label_too_long", which, name, data, points, resource, reader, limits, out)
                    continue
                for run in (points,) if count <= STEP_POINTS else _runs(points):
                    _decode_points(which, name, data, run, resource, reader, limits, out)
                    if count > STEP_POINTS:
                        yield None
                if done >= STEP_POINTS:
                    done = 0
                    yield None


def _runs(points: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for first in range(0, len(points), STEP_POINTS):
        yield points[first : first + STEP_POINTS]


def count_datapoints(request: ExportMetricsServiceRequest) -> int:
    """Datapoints in a request, counted without decoding them; each histogram bucket and summary
    quantile counts as one more, since each is stored (or parsed) like a point of its own."""
    return sum(count_resource_datapoints(resource_metrics) for resource_metrics in request.resource_metrics)


def count_resource_datapoints(resource_metrics: ResourceMetrics) -> int:
    total = 0
    for scope_metrics in resource_metrics.scope_metrics:
        for metric in scope_metrics.metrics:
            which = metric.WhichOneof("data")
            if which is None:
                continue
            points = getattr(metric, which).data_points
            total += len(points)
            if which == "histogram":
                total += sum(len(p.bucket_counts) for p in points)
            elif which == "exponential_histogram":
                total += sum(len(p.positive.bucket_counts) + len(p.negative.bucket_counts) for p in points)
            elif which == "summary":
                total += sum(len(p.quantile_values) for p in points)
    return total


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
    """One resource's attributes and the label sets of the points under it, keyed by their remains."""

    key: bytes
    pairs: dict[str, tuple[str, str]]  # shared by every label set made under it
    plain: Labels
    by_key: dict[bytes, Labels] = field(default_factory=dict)
    bounds_by_key: dict[bytes, tuple[float, ...]] = field(default_factory=dict)  # of histogram points' keys
    refusal: str | None = None  # the judge's word on `plain`, once asked


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
        # (name, value) pairs of the label sets held, one object each: the sets of every pod name the
        # same model, namespace and engine, and the store keeps those tuples for as long as their series
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}

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
            self._pairs.clear()
            self.bytes = 0
        self.bytes += size
        return True

    def _adopt(self, seen: _Resource) -> None:
        if seen.key not in self._resources and self._room(_resource_bytes(seen)):
            self._resources[seen.key] = _Resource(seen.key, seen.pairs, seen.plain, refusal=seen.refusal)
            self._intern(seen.plain)

    def _add_labels(self, seen: _Resource, key: bytes, labels: Labels, bounds: tuple[float, ...] | None = None) -> None:
        held = self._resources.get(seen.key)
        if held is not None and key in held.by_key:
            return
        size = _ENTRY_BYTES + len(key) + _set_bytes(labels, seen) + (_ENTRY_BYTES if bounds is not None else 0)
        if not self._room(size + _resource_bytes(seen)):
            return
        held = self._resources.get(seen.key)  # gone if the cache just started over
        if held is None:
            held = self._resources[seen.key] = _Resource(seen.key, seen.pairs, seen.plain, refusal=seen.refusal)
        else:
            self.bytes -= _resource_bytes(seen)  # reserved in case it had to be added
        held.by_key[key] = labels
        if bounds is not None:
            held.bounds_by_key[key] = bounds
        self._intern(labels)

    def _intern(self, labels: Labels) -> None:
        """Hold the pairs of `labels` for later label sets to share (each counted as a cache entry)."""
        pairs = self._pairs
        for pair in labels:
            if pair not in pairs and self._room(_ENTRY_BYTES):
                pairs[pair] = pair

    def _add_bounds(self, bounds: tuple[float, ...]) -> None:
        if bounds not in self._bounds and self._room(_ENTRY_BYTES + 32 * len(bounds)):
            self._bounds[bounds] = bounds


class LabelReader:
    """One request's use of the cache: hits come from it, and what this request builds waits here until
    `keep` learns which samples were stored. Each request has its own, so interleaved requests never
    see each other's unjudged entries."""

    __slots__ = ("cache", "_seen", "_labels", "_bounds", "_key_bounds")

    def __init__(self, cache: LabelCache) -> None:
        self.cache = cache
        self._seen: dict[bytes, _Resource] = {}  # resources this request built label sets under
        self._labels: dict[tuple[bytes, bytes], Labels | str] = {}  # built here: labels, or why refused
        self._bounds: dict[tuple[float, ...], tuple[float, ...]] = {}
        self._key_bounds: dict[tuple[bytes, bytes], tuple[float, ...]] = {}  # a histogram key's bounds

    def resource(self, resource: Resource) -> _Resource:
        """The resource as the cache holds it (its label sets looked up once per point), or built anew."""
        key = resource.SerializeToString()
        found = self.cache._resources.get(key) or self._seen.get(key)
        if found is None:
            held = self.cache._pairs
            pairs = {k: held.get((k, v)) or (k, v) for k, v in attributes_of(resource.attributes).items()}
            found = self._seen[key] = _Resource(key, pairs, tuple(sorted(pairs.values())))
        return found

    def labels(self, resource: _Resource, point: Any, key: bytes, limits: PointLimits) -> Labels | str:
        """The merged labels of a point the cache does not hold, keyed by its remains, or why they are refused.

        Labels always come from the attributes themselves; the key only has to tell label sets apart.
        """
        if not point.attributes:
            if resource.refusal is None:
                resource.refusal = limits.judge.refuse_labels(resource.plain) if limits.judge is not None else ""
            self._seen.setdefault(resource.key, resource)
            return resource.refusal or resource.plain
        labels = self._labels.get((resource.key, key))
        if labels is None:
            if len(point.attributes) > limits.max_attributes:
                labels = "too_many_labels"
            else:
                merged = dict(resource.pairs)
                held = self.cache._pairs
                for name, value in attributes_of(point.attributes).items():
                    merged[name] = held.get((name, value)) or (name, value)
                labels = tuple(sorted(merged.values()))
                if limits.judge is not None:
                    labels = limits.judge.refuse_labels(labels) or labels
            self._labels[(resource.key, key)] = labels
            self._seen.setdefault(resource.key, resource)
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
        """Cache what this request built that `stored` uses, and let the rest (what was refused) go.

        A request that found everything in the cache built nothing: then there is nothing to do."""
        if not (self._seen or self._bounds):
            return
        stored = list(stored)
        used = {id(s.labels) for s in stored}
        used_bounds = {id(s.histogram.bounds) for s in stored if s.histogram is not None and s.histogram.bounds}
        cache = self.cache
        for seen in self._seen.values():
            if id(seen.plain) in used:
                cache._adopt(seen)
        key_bounds = self._key_bounds
        for (resource_key, key), labels in self._labels.items():
            if not isinstance(labels, str) and id(labels) in used:
                bounds = key_bounds.get((resource_key, key))
                bounds = bounds if bounds is not None and id(bounds) in used_bounds else None
                cache._add_labels(self._seen[resource_key], key, labels, bounds)
        for bounds in self._bounds.values():
            if id(bounds) in used_bounds:
                cache._add_bounds(bounds)
        self._labels.clear()
        self._bounds.clear()
        self._key_bounds.clear()
        self._seen.clear()


def _resource_bytes(resource: _Resource) -> int:
    return _ENTRY_BYTES + len(resource.key) + 2 * labels_bytes(resource.plain)  # the pairs and the tuple


def _set_bytes(labels: Labels, resource: _Resource) -> int:
    """Bytes a label set under `resource` holds of its own: its tuple, and the pairs the resource does not share."""
    pairs = resource.pairs
    own = sum(_PAIR_BYTES + len(pair[0]) + len(pair[1]) for pair in labels if pairs.get(pair[0]) is not pair)
    return 64 + 8 * len(labels) + own


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


@lru_cache(maxsize=4096)
def _canonical(name: str, histogram: bool) -> str:
    return canonical_name(name, histogram)


def _point_labels(
    point: Any, varying: tuple[str, ...], resource: _Resource, reader: LabelReader, limits: PointLimits
) -> Labels | str:
    """The labels of a point whose values have been read; clears its `varying` fields first.

    A point without attributes has its resource's labels, so it needs no key and is left whole. (Checking
    that costs more than clearing a number point, so the hot loop always clears.)"""
    if not point.attributes:
        return reader.labels(resource, point, b"", limits)
    for name in varying:
        point.ClearField(name)
    key = point.SerializeToString()
    labels = resource.by_key.get(key)
    return labels if labels is not None else reader.labels(resource, point, key, limits)


def _decode_points(
    which: str,
    name: str,
    data: Any,
    points: Sequence[Any],
    resource: _Resource,
    reader: LabelReader,
    limits: PointLimits,
    out: Decoded,
) -> None:
    if which == "gauge":
        _decode_numbers(name, points, Kind.GAUGE, False, resource, reader, limits, out)
    elif which == "sum":
        kind = Kind.COUNTER if data.is_monotonic else Kind.GAUGE
        _decode_numbers(name, points, kind, data.aggregation_temporality == _DELTA, resource, reader, limits, out)
    elif which == "histogram":
        _decode_histograms(name, data, points, resource, reader, limits, out)
    elif which == "exponential_histogram":
        _decode_exponential(name, data, points, resource, reader, limits, out)
    else:
        _decode_summaries(name, data, points, resource, reader, limits, out)


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
    """The hot loop: a few C calls a point, with _point_labels inlined."""
    monotonic_delta = delta and kind is Kind.COUNTER
    held, samples, refused, isfinite = resource.by_key, out.samples, out.refused, math.isfinite
    for point in points:
        value = point.as_double or float(point.as_int)  # a oneof: the member not set reads 0
        missing = not value and point.WhichOneof("value") is None  # neither set: no number, not a 0
        flags, start = point.flags, point.start_time_unix_nano
        clear = point.ClearField
        clear("time_unix_nano")
        clear("start_time_unix_nano")
        clear("value")
        key = point.SerializeToString()
        labels: Labels | str | None = held.get(key)
        if labels is None:
            labels = reader.labels(resource, point, key, limits)
        if isinstance(labels, str):
            refused[labels] += 1
        elif flags & _NO_RECORDED_VALUE:
            samples.append(Sample(name, labels, kind, math.nan, no_value=True))
            out.ended += 1
        elif missing:
            refused["missing_value"] += 1
        elif not isfinite(value):
            refused["non_finite"] += 1
        elif monotonic_delta and value < 0:
            refused["negative_delta"] += 1  # a monotonic sum cannot go down
        else:
            samples.append(Sample(name, labels, kind, value, start / 1e9, delta))


def _decode_histograms(
    name: str,
    data: Any,
    points: Sequence[HistogramDataPoint],
    resource: _Resource,
    reader: LabelReader,
    limits: PointLimits,
    out: Decoded,
) -> None:
    """Bucket bounds are part of a point's remains: a point found in the cache brings its checked bounds too."""
    delta = data.aggregation_temporality == _DELTA
    held, held_bounds, max_buckets = resource.by_key, resource.bounds_by_key, limits.max_buckets
    for point in points:
        counts = point.bucket_counts
        out.datapoints += len(counts)
        if len(counts) > max_buckets:
            out.refused["too_many_buckets"] += 1
            continue
        buckets = tuple(map(float, counts))
        hist_sum = point.sum if point.HasField("sum") else math.nan
        count, flags, start = float(point.count), point.flags, point.start_time_unix_nano
        labels: Labels | str | None = None
        bounds = None
        key = b""
        if point.attributes:  # else its resource's labels, and the point is left whole (see _point_labels)
            clear: Any = point.ClearField
            for varying in _HISTOGRAM_VARYING:
                clear(varying)
            key = point.SerializeToString()
            bounds = held_bounds.get(key)
            labels = held.get(key) if bounds is not None else None
        if labels is None:
            if len(point.explicit_bounds) > max_buckets:
                out.refused["too_many_buckets"] += 1
                continue
            bounds = reader.bounds(tuple(point.explicit_bounds))
            labels = reader.labels(resource, point, key, limits)
            if key and bounds is not None:
                reader._key_bounds[(resource.key, key)] = bounds
        if bounds is None or (buckets and len(buckets) != len(bounds) + 1):
            out.refused["malformed_histogram"] += 1
            continue
        _add_histogram(name, labels, flags, start, Histogram(count, hist_sum, bounds, buckets), delta, out)


def _decode_exponential(
    name: str,
    data: Any,
    points: Sequence[Any],
    resource: _Resource,
    reader: LabelReader,
    limits: PointLimits,
    out: Decoded,
) -> None:
    delta = data.aggregation_temporality == _DELTA
    for point in points:
        sizes = len(point.positive.bucket_counts), len(point.negative.bucket_counts)
        out.datapoints += sum(sizes)
        if max(sizes) > limits.max_buckets:
            out.refused["too_many_buckets"] += 1
            continue
        histogram = Histogram(float(point.count), point.sum if point.HasField("sum") else math.nan)
        flags, start = point.flags, point.start_time_unix_nano
        labels = _point_labels(point, _EXP_HISTOGRAM_VARYING, resource, reader, limits)
        _add_histogram(name, labels, flags, start, histogram, delta, out)


def _add_histogram(
    name: str, labels: Labels | str, flags: int, start_ns: int, histogram: Histogram, delta: bool, out: Decoded
) -> None:
    if isinstance(labels, str):
        out.refused[labels] += 1
    elif flags & _NO_RECORDED_VALUE:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
        out.ended += 1
    elif math.isinf(histogram.sum):
        out.refused["non_finite"] += 1
    else:
        out.samples.append(Sample(name, labels, Kind.HISTOGRAM, histogram.count, start_ns / 1e9, delta, histogram))


def _decode_summaries(
    name: str,
    data: Any,
    points: Sequence[SummaryDataPoint],
    resource: _Resource,
    reader: LabelReader,
    limits: PointLimits,
    out: Decoded,
) -> None:
    for point in points:
        out.datapoints += len(point.quantile_values)
        if len(point.quantile_values) > limits.max_buckets:
            out.refused["too_many_buckets"] += 1
            continue
        quantiles = [(q.quantile, q.value) for q in point.quantile_values]
        count, total, flags, start_ns = float(point.count), point.sum, point.flags, point.start_time_unix_nano
        labels = _point_labels(point, _SUMMARY_VARYING, resource, reader, limits)
        if isinstance(labels, str):
            out.refused[labels] += 1 + len(quantiles)  # its quantiles carry the same labels and one more
            continue
        if flags & _NO_RECORDED_VALUE:
            out.samples.append(Sample(name, labels, Kind.HISTOGRAM, math.nan, no_value=True))
            out.ended += 1
            continue
        if not math.isfinite(total):
            out.refused["non_finite"] += 1
            continue
        out.samples.append(
            Sample(name, labels, Kind.HISTOGRAM, count, start_ns / 1e9, histogram=Histogram(count, total))
        )
        for quantile, value in quantiles:
            if not (math.isfinite(value) and math.isfinite(quantile)):
                out.refused["non_finite"] += 1  # a quantile without a number is reported, not dropped in silence
                continue
            q_labels = tuple(sorted({**dict(labels), "quantile": repr(quantile)}.items()))
            refusal = limits.judge.refuse_labels(q_labels) if limits.judge is not None else ""
            if refusal:
                out.refused[refusal] += 1
            else:
                out.samples.append(Sample(name, q_labels, Kind.GAUGE, value))


def _refuse_all(
    reason: str,
    which: str,
    name: str,
    data: Any,
    points: Any,
    resource: _Resource,
    reader: LabelReader,
    limits: PointLimits,
    out: Decoded,
) -> None:
    """A metric whose name is refused: every sample it would give is refused for that reason."""
    scratch = Decoded()
    _decode_points(which, name, data, points, resource, reader, limits, scratch)
    out.refused.update(scratch.refused)
    out.refused[reason] += len(scratch.samples)
    out.datapoints += scratch.datapoints
