"""A whole fleet in virtual time: pods, router and replica controllers, with no sockets and no clock.

For replaying traces (`keda-llm-scaler evaluate`): `submit` requests at their arrival times,
`scale` deployments when the autoscaler decides, `advance(to)` to collect finished requests, and
`snapshots()` for what the pods would push. Under P/D a request is prefilled on the least-loaded
prefill pod, then handed to the least-loaded decode pod, whose KV pull takes the profile's transfer
time. Pods become ready after `cold_start`, and a drained pod leaves when empty or after `drain_grace`.
A `Gateway` counts arrivals and, with the spec's flow control, holds requests while every ready entry
pod is saturated, releasing them first come, first served as pods free up and shedding those held past
the request TTL (finish reason "shed", a 429); `gateway_metrics()` is
what it pushes. Call it with times that never go backwards. Pods are only advanced when something in them changes
(a finish, an admission, a preemption); `snapshots()` catches their token counts up first.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.sim.engine import Finished, RequestSpec
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.gateway import Gateway
from scaler.sim.otlp_push import PodMetrics
from scaler.sim.pod import PodIdentity, SimPod
from scaler.sim.replicas import Phase, ReplicaController, Transition
from scaler.sim.routing import least_outstanding
from scaler.sim.vllm_metrics import PodSnapshot


@dataclass(frozen=True, slots=True)
class Outcome:
    """One user request, end to end through the fleet."""

    request_id: str
    arrival: float
    first_token: float | None
    finish: float
    prompt_tokens: int
    output_tokens: int
    finish_reason: str  # "stop", "length", "abort" (pod went away), "unrouted" (no ready pod) or "shed" (gateway TTL)
    pods: tuple[str, ...]  # the pod, or the prefill pod then the decode pod

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def e2e(self) -> float:
        return self.finish - self.arrival

    @property
    def ok(self) -> bool:
        return self.finish_reason in ("stop", "length")


@dataclass(slots=True)
class _UserRequest:
    arrival: float
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    pods: tuple[str, ...] = ()


class VirtualFleet:
    def __init__(self, spec: FleetSpec, now: float = 0.0, wall_start: float = 0.0) -> None:
        self.spec = spec
        self.wall_start = wall_start  # wall-clock seconds at virtual time 0, for counters' start times
        self.controllers = {
            p.deployment: ReplicaController(p.deployment, spec.cold_start, spec.drain_grace, p.replicas, now)
            for p in spec.pools
        }
        self.pods: dict[str, SimPod] = {}  # ready and draining pods
        self._pool_of: dict[str, PoolSpec] = {}
        self._requests: dict[str, _UserRequest] = {}
        self._outbox: list[Outcome] = []
        self._serial = 0
        self._turn = 0
        self._now = now
        self._ran_to = now  # pods have been run up to here
        self.gateway: Gateway[str] = Gateway(spec.namespace, spec.inference_pool, spec.model, spec.flow_control)
        for pool in spec.pools:
            for name in self.controllers[pool.deployment].ready():
                self._start_pod(pool, name, now)

    # -- inputs ---------------------------------------------------------------------------------

    def submit(self, prompt_tokens: int, output_tokens: int, now: float, finish_reason: str = "stop") -> str:
        """A user request arriving at `now`; returns its id (its Outcome comes out of `advance`)."""
        finished = self.advance(now)  # advance() hands over and empties the outbox
        self._outbox += finished
        self._serial += 1
        request_id = f"req-{self._serial}"
        self._requests[request_id] = _UserRequest(now, prompt_tokens, output_tokens, finish_reason)
        self.gateway.arrived()
        open_pods = self._open(self.controllers[self.spec.entry.deployment].ready())
        if self.gateway.holds(len(open_pods)):
            self.gateway.queue.append(request_id)
        else:
            self._route(request_id, self.spec.entry, self._entry_spec(request_id), now, open_pods)
        return request_id

    def scale(self, deployment: str, replicas: int, now: float) -> None:
        finished = self.advance(now)  # advance() hands over and empties the outbox
        self._outbox += finished
        for change in self.controllers[deployment].scale(replicas, now):
            self._apply(deployment, change)

    # -- time -----------------------------------------------------------------------------------

    def advance(self, to: float) -> list[Outcome]:
        while (at := self._next_wake(to)) is not None:
            self._run_pods(at)
            for deployment, controller in self.controllers.items():
                for change in controller.advance(at):
                    self._apply(deployment, change)
            self._release(at)
        self._run_pods(to)
        self._release(to)
        self._now = max(self._now, to)
        out, self._outbox = self._outbox, []
        return out

    # -- what it looks like ---------------------------------------------------------------------

    def replicas(self, deployment: str) -> int:
        """spec.replicas, what KEDA and the HPA see as current."""
        return self.controllers[deployment].replicas

    def ready(self, deployment: str) -> int:
        return len(self.controllers[deployment].ready())

    def snapshots(self) -> list[PodSnapshot]:
        """Every serving pod's metrics at the last `advance` time (draining pods push until they go)."""
        for pool in self.spec.pools:
            for name in self._names(pool):
                self._settle(pool, self.pods[name].advance(self._now))
        return [pod.snapshot() for pod in self.pods.values()]

    def in_flight(self) -> int:
        return len(self._requests)

    def gateway_metrics(self) -> PodMetrics:
        return self.gateway.metrics(self.wall_start)

    # -- internals ------------------------------------------------------------------------------

    def _start_pod(self, pool: PoolSpec, name: str, at: float) -> None:
        identity = PodIdentity(name, pool.deployment, self.spec.namespace, pool.role, self.spec.model)
        self.pods[name] = SimPod(identity, pool.profile, at, self.wall_start + at, pool.data_parallel_size)
        self._pool_of[name] = pool

    def _apply(self, deployment: str, change: Transition) -> None:
        pool = next(p for p in self.spec.pools if p.deployment == deployment)
        if change.phase is Phase.READY:
            self._start_pod(pool, change.name, change.at)
        elif change.phase is Phase.GONE and change.name in self.pods:
            pod = self.pods.pop(change.name)
            self._settle(pool, pod.shutdown(change.at))
            self._pool_of.pop(change.name, None)

    def _next_wake(self, to: float) -> float | None:
        """The next controller event by `to`; with requests held, also the next change of an entry pod."""
        times = [t for t in (c.next_event() for c in self.controllers.values()) if t is not None and t <= to]
        if self.gateway.queue:
            for name in self._names(self.spec.entry):
                t = self.pods[name].next_change_time()
                if t is not None and self._ran_to < t <= to:
                    times.append(t)
        return min(times, default=None)

    def _entry_spec(self, request_id: str) -> RequestSpec:
        user = self._requests[request_id]
        if self.spec.disaggregated:  # prefill only: one token, then the decode pool
            return RequestSpec(request_id, user.prompt_tokens, 1, "length")
        return RequestSpec(request_id, user.prompt_tokens, user.output_tokens, user.finish_reason)

    def _open(self, names: list[str]) -> list[str]:
        """The pods the gateway may send a new request to: all, or with flow control the unsaturated."""
        limits = self.gateway.flow_control
        if limits is None:
            return names
        pods = self.pods
        return [n for n in names if not limits.saturated(pods[n].waiting, pods[n].kv_usage)]

    def _release(self, now: float) -> None:
        """Held requests past the TTL are shed, then the rest go, oldest first, to entry pods with room."""
        queue, requests = self.gateway.queue, self._requests
        while queue and (at := self.gateway.shed_at(requests[queue[0]].arrival)) is not None and at <= now:
            self._outcome(queue.popleft(), None, at, "shed")
        entry = self.spec.entry
        while self.gateway.queue and (open_pods := self._open(self.controllers[entry.deployment].ready())):
            request_id = self.gateway.queue.popleft()
            self._route(request_id, entry, self._entry_spec(request_id), now, open_pods)

    def _route(
        self, request_id: str, pool: PoolSpec, spec: RequestSpec, now: float, ready: list[str] | None = None
    ) -> None:
        """To the least loaded of `ready` (by default the pool's ready pods)."""
        if ready is None:
            ready = self.controllers[pool.deployment].ready()
        self._turn += 1
        name = least_outstanding(ready, {n: self.pods[n].outstanding for n in ready}, self._turn)
        user = self._requests[request_id]
        if name is None:
            self._outcome(request_id, None, now, "unrouted")
            return
        user.pods += (name,)
        self.pods[name].submit(spec, now)

    def _run_pods(self, to: float) -> None:
        self._ran_to = max(self._ran_to, to)
        if self.spec.disaggregated:
            prefill, decode = self.spec.pool("prefill"), self.spec.pool("decode")
            handoffs = [f for name in self._names(prefill) for f in self._advance_pod(name, to)]
            for finished in sorted(handoffs, key=lambda f: f.finish):
                self._advance_pool(decode, finished.finish)
                self._hand_off(finished, decode)
            self._advance_pool(decode, to)
        else:
            self._advance_pool(self.spec.entry, to)
        for deployment, controller in self.controllers.items():
            for name in controller.in_phase(Phase.DRAINING):
                if self.pods[name].outstanding == 0:
                    for change in controller.drained(name, to):
                        self._apply(deployment, change)

    def _names(self, pool: PoolSpec) -> list[str]:
        return [n for n, p in self._pool_of.items() if p is pool]

    def _advance_pool(self, pool: PoolSpec, to: float) -> None:
        for name in self._names(pool):
            self._settle(pool, self._advance_pod(name, to))

    def _advance_pod(self, name: str, to: float) -> list[Finished]:
        pod = self.pods[name]
        change = pod.next_change_time()
        if change is None or change > to:
            return []  # nothing but token counts would move; snapshots() catches those up
        return pod.advance(to)

    def _settle(self, pool: PoolSpec, finished: list[Finished]) -> None:
        for f in finished:
            if pool.role == "prefill" and f.finish_reason != "abort":
                self._hand_off(f, self.spec.pool("decode"))
            else:
                self._outcome(f.request_id, f, f.finish, f.finish_reason)

    def _hand_off(self, prefilled: Finished, decode: PoolSpec) -> None:
        if prefilled.finish_reason == "abort":
            self._outcome(prefilled.request_id, prefilled, prefilled.finish, "abort")
            return
        user = self._requests[prefilled.request_id]
        transfer = decode.profile.kv_transfer_seconds(user.prompt_tokens)
        spec = RequestSpec(prefilled.request_id, user.prompt_tokens, user.output_tokens, user.finish_reason, transfer)
        self._route(prefilled.request_id, decode, spec, prefilled.finish)

    def _outcome(self, request_id: str, finished: Finished | None, at: float, reason: str) -> None:
        user = self._requests.pop(request_id, None)
        if user is None:
            return
        first = finished.first_token if finished is not None else None
        tokens = finished.output_tokens if finished is not None else 0
        outcome = Outcome(request_id, user.arrival, first, at, user.prompt_tokens, tokens, reason, user.pods)
        self._outbox.append(outcome)
