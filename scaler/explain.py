"""Read-only views of the store and the triggers, as JSON-ready dicts for /debug and `explain`.

`preview_query` evaluates exactly as a query trigger would (same parser, same evaluation), without
touching any trigger's memory. `describe_trigger` shows what a trigger last answered and why.

Ages are taken at explain time from the series as they are now, not from the last evaluation: the
series an answer names keep receiving samples after it, so an age against the answer's time would
go negative, and one remembered from it would freeze between KEDA calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from scaler.errors import InvalidTrigger, ScalerError
from scaler.names import canonical_name, label_value
from scaler.policy import Decision, WindowFigures, pool_metrics
from scaler.policy_spec import PolicySpec
from scaler.query import QueryResult, select
from scaler.signals import PodSignals
from scaler.store import Store
from scaler.triggers import Trigger, Triggers, TriggerState, answer_query, clamp, parse_trigger


def _number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value)


def age(now: float, then: float) -> float:
    """Seconds from `then` to `now`, never negative (a sample received during the request is age 0)."""
    return round(max(0.0, now - then), 3)


def describe_series(
    store: Store, metric: str, now: float, stale_after: float, limit: int, namespace: str | None = None
) -> dict[str, Any]:
    """The stored series of a metric; with `namespace`, only that namespace's."""
    name = canonical_name(metric)
    rows: list[dict[str, Any]] = []
    for series in store.series_named(name):
        if len(rows) >= limit:
            break
        if namespace is not None and label_value(series.label_map, "namespace") != namespace:
            continue
        rows.append(
            {
                "labels": series.label_map,
                "pod": series.pod,
                "kind": series.kind.value,
                "fresh": series.is_fresh(now, stale_after),
                "ended": series.ended,
                "samples": series.sample_count(),
                "age_seconds": age(now, series.last_time()) if series.has_data() else None,
                "last": _number(series.last()) if series.has_data() else None,
                "resets": series.resets,
            }
        )
    return {"metric": metric, "canonical_name": name, "count": len(rows), "series": rows}


def describe_result(result: QueryResult | None, now: float | None = None) -> dict[str, Any]:
    """The series behind a query answer; ages against `now` (default: the answer's own time)."""
    if result is None:
        return {"matched": 0, "series": []}
    at = result.now if now is None else now
    items = list(result.items.items())
    return {
        "matched": len(items) + result.stale_series,
        "stale_series": result.stale_series,
        "series": [
            {
                "labels": s.label_map,
                "pod": s.pod,
                "value": _number(value),
                "samples": s.sample_count(),
                "age_seconds": age(at, s.last_time()) if s.has_data() else None,
            }
            for s, value in items
        ],
    }


def preview_query(
    store: Store,
    params: Mapping[str, str],
    now: float,
    stale_after: float,
    warmup_until: float = 0.0,
    namespace: str | None = None,
) -> dict[str, Any]:
    """Evaluate query-trigger metadata given as parameters, under a new trigger's no-data rules (warm-up,
    missing labels); errors are reported, not raised. With `namespace`, confined to it as isolation does."""
    metadata = dict(params)
    metadata.setdefault("targetValue", "1")
    try:
        spec = parse_trigger(metadata, namespace or "", isolate=namespace is not None)
        if isinstance(spec, PolicySpec):
            raise InvalidTrigger("/debug/query evaluates query triggers; see /debug/scaledobjects for policies")
        window = spec.window if spec.window is not None else store.retention
        _, result, _ = answer_query(
            store, spec.query, spec.operation, window, now, stale_after, None, warmup_until, maintained=False
        )
    except ScalerError as exc:
        return {"error": str(exc), "code": exc.grpc_code, "http_status": exc.http_status}
    value = result.value if result is not None else 0.0
    return {
        "query": str(spec.query),
        "operationOverTime": spec.operation,
        "window_seconds": window,
        "metric_name": spec.metric_name,
        "value": _number(clamp(value, spec.clamp_min, spec.clamp_max)),
        "unclamped": _number(value),
        "note": None if result is not None else "no series match; a trigger answers 0",
        **describe_result(result),
    }


