"""A real scaler on 127.0.0.1 with every port 0, a KEDA client from KEDA's proto, real OTel exporters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

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


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    scaler = await start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
    harness = Harness(scaler, channel)
    try:
        yield harness
    finally:
        await channel.close()
        await harness.channel_otlp.close()
        await scaler.stop()


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
