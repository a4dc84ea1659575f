"""The KEDA + HPA emulator against the live scaler over real gRPC, and driving a live simulated fleet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from scaler.sim.fleet_server import FleetOptions, LiveFleet
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.hpa import Behavior, ScalingPolicy, ScalingRules
from scaler.sim.keda import Fallback, KedaHpaEmulator, ScaledObject, Trigger
from scaler.sim.keda_grpc import GrpcScaler, ReplicaTarget, run_emulator
from scaler.sim.profiles import DEMO
from tests.integration.conftest import Harness, eventually, kserve_pod

QUERY = 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})'
TRIGGER = Trigger.of({"scalerAddress": "keda-otel-scaler.keda.svc:4318", "metricQuery": QUERY, "targetValue": "4"})
Emulate = Callable[..., KedaHpaEmulator]
QUICK = Behavior(scale_down=ScalingRules(1.0, (ScalingPolicy("Percent", 100, 1.0),)))


class Deployment:
    """A scale subresource with nothing behind it: every pod is ready at once."""

    def __init__(self, replicas: int) -> None:
        self.count = replicas
        self.history = [replicas]

    def replicas(self) -> int:
        return self.count

    def ready(self) -> int:
        return self.count

    def scale(self, replicas: int) -> None:
        self.count = replicas
        self.history.append(replicas)


def scaled_object(**changes: object) -> ScaledObject:
    base: dict[str, object] = {"polling_interval": 0.2, "hpa_sync_period": 0.2, "cooldown_period": 0.5}
    base.update(changes)
    return ScaledObject("ns", "isvc-predictor", (TRIGGER,), **base)  # type: ignore[arg-type]


@pytest.fixture
async def emulate(harness: Harness) -> AsyncIterator[Emulate]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    scaler = GrpcScaler(harness.channel)

    def start(so: ScaledObject, target: ReplicaTarget, push: bool = True) -> KedaHpaEmulator:
        emulator = KedaHpaEmulator(so, time.monotonic())
        tasks.append(asyncio.create_task(run_emulator(emulator, scaler, target, time.monotonic, stop, push)))
        return emulator

    yield start
    stop.set()
    await asyncio.gather(*tasks)


async def test_ask_follows_kedas_calls_and_reads_values_as_keda_does(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 5), kserve_pod("p2", 7)])
    so = scaled_object()
    answer = await GrpcScaler(harness.channel).ask(so, TRIGGER, 0.0)
    assert (answer.value, answer.target, answer.active, answer.error) == (12.0, 4.0, True, None)
    assert answer.metric_name.startswith("vllm-num-requests-running-")
    bad = Trigger.of({"metricQuery": QUERY})
    failed = await GrpcScaler(harness.channel).ask(so, bad, 0.0)
    assert failed.value is None and failed.error is not None and "INVALID_ARGUMENT" in failed.error


async def test_hpa_scales_to_ceil_of_sum_over_target(harness: Harness, emulate: Emulate) -> None:
    await harness.push([kserve_pod("p1", 5), kserve_pod("p2", 7)])
    deployment = Deployment(1)
    emulate(scaled_object(min_replicas=1), deployment)
    await eventually(lambda: deployment.count == 3)


async def test_stream_is_active_activates_from_zero_at_once(harness: Harness, emulate: Emulate) -> None:
    deployment = Deployment(0)
    emulator = emulate(scaled_object(polling_interval=60.0, hpa_sync_period=60.0), deployment)
    await eventually(lambda: emulator.last_answers)  # the first poll; the next is a minute away
    assert [a.active for a in emulator.last_answers] == [False] and deployment.count == 0
    await harness.push([kserve_pod("p1", 2)])
    await eventually(lambda: deployment.count == 1)
    assert [d.reason for d in emulator.history] == ["activated by StreamIsActive"]


async def test_cooldown_then_scale_to_zero(harness: Harness, emulate: Emulate) -> None:
    await harness.push([kserve_pod("p1", 3)])
    deployment = Deployment(0)
    emulate(scaled_object(behavior=QUICK), deployment, push=False)
    await eventually(lambda: deployment.count == 1)
    await harness.push([kserve_pod("p1", 0)])
    started = time.monotonic()
    await eventually(lambda: deployment.count == 0, timeout=5.0)
    assert time.monotonic() - started >= 0.5  # cooldownPeriod


async def test_stale_data_holds_then_falls_back(harness: Harness, emulate: Emulate) -> None:
    await harness.push([kserve_pod("p1", 4)])
    deployment = Deployment(2)
    fallback = Fallback(failure_threshold=2, replicas=5)
    emulate(scaled_object(min_replicas=1, fallback=fallback, behavior=QUICK), deployment)
    await eventually(lambda: deployment.count == 1)  # 4 running / target 4
    # no more pushes: after --stale-after the scaler answers UNAVAILABLE, and the HPA holds fallback.replicas
    await eventually(lambda: deployment.count == 5, timeout=6.0)
    assert 0 not in deployment.history


@pytest.fixture
async def fleet(harness: Harness) -> AsyncIterator[LiveFleet]:
    spec = FleetSpec((PoolSpec("isvc-predictor", "unified", DEMO, 1),), namespace="ns", cold_start=0.3)
    options = FleetOptions(otlp_endpoint=f"127.0.0.1:{harness.scaler.ports['otlp-grpc']}", export_interval=0.1)
    live = LiveFleet(spec, options)
    await live.start()
    yield live
    await live.stop()


async def test_the_emulator_scales_a_live_fleet_from_its_own_pushes(
    harness: Harness, fleet: LiveFleet, emulate: Emulate
) -> None:
    emulate(scaled_object(min_replicas=1, max_replicas=4), fleet.target("isvc-predictor"))
    body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 500, "ignore_eos": True}
    async with aiohttp.ClientSession() as session:
        calls = [asyncio.create_task(session.post(fleet.url + "/v1/chat/completions", json=body)) for _ in range(8)]
        try:
            # 8 running on one pod, target 4: two replicas, the second ready after the cold start
            await eventually(lambda: fleet.target("isvc-predictor").ready() == 2, timeout=5.0)
            assert len(fleet.pods) == 2
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
