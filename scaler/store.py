"""The in-memory metric store: series by name and label set, pods, retention and hard caps.

Every method takes `now`; nothing here reads a clock. Time is the scaler's receive time, not the
producer's timestamp, so staleness and windows are judged on one clock whatever the pods' clocks say.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from scaler.names import pod_of
from scaler.otlp import Labels, Sample
from scaler.series import Series


@dataclass(frozen=True, slots=True)
class StoreStats:
    series: int
    pods: int
    stale_pods: int
    samples: int


@dataclass(slots=True)
class _Pod:
    last_seen: float
    series: int = 0


class Store:
    def __init__(self, retention: float, max_series: int) -> None:
        if retention <= 0:
            raise ValueError("retention must be positive")
        self.retention = retention
        self.max_series = max_series
        self._by_name: dict[str, dict[Labels, Series]] = {}
        self._pods: dict[str, _Pod] = {}
        self._count = 0
        self.generation = 0  # bumped on every append, so waiters can tell that data changed

    def __len__(self) -> int:
        return self._count

    def append(self, samples: Iterable[Sample], now: float) -> Counter[str]:
        """Store samples received at `now`; return the refused ones counted by reason."""
        refused: Counter[str] = Counter()
        horizon = now - self.retention
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
            series.append(sample, now, horizon)
            if series.pod and not sample.no_value:
                self._pods[series.pod].last_seen = now
        self.generation += 1
        return refused

    def _create(self, sample: Sample, now: float) -> Series:
        named = self._by_name.setdefault(sample.name, {})
        old = named.get(sample.labels)
        labels = dict(sample.labels)
        series = Series.for_sample(sample, pod_of(labels))
        named[sample.labels] = series
        if old is None:
            self._count += 1
            if series.pod:
                pod = self._pods.setdefault(series.pod, _Pod(now))
                pod.series += 1
        return series

    def series_named(self, name: str) -> Iterator[Series]:
        named = self._by_name.get(name)
        return iter(named.values()) if named else iter(())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def sweep(self, now: float) -> int:
        """Free series with no sample within retention, and pods left with no series; return freed series."""
        horizon = now - self.retention
        freed = 0
        for name in list(self._by_name):
            named = self._by_name[name]
            for labels, series in list(named.items()):
                series.trim(horizon)
                if not series.has_data():
                    del named[labels]
                    freed += 1
                    self._release_pod(series.pod)
            if not named:
                del self._by_name[name]
        self._count -= freed
        return freed

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
