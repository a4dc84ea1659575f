"""Pods a pool was asked to grow by and that do not report yet, and the cold start learned from them.

Each time a recommendation rises above the last one, the pods it adds are an *ask*: serving pods
number `first`..`last`, asked for at `at`. An ask is consumed when that many pods report; the time
it took is one observation of the pool's cold start (model load, image pull, scheduling, the HPA's
own pace). Until a cold start is learned, `DEFAULT_COLD_START` stands in. An ask younger than the
cold start is capacity *in flight*; an older one is *late*, still awaited, until `HORIZON` drops it.

Pure values and functions of `now`, carried between evaluations in PolicyState.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_COLD_START = 60.0
HORIZON = 1800.0  # an ask this old is not coming
_LEARN_RATE = 0.5  # weight of a new arrival in the learned cold start


@dataclass(frozen=True, slots=True)
class Ask:
    at: float
    first: int  # serving pods first..last (1-based) were asked for at `at`
    last: int

    @property
    def pods(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Flight:
    asks: tuple[Ask, ...] = ()  # in pod order, all above the pods reporting
    target: int = 0  # the serving pods last recommended
    arrived_at: float | None = None  # when asked-for pods last began to report
    backlog: float = 0.0  # the queue they arrived into (set by the policy)
    learned: float | None = None  # cold start, seconds
    arrivals: int = 0  # asks whose arrival taught `learned`


@dataclass(frozen=True, slots=True)
class ColdStart:
    seconds: float
    source: str  # "configured", "learned" or "default"

    def describe(self, arrivals: int) -> str:
        if self.source == "learned":
            return f"cold start {self.seconds:.0f}s (learned from {arrivals} scale-ups)"
        if self.source == "configured":
            return f"cold start {self.seconds:g}s (configured)"
        return f"cold start {self.seconds:g}s (default: no scale-up has reported yet)"


def cold_start(configured: float | None, flight: Flight) -> ColdStart:
    if configured is not None:
        return ColdStart(configured, "configured")
    if flight.learned is not None:
        return ColdStart(flight.learned, "learned")
    return ColdStart(DEFAULT_COLD_START, "default")


def arrive(flight: Flight, reporting: int, now: float) -> Flight:
    """Consume the asks now answered by `reporting` pods, learning the cold start from each."""
    learned, arrivals, arrived_at = flight.learned, flight.arrivals, flight.arrived_at
    kept: list[Ask] = []
    for ask in flight.asks:
        if now - ask.at > HORIZON:
            continue
        if ask.first > reporting:
            kept.append(ask)
            continue
        seconds = now - ask.at
        learned = seconds if learned is None else learned + _LEARN_RATE * (seconds - learned)
        arrivals, arrived_at = arrivals + 1, now
        if ask.last > reporting:
            kept.append(replace(ask, first=reporting + 1))
    return replace(flight, asks=tuple(kept), learned=learned, arrivals=arrivals, arrived_at=arrived_at)


def ask(flight: Flight, target: int, reporting: int, now: float) -> Flight:
    """Record a new recommendation of `target` serving pods: asks above it are withdrawn, a rise is asked."""
    asks = [replace(a, last=min(a.last, target)) for a in flight.asks if a.first <= target]
    above = max(flight.target, reporting)
    if target > above:
        asks.append(Ask(now, above + 1, target))
    return replace(flight, asks=tuple(asks), target=target)


def awaited(flight: Flight, now: float, seconds: float) -> tuple[int, int]:
    """(in flight, late): asked-for pods not reporting yet, younger and older than the cold start."""
    young = sum(a.pods for a in flight.asks if now - a.at < seconds)
    return young, sum(a.pods for a in flight.asks) - young


def arrived_within(flight: Flight, now: float, seconds: float) -> bool:
    """Whether asked-for pods began to report less than `seconds` ago."""
    return flight.arrived_at is not None and now - flight.arrived_at < seconds
