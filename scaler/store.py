"""The in-memory metric store: series by name and label set, pods, retention and hard caps.

Every method takes `now`; nothing here reads a clock. Time is the scaler's receive time, not the
producer's timestamp, so staleness and windows are judged on one clock whatever the pods' clocks say.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from scaler.expression import LackingLabels, Selector
from scaler.names import pod_of
from scaler.otlp import Labels, Sample
from scaler.pool_view import PoolKey, PoolView
from scaler.series import Series, Timeline
from scaler.views import Reducer, View, ViewKey

SWEEP_SLICE = 1_000  # series visited per sweep slice (a freed one counts FREE_COST): 2–7 ms here
FREE_COST = 4  # freeing a series (its views, its pod, its dict entries) costs up to four visits
EXPIRY_BUDGET = 50  # pods a push may recompute in a pool view for time passing: about 5 ms


@dataclass(frozen=True, slots=True)
class StoreStats:
    series: int
    pods: int
    stale_pods: int
    samples: int


class LabelMap(dict[str, str]):
    """A series' labels as a dict, shared by the series that have the same labels (dropped with the last)."""

    __slots__ = ("__weakref__", "pod")
    pod: str


@dataclass(slots=True)
class _Pod:
    last_seen: float
    series: int = 0
    timeline: Timeline = field(default_factory=Timeline)  # the times its series share while in step


