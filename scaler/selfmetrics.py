"""The scaler's own Prometheus metrics, on an injected registry, all prefixed `keda_llm_scaler_`.

Counters and histograms are updated by the adapters. Gauges that describe state (series, pods, each
trigger's last value) are read from the store and the triggers at scrape time, so they cannot drift,
and a forgotten trigger's series disappear with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.store import Store
from scaler.triggers import Triggers

PREFIX = "keda_llm_scaler_"
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class SelfMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        store: Store,
        triggers: Triggers,
        clock: Callable[[], float],
        stale_after: float,
    ) -> None:
        self.registry = registry
        self.accepted = Counter(
            PREFIX + "datapoints_accepted", "OTLP datapoints stored, by transport", ["transport"], registry=registry
        )
        self.refused = Counter(
            PREFIX + "datapoints_refused", "OTLP datapoints refused, by reason", ["reason"], registry=registry
        )
        self.requests_failed = Counter(
            PREFIX + "otlp_requests_failed",
            "OTLP export requests rejected whole, by transport and reason",
            ["transport", "reason"],
            registry=registry,
        )
        self.rpc_duration = Histogram(
            PREFIX + "rpc_duration_seconds",
            "Time to answer KEDA and OTLP calls, by method",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )
        self.rpc_errors = Counter(
            PREFIX + "rpc_errors",
            "KEDA calls answered with an error, by method and gRPC code",
            ["method", "code"],
            registry=registry,
        )
        self.series_freed = Counter(PREFIX + "series_freed", "Series freed after retention", registry=registry)
        self.accept_errors = Counter(
            PREFIX + "accept_errors", "HTTP accept() calls failed (out of files)", ["port"], registry=registry
        )
        self.connections_closed = Counter(
            PREFIX + "connections_closed",
            "HTTP connections closed by the scaler: over_limit, evicted, header_timeout, body_timeout",
            ["port", "reason"],
            registry=registry,
        )
        self.stream_messages = Counter(
            PREFIX + "stream_messages",
            "StreamIsActive messages sent (all `true`): on a transition to active, or resent while active",
            ["reason"],
            registry=registry,
        )
        for reason in ("activation", "resend"):
            self.stream_messages.labels(reason)
        registry.register(_StateCollector(store, triggers, clock, stale_after))


class _StateCollector(Collector):
    def __init__(self, store: Store, triggers: Triggers, clock: Callable[[], float], stale_after: float) -> None:
        self.store = store
        self.triggers = triggers
        self.clock = clock
        self.stale_after = stale_after

    def collect(self) -> Iterator[Metric]:
        stats = self.store.stats(self.clock(), self.stale_after)
        yield GaugeMetricFamily(PREFIX + "series", "Series held in memory", value=stats.series)
        yield GaugeMetricFamily(PREFIX + "samples", "Samples held in memory", value=stats.samples)
        yield GaugeMetricFamily(PREFIX + "pods", "Pods with series held in memory", value=stats.pods)
        yield GaugeMetricFamily(
            PREFIX + "stale_pods", "Pods held whose last push is older than --stale-after", value=stats.stale_pods
        )
        labels = ["namespace", "scaledobject", "metric"]
        value = GaugeMetricFamily(
            PREFIX + "trigger_value", "Last value answered per ScaledObject trigger", labels=labels
        )
        active = GaugeMetricFamily(
            PREFIX + "trigger_active", "Last activity answered per trigger (1 active)", labels=labels
        )
        failing = GaugeMetricFamily(
            PREFIX + "trigger_error",
            "1 when the trigger's last evaluation was an error (stale or missing data)",
            labels=labels,
        )
        recommendation = GaugeMetricFamily(
            PREFIX + "recommendation", "Replicas a policy trigger last recommended", labels=labels
        )
        signal = GaugeMetricFamily(
            PREFIX + "signal_replicas",
            "Replicas each signal of a policy trigger asked for, over the stable window",
            labels=[*labels, "signal"],
        )
        for state in self.triggers.states():
            key = [state.key.namespace, state.key.name, state.key.metric_name]
            if state.value is not None:
                value.add_metric(key, state.value)
            active.add_metric(key, 1.0 if state.active else 0.0)
            failing.add_metric(key, 1.0 if state.error else 0.0)
            if state.decision is not None and state.error is None:
                recommendation.add_metric(key, float(state.decision.replicas))
                for figure in state.decision.stable.signals:
                    signal.add_metric([*key, figure.name], figure.replicas)
        yield from (value, active, failing, recommendation, signal)
