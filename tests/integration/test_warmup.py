"""After a restart, every trigger answers "warming up" (an error) for `--warmup`, never a partial sum or 0."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scaler.app import KEDA_SERVICE, WARM_SERVICE, start
from scaler.settings import Settings
from scaler.sim.otlp_push import make_exporter, push
from tests.integration.conftest import FAST, Harness, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA
from tests.keda_contract import KedaClient


@pytest.fixture
def settings() -> Settings:
    return replace(FAST, warmup=60.0)


async def test_data_during_warmup_is_unavailable_and_the_replica_is_ready(harness: Harness) -> None:
    ref = harness.keda.ref(KSERVE_METADATA)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.keda.value(ref)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "warming up" in (info.value.details() or "")
    await harness.push([kserve_pod("p1", 6)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.keda.value(ref)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "warming up" in (info.value.details() or "")
    # Readiness does not wait for warm-up: the OTLP ports sit behind the same Service as the scaler port.
    assert (await _get(harness.url("/readyz")))[0] == 200
    assert await _get(harness.url("/readyz?warm=1")) == (503, "warming up\n")  # HA readiness over HTTP (TLS)
    status, body = await _get(harness.url("/debug/query?metricQuery=vllm:num_requests_running"))
    assert (status, "warming up" in body) == (503, True)


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def test_the_warm_health_service_turns_serving_once_warm_up_has_passed() -> None:
    """KEDA_SERVICE is SERVING at once (pushes share its Service); WARM_SERVICE only after --warmup."""
    scaler = await start(replace(FAST, warmup=1.0))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}") as channel:
            assert await _health(channel, KEDA_SERVICE) == health_pb2.HealthCheckResponse.SERVING
            assert await _health(channel, WARM_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            started = time.monotonic()
            while await _health(channel, WARM_SERVICE) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() - started < 5.0, "still NOT_SERVING well after the warm-up"
                await asyncio.sleep(0.05)
            assert time.monotonic() - started > 0.5  # not before the warm-up's end
            assert await _get(f"http://127.0.0.1:{scaler.ports['http']}/readyz?warm=1") == (200, "ready\n")
    finally:
        await scaler.stop()


async def _get(url: str) -> tuple[int, str]:
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await asyncio.to_thread(get)


@dataclass
class StaggeredPods:
    """Pods that each push every `interval`, at their own phase, to whatever listens on `port`."""

    port: int
    running: dict[str, float]
    interval: float = 1.0
    first_push: dict[str, float] = field(default_factory=dict)  # after `since`, monotonic
    since: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, pod: str, phase: float) -> None:
        exporter = make_exporter("grpc", f"127.0.0.1:{self.port}", timeout=0.5)
        start_ns = time.time_ns()
        next_at = time.monotonic() + phase
        try:
            while not self.stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += self.interval
                try:
                    ok = push(exporter, [kserve_pod(pod, self.running[pod])], time.time_ns(), start_ns)
                except Exception:  # noqa: BLE001 - the scaler is down mid-restart; the next push retries
                    ok = False
                if ok and self.since and pod not in self.first_push:
                    self.first_push[pod] = time.monotonic()
        finally:
            exporter.shutdown()


async def test_restart_under_staggered_pushes_answers_nothing_until_the_full_sum() -> None:
    """The warm-up timeline: restart while three pods push 1 s apart at phases 0, 0.33 and 0.67 s.

    Without all-or-nothing warm-up, the first answers after a restart were 10, then 20, where the
    true value is 30. Now every answer within `--warmup` is UNAVAILABLE and the first value is 30.
    """
    warmup = 2.0
    first = await start(replace(FAST, warmup=0.0, stale_after=3.0))
    port = first.ports["otlp-grpc"]
    pods = StaggeredPods(port, {"p1": 10.0, "p2": 10.0, "p3": 10.0})
    threads = [
        threading.Thread(target=pods.run, args=(pod, phase), daemon=True)
        for pod, phase in (("p1", 0.0), ("p2", 0.33), ("p3", 0.67))
    ]
    for thread in threads:
        thread.start()
    answers: list[tuple[float, str]] = []
    second = None
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{first.ports['scaler']}")
        keda = KedaClient(channel)
        ref = keda.ref(KSERVE_METADATA)
        assert await _eventually_value(keda, ref) == 30.0
        await channel.close()
        await first.stop()
        restarted = time.monotonic()
        second = await start(replace(FAST, warmup=warmup, stale_after=3.0, otlp_grpc_port=port))
        pods.since = restarted
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{second.ports['scaler']}")
        keda = KedaClient(channel)
        while True:
            t = time.monotonic() - restarted
            try:
                value = await keda.value(ref)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                assert "warming up" in (exc.details() or "")
                answers.append((t, "UNAVAILABLE warming up"))
            else:
                answers.append((t, f"{value:g}"))
                break
            assert t < 60, "no value within a minute of the restart"
            await asyncio.sleep(0.1)
        await channel.close()
    finally:
        pods.stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 5)
        if second is not None:
            await second.stop()
        else:
            await first.stop()
    pushes = ", ".join(f"{pod} {at - restarted:.2f}s" for pod, at in sorted(pods.first_push.items()))
    errors = [t for t, answer in answers if answer.startswith("UNAVAILABLE")]
    print(
        f"\nwarm-up timeline (warmup {warmup:g}s): first pushes after restart {pushes}; "
        f"{len(errors)} answers UNAVAILABLE from {errors[0]:.2f}s to {errors[-1]:.2f}s; "
        f"first value {answers[-1][1]} at {answers[-1][0]:.2f}s"
    )
    assert answers[-1][1] == "30"
    assert all(answer.startswith("UNAVAILABLE") for _, answer in answers[:-1])
    assert len(pods.first_push) == 3, "every pod pushed to the restarted scaler during its warm-up"


async def _eventually_value(keda: KedaClient, ref: object, want: float = 30.0) -> float:
    """The first value once every pod has pushed (no warm-up on the first scaler: this waits for them)."""
    for _ in range(100):
        try:
            value = await keda.value(ref)  # type: ignore[arg-type]
        except grpc.aio.AioRpcError:
            value = None
        if value == want:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"the first scaler never answered {want:g}")
