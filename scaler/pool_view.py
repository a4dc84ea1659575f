"""Policy inputs kept on ingest: per pod and window, the signals `read_pools` answers, ready before a call.

A pool view belongs to one (selector, metrics, windows, stale_after) and holds every series they
match. A pod's figures are recomputed with the scan's own readers (scaler.signals `measure` and
`apply_reading`) when one of its series gets a sample, when a window's start passes a row a reading
used, or when a series goes stale; heaps hold those moments, and each push also works out what each
window becomes once its oldest row leaves, so that a fleet pushing in step does not leave that work
to a call. Recomputing rather than subtracting rows keeps every per-pod figure exactly what a scan
gives. Each window also keeps, over its serving pods, the totals and counts of the figures the policy
reads (scaler.signals POOL_FIGURES), so a call visits no pod: the view lends it the pods' templates
(and copies them before its next change), and PodSignals are built from them only if something lists
the pods (an explanation). Totals are exact integers in units of 2**-1074 (every float is a whole
number of them), so `PoolWindow.total` is math.fsum's correctly rounded answer in any order of
updates; latency buckets hold whole counts, which float sums add and take away exactly.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import math
import operator
from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from scaler.expression import Selector
from scaler.series import Series
from scaler.signals import (
    ANNOTATIONS,
    LATENCIES,
    POOL_FIGURES,
    SLEEP_STATE,
    Kept,
    Latency,
    LatencySink,
    PodSignals,
    PoolWindow,
    Reading,
    apply_reading,
    is_asleep,
    measure,
    read_order,
    read_sleep,
)
from scaler.views import ExactSum, units

if TYPE_CHECKING:
    from scaler.store import Store

_FIELDS = tuple(f.name for f in fields(PodSignals))[:-1]  # every field but `age`, which is the last
_FIGURES = tuple(POOL_FIGURES)
# A template: a pod's PodSignals fields but age, then its POOL_FIGURES figures, which the totals sum.
_TOTALED = tuple(range(len(_FIELDS), len(_FIELDS) + len(_FIGURES)))
_ASLEEP = _FIELDS.index("asleep")
_HUGE = 2.0**1000  # beyond this, fsum's own overflow rules may differ from an exact sum: compute it then
_signals: Callable[..., PodSignals] = PodSignals  # from a template's fields, then the age
_fields: Callable[[PodSignals], tuple[Any, ...]] = operator.attrgetter(*_FIELDS)
_figures = tuple(POOL_FIGURES.values())
_NOTHING = (None,) * (len(_FIELDS) + len(_FIGURES))
Increase = tuple[str, Series, tuple[float, ...], list[float]]  # a latency series' (metric, series, bounds, deltas)
Shift = tuple[int, int, int, int]  # how one of a window's totals moves: (figure, units, odd terms, pods counted)


@dataclass(frozen=True, slots=True)
class PoolKey:
    selector: Selector
    metrics: tuple[str, ...]
    windows: tuple[float, ...]
    stale_after: float


@dataclass(eq=False, slots=True)
class _Pod:
    """One pod's series in the view and what they gave at the last recompute."""

    pod: str
    series: list[tuple[int, int, Series]] = field(default_factory=list)  # (read order, arrival, series)
    templates: list[tuple[Any, ...]] = field(default_factory=list)  # per window: PodSignals' fields but age
    last: float = -math.inf  # receive time of its newest load sample
    latency: list[list[Increase]] = field(default_factory=list)  # per window
    readings: dict[Series, list[Reading]] = field(default_factory=dict)  # per series, per window: a cache
    version: int = 0  # bumped by every recompute: older entries in the view's heaps are void
    stamps: list[int] = field(default_factory=list)  # per window, bumped by recomputes and refreshes
    upcoming: list[_Piece | None] = field(default_factory=list)  # per window: what follows the current one


