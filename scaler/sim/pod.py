"""A simulated vLLM pod: its identity, one engine per data-parallel rank, and its metrics as data.

Pure and clock-free like the engine: the live HTTP server (`pod_server`) and the virtual fleet
(`virtual_fleet`) both drive it with `submit`, `advance(now)` and `next_event_time()`.
`snapshot()` is the one place a pod's vLLM metrics are computed from engine state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scaler.sim import vllm_metrics as vm
from scaler.sim.engine import Engine, Finished, Progress, RequestSpec
from scaler.sim.histogram import Histogram
from scaler.sim.profiles import HardwareProfile

ROLES = ("unified", "prefill", "decode")


@dataclass(frozen=True, slots=True)
class PodIdentity:
    pod: str
    deployment: str
    namespace: str = "default"
    role: str = "unified"
    model: str = "qwen"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")


class SimPod:
    def __init__(
        self,
        identity: PodIdentity,
        profile: HardwareProfile,
        now: float = 0.0,
        created: float = 0.0,
        data_parallel_size: int = 1,
    ) -> None:
        if data_parallel_size < 1:
            raise ValueError("data_parallel_size must be at least 1")
        self.identity = identity
        self.profile = profile
        self.created = created  # wall-clock seconds, for `_created` and OTLP start times
        self.engines = [Engine(profile, now) for _ in range(data_parallel_size)]
        self._engine_of: dict[str, Engine] = {}

    def submit(self, spec: RequestSpec, now: float) -> None:
        """Send the request to the least-loaded engine, as vLLM's data-parallel coordinator does."""
        engine = min(self.engines, key=lambda e: e.outstanding)
        engine.submit(spec, now)
        self._engine_of[spec.request_id] = engine

    def abort(self, request_id: str, now: float) -> None:
        engine = self._engine_of.get(request_id)
        if engine is not None:
            engine.abort(request_id, now)

    def shutdown(self, now: float) -> list[Finished]:
        """The pod stops at `now`: everything in flight ends as aborted."""
        done = [f for engine in self.engines for f in engine.shutdown(now)]
        self._engine_of.clear()
        return done

    def advance(self, now: float) -> list[Finished]:
        done: list[Finished] = []
        for engine in self.engines:
            done += engine.advance(now)
        for finished in done:
            self._engine_of.pop(finished.request_id, None)
        return done

    def next_event_time(self) -> float | None:
        times = [t for t in (e.next_event_time() for e in self.engines) if t is not None]
        return min(times) if times else None

    def next_change_time(self) -> float | None:
        """The earliest `Engine.next_change_time` over the pod's engines."""
        times = [t for t in (e.next_change_time() for e in self.engines) if t is not None]
        return min(times) if times else None

    def progress(self, request_id: str) -> Progress | None:
        engine = self._engine_of.get(request_id)
        return engine.progress(request_id) if engine is not None else None

    @property
    def outstanding(self) -> int:
        return sum(e.outstanding for e in self.engines)

    @property
    def waiting(self) -> int:
        """num_requests_waiting summed over the engines, as a gateway reads it."""
        return sum(e.waiting for e in self.engines)

    def kv_usage(self) -> float:
        """The fullest engine's KV-cache usage."""
        return max(e.kv_usage() for e in self.engines)

    def snapshot(self) -> vm.PodSnapshot:
        """The pod's vLLM metrics now: gauges, counters and histograms per engine."""
        ident = self.identity
        per_engine = [((("model_name", ident.model), ("engine", str(i))), e) for i, e in enumerate(self.engines)]

        def points(read: Callable[[Engine], float]) -> tuple[vm.Point, ...]:
            return tuple(vm.Point(labels, read(engine)) for labels, engine in per_engine)

        def histograms(read: Callable[[Engine], Histogram]) -> tuple[vm.Point, ...]:
            return tuple(vm.Point(labels, histogram=read(engine).value()) for labels, engine in per_engine)

        success = tuple(
            vm.Point((*labels, ("finished_reason", reason)), float(engine.stats.finished[reason]))
            for labels, engine in per_engine
            for reason in vm.FINISHED_REASONS
        )
        by_reason = tuple(
            vm.Point((*labels, ("reason", reason)), float(count))
            for labels, engine in per_engine
            for reason, count in zip(
                vm.WAITING_REASONS, (engine.waiting_for_capacity, engine.waiting_deferred), strict=True
            )
        )
        sleep = tuple(  # the simulated engines never sleep
            vm.Point((*labels, ("sleep_state", state)), 1.0 if state == "awake" else 0.0)
            for labels, _ in per_engine
            for state in vm.SLEEP_STATES
        )
        families = (
            vm.Family(vm.RUNNING, points(lambda e: float(e.running))),
            vm.Family(vm.WAITING, points(lambda e: float(e.waiting))),
            vm.Family(vm.WAITING_BY_REASON, by_reason),
            vm.Family(vm.SLEEP_STATE, sleep),
            vm.Family(vm.KV_USAGE, points(lambda e: e.kv_usage())),
            vm.Family(vm.PROMPT_TOKENS, points(lambda e: float(e.stats.prompt_tokens))),
            vm.Family(vm.GENERATION_TOKENS, points(lambda e: float(e.stats.generation_tokens))),
            vm.Family(vm.PREEMPTIONS, points(lambda e: float(e.stats.preemptions))),
            vm.Family(vm.REQUEST_SUCCESS, success),
            vm.Family(vm.ITERATION_TOKENS, histograms(lambda e: e.stats.iteration_tokens)),
            vm.Family(vm.TTFT, histograms(lambda e: e.stats.ttft)),
            vm.Family(vm.ITL, histograms(lambda e: e.stats.itl)),
            vm.Family(vm.E2E, histograms(lambda e: e.stats.e2e)),
            vm.Family(vm.QUEUE_TIME, histograms(lambda e: e.stats.queue_time)),
        )
        return vm.PodSnapshot(ident.pod, ident.namespace, ident.deployment, ident.role, self.created, families)
