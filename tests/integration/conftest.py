"""A real scaler on 127.0.0.1 with every port 0, a KEDA client over the wire, real OTel exporters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from math import inf

import grpc
import pytest

from scaler.app import Scaler, start
from scaler.settings import Settings
from scaler.sim.otlp_push import PodMetrics, make_exporter, push
from tests.keda_contract import KedaClient

FAST = Settings(
    host="127.0.0.1",
    otlp_grpc_port=0,
    otlp_http_port=0,
    scaler_port=0,
    http_port=0,
    retention=30.0,
    stale_after=1.5,
    warmup=0.0,
    grace=2.0,
)


class Harness:
    def __init__(self, scaler: Scaler, channel: grpc.aio.Channel) -> None:
        self.scaler = scaler
        self.channel = channel
        self.keda = KedaClient(channel)
        self.channel_otlp = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['otlp-grpc']}")
        self.start_ns = time.time_ns()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.scaler.ports['http']}{path}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.scaler.ports['otlp-http']}"

    def asked_at(self, name: str = "isvc-predictor", namespace: str = "ns") -> float:
        """When (the scaler's clock) it last evaluated this ScaledObject: for a KEDA call or a stream's check."""
        states = self.scaler.triggers.states()
        return max((s.last_asked for s in states if (s.key.namespace, s.key.name) == (namespace, name)), default=-inf)

    async def evaluated_after(self, since: float, name: str = "isvc-predictor", namespace: str = "ns") -> float:
        """Wait until the scaler evaluates this ScaledObject after `since`; return when it did."""
        await eventually(lambda: self.asked_at(name, namespace) > since)
        return self.asked_at(name, namespace)

    async def push(self, pods: Sequence[PodMetrics], protocol: str = "grpc", gzip: bool = False) -> None:
        """Push through a real OTel SDK exporter, off the event loop that serves it."""
        endpoint = f"127.0.0.1:{self.scaler.ports['otlp-grpc']}" if protocol == "grpc" else self.otlp_http
        exporter = make_exporter(protocol, endpoint, gzip=gzip)
        try:
            ok = await asyncio.to_thread(push, exporter, pods, time.time_ns(), self.start_ns)
        finally:
            await asyncio.to_thread(exporter.shutdown)
        assert ok, "export failed"


def kserve_pod(pod: str, running: float, namespace: str = "ns", deployment: str = "isvc-predictor") -> PodMetrics:
    """A pod as KServe's sidecar collector describes it: k8s resource attributes plus copied labels."""
    resource = {"k8s.pod.name": pod, "k8s.namespace.name": namespace, "k8s.deployment.name": deployment}
    labels = {"namespace": namespace, "deployment": deployment, "pod": pod, "model_name": "qwen", "engine": "0"}
    return PodMetrics(resource).gauge("vllm:num_requests_running", running, labels)


@pytest.fixture
def settings() -> Settings:
    return FAST


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Harness]:
    """A started scaler with its clients; whatever started is stopped, even if a later step fails."""
    async with contextlib.AsyncExitStack() as cleanup:
        scaler = await start(settings)
        cleanup.push_async_callback(scaler.stop)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
        cleanup.push_async_callback(channel.close)
        harness = Harness(scaler, channel)
        cleanup.push_async_callback(harness.channel_otlp.close)
        yield harness


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with running(settings) as started:
        yield started


def with_settings(**changes: object) -> Callable[[], Settings]:
    return lambda: replace(FAST, **changes)  # type: ignore[arg-type]


async def eventually(check: Callable[[], object], timeout: float = 5.0, interval: float = 0.05) -> None:
    """Await until check() (sync or async) is truthy; behaviour, not timing, is what tests assert."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def values_until_error(
    keda: KedaClient, ref: object, timeout: float = 10.0
) -> tuple[list[float], grpc.aio.AioRpcError]:
    """KEDA's polling until the first error answer: the values read before it, and the error."""
    values: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            values.append(await keda.value(ref))
        except grpc.aio.AioRpcError as exc:
            return values, exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"no error answer in {timeout:g}s; the last values: {values[-5:]}")
