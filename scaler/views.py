"""Query answers maintained on ingest: each view keeps every matched series' reduced value.

A view belongs to one (metric, selector, column, operationOverTime, window). When a series it holds
receives a sample, its value is recomputed over the window that ends at that sample, so asking is
an expiry sweep plus one aggregate over the held values, however many pods there are. Series are
kept in the order they were last updated, so the stale ones are always at the front.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scaler.expression import Selector
from scaler.otlp import Kind
from scaler.series import Series

Reducer = Callable[[Series, int, str, float], "float | None"]


@dataclass(frozen=True, slots=True)
class ViewKey:
    name: str
    selector: Selector
    column: int
    histogram: bool  # which kind of series it holds: histograms (for _count/_sum) or plain
    operation: str
    window: float


class View:
    def __init__(self, key: ViewKey, reduce: Reducer, now: float) -> None:
        self.key = key
        self.reduce = reduce
        self.values: dict[Series, float | None] = {}  # fresh series, oldest update first
        self.finite: dict[Series, float] = {}  # the fresh values that can be aggregated
        self.updated: dict[Series, float] = {}
        self.stale: dict[Series, float] = {}  # held but quiet (or ended) series, with their last time
        self.last_used = now

    def accepts(self, series: Series) -> bool:
        is_histogram = series.kind is Kind.HISTOGRAM
        return is_histogram == self.key.histogram and self.key.selector.matches(series.label_map)

    def update(self, series: Series) -> None:
        """Recompute one series after an append (or drop it to stale after an end marker)."""
        if not series.has_data():
            self.detach(series)
            return
        last = series.times[-1]
        if series.ended:
            self.detach(series)
            self.stale[series] = last
            return
        self.detach(series)
        value = self.reduce(series, self.key.column, self.key.operation, last - self.key.window)
        self.values[series] = value
        if value is not None and math.isfinite(value):
            self.finite[series] = value
        self.updated[series] = last

    def detach(self, series: Series) -> None:
        self.values.pop(series, None)
        self.finite.pop(series, None)
        self.updated.pop(series, None)
        self.stale.pop(series, None)

    def expire(self, now: float, stale_after: float) -> None:
        """Move series with no sample for `stale_after` from the front of the order to `stale`."""
        horizon = now - stale_after
        updated = self.updated
        while updated:
            series, last = next(iter(updated.items()))
            if last >= horizon:
                break
            del updated[series]
            del self.values[series]
            self.finite.pop(series, None)
            self.stale[series] = last

    def newest(self) -> float | None:
        """Receive time of the newest sample held, fresh or stale."""
        fresh = next(reversed(self.updated.values()), None)
        quiet = max(self.stale.values(), default=None)
        if fresh is None:
            return quiet
        return fresh if quiet is None else max(fresh, quiet)
