"""What a simulated fleet is made of: one unified pool, or a prefill pool and a decode pool."""

from __future__ import annotations

from dataclasses import dataclass, field

from scaler.sim.gateway import FlowControl
from scaler.sim.pod import ROLES
from scaler.sim.profiles import DEFAULT_PROFILE, HardwareProfile, profile_named


@dataclass(frozen=True, slots=True)
class PoolSpec:
    deployment: str
    role: str = "unified"
    profile: HardwareProfile = field(default_factory=lambda: profile_named(DEFAULT_PROFILE))
    replicas: int = 1  # ready when the fleet starts
    data_parallel_size: int = 1

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"pool {self.deployment}: role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.replicas < 0:
            raise ValueError(f"pool {self.deployment}: replicas must not be negative")


@dataclass(frozen=True, slots=True)
class FleetSpec:
    pools: tuple[PoolSpec, ...]
    namespace: str = "default"
    model: str = "qwen"
    cold_start: float = 60.0  # seconds from scale-up to a pod serving (model load)
    drain_grace: float = 30.0  # terminationGracePeriodSeconds: in-flight requests are cut after this
    flow_control: FlowControl | None = None  # the gateway holds requests while the entry pool is saturated

    def __post_init__(self) -> None:
        roles = sorted(p.role for p in self.pools)
        if roles not in (["unified"], ["decode", "prefill"]):
            raise ValueError("a fleet is one unified pool, or one prefill pool and one decode pool")
        if len({p.deployment for p in self.pools}) != len(self.pools):
            raise ValueError("pools need distinct deployment names")

    @property
    def disaggregated(self) -> bool:
        return len(self.pools) == 2

    def pool(self, role: str) -> PoolSpec:
        return next(p for p in self.pools if p.role == role)

    @property
    def inference_pool(self) -> str:
        """The gateway's InferencePool: one per model, covering both pools under P/D."""
        return self.model

    @property
    def entry(self) -> PoolSpec:
        """The pool a new request goes to first."""
        return self.pool("prefill" if self.disaggregated else "unified")