def describe_figures(figures: WindowFigures) -> dict[str, Any]:
    return {
        "window_seconds": figures.window,
        "demand_replicas": round(figures.demand, 3),
        "peak_replicas": round(figures.peak, 3),
        "signals": {
            s.name: {
                "replicas": round(s.replicas, 3),
                "peak_replicas": round(s.peak, 3),
                "kind": s.kind,
                "detail": s.detail,
            }
            for s in figures.signals
        },
    }


def describe_decision(decision: Decision, pod_ages: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A policy decision; `pod_ages` (by pod) replaces the ages the decision saw, for a live view."""
    ages = pod_ages or {}
    return {
        "recommendation": decision.replicas,
        "reason": decision.reason,
        "reporting_pods": decision.reporting_pods,
        "in_flight_pods": decision.in_flight,
        "late_pods": decision.late,
        "cold_start_seconds": decision.cold_start.seconds,
        "cold_start_source": decision.cold_start.source,
        "panic": decision.in_panic,
        "stable": describe_figures(decision.stable),
        "panic_window": describe_figures(decision.panic),
        "ttft_seconds": _number(decision.ttft),
        "itl_seconds": _number(decision.itl),
        "activation_value": _number(decision.activation_value),
        "demand_value": _number(decision.demand_value),
        "pool_replicas": decision.pool_replicas,
        "notes": list(decision.notes),
        "pods": [_pod_row(p, ages.get(p.pod)) for p in decision.pods],
    }


def _pod_row(pod: PodSignals, live_age: float | None) -> dict[str, Any]:
    row = {k: _number(v) if isinstance(v, float) else v for k, v in asdict(pod).items()}
    if live_age is not None:
        row["age"] = live_age
    return row


def newest_by_pod(store: Store, spec: Trigger) -> dict[str, float]:
    """Receive time of the newest sample each pod holds among the series a trigger reads, now."""
    if isinstance(spec, PolicySpec):
        held = [s for name in pool_metrics(spec) for s in store.select(name, spec.selector)]
    else:
        held = select(store, spec.query.selector)[0]
    newest: dict[str, float] = {}
    for series in held:
        if series.has_data():
            newest[series.pod] = max(newest.get(series.pod, series.last_time()), series.last_time())
    return newest


def describe_trigger(state: TriggerState, now: float, store: Store | None = None) -> dict[str, Any]:
    """What a trigger last answered and why; with `store`, data ages are read from the series now."""
    spec = state.spec
    newest = newest_by_pod(store, spec) if store is not None else {}
    seen = [*newest.values(), *(() if state.last_data is None else (state.last_data,))]
    last_data = max(seen, default=None)
    common = {
        "namespace": state.key.namespace,
        "name": state.key.name,
        "metric_name": state.key.metric_name,
        "target": spec.target,
        "value": _number(state.value),
        "active": state.active,
        "error": state.error,
        "last_asked_seconds_ago": age(now, state.last_asked),
        "last_data_seconds_ago": age(now, last_data) if last_data is not None else None,
    }
    if isinstance(spec, PolicySpec):
        common.update({"kind": "policy", "pool": spec.pool, "phase": spec.phase})
        if state.decision is not None:
            decided = state.decided_at if state.decided_at is not None else now
            ages = {p.pod: age(now, decided - p.age) for p in state.decision.pods if math.isfinite(p.age)}
            ages.update({pod: age(now, t) for pod, t in newest.items()})
            common.update(describe_decision(state.decision, ages))
        return common
    common.update({"kind": "query", "query": str(spec.query), "operationOverTime": spec.operation})
    common.update(describe_result(state.result, now))
    return common


def describe_triggers(triggers: Triggers, now: float, namespace: str | None = None) -> dict[str, Any]:
    """Every trigger's last answer; with `namespace`, only that namespace's."""
    states = [s for s in triggers.states() if namespace is None or s.key.namespace == namespace]
    items = sorted(states, key=lambda s: (s.key.namespace, s.key.name, s.key.metric_name))
    return {"triggers": [describe_trigger(s, now, triggers.store) for s in items]}