class Store:
    def __init__(
        self, retention: float, max_series: int, expiry_budget: int = EXPIRY_BUDGET, share_times: bool = True
    ) -> None:
        if retention <= 0:
            raise ValueError("retention must be positive")
        self.retention = retention
        self.max_series = max_series
        self.expiry_budget = expiry_budget
        self.share_times = share_times  # the series of a pod share one time column (scaler.series.Timeline)
        self._by_name: dict[str, dict[Labels, Series]] = {}
        self._pods: dict[str, _Pod] = {}
        self._count = 0
        self.generation = 0  # bumped on every append, so waiters can tell that data changed
        self._versions: dict[str, int] = {}  # per name, bumped when its set of series changes
        self._selections: dict[tuple[str, Selector | LackingLabels], tuple[int, list[Series]]] = {}
        self._views: dict[str, dict[ViewKey, View]] = {}
        self._pool_views: dict[PoolKey, PoolView] = {}
        self._pool_views_by_name: dict[str, list[PoolView]] = {}
        self._label_maps: weakref.WeakValueDictionary[Labels, LabelMap] = weakref.WeakValueDictionary()

    def __len__(self) -> int:
        return self._count

    def append(self, samples: Iterable[Sample], now: float) -> Counter[str]:
        """Store samples received at `now`; return the refused ones counted by reason."""
        refused: Counter[str] = Counter()
        horizon = now - self.retention
        advanced: list[Timeline] = []  # pods' time columns this push moved on
        for sample in samples:
            named = self._by_name.get(sample.name)
            series = named.get(sample.labels) if named is not None else None
            if series is None or series.kind is not sample.kind:
                if sample.no_value:
                    continue  # an end marker for a series we do not hold
                if series is None and self._count >= self.max_series:
                    refused["series_limit"] += 1
                    continue
                series = self._create(sample, now)
            if series.timeline is not None:
                series.append_in_step(sample, now, horizon, advanced)
            else:
                series.append(sample, now, horizon)
            for view in series.views:
                view.update(series)
            if series.pod and not sample.no_value:
                self._pods[series.pod].last_seen = now
        for line in advanced:
            line.settle()
        for pool in self._pool_views.values():  # each pod pushed recomputes once, at the push's time
            pool.advance(now, self.expiry_budget)
        self.generation += 1
        return refused

    def _create(self, sample: Sample, now: float) -> Series:
        named = self._by_name.setdefault(sample.name, {})
        old = named.get(sample.labels)
        label_map = self._label_maps.get(sample.labels)
        if label_map is None:
            # Series of one pod mostly share a label set: they share its dict and pod name too.
            label_map = self._label_maps[sample.labels] = LabelMap(sample.labels)
            label_map.pod = pod_of(label_map)
        series = Series.for_sample(sample, label_map.pod, label_map)
        named[sample.labels] = series
        self._versions[sample.name] = self._versions.get(sample.name, 0) + 1
        if old is not None:
            self._detach(old)
        for view in self._views.get(sample.name, {}).values():
            if view.accepts(series):
                series.views += (view,)
        for pool in self._pool_views_by_name.get(sample.name, ()):
            if pool.accepts(series):
                series.views += (pool,)
                pool.attach(series)
        if old is None:
            self._count += 1
            if series.pod:
                pod = self._pods.setdefault(series.pod, _Pod(now))
                pod.series += 1
        if series.pod and self.share_times:
            line = self._pods[series.pod].timeline
            if line.joinable(now):
                line.join(series)
        return series

    def select(self, name: str, selector: Selector | LackingLabels) -> list[Series]:
        """The series of `name` that `selector` matches; cached until that name's series change."""
        version = self._versions.get(name, 0)
        cached = self._selections.get((name, selector))
        if cached is not None and cached[0] == version:
            return cached[1]
        if len(self._selections) > 10_000:
            self._selections.clear()
        named = self._by_name.get(name, {})
        matched = [s for s in named.values() if selector.matches(s.label_map)]
        self._selections[(name, selector)] = (version, matched)
        return matched

    def name_version(self, name: str) -> int:
        """Moves on whenever the set of series named `name` changes."""
        return self._versions.get(name, 0)

    def view(self, key: ViewKey, reduce: Reducer, now: float) -> View:
        """The view for `key`, created (and filled from the series held) on first use."""
        views = self._views.setdefault(key.name, {})
        view = views.get(key)
        if view is None:
            view = views[key] = View(key, reduce, now)
            held = [s for s in self._by_name.get(key.name, {}).values() if view.accepts(s)]
            for series in sorted(held, key=Series.last_time):  # the view keeps update order
                series.views += (view,)
                view.update(series)
        view.last_used = now
        return view

    def pool_view(
        self, selector: Selector, metrics: tuple[str, ...], windows: tuple[float, ...], stale_after: float, now: float
    ) -> PoolView:
        """The pool view for a policy trigger's selector, metrics and windows, created (and filled) on first use."""
        key = PoolKey(selector, metrics, windows, stale_after)
        pool = self._pool_views.get(key)
        if pool is None:
            pool = self._pool_views[key] = PoolView(key, now)
            for name in dict.fromkeys(metrics):
                self._pool_views_by_name.setdefault(name, []).append(pool)
                for series in self.select(name, selector):
                    series.views += (pool,)
                    pool.attach(series)
        pool.last_used = now
        return pool

    def advance_views(self, now: float, budget: int = EXPIRY_BUDGET) -> Iterator[None]:
        """Bring every pool view to `now` in slices of at most `budget` pods that time changed, yielding
        between slices.

        A fleet that pushes in step has all its pods' rows leave a window at one moment, between two
        pushes; the read that comes next would take them all at once (about 200 ms at 5,000 pods). Run
        between calls, this leaves the read nothing to do.
        """
        for pool in list(self._pool_views.values()):
            while pool.due(now):
                pool.advance(now, budget)
                yield

    def next_due(self) -> float:
        """When time next changes a pool view without a push (`advance_views` then has work)."""
        return min((pool.next_due() for pool in self._pool_views.values()), default=math.inf)

    def drop_idle_views(self, now: float, idle: float) -> int:
        dropped = 0
        for name, views in list(self._views.items()):
            for key, view in list(views.items()):
                if now - view.last_used > idle:
                    del views[key]
                    view.version += 1  # what rests on it no longer holds: it gets no more updates
                    dropped += 1
                    for series in list(view.values) + list(view.stale):
                        series.views = tuple(v for v in series.views if v is not view)
            if not views:
                del self._views[name]
        for pool_key, pool in list(self._pool_views.items()):
            if now - pool.last_used > idle:
                del self._pool_views[pool_key]
                dropped += 1
                for series in pool.release():
                    series.views = tuple(v for v in series.views if v is not pool)
                for name in pool_key.metrics:
                    pools = self._pool_views_by_name.get(name, [])
                    if pool in pools:
                        pools.remove(pool)
                    if not pools:
                        self._pool_views_by_name.pop(name, None)
        return dropped

    def _detach(self, series: Series) -> None:
        for view in series.views:
            view.detach(series)
        series.views = ()
        if series.timeline is not None:
            series.timeline.drop(series)

    def series_named(self, name: str) -> Iterator[Series]:
        named = self._by_name.get(name)
        return iter(named.values()) if named else iter(())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def sweep(self, now: float) -> int:
        """Free series with no sample within retention, and pods left with no series; return freed series.

        The series kept give back the room their arrays grew into while filling (`Series.pack`).
        """
        return sum(self.sweep_slices(now, size=2**62))

    def sweep_slices(self, now: float, size: int = SWEEP_SLICE) -> Iterator[int]:
        """The sweep in slices of `size` visits, yielding the series freed by each.

        A caller on an event loop lets other work run between slices: at 400,000 series a whole sweep
        held the loop for 0.3–0.7 s. A freed series weighs FREE_COST visits, so a slice that frees
        takes no longer than one that only trims. Appends between slices are safe (a name's series are
        read as the sweep reaches it, and one replaced since is left to the next pass); the horizon is
        the pass's start, so a slice never frees what is fresh.
        """
        horizon = now - self.retention
        freed = visited = 0
        for name in list(self._by_name):
            named = self._by_name.get(name)
            if named is None:
                continue
            pending = list(named.values())  # no (key, value) tuples: the sweep allocates nothing per series
            pending.reverse()
            while pending:
                series = pending.pop()  # a freed series dies here, not with the list: the costs stay in slices
                line = series.timeline
                if line is not None:
                    if line.trim(horizon):  # the rows of all its members went: tell each one's views
                        for member in line.members:
                            if member.has_data():
                                for view in member.views:
                                    view.trimmed(member)
                else:
                    held = series.sample_count()
                    series.trim(horizon)
                    if series.views and series.has_data() and series.sample_count() < held:
                        for view in series.views:
                            view.trimmed(series)
                if series.has_data():
                    series.pack()
                    visited += 1
                elif named.get(series.labels) is series:  # not replaced by an append between slices
                    del named[series.labels]
                    freed += 1
                    self._count -= 1
                    self._release_pod(series.pod)
                    self._detach(series)
                    self._versions[name] = self._versions.get(name, 0) + 1
                    visited += FREE_COST
                if visited >= size:
                    yield freed
                    freed = visited = 0
            if not named and self._by_name.get(name) is named:
                del self._by_name[name]
        yield freed

    def _release_pod(self, pod: str) -> None:
        if not pod:
            return
        info = self._pods[pod]
        info.series -= 1
        if info.series <= 0:
            del self._pods[pod]

    def pod_last_seen(self, pod: str) -> float | None:
        info = self._pods.get(pod)
        return info.last_seen if info else None

    def stats(self, now: float, stale_after: float) -> StoreStats:
        stale = sum(1 for p in self._pods.values() if now - p.last_seen > stale_after)
        samples = sum(s.sample_count() for named in self._by_name.values() for s in named.values())
        return StoreStats(self._count, len(self._pods), stale, samples)
