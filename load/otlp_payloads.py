"""OTLP metrics requests that look like vLLM pods behind an OTel Collector, shared by the benchmarks.

A pod is what a KServe-style collector forwards after scraping vLLM's `/metrics`: vLLM's gauges,
counters and four latency histograms (vLLM's bucket bounds), the `_created` gauges prometheus_client
adds, the process/python series, and the receiver's own scrape series; 40 series in all. The
receiver and `resourcedetection` set the resource attributes, and a `transform` copies namespace,
deployment and pod onto every point. Built with the opentelemetry-proto generated classes: one pod's
shape is built once, and each pod is a copy of it with its own name and load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

# vLLM's bucket bounds (vllm/v1/metrics/loggers.py).
TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TTFT_BOUNDS += (20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
ITL_BOUNDS += (40.0, 80.0)
REQUEST_BOUNDS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)
REQUEST_BOUNDS += (240.0, 480.0, 960.0, 1920.0, 7680.0)

FINISHED_REASONS = ("stop", "length", "abort")
START_NS = 1_760_000_000 * 10**9  # every pod started at this instant; tick t is t seconds later
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_SCOPE = InstrumentationScope(
    name="github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver", version="0.115.0"
)
_BY_REASON = "vllm:request_success_total"
_POD_ATTRIBUTE = 2  # index of `pod` in every point's attributes (namespace, deployment, pod, ...)


@dataclass(frozen=True, slots=True)
class Pod:
    """One vLLM pod of a Deployment; `index` seeds its (deterministic) load."""

    index: int
    namespace: str = "llm"
    deployment: str = "llama"
    model: str = "meta-llama/Llama-3.1-8B-Instruct"

    @property
    def name(self) -> str:
        return f"{self.deployment}-7c9d5b6f4-{self.index:05d}"

    @property
    def requests(self) -> int:
        """Requests finished per second: a pod-specific load, 2 to 6."""
        return 2 + self.index % 5


@dataclass(frozen=True, slots=True)
class _Spec:
    """One metric of the catalogue: its kind, HELP text and the extra labels of each of its points."""

    name: str
    kind: str  # gauge, counter or histogram
    help: str = ""
    vllm: bool = True  # vLLM's points carry model_name and engine
    points: tuple[dict[str, str], ...] = ({},)
    bounds: tuple[float, ...] = ()
    typical: float = 0.0  # a histogram's usual observation


def _catalogue() -> list[_Spec]:
    success = tuple({"finished_reason": r} for r in FINISHED_REASONS)
    histograms = [
        _Spec("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.",
              bounds=TTFT_BOUNDS, typical=0.12),
        _Spec("vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds.",
              bounds=ITL_BOUNDS, typical=0.03),
        _Spec("vllm:e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in seconds.",
              bounds=REQUEST_BOUNDS, typical=6.0),
        _Spec("vllm:request_queue_time_seconds", "histogram",
              "Histogram of time spent in WAITING phase for request.", bounds=REQUEST_BOUNDS, typical=0.4),
    ]  # fmt: skip
    counters = [
        _Spec("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed."),
        _Spec("vllm:generation_tokens_total", "counter", "Number of generation tokens processed."),
        _Spec("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine."),
        _Spec("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in queried tokens."),
        _Spec("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in cached tokens."),
        _Spec("vllm:request_success_total", "counter", "Count of successfully processed requests.", points=success),
    ]
    created = [
        _Spec(s.name.removesuffix("_total") + "_created", "gauge", s.help, points=s.points)
        for s in counters + histograms
    ]
    info = {"block_size": "16", "cache_dtype": "auto", "gpu_memory_utilization": "0.9"}
    python = {"implementation": "CPython", "major": "3", "minor": "12", "patchlevel": "9", "version": "3.12.9"}
    scrape = ["up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling"]
    process = ["process_resident_memory_bytes", "process_virtual_memory_bytes", "process_start_time_seconds"]
    return [
        _Spec("vllm:num_requests_running", "gauge", "Number of requests in model execution batches."),
        _Spec("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
        _Spec("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage."),
        *counters,
        *histograms,
        *created,
        _Spec("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig", points=(info,)),
        *(_Spec(name, "gauge", vllm=False) for name in [*scrape, "scrape_series_added"]),
        _Spec("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", vllm=False),
        *(_Spec(name, "gauge", vllm=False) for name in [*process, "process_open_fds", "process_max_fds"]),
        _Spec("python_info", "gauge", "Python platform information", vllm=False, points=(python,)),
    ]


CATALOGUE = _catalogue()
SERIES_PER_POD = sum(len(spec.points) for spec in CATALOGUE)
HISTOGRAMS_PER_POD = sum(1 for spec in CATALOGUE if spec.kind == "histogram")


def leading_specs(series: int) -> list[_Spec]:
    """The catalogue's first metrics that hold exactly `series` series: a pod whose collector filters its
    scrape down (KServe's keeps the one metric its InferenceService names; its first is a vLLM gauge)."""
    kept: list[_Spec] = []
    total = 0
    for spec in CATALOGUE:
        if total >= series:
            break
        kept.append(spec)
        total += len(spec.points)
    if series < 1 or total != series:
        bounds = sorted({sum(len(s.points) for s in CATALOGUE[: k + 1]) for k in range(len(CATALOGUE))})
        raise ValueError(f"series per pod must end on a whole metric of the catalogue, one of {bounds}; got {series}")
    return kept


def fleet(pods: int, namespace: str = "llm", deployment: str = "llama", first: int = 0) -> list[Pod]:
    return [Pod(i, namespace, deployment) for i in range(first, first + pods)]


def resource_metrics(pod: Pod, tick: int) -> ResourceMetrics:
    """One pod's scrape at `tick` seconds after START_NS."""
    metrics = ResourceMetrics()
    metrics.CopyFrom(_shape(pod.namespace, pod.deployment, pod.model))
    _fill(metrics, pod, tick)
    return metrics


def export_request(pods: Sequence[Pod], tick: int) -> ExportMetricsServiceRequest:
    """One collector batch: every pod's scrape at `tick`."""
    return ExportMetricsServiceRequest(resource_metrics=[resource_metrics(pod, tick) for pod in pods])


@dataclass
class Batches:
    """A fleet serialized once per pod; a batch of pods is the concatenation of their requests.

    Concatenated protobuf messages merge, and repeated fields append, so joining one-pod
    `ExportMetricsServiceRequest`s gives the request that holds all those pods.
    """

    pods: Sequence[Pod]
    tick: int = 1
    series: int = SERIES_PER_POD  # per pod: fewer keeps the catalogue's leading metrics (leading_specs)
    per_pod: list[bytes] = field(init=False)

    def __post_init__(self) -> None:
        kept = len(leading_specs(self.series))
        requests = [export_request([pod], self.tick) for pod in self.pods]
        for request in requests:
            del request.resource_metrics[0].scope_metrics[0].metrics[kept:]
        self.per_pod = [request.SerializeToString() for request in requests]

    def requests(self, pods_per_request: int) -> list[bytes]:
        step = pods_per_request
        return [b"".join(self.per_pod[i : i + step]) for i in range(0, len(self.per_pod), step)]


def datapoints_in(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                which = metric.WhichOneof("data")
                total += len(getattr(metric, which).data_points) if which else 0
    return total


@cache
def _shape(namespace: str, deployment: str, model: str) -> ResourceMetrics:
    """One pod's metrics with every attribute in place but the pod's name, and every value zero."""
    resource = {
        "service.name": "otel-collector",
        "service.instance.id": "localhost:8080",
        "server.address": "localhost",
        "server.port": "8080",
        "url.scheme": "http",
        "k8s.pod.name": "",
        "k8s.namespace.name": namespace,
        "k8s.deployment.name": deployment,
    }
    base = {"namespace": namespace, "deployment": deployment, "pod": ""}
    vllm = {**base, "model_name": model, "engine": "0"}
    metrics = [_metric(spec, vllm if spec.vllm else base) for spec in CATALOGUE]
    return ResourceMetrics(
        resource=Resource(attributes=_key_values(resource)),
        scope_metrics=[ScopeMetrics(scope=_SCOPE, metrics=metrics)],
    )


def _metric(spec: _Spec, labels: dict[str, str]) -> Metric:
    attributes = [_key_values({**labels, **extra}) for extra in spec.points]
    if spec.kind == "histogram":
        points = [
            HistogramDataPoint(attributes=a, start_time_unix_nano=START_NS, explicit_bounds=spec.bounds)
            for a in attributes
        ]
        return Metric(
            name=spec.name,
            description=spec.help,
            histogram=Histogram(data_points=points, aggregation_temporality=_CUMULATIVE),
        )
    if spec.kind == "counter":
        numbers = [NumberDataPoint(attributes=a, start_time_unix_nano=START_NS) for a in attributes]
        total = Sum(data_points=numbers, aggregation_temporality=_CUMULATIVE, is_monotonic=True)
        return Metric(name=spec.name, description=spec.help, sum=total)
    gauge = Gauge(data_points=[NumberDataPoint(attributes=a) for a in attributes])
    return Metric(name=spec.name, description=spec.help, gauge=gauge)


def _fill(metrics: ResourceMetrics, pod: Pod, tick: int) -> None:
    """Put the pod's name, the scrape time and the pod's load at `tick` into a copy of the shape."""
    name = pod.name
    for attribute in metrics.resource.attributes:
        if attribute.key == "k8s.pod.name":
            attribute.value.string_value = name
    time_ns = START_NS + tick * 10**9
    numbers = _numbers(pod, tick)
    for spec, metric in zip(CATALOGUE, metrics.scope_metrics[0].metrics, strict=True):
        if spec.kind == "histogram":
            point = metric.histogram.data_points[0]
            point.attributes[_POD_ATTRIBUTE].value.string_value = name
            point.time_unix_nano = time_ns
            _observe(point, spec, pod.requests * tick)
            continue
        points = metric.gauge.data_points if spec.kind == "gauge" else metric.sum.data_points
        for k, point in enumerate(points):
            point.attributes[_POD_ATTRIBUTE].value.string_value = name
            point.time_unix_nano = time_ns
            value = numbers.get(spec.name, 1.0)
            point.as_double = value // (1 + 4 * k) if spec.name == _BY_REASON else value


def _numbers(pod: Pod, tick: int) -> dict[str, float]:
    """Every number the pod reports at `tick`; anything not listed is 1 (`up`, info gauges)."""
    i, done = pod.index, pod.requests * tick
    started = START_NS / 1e9
    created = {spec.name: started for spec in CATALOGUE if spec.name.endswith("_created")}
    return created | {
        "vllm:num_requests_running": float((i * 7 + tick) % 48),
        "vllm:num_requests_waiting": float((i * 3 + tick) % 6),
        "vllm:kv_cache_usage_perc": ((i * 13 + tick) % 90) / 100,
        "vllm:prompt_tokens_total": done * 850.0,
        "vllm:generation_tokens_total": done * 210.0,
        "vllm:num_preemptions_total": float(done // 40),
        "vllm:prefix_cache_queries_total": done * 850.0,
        "vllm:prefix_cache_hits_total": done * 300.0,
        _BY_REASON: float(done),  # divided by 1, 5 and 9 for stop, length and abort
        "scrape_duration_seconds": 0.004 + (i % 7) / 1000,
        "scrape_samples_scraped": 412.0,
        "scrape_samples_post_metric_relabeling": 412.0,
        "process_cpu_seconds_total": tick * 0.9,
        "process_resident_memory_bytes": 3.1e9,
        "process_virtual_memory_bytes": 4.4e10,
        "process_start_time_seconds": started,
        "process_open_fds": 96.0,
        "process_max_fds": 1048576.0,
    }


def _observe(point: HistogramDataPoint, spec: _Spec, observations: int) -> None:
    """`observations` spread as a small bell over the buckets around the spec's typical value."""
    centre = next((k for k, bound in enumerate(spec.bounds) if bound >= spec.typical), len(spec.bounds))
    weights = [max(0, 4 - abs(k - centre)) for k in range(len(spec.bounds) + 1)]
    per_weight = observations // sum(weights)
    counts = [w * per_weight for w in weights]
    counts[centre] += observations - sum(counts)
    point.count = observations
    point.sum = observations * spec.typical
    point.bucket_counts[:] = counts


def _key_values(attributes: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()]
