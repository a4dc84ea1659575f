"""A pod's /metrics page: its `PodSnapshot` in Prometheus text format, through prometheus_client.

A custom Collector on a private CollectorRegistry yields the snapshot's families, so the exposition
(`_total` on counters, their `_created` samples, `le` buckets) is prometheus_client's, as vLLM's is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.sim.vllm_metrics import DEFAULT_NAMING, Family, MetricNaming, PodSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector(Collector):
    """Collects whatever `source()` returns at scrape time."""

    def __init__(self, source: Callable[[], PodSnapshot], naming: MetricNaming = DEFAULT_NAMING) -> None:
        self.source = source
        self.naming = replace(naming, dotted=False)  # Prometheus names use `vllm:`

    def collect(self) -> Iterator[Metric]:
        snapshot = self.source()
        for family in self.naming.families(snapshot):
            yield self._family(family, snapshot.created)

    def _family(self, family: Family, created: float) -> Metric:
        info = family.info
        name, text = self.naming.base(info), info.help
        label_names = [k for k, _ in family.points[0].labels] if family.points else []
        metric: GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily
        if info.kind == "gauge":
            metric = GaugeMetricFamily(name, text, labels=label_names)
            for point in family.points:
                metric.add_metric([v for _, v in point.labels], point.value)
        elif info.kind == "counter":
            metric = CounterMetricFamily(name, text, labels=label_names)
            for point in family.points:
                metric.add_metric([v for _, v in point.labels], point.value, created=created)
        else:
            metric = HistogramMetricFamily(name, text, labels=label_names)
            for point in family.points:
                assert point.histogram is not None
                metric.add_metric([v for _, v in point.labels], point.histogram.cumulative(), point.histogram.total)
        return metric


def registry_for(source: Callable[[], PodSnapshot], naming: MetricNaming = DEFAULT_NAMING) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source, naming))
    return registry


def render(snapshot: PodSnapshot, naming: MetricNaming = DEFAULT_NAMING) -> bytes:
    """The Prometheus text page for one snapshot."""
    return generate_latest(registry_for(lambda: snapshot, naming))
