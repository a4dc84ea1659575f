"""Read-only views of the store and the triggers, as JSON-ready dicts for /debug and `explain`.

`preview_query` evaluates exactly as a query trigger would (same parser, same evaluation), without
touching any trigger's memory. `describe_trigger` shows what a trigger last answered and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from scaler.errors import InvalidTrigger, ScalerError
from scaler.names import canonical_name
from scaler.policy import Decision, WindowFigures
from scaler.policy_spec import PolicySpec
from scaler.query import QueryResult, evaluate_query
from scaler.store import Store
from scaler.triggers import Triggers, TriggerState, clamp, parse_trigger


def _number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value)


def describe_series(store: Store, metric: str, now: float, stale_after: float, limit: int) -> dict[str, Any]:
    name = canonical_name(metric)
    rows: list[dict[str, Any]] = []
    for series in store.series_named(name):
        if len(rows) >= limit:
            break
        rows.append(
            {
                "labels": series.label_map,
                "pod": series.pod,
                "kind": series.kind.value,
                "fresh": series.is_fresh(now, stale_after),
                "ended": series.ended,
                "samples": series.sample_count(),
                "age_seconds": round(now - series.last_time(), 3) if series.has_data() else None,
                "last": _number(series.last()) if series.has_data() else None,
                "resets": series.resets,
            }
        )
    return {"metric": metric, "canonical_name": name, "count": len(rows), "series": rows}


def describe_result(result: QueryResult | None) -> dict[str, Any]:
    if result is None:
        return {"matched": 0, "series": []}
    return {
        "matched": len(result.series) + result.stale_series,
        "stale_series": result.stale_series,
        "series": [
            {
                "labels": s.labels,
                "pod": s.pod,
                "value": _number(s.value),
                "samples": s.samples,
                "age_seconds": round(s.age, 3),
            }
            for s in result.series
        ],
    }


def preview_query(store: Store, params: Mapping[str, str], now: float, stale_after: float) -> dict[str, Any]:
    """Evaluate query-trigger metadata given as parameters; errors are reported, not raised."""
    metadata = dict(params)
    metadata.setdefault("targetValue", "1")
    try:
        spec = parse_trigger(metadata)
        if isinstance(spec, PolicySpec):
            raise InvalidTrigger("/debug/query evaluates query triggers; see /debug/scaledobjects for policies")
        window = spec.window if spec.window is not None else store.retention
        result = evaluate_query(store, spec.query, spec.operation, window, now, stale_after, maintained=False)
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
        "note": None if result is not None else "no series match; a trigger answers 0 (or warming up)",
        **describe_result(result),
    }


def describe_figures(figures: WindowFigures) -> dict[str, Any]:
    return {
        "window_seconds": figures.window,
        "demand_replicas": round(figures.demand, 3),
        "peak_replicas": round(figures.peak, 3),
        "signals": {
            s.name: {"replicas": round(s.replicas, 3), "peak_replicas": round(s.peak, 3), "detail": s.detail}
            for s in figures.signals
        },
    }


def describe_decision(decision: Decision) -> dict[str, Any]:
    return {
        "recommendation": decision.replicas,
        "reason": decision.reason,
        "reporting_pods": decision.reporting_pods,
        "panic": decision.in_panic,
        "stable": describe_figures(decision.stable),
        "panic_window": describe_figures(decision.panic),
        "ttft_seconds": _number(decision.ttft),
        "itl_seconds": _number(decision.itl),
        "activation_value": _number(decision.activation_value),
        "pool_replicas": decision.pool_replicas,
        "notes": list(decision.notes),
        "pods": [{k: _number(v) if isinstance(v, float) else v for k, v in asdict(p).items()} for p in decision.pods],
    }


def describe_trigger(state: TriggerState, now: float) -> dict[str, Any]:
    spec = state.spec
    common = {
        "namespace": state.key.namespace,
        "name": state.key.name,
        "metric_name": state.key.metric_name,
        "target": spec.target,
        "value": _number(state.value),
        "active": state.active,
        "error": state.error,
        "last_asked_seconds_ago": round(now - state.last_asked, 3),
        "last_data_seconds_ago": round(now - state.last_data, 3) if state.last_data is not None else None,
    }
    if isinstance(spec, PolicySpec):
        common.update({"kind": "policy", "pool": spec.pool, "phase": spec.phase})
        if state.decision is not None:
            common.update(describe_decision(state.decision))
        return common
    common.update({"kind": "query", "query": str(spec.query), "operationOverTime": spec.operation})
    common.update(describe_result(state.result))
    return common


def describe_triggers(triggers: Triggers, now: float) -> dict[str, Any]:
    items = sorted(triggers.states(), key=lambda s: (s.key.namespace, s.key.name, s.key.metric_name))
    return {"triggers": [describe_trigger(s, now) for s in items]}
