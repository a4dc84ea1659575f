"""Ingest under hostile input, without sockets: bounded caches, pieces, datapoint counts, senders, retries."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
    Summary,
    SummaryDataPoint,
)

from scaler.admission import Limits, confine, count_datapoints, screen
from scaler.errors import DecodeError
from scaler.otlp import Decoded, Kind, LabelCache, PointLimits, Sample, decode_export_request, read_protobuf
from scaler.otlp_pieces import json_pieces, protobuf_pieces
from scaler.ratelimit import PushRateLimiter, sender_address
from scaler.receivers import InflightBytes, _Inflater
from tests.unit.test_otlp import FAST, _request, attrs, request

MiB = 1024 * 1024


def gauge(*points: NumberDataPoint, name: str = "g") -> Metric:
    return Metric(name=name, gauge=Gauge(data_points=list(points)))


def wide_labels(i: int, size: int = 8192) -> list[object]:
    return attrs(pod=f"p{i}", blob=f"{i}" + "x" * size)


# -- caches: bounded by bytes, and never holding what was refused ---------------------------------------


def test_the_label_cache_keeps_only_what_was_stored() -> None:
    cache = LabelCache()
    reader = cache.reader()
    decoded = decode_export_request(
        request(gauge(*(NumberDataPoint(as_double=1.0, attributes=wide_labels(i)) for i in range(100)))), reader
    )
    assert len(decoded.samples) == 100
    reader.keep(decoded.samples[:3])  # the store took three; the rest were refused
    assert len(cache) == 1 + 3  # the resource and three label sets
    assert cache.bytes < 64 * 1024
    reader.keep(())
    assert len(cache) == 4  # a reader keeps once: what it made is gone


def test_refused_label_sets_never_reach_the_cache() -> None:
    cache = LabelCache()
    limits = Limits(max_labels=64, max_label_length=2048)
    for batch in range(20):
        reader = cache.reader()
        points = (NumberDataPoint(as_double=1.0, attributes=wide_labels(batch * 100 + i)) for i in range(100))
        decoded = screen(decode_export_request(request(gauge(*points)), reader), limits)
        assert decoded.refused == {"label_too_long": 100}
        reader.keep(decoded.samples)
    assert cache.bytes == 0 and len(cache) == 0


def test_the_label_cache_is_bounded_by_bytes() -> None:
    cache = LabelCache(max_bytes=1 * MiB)
    for batch in range(50):  # 50 x 100 label sets of 8 KB, every one stored: 40 MB of labels
        points = (NumberDataPoint(as_double=1.0, attributes=wide_labels(batch * 100 + i)) for i in range(100))
        decode_export_request(request(gauge(*points)), cache)
        assert cache.bytes <= 1 * MiB
    assert 0 < len(cache) < 200


def test_label_sets_share_their_resource_pairs() -> None:
    resource = attrs(**{f"r{i}": "v" * 100 for i in range(60)})
    decoded = decode_export_request(
        request(
            gauge(*(NumberDataPoint(as_int=i, attributes=attrs(engine=str(i))) for i in range(3))), resource=resource
        )
    )
    first, second = decoded.samples[0].labels, decoded.samples[1].labels
    shared = [a for a, b in zip(first, second, strict=True) if a is b]
    assert len(shared) == 60  # only the point's own pair is new in each label set


def test_bucket_bounds_are_cached_only_when_stored() -> None:
    cache = LabelCache()
    point = HistogramDataPoint(count=2, sum=1.0, explicit_bounds=[1.0, 2.0], bucket_counts=[1, 1, 0])
    reader = cache.reader()
    decode_export_request(request(Metric(name="h", histogram=Histogram(data_points=[point]))), reader)
    reader.keep(())
    assert len(cache) == 0  # neither the resource nor the bounds of a point that was not stored
    decoded = decode_export_request(request(Metric(name="h", histogram=Histogram(data_points=[point]))), cache)
    assert len(cache) == 2 and decoded.samples[0].histogram is not None


# -- point limits ---------------------------------------------------------------------------------------


def test_points_with_too_many_buckets_or_quantiles_are_refused() -> None:
    limits = PointLimits(max_buckets=200)
    big = HistogramDataPoint(count=1, explicit_bounds=[float(i) for i in range(250)], bucket_counts=[0] * 251)
    ok = HistogramDataPoint(count=1, explicit_bounds=[float(i) for i in range(21)], bucket_counts=[0] * 22)
    exp = ExponentialHistogramDataPoint(count=1)
    exp.positive.bucket_counts.extend([1] * 201)
    quantiles = [SummaryDataPoint.ValueAtQuantile(quantile=i / 300, value=1.0) for i in range(300)]
    decoded = decode_export_request(
        request(
            Metric(name="h", histogram=Histogram(data_points=[big, ok])),
            Metric(name="e", exponential_histogram=ExponentialHistogram(data_points=[exp])),
            Metric(name="s", summary=Summary(data_points=[SummaryDataPoint(count=1, quantile_values=quantiles)])),
        ),
        limits=limits,
    )
    assert decoded.refused == {"too_many_buckets": 3}
    assert [s.name for s in decoded.samples] == ["h"]


def test_negative_monotonic_deltas_are_refused_but_up_down_deltas_are_kept() -> None:
    delta = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    points = [NumberDataPoint(as_double=-998.0), NumberDataPoint(as_double=2.0)]
    monotonic = Metric(name="c", sum=Sum(data_points=points, aggregation_temporality=delta, is_monotonic=True))
    up_down = Metric(name="u", sum=Sum(data_points=points, aggregation_temporality=delta, is_monotonic=False))
    decoded = decode_export_request(request(monotonic, up_down))
    assert decoded.refused == {"negative_delta": 1}
    assert [(s.name, s.value) for s in decoded.samples] == [("c", 2.0), ("u", -998.0), ("u", 2.0)]


def test_summary_quantiles_and_histogram_buckets_count_as_datapoints() -> None:
    quantiles = [SummaryDataPoint.ValueAtQuantile(quantile=i / 20_000, value=1.0) for i in range(20_000)]
    summary = Metric(name="s", summary=Summary(data_points=[SummaryDataPoint(count=1, quantile_values=quantiles)]))
    histogram = Metric(name="h", histogram=Histogram(data_points=[HistogramDataPoint(bucket_counts=[0] * 22)]))
    exp = ExponentialHistogramDataPoint()
    exp.positive.bucket_counts.extend([1] * 10)
    exp.negative.bucket_counts.extend([1] * 5)
    exponential = Metric(name="e", exponential_histogram=ExponentialHistogram(data_points=[exp]))
    assert count_datapoints(request(summary)) == 20_001
    assert count_datapoints(request(histogram, exponential, gauge(NumberDataPoint()))) == 23 + 16 + 1


# -- namespaces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "point", "kept"),
    [
        ({"k8s.namespace.name": "b"}, {"namespace": "a"}, False),  # the attack: B's resource under A's points
        ({"namespace": "b"}, {"namespace": "a"}, False),
        ({}, {"namespace": "a", "k8s.namespace.name": "b"}, False),
        ({"namespace": "a"}, {"k8s.namespace.name": "b"}, False),
        ({}, {}, False),  # no namespace at all
        ({"k8s.namespace.name": "a"}, {"namespace": "a"}, True),
        ({}, {"k8s__namespace__name": "a"}, True),
    ],
)
def test_a_bound_token_writes_only_points_whose_every_namespace_label_is_its_own(
    resource: dict[str, str], point: dict[str, str], kept: bool
) -> None:
    req = request(gauge(NumberDataPoint(as_double=1.0, attributes=attrs(pod="p", **point))), resource=attrs(**resource))
    refused = confine(req, "a")
    decoded = screen(decode_export_request(req), Limits(), "a")
    assert (len(decoded.samples) == 1) is kept
    assert refused + decoded.refused == (Counter() if kept else Counter(namespace_not_allowed=1))


# -- pieces: a large request decodes as a whole one would ----------------------------------------------------


def _decode_pieces(steps: list[bytes | None]) -> list[Sample]:
    samples: list[Sample] = []
    for piece in steps:
        if piece is not None:
            samples += decode_export_request(read_protobuf(piece)).samples
    return samples


def _comparable(samples: list[Sample]) -> list[tuple[object, ...]]:
    """Samples with NaN made equal to itself, a histogram's sum included."""
    return [tuple(_nan_free(v) for v in _fields(s)) for s in samples]


