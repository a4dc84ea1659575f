"""Token buckets per sender, in datapoints per second; time is an argument."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

MAX_SENDERS = 100_000  # buckets kept at most; the fullest (idlest) are dropped first


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class PushRateLimiter:
    """`rate` datapoints per second per sender, with bursts of `burst_seconds` worth.

    A request larger than the burst is taken from a full bucket, which it leaves in debt: so every
    request within the other limits goes through eventually, and the rate still holds on average.
    """

    def __init__(self, rate: float, burst_seconds: float = 2.0) -> None:
        self.rate = rate
        self.capacity = rate * burst_seconds
        self._buckets: dict[str, _Bucket] = {}

    def take(self, sender: str, points: int, now: float) -> float:
        """Take `points` if available and return 0; otherwise take nothing and return the (finite)
        seconds until they would be."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= MAX_SENDERS:
                self.forget_idle(now)
            bucket = self._buckets[sender] = _Bucket(self.capacity, now)
        bucket.level = min(self.capacity, bucket.level + max(0.0, now - bucket.updated) * self.rate)
        bucket.updated = max(now, bucket.updated)
        needed = min(float(points), self.capacity)
        if bucket.level >= needed:
            bucket.level -= points
            return 0.0
        return (needed - bucket.level) / self.rate

    def forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        full = [k for k, b in self._buckets.items() if b.level + (now - b.updated) * self.rate >= self.capacity]
        for key in full:
            del self._buckets[key]


@lru_cache(maxsize=4096)  # asked at every push without tokens; ipaddress is slow to parse
def sender_address(peer: str) -> str:
    """The client's IP address, without the port that changes with every connection.

    Takes a gRPC peer (`ipv4:10.0.0.1:5555`, `ipv6:[::1]:5555`, brackets maybe percent-encoded) or
    an aiohttp remote (an address already). An IPv4-mapped IPv6 address is the IPv4 one, so a
    client has one bucket over both transports. Anything else (`unix:...`) is returned whole.
    """
    scheme, colon, rest = peer.partition(":")
    if colon and scheme in ("ipv4", "ipv6"):
        rest = unquote(rest)
        host = rest[1 : rest.find("]")] if rest.startswith("[") else rest.rpartition(":")[0]
    else:
        host = peer
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or peer
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)
