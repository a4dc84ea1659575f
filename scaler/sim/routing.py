"""The router's choice: the ready pod with the fewest outstanding requests, ties taken in turn.

Pure. The live router counts the requests it has in flight per pod; the virtual fleet asks each
pod's engines. Under prefill/decode disaggregation a request is routed twice: prefill, then decode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence


def least_outstanding(pods: Sequence[str], outstanding: Mapping[str, int], turn: int = 0) -> str | None:
    """The pod with the fewest outstanding requests; among equals, the first at or after `turn`."""
    if not pods:
        return None
    fewest = min(outstanding.get(p, 0) for p in pods)
    tied = [p for p in pods if outstanding.get(p, 0) == fewest]
    return tied[turn % len(tied)]


class Router:
    """Tracks requests in flight per pod and picks the least loaded pod for the next one."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()
        self._turn = 0

    def pick(self, pods: Sequence[str]) -> str | None:
        pod = least_outstanding(pods, self.in_flight, self._turn)
        self._turn += 1
        return pod

    def started(self, pod: str) -> None:
        self.in_flight[pod] += 1

    def finished(self, pod: str) -> None:
        self.in_flight[pod] -= 1
        if self.in_flight[pod] <= 0:
            del self.in_flight[pod]