def _nan_free(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, tuple):
        return tuple(_nan_free(v) for v in value)
    return value


def _fields(sample: Sample) -> tuple[object, ...]:
    hist = sample.histogram
    histogram = (hist.count, hist.sum, hist.bounds, hist.buckets) if hist else None
    return (
        sample.name,
        sample.labels,
        sample.kind,
        sample.value,
        sample.start,
        sample.delta,
        histogram,
        sample.no_value,
    )


@FAST
@given(_request, st.sampled_from([1, 40, 200]))
def test_protobuf_pieces_decode_as_the_whole_request(req: ExportMetricsServiceRequest, budget: int) -> None:
    body = req.SerializeToString()
    whole = decode_export_request(read_protobuf(body)).samples
    steps = list(protobuf_pieces(body, budget))
    assert all(len(p) <= max(budget, 1) * 4 + 600 or p is body for p in steps if p is not None)
    assert _comparable(_decode_pieces(steps)) == _comparable(whole)


@FAST
@given(_request, st.sampled_from([1, 60, 300]))
def test_json_pieces_decode_as_the_whole_request(req: ExportMetricsServiceRequest, budget: int) -> None:
    body = json_format.MessageToJson(req, indent=None).encode()
    whole = decode_export_request(read_protobuf(req.SerializeToString())).samples
    assert _comparable(_decode_pieces(list(json_pieces(body, budget)))) == _comparable(whole)


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_split_into_pieces_or_fail_with_a_decode_error(body: bytes) -> None:
    try:
        for piece in protobuf_pieces(body, 16):
            if piece is not None:
                read_protobuf(piece)
    except DecodeError:
        return


