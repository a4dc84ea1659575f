"""Token buckets per sender, in datapoints per second; time is an argument."""

from __future__ import annotations

from dataclasses import dataclass

MAX_SENDERS = 100_000  # buckets kept at most; the fullest (idlest) are dropped first


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class PushRateLimiter:
    """`rate` datapoints per second per sender, with bursts of `burst_seconds` worth."""

    def __init__(self, rate: float, burst_seconds: float = 2.0) -> None:
        self.rate = rate
        self.capacity = rate * burst_seconds
        self._buckets: dict[str, _Bucket] = {}

    def take(self, sender: str, points: int, now: float) -> float:
        """Take `points` if available and return 0; otherwise take nothing and return seconds to wait."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= MAX_SENDERS:
                self.forget_idle(now)
            bucket = self._buckets[sender] = _Bucket(self.capacity, now)
        bucket.level = min(self.capacity, bucket.level + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if points <= bucket.level:
            bucket.level -= points
            return 0.0
        if points > self.capacity:
            return float("inf")  # never fits: the request must be split
        return (points - bucket.level) / self.rate

    def forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        full = [k for k, b in self._buckets.items() if b.level + (now - b.updated) * self.rate >= self.capacity]
        for key in full:
            del self._buckets[key]