@dataclass(frozen=True, slots=True)
class _Piece:
    """A window of one pod for window starts in [start, until): its figures and the readings it remeasured."""

    start: float
    until: float
    template: tuple[Any, ...]
    latency: list[Increase]
    measured: dict[Series, Reading]
    totals: list[Shift]  # how the pool's totals move when it is installed
    buckets: list[tuple[str, tuple[float, ...], list[float], int]]  # and its merged latency buckets


@dataclass(slots=True)
class _Group:
    counts: list[float]
    series: int = 0


@dataclass(slots=True)
class _Window:
    """Pool-wide figures for one window: exact totals of the serving pods, merged latency buckets."""

    seconds: float
    totals: list[ExactSum] = field(default_factory=lambda: [ExactSum(_HUGE) for _ in _TOTALED])
    counts: list[int] = field(default_factory=lambda: [0 for _ in _TOTALED])  # serving pods with each figure
    templates: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # per member pod: copied by a read
    figures: tuple[dict[str, float | None], dict[str, int]] | None = None  # totals and counts, until they move
    latency: dict[str, dict[tuple[float, ...], _Group]] = field(default_factory=lambda: {n: {} for n in LATENCIES})
    expiries: list[tuple[float, int, _Pod, int]] = field(default_factory=list)  # (until, tie, pod, stamp)