@FAST
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: (
            st.lists(c)
            | st.dictionaries(
                st.sampled_from(
                    ["resourceMetrics", "scopeMetrics", "metrics", "gauge", "dataPoints", "asDouble", "name", "x"]
                ),
                c,
            )
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_splits_into_pieces_or_fails_with_a_decode_error(document: object) -> None:
    body = json.dumps({"resourceMetrics": [document]}).encode()
    try:
        for piece in json_pieces(body, 8):
            if piece is not None:
                read_protobuf(piece)
    except DecodeError:
        return


def test_pieces_stay_small_for_one_huge_metric() -> None:
    points = [NumberDataPoint(as_double=float(i), attributes=attrs(engine=str(i))) for i in range(20_000)]
    body = request(gauge(*points)).SerializeToString()
    steps = list(protobuf_pieces(body, 16 * 1024))
    pieces = [p for p in steps if p is not None]
    assert len(pieces) > 10 and max(map(len, pieces)) < 20 * 1024
    assert len(_decode_pieces(steps)) == 20_000
    text = json_format.MessageToJson(request(gauge(*points)), indent=None).encode()
    assert len(_decode_pieces(list(json_pieces(text)))) == 20_000


def test_json_pieces_refuse_what_a_whole_parse_refuses() -> None:
    big = " " * 40_000
    for body in (b"[]" + big.encode(), b'{"resourceMetrics": 5}' + big.encode(), b'{"a": 1, "a": 2}' + big.encode()):
        with pytest.raises(DecodeError):
            list(json_pieces(body))
    with pytest.raises(DecodeError, match="JSON object"):
        list(json_pieces(big.encode() + b"1"))


# -- senders and retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B::1%5D:5555", "::1"),
        ("ipv6:[::ffff:10.1.2.3]:80", "10.1.2.3"),
        ("127.0.0.1", "127.0.0.1"),  # aiohttp's remote
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("unix:/tmp/s", "unix:/tmp/s"),
        ("unknown", "unknown"),
    ],
)
def test_the_sender_is_the_address_without_the_port(peer: str, address: str) -> None:
    assert sender_address(peer) == address


