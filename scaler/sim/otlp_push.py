"""Push vLLM-style metrics with the real OpenTelemetry SDK exporters, as a collector sidecar would.

The SDK refuses `:` in instrument names, but a collector's prometheus receiver forwards `vllm:...`
names unchanged. So we build the SDK's `MetricsData` ourselves and hand it to the real
`OTLPMetricExporter` (gRPC or HTTP): the wire then carries exactly what a sidecar sends.

A simulated pod's `PodSnapshot` becomes `PodMetrics` in one place (`pod_metrics`). From there the
same `MetricsData` goes to an exporter (`push`), or, for a virtual-time replay without sockets,
through the SDK's own encoder into an `ExportMetricsServiceRequest` (`export_request`) and the
scaler's decoder into samples (`snapshot_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from grpc import Compression as GrpcCompression
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from scaler.names import canonical_name
from scaler.otlp import Histogram as OtlpHistogram
from scaler.otlp import Kind, Sample, decode_export_request
from scaler.sim.vllm_metrics import DEFAULT_NAMING, MetricNaming, PodSnapshot

Attributes = Mapping[str, str]
_SCOPE = InstrumentationScope("otelcol/prometheusreceiver", "0.0.0")
# What a sidecar's prometheus receiver names its scrape target (KServe's job, vLLM's port).
_SCRAPE_TARGET = {"service.name": "otel-collector", "service.instance.id": "localhost:8080"}


@dataclass
class PodMetrics:
    """One pod's metrics at one instant, to be turned into an OTLP request."""

    resource: Attributes
    start_ns: int | None = None  # when this pod's counters started; None: the request's start time
    gauges: dict[str, list[tuple[Attributes, float]]] = field(default_factory=dict)
    counters: dict[str, list[tuple[Attributes, float]]] = field(default_factory=dict)
    histograms: dict[str, list[tuple[Attributes, Sequence[float], Sequence[int], float]]] = field(default_factory=dict)

    def gauge(self, name: str, value: float, attributes: Attributes | None = None) -> PodMetrics:
        self.gauges.setdefault(name, []).append((attributes or {}, value))
        return self

    def counter(self, name: str, value: float, attributes: Attributes | None = None) -> PodMetrics:
        self.counters.setdefault(name, []).append((attributes or {}, value))
        return self

    def histogram(
        self,
        name: str,
        bounds: Sequence[float],
        bucket_counts: Sequence[int],
        total: float,
        attributes: Attributes | None = None,
    ) -> PodMetrics:
        self.histograms.setdefault(name, []).append((attributes or {}, bounds, bucket_counts, total))
        return self


def metrics_data(pods: Sequence[PodMetrics], time_ns: int, start_ns: int) -> MetricsData:
    return MetricsData(resource_metrics=[_resource_metrics(pod, time_ns, start_ns) for pod in pods])


def _resource_metrics(pod: PodMetrics, time_ns: int, start_ns: int) -> ResourceMetrics:
    start_ns = pod.start_ns if pod.start_ns is not None else start_ns

    def number(attrs: Attributes, value: float) -> NumberDataPoint:
        return NumberDataPoint(dict(attrs), start_ns, time_ns, value)

    metrics = [
        Metric(name, None, None, Gauge([number(a, v) for a, v in points])) for name, points in pod.gauges.items()
    ]
    cumulative = AggregationTemporality.CUMULATIVE
    metrics += [
        Metric(name, None, None, Sum([number(a, v) for a, v in points], cumulative, True))
        for name, points in pod.counters.items()
    ]
    for name, hist_points in pod.histograms.items():
        data_points = [
            HistogramDataPoint(dict(a), start_ns, time_ns, sum(counts), total, list(counts), list(bounds), 0.0, 0.0)
            for a, bounds, counts, total in hist_points
        ]
        metrics.append(Metric(name, None, None, Histogram(data_points, cumulative)))
    scope = ScopeMetrics(_SCOPE, metrics, "")
    # Resource(), not Resource.create(): a sidecar adds no SDK attributes, and create() runs detectors.
    return ResourceMetrics(Resource(dict(pod.resource)), [scope], "")


