"""Query answers maintained on ingest: each view keeps every matched series' reduced value.

A view belongs to one (metric, selector, column, operationOverTime, window). When a series it holds
receives a sample, its value is recomputed over the window that ends at that sample, so asking is
an expiry sweep plus an aggregate that the view keeps too, however many pods there are. Series are
kept in the order they were last updated, so the stale ones are always at the front.

The sum is kept exactly, as an integer in units of 2**-1074 (every float is a whole number of them):
values come and go in any order and the sum stays math.fsum's correctly rounded one, with no drift.
min and max use heaps with lazy deletion, built on the first ask.

`version` moves on whenever what the view answers may have changed (a value, a series joining,
leaving or going stale, the view being dropped), and not for a sample that leaves a fresh series'
value as it was: an open StreamIsActive re-checks its trigger only when its view's version moved, or
when time alone could change the answer (`fresh_until`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from scaler.expression import Selector
from scaler.otlp import Kind
from scaler.series import Series

Reducer = Callable[[Series, int, str, float], "float | None"]
_UNIT = 1 << 1074  # the smallest float is 2**-1074
_ABSENT = object()


def units(value: float) -> int:
    """A finite float as a whole number of 2**-1074, exactly."""
    numerator, denominator = value.as_integer_ratio()
    return numerator << (1075 - denominator.bit_length())


class ExactSum:
    """Floats added and taken away in any order, summed exactly.

    Terms that are not finite, or of magnitude `limit` or more, are only counted (`odd`): `value` is
    then None, for the caller to decide as math.fsum would (its overflow rules differ from an exact sum's).
    """

    __slots__ = ("limit", "odd", "whole")

    def __init__(self, limit: float = math.inf) -> None:
        self.whole = 0  # the sum of the ordinary terms, in units of 2**-1074
        self.odd = 0
        self.limit = limit

    def add(self, value: float, sign: int) -> None:
        if math.isfinite(value) and abs(value) < self.limit:
            self.whole += sign * units(value)
        else:
            self.odd += sign

    def value(self, divisor: int = 1) -> float | None:
        """The sum (divided by `divisor`), rounded once; ±inf past the float range."""
        if self.odd:
            return None
        try:
            return self.whole / (_UNIT * divisor)  # int / int rounds correctly
        except OverflowError:  # copysign(inf, whole) would convert the int to a float, and overflow again
            return math.inf if self.whole > 0 else -math.inf


class Watcher(Protocol):
    """What the store tells a view about a series it holds (a query view here, a pool view in scaler.pool_view)."""

    def update(self, series: Series) -> None:
        """The series received a sample (or an end marker)."""

    def detach(self, series: Series) -> None:
        """The series left the store (expired, or replaced by one of another kind)."""

    def trimmed(self, series: Series) -> None:
        """The sweep dropped the series' oldest rows (it still has rows)."""


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
        self.sum = ExactSum()  # of `finite`
        self.stamps: dict[Series, int] = {}  # when each finite value was set: heap entries older are void
        self.extremes: dict[str, list[tuple[float, int, Series]]] = {}  # "min"/"max" -> (key, stamp, series)
        self.clock = 0
        self.version = 0

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
            self._remove(series)
            self.stale[series] = last
            self.version += 1
            return
        old = self.values.get(series, _ABSENT)
        self._remove(series)
        value = self.reduce(series, self.key.column, self.key.operation, last - self.key.window)
        self.values[series] = value
        if value is not None and math.isfinite(value):
            self._keep(series, value)
        self.updated[series] = last
        if not _same(old, value):
            self.version += 1

    def _keep(self, series: Series, value: float) -> None:
        self.finite[series] = value
        self.sum.add(value, 1)
        self.clock += 1
        self.stamps[series] = self.clock
        for operation, heap in self.extremes.items():
            heapq.heappush(heap, (value if operation == "min" else -value, self.clock, series))

    def _forget(self, series: Series) -> None:
        value = self.finite.pop(series, None)
        if value is not None:
            self.sum.add(value, -1)
            del self.stamps[series]

    def aggregate(self, aggregation: str) -> float:
        """The aggregation over the finite fresh values (at least one): the same as over a list of them."""
        count = len(self.finite)
        if aggregation == "count":
            return float(count)
        if aggregation in ("sum", "avg"):
            whole = self.sum.value()
            assert whole is not None  # every term is finite
            if aggregation == "sum":
                return whole
            # as scaler.query.mean: the rounded sum over the count; the exact mean when the sum is not finite
            mean = whole / count if math.isfinite(whole) else self.sum.value(count)
            assert mean is not None
            return mean
        heap = self.extremes.get(aggregation)
        if heap is None:
            sign = 1.0 if aggregation == "min" else -1.0
            heap = [(sign * v, self.stamps[s], s) for s, v in self.finite.items()]
            heapq.heapify(heap)
            self.extremes[aggregation] = heap
        while self.stamps.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        if len(heap) > 2 * count + 64:
            heap[:] = [item for item in heap if self.stamps.get(item[2]) == item[1]]
            heapq.heapify(heap)
        return self.finite[heap[0][2]]

    def trimmed(self, series: Series) -> None:
        """Nothing to do: a value is reduced when its series gets a sample, and kept until the next one."""

    def detach(self, series: Series) -> None:
        if self._remove(series):
            self.version += 1

    def _remove(self, series: Series) -> bool:
        """Take the series out of every map; True when it was held."""
        held = self.values.pop(series, _ABSENT) is not _ABSENT
        self._forget(series)
        self.updated.pop(series, None)
        return self.stale.pop(series, None) is not None or held

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
            self._forget(series)
            self.stale[series] = last
            self.version += 1

    def fresh_until(self, stale_after: float) -> float:
        """When time alone next changes the view: its least recently updated fresh series going stale."""
        oldest = next(iter(self.updated.values()), None)
        return math.inf if oldest is None else oldest + stale_after

    def newest(self) -> float | None:
        """Receive time of the newest sample held, fresh or stale."""
        fresh = next(reversed(self.updated.values()), None)
        quiet = max(self.stale.values(), default=None)
        if fresh is None:
            return quiet
        return fresh if quiet is None else max(fresh, quiet)


def _same(old: object, new: float | None) -> bool:
    """The value a series held before a sample equals the one after (NaN equals NaN here)."""
    if old is _ABSENT:
        return False
    if old == new:
        return True
    return isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new)
