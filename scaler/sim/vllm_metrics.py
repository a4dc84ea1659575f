"""vLLM's metric catalogue (names, types, HELP texts, bucket bounds) and a pod's metrics as data.

`PodSnapshot` is what both the /metrics page (`exposition`) and the OTLP push (`otlp_push`) are built
from. It holds what vLLM 0.33 exports; a `VllmVersion` says how an older vLLM exported the same state
(other names, HELP texts and buckets, families it lacked), and `MetricNaming` adds the `vllm:` or
`vllm.` spelling. Names, HELP texts and bounds follow vllm/v1/metrics/loggers.py (and, for 0.6,
vllm/engine/metrics.py); docs/vllm-metrics.md cites the commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

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
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

LABELS = ("model_name", "engine")
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")  # vllm/v1/engine FINISH_REASON_STRINGS
WAITING_REASONS = ("capacity", "deferred")  # loggers.py WAITING_REASON_CAPACITY, WAITING_REASON_DEFERRED
SLEEP_STATES = ("awake", "weights_offloaded", "discard_all")


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str  # without prefix or `_total`, e.g. "prompt_tokens"
    kind: str  # "gauge", "counter" or "histogram"
    help: str
    bounds: tuple[float, ...] = ()


RUNNING = MetricInfo("num_requests_running", "gauge", "Number of requests in model execution batches.")
WAITING = MetricInfo("num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
WAITING_BY_REASON = MetricInfo(
    "num_requests_waiting_by_reason",
    "gauge",
    "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
    "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
    "Sum of all reasons equals vllm:num_requests_waiting.",
)
SLEEP_STATE = MetricInfo(
    "engine_sleep_state",
    "gauge",
    "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
    "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
)
KV_USAGE = MetricInfo("kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
PROMPT_TOKENS = MetricInfo("prompt_tokens", "counter", "Number of prefill tokens processed.")
GENERATION_TOKENS = MetricInfo("generation_tokens", "counter", "Number of generation tokens processed.")
PREEMPTIONS = MetricInfo("num_preemptions", "counter", "Cumulative number of preemption from the engine.")
REQUEST_SUCCESS = MetricInfo("request_success", "counter", "Count of successfully processed requests.")
ITERATION_TOKENS = MetricInfo(  # a histogram whose name ends in `_total`; it keeps it
    "iteration_tokens_total", "histogram", "Histogram of number of tokens per engine_step.", ITERATION_TOKENS_BUCKETS
)
TTFT = MetricInfo(
    "time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.", TTFT_BUCKETS
)
ITL = MetricInfo(
    "inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds.", ITL_BUCKETS
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
    WAITING_BY_REASON,
    SLEEP_STATE,
    KV_USAGE,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREEMPTIONS,
    REQUEST_SUCCESS,
    ITERATION_TOKENS,
    TTFT,
    ITL,
    E2E,
    QUEUE_TIME,
)

# Older spellings. 0.9.2 renamed gpu_cache_usage_perc; 0.10 exported both (the old one marked deprecated,
# the missing space is vLLM's), 0.11 hid it, 0.12 removed it. time_per_output_token_seconds was all
# there was until 0.11 added inter_token_latency_seconds; 0.15 removed it.
_GPU_CACHE_DEPRECATED = MetricInfo(
    "gpu_cache_usage_perc",
    "gauge",
    "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
)
_GPU_CACHE_V0 = MetricInfo("gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.")
_TPOT = MetricInfo("time_per_output_token_seconds", "histogram", "Histogram of time per output token in seconds.")


@dataclass(frozen=True, slots=True)
class VllmVersion:
    """How one vLLM release exported the families of a 0.33 snapshot."""

    name: str
    exported_as: tuple[tuple[MetricInfo, tuple[MetricInfo, ...]], ...] = ()  # family -> what it was sent as
    finished_reasons: tuple[str, ...] = FINISHED_REASONS

    def families(self, families: Iterable[Family]) -> tuple[Family, ...]:
        spellings = {info.name: as_ for info, as_ in self.exported_as}
        out: list[Family] = []
        for family in families:
            points = family.points
            if family.info is REQUEST_SUCCESS:
                points = tuple(p for p in points if dict(p.labels).get("finished_reason") in self.finished_reasons)
            for info in spellings.get(family.info.name, (family.info,)):
                same = info.bounds == family.info.bounds
                out.append(Family(info, points if same else _rebucketed(points, info.bounds)))
        return tuple(out)


def _rebucketed(points: tuple[Point, ...], bounds: tuple[float, ...]) -> tuple[Point, ...]:
    return tuple(replace(p, histogram=p.histogram.rebucketed(bounds)) if p.histogram else p for p in points)


_OLD = ((WAITING_BY_REASON, ()), (SLEEP_STATE, ()))  # 0.12 added the sleep state, 2026-04 the waiting split
VERSIONS: Mapping[str, VllmVersion] = {
    "0.33": VllmVersion("0.33"),
    "0.10": VllmVersion(
        "0.10",
        (*_OLD, (KV_USAGE, (_GPU_CACHE_DEPRECATED, KV_USAGE)), (ITL, (replace(_TPOT, bounds=ITL_BUCKETS),))),
        FINISHED_REASONS[:3],
    ),
    "0.6": VllmVersion(  # vLLM 0.6.3's V0 engine, vllm/engine/metrics.py
        "0.6",
        (
            *_OLD,
            (RUNNING, (replace(RUNNING, help="Number of requests currently running on GPU."),)),
            (KV_USAGE, (_GPU_CACHE_V0,)),
            (ITERATION_TOKENS, ()),
            (QUEUE_TIME, ()),
            (TTFT, (replace(TTFT, bounds=TTFT_BUCKETS[:16]),)),
            (ITL, (replace(_TPOT, bounds=ITL_BUCKETS[:13]),)),
            (
                E2E,
                (
                    replace(
                        E2E,
                        help="Histogram of end to end request latency in seconds.",
                        bounds=(1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0),
                    ),
                ),
            ),
        ),
        FINISHED_REASONS[:3],
    ),
}
VERSION_ALIASES = {"legacy": "0.10", "latest": "0.33"}


def vllm_version(text: str) -> str:
    """The version a `--vllm-version` value names; ValueError listing the known ones otherwise."""
    name = VERSION_ALIASES.get(text, text)
    if name not in VERSIONS:
        known = ", ".join([*VERSIONS, *VERSION_ALIASES])
        raise ValueError(f"unknown vLLM version {text!r}; one of {known}")
    return name


@dataclass(frozen=True, slots=True)
class MetricNaming:
    """How names are spelled: `vllm:` (a collector's prometheus receiver) or `vllm.` (OTel style), and
    which vLLM release's names, HELP texts and buckets (`VERSIONS`)."""

    dotted: bool = False
    version: str = "0.33"  # a key of VERSIONS, or an alias

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", vllm_version(self.version))

    def families(self, snapshot: PodSnapshot) -> tuple[Family, ...]:
        """The snapshot's families as this version exported them."""
        return VERSIONS[self.version].families(snapshot.families)

    def base(self, info: MetricInfo) -> str:
        return ("vllm." if self.dotted else "vllm:") + info.name

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
