"""vLLM V1's metric catalogue (names, types, HELP texts, bucket bounds) and a pod's metrics as data.

`PodSnapshot` is what both the /metrics page (`exposition`) and the OTLP push (`otlp_push`) are built
from. Names, HELP texts and bounds follow vllm/v1/metrics/loggers.py; `MetricNaming` gives the
variants a scaler must accept: `vllm:` or `vllm.`, and the pre-V1 names of two metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scaler.sim.histogram import HistogramValue

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)  # fmt: skip

LABELS = ("model_name", "engine")
FINISHED_REASONS = ("stop", "length", "abort")


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str  # without prefix or `_total`, e.g. "prompt_tokens"
    kind: str  # "gauge", "counter" or "histogram"
    help: str
    bounds: tuple[float, ...] = ()
    legacy_name: str = ""  # the pre-V1 name, when it differs
    legacy_help: str = ""


RUNNING = MetricInfo("num_requests_running", "gauge", "Number of requests in model execution batches.")
WAITING = MetricInfo("num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
KV_USAGE = MetricInfo(
    "kv_cache_usage_perc",
    "gauge",
    "KV-cache usage. 1 means 100 percent usage.",
    legacy_name="gpu_cache_usage_perc",
    legacy_help="GPU KV-cache usage. 1 means 100 percent usage.",
)
PROMPT_TOKENS = MetricInfo("prompt_tokens", "counter", "Number of prefill tokens processed.")
GENERATION_TOKENS = MetricInfo("generation_tokens", "counter", "Number of generation tokens processed.")
PREEMPTIONS = MetricInfo("num_preemptions", "counter", "Cumulative number of preemption from the engine.")
REQUEST_SUCCESS = MetricInfo("request_success", "counter", "Count of successfully processed requests.")
TTFT = MetricInfo(
    "time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.", TTFT_BUCKETS
)
ITL = MetricInfo(
    "inter_token_latency_seconds",
    "histogram",
    "Histogram of inter-token latency in seconds.",
    ITL_BUCKETS,
    legacy_name="time_per_output_token_seconds",
    legacy_help="Histogram of time per output token in seconds.",
)
E2E = MetricInfo(
    "e2e_request_latency_seconds",
    "histogram",
    "Histogram of e2e request latency in seconds.",
    REQUEST_LATENCY_BUCKETS,
)
QUEUE_TIME = MetricInfo(
    "request_queue_time_seconds",
    "histogram",
    "Histogram of time spent in WAITING phase for request.",
    REQUEST_LATENCY_BUCKETS,
)
CATALOGUE = (
    RUNNING,
    WAITING,
    KV_USAGE,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREEMPTIONS,
    REQUEST_SUCCESS,
    TTFT,
    ITL,
    E2E,
    QUEUE_TIME,
)


@dataclass(frozen=True, slots=True)
class MetricNaming:
    """How names are spelled: `vllm:` (a collector's prometheus receiver) or `vllm.` (OTel style)."""

    dotted: bool = False
    legacy: bool = False  # gpu_cache_usage_perc and time_per_output_token_seconds, as vLLM < 0.10 named them

    def base(self, info: MetricInfo) -> str:
        name = info.legacy_name if self.legacy and info.legacy_name else info.name
        return ("vllm." if self.dotted else "vllm:") + name

    def help(self, info: MetricInfo) -> str:
        return info.legacy_help if self.legacy and info.legacy_help else info.help

    def wire(self, info: MetricInfo) -> str:
        """The OTLP metric name: a prometheus receiver keeps counters' `_total`; OTel style has none."""
        suffix = "_total" if info.kind == "counter" and not self.dotted else ""
        return self.base(info) + suffix


DEFAULT_NAMING = MetricNaming()

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Point:
    labels: Labels
    value: float = 0.0
    histogram: HistogramValue | None = None


@dataclass(frozen=True, slots=True)
class Family:
    info: MetricInfo
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """One pod's vLLM metrics at one instant, plus the identity a collector sidecar attaches."""

    pod: str
    namespace: str
    deployment: str
    role: str
    created: float  # wall-clock seconds when the counters started: Prometheus `_created`, OTLP start time
    families: tuple[Family, ...]

    def resource(self) -> dict[str, str]:
        return {
            "k8s.pod.name": self.pod,
            "k8s.namespace.name": self.namespace,
            "k8s.deployment.name": self.deployment,
            "role": self.role,
        }

    def family(self, info: MetricInfo) -> Family:
        return next(f for f in self.families if f.info is info)

    def total(self, info: MetricInfo, **labels: str) -> float:
        """The sum over points whose labels include `labels` (for a histogram: its count)."""
        out = 0.0
        for point in self.family(info).points:
            if _has(point.labels, labels):
                out += point.histogram.count if point.histogram is not None else point.value
        return out


def _has(labels: Labels, wanted: Mapping[str, str]) -> bool:
    present = dict(labels)
    return all(present.get(k) == v for k, v in wanted.items())
