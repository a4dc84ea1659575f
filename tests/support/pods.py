"""Build a vLLM pod's samples as a collector would deliver them, for feeding a Store in virtual time."""

from __future__ import annotations

from dataclasses import dataclass, field

from scaler.otlp import Histogram, Kind, Labels, Sample
from scaler.store import Store

TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


@dataclass
class FakePod:
    """A pod whose gauges are set directly and whose counters advance at the given per-engine rates.

    Each request's TTFT and ITL land in the bucket holding the current `ttft` / `itl` value. vLLM
    0.33's extras are off unless set: `deferred` adds `num_requests_waiting_by_reason` (capacity being
    `waiting - deferred`, as `waiting` counts both), `asleep` adds `engine_sleep_state`, and
    `rejection_rate` adds the pod-wide (no `engine` label) `admission_rejections` counter. `only`
    limits the pod to those metric names.
    """

    name: str
    namespace: str = "ns"
    deployment: str = "llama"
    labels: dict[str, str] = field(default_factory=dict)
    engines: int = 1
    running: float = 0.0  # per engine
    waiting: float = 0.0
    kv: float = 0.0
    prompt_rate: float = 0.0  # tokens/s per engine
    generation_rate: float = 0.0
    preemption_rate: float = 0.0
    requests_rate: float = 0.0  # first tokens per second per engine
    ttft: float = 0.05
    itl: float = 0.02
    deferred: float | None = None  # per engine, of `waiting`
    asleep: bool | None = None
    rejection_rate: float | None = None  # requests refused per second, for the whole pod
    only: frozenset[str] | None = None
    totals: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, list[float]] = field(default_factory=dict)
    last: float | None = None

    def samples(self, now: float) -> list[Sample]:
        elapsed = 0.0 if self.last is None else now - self.last
        self.last = now
        rates = {
            "prompt": self.prompt_rate,
            "generation": self.generation_rate,
            "preemptions": self.preemption_rate,
            "requests": self.requests_rate,
            "rejections": self.rejection_rate or 0.0,
        }
        new_requests = self.requests_rate * elapsed
        for key, rate in rates.items():
            self.totals[key] = self.totals.get(key, 0.0) + rate * elapsed
        self._observe("ttft", TTFT_BOUNDS, self.ttft, new_requests)
        self._observe("itl", ITL_BOUNDS, self.itl, new_requests)
        out: list[Sample] = []
        for engine in range(self.engines):
            labels = self._labels(engine)
            out += [
                Sample("vllm:num_requests_running", labels, Kind.GAUGE, self.running),
                Sample("vllm:num_requests_waiting", labels, Kind.GAUGE, self.waiting),
                Sample("vllm:kv_cache_usage_perc", labels, Kind.GAUGE, self.kv),
                Sample("vllm:prompt_tokens", labels, Kind.COUNTER, self.totals["prompt"]),
                Sample("vllm:generation_tokens", labels, Kind.COUNTER, self.totals["generation"]),
                Sample("vllm:num_preemptions", labels, Kind.COUNTER, self.totals["preemptions"]),
                self._histogram("vllm:time_to_first_token_seconds", labels, "ttft", TTFT_BOUNDS),
                self._histogram("vllm:inter_token_latency_seconds", labels, "itl", ITL_BOUNDS),
            ]
            out += self._vllm033(labels)
        if self.rejection_rate is not None:
            labels = self._labels(None, reason="max_num_queued_reqs")
            out.append(Sample("vllm:admission_rejections", labels, Kind.COUNTER, self.totals["rejections"]))
        return [s for s in out if self.only is None or s.name in self.only]

    def _vllm033(self, labels: Labels) -> list[Sample]:
        out: list[Sample] = []
        if self.deferred is not None:
            for reason, value in (("capacity", self.waiting - self.deferred), ("deferred", self.deferred)):
                by_reason = tuple(sorted((*labels, ("reason", reason))))
                out.append(Sample("vllm:num_requests_waiting_by_reason", by_reason, Kind.GAUGE, value))
        if self.asleep is not None:
            states = {"awake": not self.asleep, "weights_offloaded": self.asleep, "discard_all": False}
            for state, on in states.items():
                state_labels = tuple(sorted((*labels, ("sleep_state", state))))
                out.append(Sample("vllm:engine_sleep_state", state_labels, Kind.GAUGE, float(on)))
        return out

    def _observe(self, key: str, bounds: tuple[float, ...], value: float, count: float) -> None:
        buckets = self.buckets.setdefault(key, [0.0] * (len(bounds) + 1))
        buckets[next((i for i, b in enumerate(bounds) if value <= b), len(bounds))] += count
        self.totals[key + "_sum"] = self.totals.get(key + "_sum", 0.0) + value * count

    def _histogram(self, name: str, labels: Labels, key: str, bounds: tuple[float, ...]) -> Sample:
        buckets = tuple(self.buckets[key])
        count = sum(buckets)
        histogram = Histogram(count, self.totals[key + "_sum"], bounds, buckets)
        return Sample(name, labels, Kind.HISTOGRAM, count, histogram=histogram)

    def _labels(self, engine: int | None, **extra: str) -> Labels:
        labels = {
            "k8s.pod.name": self.name,
            "k8s.namespace.name": self.namespace,
            "k8s.deployment.name": self.deployment,
            "model_name": "llama",
            **({} if engine is None else {"engine": str(engine)}),
            **extra,
            **self.labels,
        }
        return tuple(sorted(labels.items()))


def feed(store: Store, pods: list[FakePod], start: float, end: float, step: float = 1.0) -> float:
    """Push every pod's samples each `step` seconds from start to end inclusive; return end."""
    t = start
    while t <= end + 1e-9:
        for pod in pods:
            store.append(pod.samples(t), t)
        t += step
    return end
