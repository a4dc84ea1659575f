"""The emulator's wire side: asks a live scaler over real gRPC, in KEDA's order, and applies decisions.

`GrpcScaler.ask` is the `AsyncAskScaler` seam: GetMetricSpec, then GetMetrics with the name it
returned, then IsActive, reading values as KEDA does (metricValueFloat when > 0, else the int).
`GrpcScaler.watch` holds a StreamIsActive stream open (KEDA's external-push), reconnecting with
KEDA's backoff. `run_emulator` is the loop that ties an emulator, a scaler and a fleet together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import grpc

from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.keda import Decision, KedaHpaEmulator, ScaledObject, Trigger, TriggerAnswer

logger = logging.getLogger(__name__)

STREAM_BACKOFF_START = 2.0  # KEDA's push scaler retry timer starts here, doubles, and caps at a minute
STREAM_BACKOFF_MAX = 60.0


class ReplicaTarget(Protocol):
    """The scale subresource of a Deployment: what KEDA and the HPA read and write."""

    def replicas(self) -> int: ...

    def ready(self) -> int: ...

    def scale(self, replicas: int) -> None: ...


def _describe(method: str, exc: grpc.aio.AioRpcError) -> str:
    return f"{method}: {exc.code().name}: {exc.details()}"


class GrpcScaler:
    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self.stub = pb_grpc.ExternalScalerStub(channel)
        self.timeout = timeout

    @staticmethod
    def ref(so: ScaledObject, trigger: Trigger) -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(name=so.name, namespace=so.namespace, scalerMetadata=dict(trigger.metadata))

    async def ask(self, so: ScaledObject, trigger: Trigger, now: float) -> TriggerAnswer:
        ref = self.ref(so, trigger)
        try:
            spec = (await self.stub.GetMetricSpec(ref, timeout=self.timeout)).metricSpecs[0]
        except grpc.aio.AioRpcError as exc:
            return TriggerAnswer.failed(_describe("GetMetricSpec", exc))
        target = spec.targetSizeFloat if spec.targetSizeFloat > 0 else float(spec.targetSize)
        try:
            request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)
            answer = (await self.stub.GetMetrics(request, timeout=self.timeout)).metricValues[0]
            active = (await self.stub.IsActive(ref, timeout=self.timeout)).result
        except grpc.aio.AioRpcError as exc:
            return TriggerAnswer.failed(_describe("GetMetrics/IsActive", exc), spec.metricName, target)
        value = answer.metricValueFloat if answer.metricValueFloat > 0 else float(answer.metricValue)
        return TriggerAnswer(spec.metricName, target, value, active)

    async def watch(self, so: ScaledObject, trigger: Trigger, on_active: Callable[[], None]) -> None:
        """Hold StreamIsActive open until cancelled; call on_active for every `true`."""
        backoff = STREAM_BACKOFF_START
        while True:
            call = self.stub.StreamIsActive(self.ref(so, trigger))
            try:
                async for response in call:
                    if response.result:
                        on_active()
                backoff = STREAM_BACKOFF_START  # a clean end resets KEDA's backoff
            except grpc.aio.AioRpcError as exc:
                logger.info("StreamIsActive for %s/%s ended: %s", so.namespace, so.name, _describe("", exc))
            finally:
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, STREAM_BACKOFF_MAX)


async def run_emulator(
    emulator: KedaHpaEmulator,
    scaler: GrpcScaler,
    target: ReplicaTarget,
    clock: Callable[[], float],
    stop: asyncio.Event,
    push: bool = True,
) -> None:
    """Poll on the emulator's schedule (and listen on StreamIsActive when `push`) until `stop` is set."""
    so = emulator.so

    def apply(decision: Decision) -> None:
        logger.info("%s/%s: %s sets %d replicas (%s)", so.namespace, so.name, decision.by, decision.replicas,
                    decision.reason)  # fmt: skip
        target.scale(decision.replicas)

    def on_active() -> None:
        decision = emulator.on_push_active(clock(), target.replicas())
        if decision is not None:
            apply(decision)

    watchers = [asyncio.create_task(scaler.watch(so, t, on_active)) for t in so.triggers] if push else []
    try:
        while not stop.is_set():
            now = clock()
            if now >= emulator.next_due():
                try:
                    for decision in await emulator.astep(now, target.replicas(), scaler.ask, target.ready()):
                        apply(decision)
                except Exception:
                    logger.exception("%s/%s: emulator step failed", so.namespace, so.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.01, emulator.next_due() - clock()))
    finally:
        for task in watchers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
