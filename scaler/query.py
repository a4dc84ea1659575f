"""Evaluating a query trigger against the store at a given time: select, reduce over time, aggregate.

Each matched fresh series is first reduced over the window by `operationOverTime`, then the series
values are combined by the query's aggregation, then clamped. Histograms answer to `<name>_count`
and `<name>_sum`, as in the Prometheus exposition of the same metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scaler.errors import InsufficientData, StaleData
from scaler.expression import Query, Selector
from scaler.otlp import Kind
from scaler.series import Series
from scaler.store import Store

OPERATIONS = ("last_one", "rate", "count", "avg", "min", "max")
_HISTOGRAM_COLUMNS = {"_count": 0, "_sum": 1}


@dataclass(frozen=True, slots=True)
class SeriesValue:
    labels: dict[str, str]
    pod: str
    value: float | None  # None: fresh but too few samples for the operation
    samples: int
    age: float


@dataclass(frozen=True, slots=True)
class QueryResult:
    value: float  # aggregated and clamped
    series: tuple[SeriesValue, ...]
    stale_series: int
    newest_sample_age: float | None  # over all matched series, fresh or not


def select(store: Store, selector: Selector) -> tuple[list[Series], int]:
    """The series a selector matches, and the row column to read (1 for a histogram's `_sum`)."""
    plain = [s for s in store.series_named(selector.name) if s.kind is not Kind.HISTOGRAM]
    if plain:
        return [s for s in plain if selector.matches(s.label_map)], 0
    for suffix, column in _HISTOGRAM_COLUMNS.items():
        if selector.name.endswith(suffix):
            base = selector.name[: -len(suffix)]
            found = [s for s in store.series_named(base) if s.kind is Kind.HISTOGRAM and selector.matches(s.label_map)]
            return found, column
    return [], 0


def reduce_over_time(series: Series, column: int, operation: str, since: float) -> float | None:
    """One series' value for `operationOverTime` over rows received at or after `since`."""
    if operation == "last_one":
        return series.last(column)
    if operation == "rate":
        span = series.increase(column, since)
        if span is None or span[1] <= 0:
            return None
        return span[0] / span[1]
    if operation == "count":
        return float(len(series.times) - series.first_index(since))
    values = [v for v in series.column(column, since) if math.isfinite(v)]
    if not values:
        return None
    if operation == "avg":
        return math.fsum(values) / len(values)
    return min(values) if operation == "min" else max(values)


_AGGREGATE: dict[str, Callable[[Sequence[float]], float]] = {
    "sum": math.fsum,
    "avg": lambda xs: math.fsum(xs) / len(xs),
    "min": min,
    "max": max,
    "count": lambda xs: float(len(xs)),
}


def evaluate_query(
    store: Store,
    query: Query,
    operation: str,
    window: float,
    now: float,
    stale_after: float,
) -> QueryResult | None:
    """Evaluate a query; None when it matches no series at all (the caller decides what that means).

    Raises StaleData when everything it matches has gone quiet, and InsufficientData when the data is
    fresh but no series has enough samples for the operation.
    """
    matched, column = select(store, query.selector)
    if not matched:
        return None
    since = now - window
    values: list[SeriesValue] = []
    stale = 0
    for series in matched:
        if not series.is_fresh(now, stale_after):
            stale += 1
            continue
        value = reduce_over_time(series, column, operation, since)
        if value is not None and not math.isfinite(value):
            value = None
        age = now - series.last_time()
        values.append(SeriesValue(series.label_map, series.pod, value, series.sample_count(), age))
    newest = min((now - s.last_time() for s in matched if s.has_data()), default=None)
    if not values:
        age_text = f"{newest:.1f}s ago" if newest is not None else "before it ended"
        raise StaleData(f"stale data for {query}: {len(matched)} series matched, none fresh; last sample {age_text}")
    numbers = [v.value for v in values if v.value is not None]
    if not numbers:
        raise InsufficientData(
            f"not enough samples for {operation} of {query}: {len(values)} fresh series, none with a value yet"
        )
    return QueryResult(_AGGREGATE[query.aggregation](numbers), tuple(values), stale, newest)
