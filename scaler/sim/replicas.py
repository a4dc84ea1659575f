"""A Deployment's replica controller: pods start after a cold-start delay and drain on scale-down.

Pure, time as an argument. `scale(n, now)` creates or removes pods; `advance(now)` reports pods that
became ready or whose drain ran out of time; `drained(name, now)` is how a driver reports a draining
pod with nothing left in flight. Scale-down removes not-yet-ready pods first, then the most recently
ready ones, as a ReplicaSet does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    STARTING = "starting"  # loading the model: no traffic, no metrics
    READY = "ready"
    DRAINING = "draining"  # out of the router, finishing what it has
    GONE = "gone"


@dataclass(slots=True)
class PodState:
    name: str
    phase: Phase
    created: float
    ready_at: float
    drain_deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    phase: Phase  # the new phase
    at: float


class ReplicaController:
    def __init__(
        self,
        deployment: str,
        cold_start: float = 60.0,
        drain_grace: float = 30.0,
        replicas: int = 0,
        now: float = 0.0,
    ) -> None:
        if cold_start < 0 or drain_grace < 0:
            raise ValueError("cold_start and drain_grace must not be negative")
        self.deployment = deployment
        self.cold_start = cold_start
        self.drain_grace = drain_grace
        self.pods: dict[str, PodState] = {}
        self._serial = 0
        for _ in range(replicas):  # pods that exist before the simulation starts are ready
            name = self._new_name()
            self.pods[name] = PodState(name, Phase.READY, now, now)

    @property
    def replicas(self) -> int:
        """spec.replicas: pods starting or ready."""
        return sum(1 for p in self.pods.values() if p.phase in (Phase.STARTING, Phase.READY))

    def ready(self) -> list[str]:
        return [p.name for p in self.pods.values() if p.phase is Phase.READY]

    def in_phase(self, phase: Phase) -> list[str]:
        return [p.name for p in self.pods.values() if p.phase is phase]

    def scale(self, replicas: int, now: float) -> list[Transition]:
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        changes: list[Transition] = []
        for _ in range(replicas - self.replicas):
            name = self._new_name()
            self.pods[name] = PodState(name, Phase.STARTING, now, now + self.cold_start)
            changes.append(Transition(name, Phase.STARTING, now))
        excess = self.replicas - replicas
        if excess > 0:
            live = [p for p in self.pods.values() if p.phase in (Phase.STARTING, Phase.READY)]
            # newest first among equals: reversed creation order, then a stable sort
            victims = sorted(reversed(live), key=lambda p: (p.phase is Phase.READY, -p.ready_at))[:excess]
            for pod in victims:
                if pod.phase is Phase.STARTING:
                    del self.pods[pod.name]
                    changes.append(Transition(pod.name, Phase.GONE, now))
                else:
                    pod.phase = Phase.DRAINING
                    pod.drain_deadline = now + self.drain_grace
                    changes.append(Transition(pod.name, Phase.DRAINING, now))
        return changes + self.advance(now)

    def advance(self, now: float) -> list[Transition]:
        changes: list[Transition] = []
        for pod in sorted(self.pods.values(), key=lambda p: self._due(p) or 0.0):
            due = self._due(pod)
            if due is None or due > now:
                continue
            if pod.phase is Phase.STARTING:
                pod.phase = Phase.READY
                changes.append(Transition(pod.name, Phase.READY, pod.ready_at))
            else:
                del self.pods[pod.name]
                changes.append(Transition(pod.name, Phase.GONE, due))
        return changes

    def drained(self, name: str, now: float) -> list[Transition]:
        pod = self.pods.get(name)
        if pod is None or pod.phase is not Phase.DRAINING:
            return []
        del self.pods[name]
        return [Transition(name, Phase.GONE, now)]

    def next_event(self) -> float | None:
        times = [t for t in (self._due(p) for p in self.pods.values()) if t is not None]
        return min(times) if times else None

    @staticmethod
    def _due(pod: PodState) -> float | None:
        if pod.phase is Phase.STARTING:
            return pod.ready_at
        if pod.phase is Phase.DRAINING:
            return pod.drain_deadline
        return None

    def _new_name(self) -> str:
        self._serial += 1
        return f"{self.deployment}-{self._serial}"
