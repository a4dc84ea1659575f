"""What a push may store: request-size counts, label limits and namespace-bound tokens. Pure.

Points over a limit are refused one by one and reported through OTLP partial success; nothing
already stored is touched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from scaler.names import label_value
from scaler.otlp import Decoded, Labels, Sample


@dataclass(frozen=True, slots=True)
class Limits:
    max_labels: int = 64
    max_label_length: int = 2048


def count_datapoints(request: ExportMetricsServiceRequest) -> int:
    """Datapoints in a request, counted without decoding them."""
    total = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                which = metric.WhichOneof("data")
                if which is not None:
                    total += len(getattr(metric, which).data_points)
    return total


def screen(decoded: Decoded, limits: Limits, namespace: str | None = None) -> Decoded:
    """Keep the samples within the label limits (and, for a bound token, in its namespace)."""
    kept: list[Sample] = []
    refused: Counter[str] = Counter(decoded.refused)
    for sample in decoded.samples:
        reason = _refusal(sample.name, sample.labels, limits, namespace)
        if reason:
            refused[reason] += 1
        else:
            kept.append(sample)
    return Decoded(kept, refused)


@lru_cache(maxsize=1 << 20)  # label sets repeat at every export: judge each once (10k pods: 400k)
def _refusal(name: str, labels: Labels, limits: Limits, namespace: str | None) -> str:
    if len(labels) > limits.max_labels:
        return "too_many_labels"
    longest = limits.max_label_length
    if len(name) > longest or any(len(k) > longest or len(v) > longest for k, v in labels):
        return "label_too_long"
    if namespace is not None and label_value(dict(labels), "namespace") != namespace:
        return "namespace_not_allowed"
    return ""
