"""One contender replayed over a trace in virtual time: fleet, metrics path, scaler core, KEDA and HPA.

No sockets, no sleeps, no clock. Periodic work (an OTLP export or a Prometheus scrape into the
scaler's store, the store's sweep, each ScaledObject's KEDA poll and HPA sync, a timeline sample)
runs at its own instants between arrivals, in a fixed order at equal instants, so a replay is a
pure function of its inputs. Each export or scrape carries the pods' metrics and the gateway's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scaler.app import POLICY_REFRESH
from scaler.settings import Settings
from scaler.sim.evaluation_contenders import MODEL, NAMESPACE, NO_METRICS, OTLP, Contender
from scaler.sim.fleet_spec import FleetSpec
from scaler.sim.keda import KedaHpaEmulator, triggers_asker
from scaler.sim.otlp_push import metrics_samples, snapshot_samples
from scaler.sim.trace import TraceRow
from scaler.sim.virtual_fleet import Outcome, VirtualFleet
from scaler.store import Store
from scaler.triggers import Triggers

SWEEP_INTERVAL = 5.0  # the live service's housekeeping: min(5 s, --stale-after)


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    end: float  # the trace's length: GPU time is counted up to here
    export_interval: float = 5.0  # OTLP push period (KServe's sidecar scrape interval)
    scrape_interval: float = 15.0  # Prometheus scrape period
    cold_start: float = 60.0
    drain_grace: float = 30.0
    drain_limit: float = 600.0  # after `end`, how long requests in flight may still finish
    export_phase: float = 0.0  # when, within its period, the first OTLP export happens
    scrape_phase: float = 0.0  # when, within its period, the first Prometheus scrape happens
    hpa_phase: float = 0.0  # when, within 15 s, KEDA and the HPA first run
    settings: Settings = Settings()  # the scaler's retention, staleness, warm-up and caps


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    t: float
    replicas: tuple[int, ...]  # spec.replicas per pool, starting pods included
    ready: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    t: float
    deployment: str
    old: int
    new: int
    by: str  # "keda" or "hpa"


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    contender: str
    deployments: tuple[str, ...]
    requests: int
    outcomes: tuple[Outcome, ...]  # in finishing order; requests still running at the cut-off are missing
    timeline: tuple[TimelinePoint, ...]
    scale_events: tuple[ScaleEvent, ...]
    gpu_seconds: float  # pods held (starting, ready, draining) integrated over [0, end], 1 GPU per pod


class Periodic:
    """A schedule `first + k * interval`; `due(now)` says whether an instant has come, and moves past it."""

    def __init__(self, first: float, interval: float) -> None:
        self.next, self.interval = first, interval

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next += self.interval * (1 + math.floor((now - self.next) / self.interval))
        return True


class Replay:
    def __init__(self, contender: Contender, config: ReplayConfig) -> None:
        self.contender, self.config = contender, config
        pools = tuple(p.spec for p in contender.pools)
        spec = FleetSpec(pools, NAMESPACE, MODEL, config.cold_start, config.drain_grace, contender.flow_control)
        self.fleet = VirtualFleet(spec)
        s = config.settings
        self.store = Store(s.retention, s.max_series)
        self.triggers = Triggers(self.store, s.stale_after, warmup_until=s.warmup, policy_refresh=POLICY_REFRESH)
        self.ask = triggers_asker(self.triggers.evaluate)
        self.emulators = {
            p.spec.deployment: KedaHpaEmulator(p.scaled_object, config.hpa_phase)
            for p in contender.pools
            if p.scaled_object is not None
        }
        self.feed = _feed(contender.metrics_path, config)
        self.sweep = Periodic(SWEEP_INTERVAL, SWEEP_INTERVAL)
        self.sample = Periodic(0.0, config.export_interval)
        self.outcomes: list[Outcome] = []
        self.timeline: list[TimelinePoint] = []
        self.events: list[ScaleEvent] = []
        self.gpu_seconds = 0.0
        self._accounted = 0.0
        self._now = 0.0

    def run(self, rows: Sequence[TraceRow]) -> ReplayRecord:
        for row in rows:
            self._tick_until(row.t_seconds)
            self._account(row.t_seconds)
            self.fleet.submit(row.prompt_tokens, row.output_tokens, row.t_seconds)
            self._now = row.t_seconds
        self._tick_until(self.config.end)
        self._account(self.config.end)
        cutoff = self.config.end + self.config.drain_limit
        while self.fleet.in_flight() and self._next_tick() <= cutoff:
            self._tick_until(self._next_tick())
        self.outcomes += self.fleet.advance(self._now)  # what scale() and submit() finished last
        return ReplayRecord(
            self.contender.name,
            self.contender.deployments,
            len(rows),
            tuple(self.outcomes),
            tuple(self.timeline),
            tuple(self.events),
            self.gpu_seconds,
        )

    # -- periodic work --------------------------------------------------------------------------

    def _next_tick(self) -> float:
        times = [self.sweep.next, self.sample.next, *(e.next_due() for e in self.emulators.values())]
        if self.feed is not None:
            times.append(self.feed.next)
        return min(times)

    def _tick_until(self, until: float) -> None:
        while (now := self._next_tick()) <= until:
            self._account(now)
            self.outcomes += self.fleet.advance(now)
            self._tick(now)
            self._now = now

    def _tick(self, now: float) -> None:
        if self.feed is not None and self.feed.due(now):
            samples = snapshot_samples(self.fleet.snapshots()) + metrics_samples([self.fleet.gateway_metrics()])
            self.store.append(samples, now)
        if self.sweep.due(now):
            self.store.sweep(now)
            self.triggers.expire(now)
        for deployment, emulator in self.emulators.items():
            if now >= emulator.next_due():
                self._autoscale(deployment, emulator, now)
        if self.sample.due(now) and now <= self.config.end:
            self._record(now)

    def _autoscale(self, deployment: str, emulator: KedaHpaEmulator, now: float) -> None:
        current = self.fleet.replicas(deployment)
        for decision in emulator.step(now, current, self.ask, self.fleet.ready(deployment)):
            self.events.append(ScaleEvent(now, deployment, current, decision.replicas, decision.by))
            self.fleet.scale(deployment, decision.replicas, now)
            current = decision.replicas

    def _record(self, now: float) -> None:
        deployments = self.contender.deployments
        self.timeline.append(
            TimelinePoint(
                now,
                tuple(self.fleet.replicas(d) for d in deployments),
                tuple(self.fleet.ready(d) for d in deployments),
            )
        )

    def _account(self, now: float) -> None:
        """GPU time up to `now` at the pods held since the last look; call it before advancing the fleet.

        A drain that ended in between is counted to `now`: at most one arrival or tick too long.
        """
        until = min(now, self.config.end)
        if until > self._accounted:
            held = sum(len(c.pods) for c in self.fleet.controllers.values())
            self.gpu_seconds += held * (until - self._accounted)
            self._accounted = until


def _feed(metrics_path: str, config: ReplayConfig) -> Periodic | None:
    """When samples reach the store: every OTLP export, or only at Prometheus scrapes."""
    if metrics_path == NO_METRICS:
        return None
    if metrics_path == OTLP:
        return Periodic(config.export_phase, config.export_interval)
    return Periodic(config.scrape_phase, config.scrape_interval)


def replay(contender: Contender, rows: Sequence[TraceRow], config: ReplayConfig) -> ReplayRecord:
    return Replay(contender, config).run(rows)
