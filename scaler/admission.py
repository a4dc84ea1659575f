"""What a push may store: request-size counts, label limits and namespace-bound tokens. Pure.

Points over a limit are refused one by one and reported through OTLP partial success; nothing
already stored is touched. The label limits are asked by the decoder once per new label set
(scaler.otlp.LabelJudge); the namespace of a bound token is judged per request, by `screen`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from scaler.names import NAMESPACE_KEYS
from scaler.otlp import Decoded, Labels, Sample, attributes_of, count_datapoints, count_points

__all__ = ["Limits", "confine", "count_datapoints", "screen"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Label limits; also the decoder's LabelJudge."""

    max_labels: int = 64
    max_label_length: int = 2048

    def refuse_labels(self, labels: Labels) -> str:
        return _refusal(labels, self, None)


def confine(request: ExportMetricsServiceRequest, namespace: str | None) -> Counter[str]:
    """Drop the resources whose own namespace attributes name another namespace than a bound token's.

    A point's attributes override its resource's when labels are merged, so a resource labelled B
    under points labelled A would pass `screen`: it is judged here, before the merge hides it.
    """
    refused: Counter[str] = Counter()
    if namespace is None:
        return refused
    for index in reversed(range(len(request.resource_metrics))):
        resource_metrics = request.resource_metrics[index]
        if _foreign(resource_metrics.resource.attributes, namespace):
            refused["namespace_not_allowed"] += count_points(resource_metrics)
            del request.resource_metrics[index]
    return refused


def _foreign(attributes: Iterable[KeyValue], namespace: str) -> bool:
    values = attributes_of(attributes)  # as labels would read them
    return any(values.get(key, namespace) != namespace for key in NAMESPACE_KEYS)


def screen(decoded: Decoded, limits: Limits, namespace: str | None = None) -> Decoded:
    """Keep the samples within the label limits (and, for a bound token, in its namespace)."""
    kept: list[Sample] = []
    starts: list[int] = []  # decoded.resource_starts, as places in `kept`
    pending = iter(decoded.resource_starts)
    next_start = next(pending, None)
    refused: Counter[str] = Counter(decoded.refused)
    judged: dict[int, str] = {}  # label sets repeat across a request's metrics: judge each once
    longest = limits.max_label_length
    for index, sample in enumerate(decoded.samples):
        while next_start is not None and next_start <= index:
            if not starts or starts[-1] != len(kept):
                starts.append(len(kept))
            next_start = next(pending, None)
        reason = judged.get(id(sample.labels))
        if reason is None:
            reason = judged[id(sample.labels)] = _refusal(sample.labels, limits, namespace)
        if not reason and len(sample.name) > longest:
            reason = "label_too_long"
        if reason:
            refused[reason] += 1
        else:
            kept.append(sample)
    return Decoded(kept, refused, decoded.datapoints, sum(1 for s in kept if s.no_value), starts)


def _refusal(labels: Labels, limits: Limits, namespace: str | None) -> str:
    if len(labels) > limits.max_labels:
        return "too_many_labels"
    longest = limits.max_label_length
    if any(len(k) > longest or len(v) > longest for k, v in labels):
        return "label_too_long"
    if namespace is not None and not _confined(labels, namespace):
        return "namespace_not_allowed"
    return ""


def _confined(labels: Labels, namespace: str) -> bool:
    """Every namespace label (`namespace`, `k8s.namespace.name`) is `namespace`, and there is one."""
    found = False
    for key, value in labels:
        if key in NAMESPACE_KEYS:
            if value != namespace:
                return False
            found = True
    return found
