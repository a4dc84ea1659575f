"""A fixed-bucket histogram accumulator and its frozen value, as vLLM's Prometheus histograms count."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HistogramValue:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket (not cumulative over buckets); the last one is (bounds[-1], +Inf)
    total: float  # the sum of observations
    count: int

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus `le` buckets, ending with +Inf."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
        return out

    def rebucketed(self, bounds: Sequence[float]) -> HistogramValue:
        """The same observations under coarser `bounds`, each one of ours: exact, no interpolation."""
        bounds = tuple(float(b) for b in bounds)
        if not set(bounds) <= set(self.bounds):
            raise ValueError(f"bounds {bounds} are not a subset of {self.bounds}")
        counts = [0] * (len(bounds) + 1)
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            counts[bisect_left(bounds, bound)] += n
        return HistogramValue(bounds, tuple(counts), self.total, self.count)

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-th observation (+Inf past the last bound); 0 when empty."""
        if not self.count:
            return 0.0
        rank = q * self.count
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            if running >= rank:
                return bound
        return float("inf")


class Histogram:
    """Counts observations into buckets with upper bounds `bounds` (le semantics: value <= bound)."""

    __slots__ = ("bounds", "_counts", "total", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(bounds):
            raise ValueError("histogram bounds must be sorted")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        if times <= 0:
            return
        self._counts[bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.count += times

    def value(self) -> HistogramValue:
        return HistogramValue(self.bounds, tuple(self._counts), self.total, self.count)