class PoolView:
    def __init__(self, key: PoolKey, now: float) -> None:
        self.key = key
        self.order = {name: read_order(name) for name in key.metrics}
        self.pods: dict[str, _Pod] = {}
        self.members: dict[str, _Pod] = {}  # pods with a fresh load series: the ones a read returns
        self.lasts: dict[str, float] = {}  # per member: receive time of its newest load sample
        self.youngest: float | None = None  # the greatest of `lasts`, when `youngest_known`
        self.youngest_known = True
        self.lent = False  # a read holds `lasts` and the windows' templates: copy them before a change
        self.held: dict[Series, _Pod] = {}
        self.dirty: dict[_Pod, None] = {}
        self.windows = [_Window(w) for w in key.windows]
        self.quiet: list[tuple[float, int, _Pod, int]] = []  # (oldest fresh sample, tie, pod, version)
        self.clock = -math.inf  # the latest `now` seen; templates hold for it
        self.newest: Series | None = None  # the held series with the newest sample
        self.newest_known = True
        self.broken: dict[_Pod, None] = {}  # pods whose figures overflowed: retried as time moves
        self.arrivals = 0
        self.last_used = now

    # -- what the store tells -----------------------------------------------------------------------

    def accepts(self, series: Series) -> bool:
        return series.name in self.order and self.key.selector.matches(series.label_map)

    def attach(self, series: Series) -> None:
        entry = self.pods.get(series.pod)
        if entry is None:
            entry = self.pods[series.pod] = _Pod(series.pod)
        self.arrivals += 1
        insort(entry.series, (self.order[series.name], self.arrivals, series), key=lambda s: s[:2])
        self.held[series] = entry
        self.update(series)

    def update(self, series: Series) -> None:
        entry = self.held[series]
        self.dirty[entry] = None
        entry.readings.pop(series, None)
        newest = self.newest
        if self.newest_known and series.has_data() and (newest is None or series.times[-1] >= newest.last_time()):
            self.newest = series

    def trimmed(self, series: Series) -> None:
        entry = self.held[series]
        readings = entry.readings.get(series)
        if readings and series.has_data() and series.times[series.head] > min(r.oldest for r in readings):
            self.dirty[entry] = None
            entry.readings.pop(series, None)

    def detach(self, series: Series) -> None:
        entry = self.held.pop(series, None)
        if entry is None:
            return
        entry.series = [s for s in entry.series if s[2] is not series]
        entry.readings.pop(series, None)
        self.dirty[entry] = None
        if series is self.newest:
            self.newest, self.newest_known = None, False

    def release(self) -> list[Series]:
        """The series held, for the store to unlink when it drops the view."""
        return list(self.held)

    # -- keeping up ---------------------------------------------------------------------------------

    def advance(self, now: float, budget: int | None = None) -> None:
        """Bring the pods pushed to, and at most `budget` of those that time changed (all with None), to
        `now` (a time before the latest seen keeps that one).

        A push recomputes its pods at once; a window start passing the rows of a fleet that pushes in
        step makes every pod due together, and most of them push again before anyone asks, so ingest
        takes only a share of those and a read takes what is left.
        """
        if now > self.clock:
            self.clock = now
            self.dirty.update(self.broken)
        while self.dirty:
            entry = next(iter(self.dirty))
            del self.dirty[entry]
            self._recompute(entry)
        left = math.inf if budget is None else budget
        now, stale_after = self.clock, self.key.stale_after
        quiet = self.quiet
        while quiet and left > 0 and now - quiet[0][0] > stale_after:  # a series went stale: the pod changes
            _, _, entry, version = heapq.heappop(quiet)
            if entry.version == version:
                self._recompute(entry)
                left -= 1
        for i, window in enumerate(self.windows):  # a window's start passed a row: that window changes
            since, due = now - window.seconds, window.expiries
            while due and left > 0 and due[0][0] <= since:
                _, _, entry, stamp = heapq.heappop(due)
                if entry.stamps[i] == stamp:
                    self._refresh(entry, i)
                    left -= 1
        while self.dirty:  # a refresh whose arithmetic overflowed: recompute it, to mark it broken
            self._recompute(self.dirty.popitem()[0])

    def due(self, now: float) -> bool:
        """Whether `advance(now)` has work: a pod pushed to, gone stale, or whose window start passed a row.

        Pods whose figures overflowed are not: a read answers by a scan while any is broken, and retries
        them itself (`advance`). Counting them would have the upkeep recompute them without end, as often
        as it can, for as long as a sender's huge values stay in a window."""
        if self.dirty:
            return True
        if self.quiet and now - self.quiet[0][0] > self.key.stale_after:
            return True
        return any(w.expiries and w.expiries[0][0] <= now - w.seconds for w in self.windows)

    def next_due(self) -> float:
        """The earliest time at which time alone gives `advance` work (inf if none is known yet)."""
        if self.dirty:
            return -math.inf
        moments = [w.expiries[0][0] + w.seconds for w in self.windows if w.expiries]
        if self.quiet:
            moments.append(self.quiet[0][0] + self.key.stale_after)
        return min(moments, default=math.inf)

    def _recompute(self, entry: _Pod) -> None:
        before, latency_before = entry.templates, entry.latency
        entry.version += 1
        entry.stamps = [stamp + 1 for stamp in entry.stamps] or [0] * len(self.windows)
        try:
            self._read(entry)
        except (ArithmeticError, ValueError):  # math.fsum overflowed: let a scan raise it to the caller
            entry.templates, entry.latency, entry.upcoming, entry.readings = [], [], [], {}
            self.broken[entry] = None
        else:
            self.broken.pop(entry, None)
        for i, window in enumerate(self.windows):
            totals = _shifts(before[i] if before else None, entry.templates[i] if entry.templates else None)
            buckets = _bucket_shifts(
                latency_before[i] if latency_before else [], entry.latency[i] if entry.latency else []
            )
            _shift(window, totals, buckets)
        pod = entry.pod
        self._own()
        was = self.lasts.get(pod)
        if entry.templates:
            self.members[pod] = entry
            self.lasts[pod] = entry.last
            for window, template in zip(self.windows, entry.templates, strict=True):
                window.templates[pod] = template
        else:
            self.members.pop(pod, None)
            self.lasts.pop(pod, None)
            for window in self.windows:
                window.templates.pop(pod, None)
        if self.youngest_known:
            last = self.lasts.get(pod)
            if was is not None and was == self.youngest and (last is None or last < was):
                self.youngest_known = False  # the greatest left or fell: found again by the next read
            elif last is not None and (self.youngest is None or last > self.youngest):
                self.youngest = last
        if not entry.templates and not entry.series and entry not in self.broken:
            del self.pods[entry.pod]

    def _read(self, entry: _Pod) -> None:
        """The pod's part of a scan at the view's clock, and when each window's read stops holding."""
        now, stale_after, count = self.clock, self.key.stale_after, len(self.windows)
        signals: list[PodSignals | None] = [None] * count
        latency: list[list[Increase]] = [[] for _ in range(count)]
        sinks = [_appender(into) for into in latency]
        until = [math.inf] * count
        sleeping: dict[str, bool] = {}
        sinces = [now - window.seconds for window in self.windows]
        fresh_since, entry.last = math.inf, -math.inf
        readings, entry.readings = entry.readings, {}
        for _, _, series in entry.series:
            if not series.has_data():
                continue
            last = series.times[-1]
            if series.ended or now - last > stale_after:
                continue
            fresh_since = min(fresh_since, last)
            name = series.name
            if name == SLEEP_STATE:
                read_sleep(sleeping, series)
                continue
            kept = readings.get(series)
            fresh = entry.readings[series] = []
            load = name not in ANNOTATIONS
            if load and last > entry.last:
                entry.last = last
            for i, since in enumerate(sinces):
                reading = kept[i] if kept is not None and since < kept[i].until else measure(series, name, since)
                fresh.append(reading)
                pod = signals[i]
                if pod is None:
                    if not load:
                        continue
                    pod = signals[i] = PodSignals(entry.pod)
                apply_reading(pod, name, series, reading, sinks[i])
                if reading.until < until[i]:
                    until[i] = reading.until
        asleep = is_asleep(sleeping)
        entry.templates, entry.latency = [], []
        if all(pod is not None for pod in signals):  # a pod reports load in every window or in none
            for pod in signals:
                assert pod is not None
                pod.asleep = asleep
                entry.templates.append(_template(pod))
            entry.latency = latency
        if entry.templates:  # a pod with no load series has no window figure to expire
            for i, window in enumerate(self.windows):
                self._expires(entry, window, i, until[i])
        self._foresee(entry, until)
        if fresh_since < math.inf:
            self.arrivals += 1
            heapq.heappush(self.quiet, (fresh_since, self.arrivals, entry, entry.version))
            if len(self.quiet) > 4 * len(self.pods) + 64:  # drop what earlier recomputes left
                self.quiet[:] = [item for item in self.quiet if item[2].version == item[3]]
                heapq.heapify(self.quiet)

    def _expires(self, entry: _Pod, window: _Window, index: int, until: float) -> None:
        if until < math.inf:
            self.arrivals += 1
            heapq.heappush(window.expiries, (until, self.arrivals, entry, entry.stamps[index]))
            if len(window.expiries) > 4 * len(self.pods) + 64:
                window.expiries[:] = [item for item in window.expiries if item[2].stamps[index] == item[3]]
                heapq.heapify(window.expiries)

    def _refresh(self, entry: _Pod, index: int) -> None:
        """One window of a pod whose series are unchanged, after its start passed a row they read."""
        entry.stamps[index] += 1
        if not entry.templates:
            return  # no load series: nothing of it is read
        since = self.clock - self.windows[index].seconds
        piece = entry.upcoming[index]
        entry.upcoming[index] = None
        if piece is None or not piece.start <= since < piece.until:
            try:
                piece = self._piece(entry, index, since)
            except (ArithmeticError, ValueError):
                self.dirty[entry] = None  # a recompute finds it broken, and reads scan
                return
        self._install(entry, index, piece)

    def _piece(self, entry: _Pod, index: int, since: float) -> _Piece:
        """A window of a pod from the window start `since` on, its series unchanged since the last recompute."""
        latency: list[Increase] = []
        sink, until, pod = _appender(latency), math.inf, PodSignals(entry.pod)
        measured: dict[Series, Reading] = {}
        for _, _, series in entry.series:
            readings = entry.readings.get(series)
            if readings is None:
                continue  # not read at the last recompute: stale, ended, a sleep state, no rows
            reading = readings[index]
            if since >= reading.until:
                reading = measured[series] = measure(series, series.name, since)
            apply_reading(pod, series.name, series, reading, sink)
            until = min(until, reading.until)
        pod.asleep = entry.templates[index][_ASLEEP]
        template = _template(pod)
        totals = _shifts(entry.templates[index], template)
        return _Piece(since, until, template, latency, measured, totals, _bucket_shifts(entry.latency[index], latency))

    def _install(self, entry: _Pod, index: int, piece: _Piece) -> None:
        window = self.windows[index]
        for series, reading in piece.measured.items():
            readings = entry.readings[series]
            readings[index] = reading
        self._own()
        entry.templates[index] = window.templates[entry.pod] = piece.template
        entry.latency[index] = piece.latency
        _shift(window, piece.totals, piece.buckets)
        self._expires(entry, window, index, piece.until)

    def _foresee(self, entry: _Pod, until: list[float]) -> None:
        """Each window as it will be once its start passes the row that ends the current one.

        A fleet that pushes in step has every pod's oldest row leave its windows at about the same
        moment, often between pushes, when only a read would notice: computed on ingest instead, it
        is there to install, and the pods' next pushes make the rest unneeded.
        """
        entry.upcoming = [None] * len(self.windows)
        if not entry.templates:
            return
        for i, ends in enumerate(until):
            if ends < math.inf:
                # From just past the boundary: a row's time ends a rate's read at it and a gauge's just
                # after, and the one window start in between is computed afresh if ever asked.
                with contextlib.suppress(ArithmeticError, ValueError):  # its refresh will find the same
                    entry.upcoming[i] = self._piece(entry, i, math.nextafter(ends, math.inf))

    # -- answering ----------------------------------------------------------------------------------

    def read(self, store: Store, now: float) -> list[PoolWindow] | None:
        """The pool over each window at `now`, or None where only a scan can answer (a clock that went
        back, or a pod whose figures overflowed)."""
        self.last_used = now
        if now < self.clock:
            return None
        self.advance(now)
        if self.broken:
            return None
        newest = self._newest()
        newest_age = None if newest is None else now - newest
        lasts, self.lent = self.lasts, True  # the pods as this read sees them, until a change copies them
        if not self.youngest_known:
            self.youngest, self.youngest_known = max(lasts.values(), default=None), True
        youngest = None if self.youngest is None else now - self.youngest  # the least age: now - last is monotone
        pools = []
        for i, window in enumerate(self.windows):
            templates = window.templates
            if window.figures is None:  # handed to reads as they are: a shift replaces them
                totals = {name: total.value() for name, total in zip(_FIGURES, window.totals, strict=True)}
                window.figures = totals, dict(zip(_FIGURES, window.counts, strict=True))
            totals, counts = window.figures
            kept = Kept(totals, counts, len(lasts), youngest, functools.partial(_pods, templates, lasts, now))
            ttft, itl = (self._latency(store, window, name, i) for name in LATENCIES)
            pools.append(PoolWindow(window.seconds, ttft, itl, len(self.held), newest_age, kept))
        return pools

    def _own(self) -> None:
        """Copy what reads were lent before changing it: a read then costs no copy of every pod, and a
        push pays one copy per read at most (a pool read once per KEDA poll pays rarely)."""
        if self.lent:
            self.lasts = self.lasts.copy()
            for window in self.windows:
                window.templates = window.templates.copy()
            self.lent = False

    def _newest(self) -> float | None:
        if not self.newest_known:
            self.newest = max((s for s in self.held if s.has_data()), key=Series.last_time, default=None)
            self.newest_known = True
        return None if self.newest is None else self.newest.last_time()

    def _latency(self, store: Store, window: _Window, name: str, index: int) -> Latency:
        groups = window.latency[name]
        if not groups:
            return Latency()
        if len(groups) == 1:
            bounds, group = next(iter(groups.items()))
            return Latency(bounds, list(group.counts))
        # Several bucket layouts: a scan keeps the first series' one, in the store's order.
        reading = {id(s) for m in self.members.values() for n, s, _, d in m.latency[index] if n == name and d[2:]}
        for series in store.select(name, self.key.selector):
            if id(series) in reading:
                return Latency(series.bounds, list(groups[series.bounds].counts))
        return Latency()