def make_exporter(protocol: str, endpoint: str, gzip: bool = False, timeout: float = 5.0) -> MetricExporter:
    """A real OTLP exporter: protocol `grpc` (endpoint host:port) or `http` (endpoint http://host:port)."""
    if protocol == "grpc":
        compression = GrpcCompression.Gzip if gzip else GrpcCompression.NoCompression
        return GrpcExporter(endpoint=endpoint, insecure=True, compression=compression, timeout=timeout)
    if protocol == "http":
        http_compression = HttpCompression.Gzip if gzip else HttpCompression.NoCompression
        url = endpoint.rstrip("/") + "/v1/metrics"
        return HttpExporter(endpoint=url, compression=http_compression, timeout=timeout)
    raise ValueError(f"unknown OTLP protocol {protocol!r}; use grpc or http")


def push(exporter: MetricExporter, pods: Sequence[PodMetrics], time_ns: int, start_ns: int) -> bool:
    """Export one request; True on success (the SDK logs and retries transient failures itself)."""
    return exporter.export(metrics_data(pods, time_ns, start_ns)) is MetricExportResult.SUCCESS


def pod_metrics(snapshot: PodSnapshot, naming: MetricNaming = DEFAULT_NAMING) -> PodMetrics:
    """A simulated pod's snapshot as a sidecar sends it: k8s resource attributes, vLLM point labels."""
    resource = {**_SCRAPE_TARGET, **snapshot.resource()}
    out = PodMetrics(resource, start_ns=int(snapshot.created * 1e9))
    for family in naming.families(snapshot):
        name = naming.wire(family.info)
        for point in family.points:
            attributes = dict(point.labels)
            if point.histogram is not None:
                value = point.histogram
                out.histogram(name, value.bounds, value.counts, value.total, attributes)
            elif family.info.kind == "counter":
                out.counter(name, point.value, attributes)
            else:
                out.gauge(name, point.value, attributes)
    return out


def export_request(
    snapshots: Sequence[PodSnapshot], time_ns: int, naming: MetricNaming = DEFAULT_NAMING
) -> ExportMetricsServiceRequest:
    """The protobuf request an exporter would send for these pods, encoded by the SDK's own encoder."""
    pods = [pod_metrics(s, naming) for s in snapshots]
    return encode_metrics(metrics_data(pods, time_ns, time_ns))


def decoded_samples(
    snapshots: Sequence[PodSnapshot], time_ns: int, naming: MetricNaming = DEFAULT_NAMING
) -> list[Sample]:
    """What the scaler's receiver stores for these pods: the SDK's encoder, then the scaler's decoder."""
    return decode_export_request(export_request(snapshots, time_ns, naming)).samples


def snapshot_samples(snapshots: Sequence[PodSnapshot], naming: MetricNaming = DEFAULT_NAMING) -> list[Sample]:
    """The same samples as `decoded_samples`, built straight from `PodMetrics` for fast virtual replays.

    It skips protobuf (about 0.2 ms per pod instead of 0.8); a unit test holds it equal to `decoded_samples`.
    """
    return metrics_samples([pod_metrics(s, naming) for s in snapshots])


def metrics_samples(pods: Sequence[PodMetrics]) -> list[Sample]:
    """What the scaler's receiver stores for these `PodMetrics`, without protobuf (see `snapshot_samples`)."""
    out: list[Sample] = []
    for pod in pods:
        start = (pod.start_ns or 0) / 1e9
        res = pod.resource
        for name, points in pod.gauges.items():
            canonical = canonical_name(name)
            out += [Sample(canonical, _merged(res, a), Kind.GAUGE, v) for a, v in points]  # gauges carry no start
        for name, points in pod.counters.items():
            canonical = canonical_name(name)
            out += [Sample(canonical, _merged(res, a), Kind.COUNTER, v, start) for a, v in points]
        for name, hist_points in pod.histograms.items():
            canonical = canonical_name(name, histogram=True)
            for a, bounds, counts, total in hist_points:
                value = OtlpHistogram(float(sum(counts)), total, tuple(bounds), tuple(float(c) for c in counts))
                out.append(Sample(canonical, _merged(res, a), Kind.HISTOGRAM, value.count, start, histogram=value))
    return out


def _merged(resource: Attributes, attributes: Attributes) -> tuple[tuple[str, str], ...]:
    """Resource attributes merged into a point's, the point's winning, as the receiver does."""
    return tuple(sorted({**resource, **attributes}.items()))
