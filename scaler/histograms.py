"""Quantiles from histogram bucket increases, interpolated within a bucket as Prometheus does."""

from __future__ import annotations

from collections.abc import Sequence


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The q-quantile of observations counted per bucket (len(counts) == len(bounds) + 1).

    Buckets are (bounds[i-1], bounds[i]]; the first starts at 0 (or at its bound, if negative) and
    the last is open, so a quantile that lands there answers the highest finite bound. None when
    there are no observations.
    """
    total = sum(counts)
    if total <= 0 or not bounds or len(counts) != len(bounds) + 1:
        return None
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if i == len(bounds):
                return bounds[-1]
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else min(0.0, upper)
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return bounds[-1]


def merge(into: list[float], counts: Sequence[float]) -> None:
    """Add bucket counts into an accumulator of the same layout."""
    for i, count in enumerate(counts):
        into[i] += count