def _pods(templates: dict[str, tuple[Any, ...]], lasts: dict[str, float], now: float) -> dict[str, PodSignals]:
    width = len(_FIELDS)
    return {pod: _signals(*t[:width], now - lasts[pod]) for pod, t in templates.items()}


def _template(pod: PodSignals) -> tuple[Any, ...]:
    return (*_fields(pod), *(figure(pod) for figure in _figures))


def _shifts(before: tuple[Any, ...] | None, after: tuple[Any, ...] | None) -> list[Shift]:
    """How the pool's totals move when a pod's figures go from `before` to `after`: (total, units, odd,
    count) for each that changes. A sleeping pod counts for none."""
    old = before if before is not None and not before[_ASLEEP] else _NOTHING
    new = after if after is not None and not after[_ASLEEP] else _NOTHING
    out = []
    for position, index in enumerate(_TOTALED):
        was, now = old[index], new[index]
        if was == now:  # None and None too; 0.0 and -0.0 add the same nothing
            continue
        whole = odd = count = 0
        for value, sign in ((was, -1), (now, 1)):
            if value is None:
                continue
            count += sign
            if math.isfinite(value) and abs(value) < _HUGE:
                whole += sign * units(value)
            else:
                odd += sign
        out.append((position, whole, odd, count))
    return out


