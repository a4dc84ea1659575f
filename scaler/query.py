"""Evaluating a query trigger against the store at a given time: select, reduce over time, aggregate.

Each matched fresh series is first reduced by `operationOverTime` over the window that ends at its
newest sample, then the series values are combined by the query's aggregation. Histograms answer to
`<name>_count` and `<name>_sum`, as in the Prometheus exposition of the same metric.

Triggers read views (scaler.views) that keep each series' reduced value, and their aggregate, up to
date on ingest;
`maintained=False` computes the same answer by scanning, for one-off questions such as /debug/query.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scaler.errors import InsufficientData, StaleData
from scaler.expression import LackingLabels, Query, Selector
from scaler.otlp import Kind
from scaler.series import Series
from scaler.store import Store
from scaler.views import View, ViewKey

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
class Basis:
    """What a view's answer rests on: it holds while the view and the sets of series it was resolved
    from are unchanged, and time is before `until` (when a fresh series would go stale)."""

    store: Store
    view: View
    version: int
    names: tuple[tuple[str, int], ...]  # (name, Store.name_version) whose change could move `resolve`
    until: float

    def holds(self, now: float) -> bool:
        return (
            now < self.until
            and self.view.version == self.version
            and all(self.store.name_version(name) == version for name, version in self.names)
        )


@dataclass(frozen=True, slots=True)
class QueryResult:
    value: float  # aggregated
    items: Mapping[Series, float | None]  # each fresh series and its reduced value (live, for a view)
    stale_series: int
    newest_sample_age: float | None  # over all matched series, fresh or not
    now: float
    basis: Basis | None = None  # a maintained view's: when the same answer still holds

    @property
    def series(self) -> tuple[SeriesValue, ...]:
        """Per-series detail, built only when someone asks (explanations, not KEDA calls).

        Ages are as of the evaluation; a view's series may have moved on since (never below 0).
        """
        return tuple(
            SeriesValue(s.label_map, s.pod, v, s.sample_count(), max(0.0, self.now - s.last_time()))
            for s, v in list(self.items.items())
        )


def resolve(store: Store, selector: Selector) -> tuple[str, int, bool] | None:
    """Where a selector's data lives: (series name, row column, histogram?), or None if nowhere yet."""
    if any(s.kind is not Kind.HISTOGRAM for s in store.select(selector.name, selector)):
        return selector.name, 0, False
    for suffix, column in _HISTOGRAM_COLUMNS.items():
        if selector.name.endswith(suffix):
            base = selector.name[: -len(suffix)]
            if any(s.kind is Kind.HISTOGRAM for s in store.select(base, selector)):
                return base, column, True
    return None


def missing_label(store: Store, selector: Selector, now: float, stale_after: float) -> str | None:
    """Why a selector that matches no fresh series may be misconfigured, or None.

    Fresh series of its metric that lack a label the selector requires with `=` (matching it
    otherwise, its namespace included) are what kedify would have matched: the collector did not set
    the label (KServe's `deployment` comes from k8sattributes' `k8s.deployment.name`).
    """
    places = [(selector.name, False)]
    places += [(selector.name[: -len(suffix)], True) for suffix in _HISTOGRAM_COLUMNS if selector.name.endswith(suffix)]
    lacking: Counter[str] = Counter()
    found = 0
    for name, histogram in places:
        for series in store.select(name, LackingLabels(selector)):
            if (series.kind is Kind.HISTOGRAM) == histogram and series.is_fresh(now, stale_after):
                found += 1
                lacking.update(selector.lacking(series.label_map))
    if not found:
        return None
    label, count = lacking.most_common(1)[0]
    return (
        f"{selector} matches no fresh series, but {count} fresh series of {selector.name} lack the label "
        f"{label!r} it requires: set it in the collector (e.g. k8sattributes) or drop it from the query"
    )


def select(store: Store, selector: Selector) -> tuple[list[Series], int]:
    """The series a selector matches, and the row column to read (1 for a histogram's `_sum`)."""
    found = resolve(store, selector)
    if found is None:
        return [], 0
    name, column, histogram = found
    return [s for s in store.select(name, selector) if (s.kind is Kind.HISTOGRAM) == histogram], column


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
        return mean(values)
    return min(values) if operation == "min" else max(values)


_SCALE = 2.0**-64  # a power of two: scaling by it is exact, and 2**64 terms of the largest float still sum in range


def total(values: Sequence[float]) -> float:
    """math.fsum of finite values, but ±inf, not OverflowError, past the float range (views run on ingest)."""
    try:
        return math.fsum(values)
    except OverflowError:  # an intermediate or the rounded sum overflowed: sum scaled terms, then scale back
        return math.fsum(v * _SCALE for v in values) / _SCALE


def mean(values: Sequence[float]) -> float:
    """The mean of finite values: always finite, even when their sum is not."""
    whole = total(values)
    return whole / len(values) if math.isfinite(whole) else math.fsum(v * _SCALE for v in values) / len(values) / _SCALE


_AGGREGATE: dict[str, Callable[[Sequence[float]], float]] = {
    "sum": total,
    "avg": mean,
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
    maintained: bool = True,
) -> QueryResult | None:
    """Evaluate a query; None when it matches no series at all (the caller decides what that means).

    Raises StaleData when everything it matches has gone quiet, and InsufficientData when the data is
    fresh but no series has enough samples for the operation.
    """
    found = resolve(store, query.selector)
    if found is None:
        return None
    name, column, histogram = found
    basis = None
    if maintained:
        key = ViewKey(name, query.selector, column, histogram, operation, window)
        view = store.view(key, reduce_over_time, now)
        view.expire(now, stale_after)
        items: Mapping[Series, float | None] = view.values
        count, aggregate = len(view.finite), view.aggregate
        stale, newest = len(view.stale), view.newest()
        # A plain resolution holds while the view holds a series (each leaving moves its version); a
        # histogram's also needs no plain series of the selector's own name to appear.
        plain = query.selector.name
        names = ((plain, store.name_version(plain)),) if histogram else ()
        basis = Basis(store, view, view.version, names, view.fresh_until(stale_after))
    else:
        matched = [s for s in store.select(name, query.selector) if (s.kind is Kind.HISTOGRAM) == histogram]
        fresh = [s for s in matched if s.is_fresh(now, stale_after)]
        items = {s: reduce_over_time(s, column, operation, s.last_time() - window) for s in fresh}
        numbers = [v for v in items.values() if v is not None and math.isfinite(v)]
        count, aggregate = len(numbers), lambda aggregation: _AGGREGATE[aggregation](numbers)
        stale = len(matched) - len(fresh)
        newest = max((s.last_time() for s in matched if s.has_data()), default=None)
    if not items and not stale:
        return None
    newest_age = None if newest is None else now - newest
    if not items:
        age_text = f"{newest_age:.1f}s ago" if newest_age is not None else "before it ended"
        raise StaleData(f"stale data for {query}: {stale} series matched, none fresh; last sample {age_text}")
    if not count:
        raise InsufficientData(
            f"not enough samples for {operation} of {query}: {len(items)} fresh series, none with a value yet"
        )
    return QueryResult(aggregate(query.aggregation), items, stale, newest_age, now, basis)