def test_a_request_larger_than_the_burst_gets_a_finite_wait_and_then_goes_through() -> None:
    limiter = PushRateLimiter(10.0)  # 20 of burst
    assert limiter.take("s", 30, 0.0) == 0.0  # a full bucket takes it, into debt
    wait = limiter.take("s", 30, 0.0)
    assert math.isfinite(wait) and wait == pytest.approx(3.0)  # -10 back to a full 20
    assert limiter.take("s", 30, wait - 0.1) > 0
    assert limiter.take("s", 30, wait) == 0.0
    assert limiter.take("s", 5, wait) > 0  # in debt again: small ones wait too


def test_the_inflight_budget_refuses_at_once_and_gives_back() -> None:
    budget = InflightBytes(100)
    with budget.hold() as first:
        first.grow(60)
        with pytest.raises(Exception, match="max-inflight-bytes") as info, budget.hold() as second:
            second.grow(30)
            second.grow(30)
        assert getattr(info.value, "retry_after", 0) > 0
        assert budget.held == 60
    assert budget.held == 0


def test_small_requests_have_a_reserve_that_large_ones_cannot_take() -> None:
    budget = InflightBytes(800)  # a reserve of 100 beyond the limit, for small requests only
    with budget.hold() as bomb:
        bomb.grow(800)
        with pytest.raises(Exception, match="max-inflight-bytes"), budget.hold() as large:
            large.grow(1)
        with budget.hold(small=True) as small:
            small.grow(60)
            with pytest.raises(Exception, match="max-inflight-bytes"), budget.hold(small=True) as another:
                another.grow(41)  # the reserve is bounded too
        assert budget.held == 800
    assert budget.held == 0


def test_a_gzip_bomb_inflates_one_step_at_a_time() -> None:
    bomb = gzip.compress(bytes(64 * MiB), 9)
    inflater = _Inflater(gzip=True)
    seen = 0
    for part in inflater.feed(bomb):
        assert len(part) <= 64 * 1024
        seen += len(part)
        if seen >= 4 * MiB:
            break  # the reader stops here (its limit): nothing beyond was ever inflated
    assert seen == 4 * MiB
    two_members = gzip.compress(b"ab") + gzip.compress(b"cd")
    inflater = _Inflater(gzip=True)
    assert b"".join(inflater.feed(two_members)) == b"abcd" and inflater.complete


def test_screen_judges_each_label_set_once_per_call() -> None:
    labels = (("namespace", "ns"), ("pod", "p"))
    samples = [Sample(f"m{i}", labels, Kind.GAUGE, 1.0) for i in range(3)] + [Sample("x" * 50, labels, Kind.GAUGE, 1.0)]
    decoded = screen(Decoded(samples, Counter()), Limits(max_labels=8, max_label_length=40), "ns")
    assert [s.name for s in decoded.samples] == ["m0", "m1", "m2"]
    assert decoded.refused == {"label_too_long": 1}


def test_screen_keeps_where_each_pod_begins_among_what_it_keeps() -> None:
    """A namespace-bound token's pushes are stored in runs too: the cuts must still fall between pods."""
    samples = [
        Sample(f"m{i}", (("namespace", namespace), ("pod", pod)), Kind.GAUGE, 1.0)
        for pod, namespace in (("a", "ns"), ("b", "other"), ("c", "ns"), ("d", "ns"))
        for i in range(2)
    ]
    decoded = screen(Decoded(samples, Counter(), resource_starts=[0, 2, 4, 6]), Limits(), "ns")
    assert [s.labels[1][1] for s in decoded.samples] == ["a", "a", "c", "c", "d", "d"]
    assert decoded.resource_starts == [0, 2, 4]
    assert [len(run) for run in decoded.runs(1)] == [2, 2, 2]