def _bucket_shifts(
    before: list[Increase], after: list[Increase]
) -> list[tuple[str, tuple[float, ...], list[float], int]]:
    """How the merged buckets move from a pod's old increases to its new ones: (metric, layout, change,
    series) per layout; readings kept from the cache change nothing."""
    kept = {id(item[3]) for item in before} & {id(item[3]) for item in after}
    moved: dict[tuple[str, tuple[float, ...]], tuple[list[float], int]] = {}
    for items, combine, step in ((before, operator.sub, -1), (after, operator.add, 1)):
        for name, _, bounds, deltas in items:
            buckets = deltas[2:]
            if not buckets or id(deltas) in kept:
                continue
            counts, series = moved.get((name, bounds), ([0.0] * len(buckets), 0))
            moved[name, bounds] = list(map(combine, counts, buckets)), series + step
    return [(name, bounds, counts, series) for (name, bounds), (counts, series) in moved.items()]


def _shift(
    window: _Window, totals: list[Shift], buckets: list[tuple[str, tuple[float, ...], list[float], int]]
) -> None:
    if totals:
        window.figures = None
    for position, whole, odd, count in totals:
        total = window.totals[position]
        total.whole += whole
        total.odd += odd
        window.counts[position] += count
    for name, bounds, counts, series in buckets:
        layouts = window.latency[name]
        group = layouts.get(bounds)
        if group is None:
            group = layouts[bounds] = _Group([0.0] * len(counts))
        group.counts = list(map(operator.add, group.counts, counts))
        group.series += series
        if not group.series:
            del layouts[bounds]


def _appender(into: list[Increase]) -> LatencySink:
    def collect(name: str, series: Series, deltas: list[float]) -> None:
        into.append((name, series, series.bounds, deltas))

    return collect
