"""One time series: a time-bounded ring buffer of fixed-width rows of floats.

Gauges keep one value per row. Counters and histograms (count, sum, then bucket counts) keep
reset-corrected running totals, so an increase over any window is one subtraction and a counter reset
never yields a negative rate. A new start time is a reset; a lower value without one is held flat
until the next sample says whether it was a reset or a late point. Rows live in `array('d')`, 8 bytes
a number, to keep memory per sample low.
"""

from __future__ import annotations

import math
import operator
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from sys import getsizeof
from typing import TYPE_CHECKING

from scaler.otlp import Kind, Labels, Sample

if TYPE_CHECKING:
    from scaler.views import Watcher

_MOVE_FREELY = 1_024  # floats: a buffer this small is compacted on every trim (a memmove of 8 KiB at most)
_SLACK = 64  # bytes of unused room an array may keep before `pack` copies it
_DEAD_SHARE = 8  # a larger one once its dropped rows reach 1/8 of it: each row is moved about 7 times


@dataclass(slots=True, eq=False)
class Series:
    name: str
    labels: Labels
    label_map: dict[str, str]
    pod: str
    kind: Kind
    bounds: tuple[float, ...] = ()
    width: int = 1
    times: array[float] = field(default_factory=lambda: array("d"))
    rows: array[float] = field(default_factory=lambda: array("d"))
    head: int = 0  # index of the oldest retained row
    offset: array[float] | None = None  # added to raw values after resets; None (all zeros) until the first
    last_raw: array[float] | None = None  # a cumulative series' last raw row; None for gauges and deltas
    last_start: float = 0.0
    pending: list[float] | None = None  # a lower value with no new start time: a reset or a late point
    ended: bool = False  # the producer sent a no-recorded-value marker after the last sample
    resets: int = 0
    views: tuple[Watcher, ...] = field(default=(), repr=False)  # query and pool views that hold this series

    @classmethod
    def for_sample(cls, sample: Sample, pod: str, label_map: dict[str, str] | None = None) -> Series:
        labels = label_map if label_map is not None else dict(sample.labels)
        series = cls(sample.name, sample.labels, labels, pod, sample.kind)
        series._layout(sample)
        return series

    def _layout(self, sample: Sample) -> None:
        hist = sample.histogram
        self.bounds = hist.bounds if hist else ()
        self.width = 2 + len(hist.buckets) if hist else 1
        self.offset = None
        self.last_raw = None
        self.pending = None
        self.times = array("d")
        self.rows = array("d")
        self.head = 0

    # -- writing ---------------------------------------------------------------------------------

    def append(self, sample: Sample, now: float, horizon: float) -> None:
        """Add a sample received at `now`, dropping rows older than `horizon`."""
        if sample.no_value:
            self.ended = True
            return
        raw = _raw_row(sample)
        if sample.kind is Kind.HISTOGRAM and (len(raw) != self.width or self._bounds_changed(sample)):
            self._layout(sample)  # new bucket layout: earlier rows cannot be compared with it
        self.ended = False
        row = self._accumulate(raw, sample) if self.kind is not Kind.GAUGE or sample.delta else raw
        self.trim(horizon)  # before the new row: the row leaving makes room for it, so the arrays keep their size
        n = len(self.times)
        if n > self.head and now <= self.times[-1]:
            self.rows[-self.width :] = array("d", row)  # same instant (or a clock step back): replace
        else:
            self.times.append(now)
            self.rows.extend(row)

    def _bounds_changed(self, sample: Sample) -> bool:
        return sample.histogram is not None and sample.histogram.bounds != self.bounds

    def _accumulate(self, raw: list[float], sample: Sample) -> list[float]:
        if sample.delta:
            if self.has_data():
                base = self.rows[len(self.rows) - self.width :]
                return [b + r for b, r in zip(base, raw, strict=True)]
            return raw
        start, last_start = sample.start, self.last_start
        if not self.has_data():
            self.pending, self.last_raw, self.last_start = None, array("d", raw), start
            return self._corrected(raw)
        if start and last_start and start < last_start:
            return self._held()  # from before the latest restart: a late point, nothing to learn
        if start and last_start and start > last_start:  # the producer restarted
            self.pending = None  # a lower value seen before it was a late point of the old run
            self._reset(raw)
            self.last_start = start
            return self._corrected(raw)
        self.last_start = start or last_start
        pending = self.pending
        if pending is not None:
            self.pending = None
            if raw[0] < self._previous_raw()[0]:  # still below: the lower value was a reset after all
                self._reset(pending)
                self.rows[len(self.rows) - self.width :] = array("d", self._corrected(pending))
        if raw[0] < self._previous_raw()[0]:
            self.pending = raw
            return self._held()
        self.last_raw = array("d", raw)
        return self._corrected(raw)

    def _previous_raw(self) -> array[float]:
        """The last raw row; zeros if this series only had delta points so far."""
        return self.last_raw if self.last_raw is not None else _zeros(self.width)

    def _reset(self, raw: list[float]) -> None:
        """The counter restarted and now reads `raw`: add what it had counted before to the offset."""
        offset = self.offset if self.offset is not None else _zeros(self.width)
        self.offset = array("d", map(operator.add, offset, self._previous_raw()))
        self.last_raw = array("d", raw)
        self.resets += 1

    def _corrected(self, raw: list[float]) -> list[float]:
        if self.offset is None:
            return raw  # no reset yet: nothing to add
        return list(map(operator.add, raw, self.offset))

    def _held(self) -> list[float]:
        """The last row again: a value that may be late adds nothing until it is judged."""
        return list(self.rows[len(self.rows) - self.width :])

    def trim(self, horizon: float) -> None:
        times = self.times
        if self.head < len(times) and times[self.head] < horizon:
            self.head = bisect_left(times, horizon, self.head)
        head = self.head
        if head and (len(self.rows) <= _MOVE_FREELY or head * _DEAD_SHARE >= len(times)):
            del times[: self.head]
            del self.rows[: self.head * self.width]
            self.head = 0

    def pack(self) -> None:
        """Give the arrays back the room they grew into while filling (up to a third more than they hold).

        Once a buffer is full, a push drops a row and adds one, so packed arrays stay packed. A packed
        copy keeps every row at its index, so what views hold of this series stays true.
        """
        if self.head:
            return
        times, rows = self.times, self.rows
        if getsizeof(times) > _EMPTY_ARRAY + 8 * len(times) + _SLACK:
            self.times = times[:]
        if getsizeof(rows) > _EMPTY_ARRAY + 8 * len(rows) + _SLACK:
            self.rows = rows[:]

    # -- reading ---------------------------------------------------------------------------------

    def has_data(self) -> bool:
        return len(self.times) > self.head

    def sample_count(self) -> int:
        return len(self.times) - self.head

    def last_time(self) -> float:
        return self.times[-1] if self.has_data() else -math.inf

    def is_fresh(self, now: float, stale_after: float) -> bool:
        return not self.ended and self.has_data() and now - self.times[-1] <= stale_after

    def first_index(self, since: float) -> int:
        return bisect_left(self.times, since, self.head)

    def value_at(self, index: int, column: int = 0) -> float:
        return self.rows[index * self.width + column]

    def last(self, column: int = 0) -> float:
        """The latest value as the producer reported it (before reset correction)."""
        if self.pending is not None:
            return self.pending[column]
        value = self.rows[len(self.rows) - self.width + column]
        return value - self.offset[column] if self.offset is not None and self.kind is not Kind.GAUGE else value

    def column(self, column: int, since: float) -> list[float]:
        start = self.first_index(since)
        return [self.rows[i * self.width + column] for i in range(start, len(self.times))]

    def increase(self, column: int, since: float) -> tuple[float, float] | None:
        """(increase, seconds) between the first and last rows at or after `since`, or None if < 2 rows."""
        return self.increase_from(self.first_index(since), column)

    def delta_since(self, since: float) -> tuple[list[float], float] | None:
        """(per-column increase, seconds) from the newest row at or before `since` (else the first row
        after it) to the last row: the exact change over a window whose start falls between samples."""
        return self.delta_from(self.base_index(since))

    def base_index(self, since: float) -> int:
        """The row `delta_since` measures from: the newest at or before `since`, else the first."""
        base = self.row_at_or_before(since)
        return self.first_index(since) if base is None else base

    def delta_from(self, base: int) -> tuple[list[float], float] | None:
        """(per-column increase, seconds) from row `base` to the last row, or None if it is the last."""
        last = len(self.times) - 1
        if last <= base:
            return None
        w, rows = self.width, self.rows
        deltas = list(map(operator.sub, rows[last * w : last * w + w], rows[base * w : base * w + w]))
        return deltas, self.times[last] - self.times[base]

    def mean_and_peak_from(self, start: int) -> tuple[float, float]:
        """Mean and max of the first column over rows from `start` on (the last row if none)."""
        # an array slice: summed and compared at C speed
        if self.width == 1:
            values = self.rows[start:]
        else:
            values = array("d", (self.rows[i * self.width] for i in range(start, len(self.times))))
        if not values:
            last = self.last()
            return last, last
        return math.fsum(values) / len(values), max(values)

    def increase_from(self, first: int, column: int = 0) -> tuple[float, float] | None:
        """(increase, seconds) between row `first` and the last row, or None if fewer than 2 rows."""
        last = len(self.times) - 1
        if last <= first:
            return None
        return self.value_at(last, column) - self.value_at(first, column), self.times[last] - self.times[first]

    def row_at_or_before(self, t: float) -> int | None:
        """Index of the newest row at or before `t`, or None."""
        index = bisect_left(self.times, t, self.head)
        if index < len(self.times) and self.times[index] == t:
            return index
        return index - 1 if index - 1 >= self.head else None


_EMPTY_ARRAY = getsizeof(array("d"))


def _zeros(width: int) -> array[float]:
    return array("d", bytes(8 * width))


def _raw_row(sample: Sample) -> list[float]:
    hist = sample.histogram
    if hist is None:
        return [sample.value]
    return [hist.count, hist.sum, *hist.buckets]
