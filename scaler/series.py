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
_SHARED_MOVE_FREELY = 64  # rows: a pod's buffers this short are compacted on every push
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
    timeline: Timeline | None = field(default=None, repr=False)  # the pod's shared times, while in step with it

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

    def append_in_step(self, sample: Sample, now: float, horizon: float, advanced: list[Timeline]) -> None:
        """`append` for a series on its pod's timeline; the store settles `advanced` after the push."""
        line = self.timeline
        assert line is not None
        if sample.no_value:
            line.leave(self)  # ended: its last time is its last row's, not this push's
            self.ended = True
            return
        if sample.kind is Kind.HISTOGRAM and (
            sample.histogram is None or 2 + len(sample.histogram.buckets) != self.width or self._bounds_changed(sample)
        ):
            line.leave(self)  # a new bucket layout starts afresh, on times of its own
            self.append(sample, now, horizon)
            return
        times = line.times
        if not times or times[-1] < now:
            line.advance(now, horizon)  # the push's first series: one time row for all of them
            advanced.append(line)
        raw = _raw_row(sample)
        self.ended = False
        row = self._accumulate(raw, sample) if self.kind is not Kind.GAUGE or sample.delta else raw
        if len(self.rows) == len(times) * self.width:
            self.rows[-self.width :] = array("d", row)  # same instant (or a clock step back): replace
        else:
            self.head = line.head  # rows older than `horizon` leave, as `trim` drops them
            self.rows.extend(row)
            line.appended += 1

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
        if self.timeline is not None:
            self.timeline.trim(horizon)  # every member's rows at once: they share the times
            return
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

        Once a buffer is full, a push drops a row and adds one, so packed arrays stay packed: on times of
        its own, a series drops before it adds; on a pod's timeline, after, so those keep a row's room.
        A packed copy keeps every row at its index, so what views hold of this series stays true.
        """
        line = self.timeline
        if line is not None:
            line.pack()
        else:
            self.times = _packed(self.times, 0)
        self.rows = _packed(self.rows, self.width if line is not None else 0)

    # -- reading ---------------------------------------------------------------------------------

    def has_data(self) -> bool:
        return len(self.rows) > self.head * self.width  # rows, not times: a shared time column runs ahead in a push

    def sample_count(self) -> int:
        return len(self.rows) // self.width - self.head

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


def _packed(values: array[float], room: int) -> array[float]:
    """`values` itself, or a copy with room for `room` more and little spare beyond it."""
    if getsizeof(values) <= _EMPTY_ARRAY + 8 * (len(values) + room + len(values) // 16):
        return values  # within CPython's own spare for a resize (about 1/16): leave it
    copy = values + _zeros(room)  # an array's concatenation is allocated to its size
    if room:
        del copy[-room:]  # CPython's array_resize keeps the room (or reallocates with 1/16 spare, enough)
    return copy


def _zeros(width: int) -> array[float]:
    return array("d", bytes(8 * width))


def _raw_row(sample: Sample) -> list[float]:
    hist = sample.histogram
    if hist is None:
        return [sample.value]
    return [hist.count, hist.sum, *hist.buckets]


class Timeline:
    """The receive times of a pod's pushes, shared by the series of that pod that have a row in each.

    The series of one pod arrive in one request at one receive time, so they can share one time
    column instead of one each (8 bytes a row, and an array, per series). A member's `times` is this
    array, its `head` this head, and its rows line up with it index for index, so readers see no
    difference. A member missing from a push (an end marker, a delta series with nothing new, a
    series born later) leaves with a copy of the times its rows have, and keeps its own from then on.
    """

    __slots__ = ("appended", "head", "members", "times")

    def __init__(self) -> None:
        self.times: array[float] = array("d")
        self.head = 0
        self.members: list[Series] = []
        self.appended = 0  # members that added a row in the current push

    def joinable(self, now: float) -> bool:
        """Whether a series with no rows yet, created at `now`, lines up with these times."""
        times = self.times
        return not self.members or not times or (len(times) == 1 and times[0] == now)

    def join(self, series: Series) -> None:
        if not self.members:
            self.times, self.head = array("d"), 0
        series.timeline, series.times, series.head = self, self.times, self.head
        self.members.append(series)

    def leave(self, series: Series) -> None:
        """`series` goes on with a copy of the times its rows have."""
        self.drop(series)
        series.times = self.times[: len(series.rows) // series.width]

    def drop(self, series: Series) -> None:
        """`series` leaves the store: it needs no times of its own (and a copy would feed the collector)."""
        self.members.remove(series)
        series.timeline = None
        if len(series.rows) == len(self.times) * series.width:
            self.appended -= 1  # it had its row of this push: `settle` must not count it among those in step

    def advance(self, now: float, horizon: float) -> None:
        """A push at `now`: add a time row, and work out which rows a member that appends keeps.

        A member adopts the new head when it appends; one that misses the push keeps its rows, as a
        series with times of its own would, and `settle` lets it go before anything is freed.
        """
        times = self.times
        times.append(now)
        if times[self.head] < horizon:
            self.head = bisect_left(times, horizon, self.head)
        self.appended = 0

    def settle(self) -> None:
        """After a push: the members that missed it leave; the rows the push dropped are freed."""
        times, members = self.times, self.members
        if self.appended < len(members):
            for series in [m for m in members if len(m.rows) != len(times) * m.width]:
                self.leave(series)
        self._compact()

    def trim(self, horizon: float) -> bool:
        """Drop every member's rows older than `horizon` (between pushes); whether any went."""
        times = self.times
        if self.head < len(times) and times[self.head] < horizon:
            self.head = bisect_left(times, horizon, self.head)
            for series in self.members:
                series.head = self.head
            self._compact()
            return True
        return False

    def _compact(self) -> None:
        """Free the dropped rows of every member (all at this head), when enough of them are dead."""
        head, times = self.head, self.times
        if head and (head * _DEAD_SHARE >= len(times) or len(times) <= _SHARED_MOVE_FREELY):
            del times[:head]
            for series in self.members:
                del series.rows[: head * series.width]
                series.head = 0
            self.head = 0

    def pack(self) -> None:
        """`Series.pack` for the shared times."""
        times = _packed(self.times, 1)
        if times is not self.times:
            self.times = times
            for series in self.members:
                series.times = times
