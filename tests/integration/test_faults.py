"""Faults through the live server, with a KEDA-like poller and real OTel exporters pushing from threads.

- the scaler restarts mid-load: until data returns its answers are errors, so KEDA's fallback holds
  the replicas; no answer is ever 0 while the load is not;
- pushes stop: the affected triggers keep their value until they error, never 0, and stay errors; the
  others keep answering;
- pods churn far faster than 10,000 an hour: answers count only the live pods, and the sweep frees
  series while the churn goes on (memory over hours of churn:
  tests/unit/test_store.py::test_memory_stays_flat_as_pods_come_and_go);
- KEDA cancels streams while evaluating concurrently: answers stay right, no stream task is left over
  (a cancellation that lands as new data arrives used to be swallowed, and the stream ran on forever);
- a slow or stuck client (a stream nobody reads, an HTTP body that never comes) blocks no one else.

Timings are printed (`pytest -s`), not asserted: the behaviour is what is tested. How soon the errors
come once pushes stop, against --stale-after plus one interval, is a figure of load/soak.py.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scaler.app import Scaler, start
from scaler.changes import Changes
from scaler.settings import Settings
from scaler.sim.otlp_push import PodMetrics, make_exporter, push
from tests.integration.conftest import FAST, eventually, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA
from tests.keda_contract import KedaClient

EXPORT_INTERVAL = 0.3  # the collectors' export interval, compressed
POLL_INTERVAL = 0.1  # KEDA's polling interval, compressed
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50)]
FAST_RECONNECT += [("grpc.max_reconnect_backoff_ms", 100)]


@dataclass(frozen=True, slots=True)
class Reading:
    at: float
    value: float | None  # None: an error, and KEDA's fallback holds
    code: str = "OK"
    details: str = ""


@dataclass
class Poller:
    """What KEDA does each polling interval: GetMetricSpec, then GetMetrics; on an error `fallback` holds."""

    keda: KedaClient
    ref: object
    readings: list[Reading] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                value = await asyncio.wait_for(self.keda.value(self.ref), 2.0)
                self.readings.append(Reading(time.monotonic(), value))
            except grpc.aio.AioRpcError as exc:
                self.readings.append(Reading(time.monotonic(), None, exc.code().name, exc.details() or ""))
            await asyncio.sleep(POLL_INTERVAL)

    def held(self) -> list[float]:
        """The replicas' driving value as KEDA with `fallback` sees it: the last good value while errors last."""
        out: list[float] = []
        for reading in self.readings:
            if reading.value is not None:
                out.append(reading.value)
            elif out:
                out.append(out[-1])
        return out


class Pusher(threading.Thread):
    """A collector sidecar: every interval, a real OTel exporter pushes the pods' values; failures back off."""

    def __init__(self, endpoint: Callable[[], str], pods: Callable[[], Sequence[PodMetrics]]) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.pods = pods
        self.stopping = threading.Event()
        self.attempts: list[tuple[float, bool]] = []  # (start of the attempt, succeeded)
        self.start_ns = time.time_ns()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            exporter = make_exporter("grpc", self.endpoint(), timeout=0.5)
            try:
                ok = push(exporter, self.pods(), time.time_ns(), self.start_ns)
            except Exception:  # a refused connection surfaces from the SDK as an exception or a FAILURE
                ok = False
            finally:
                exporter.shutdown()
            self.attempts.append((started, ok))
            self.stopping.wait(EXPORT_INTERVAL if ok else 1.0)  # the SDK's first retry backoff is 1 s

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def successes(self, after: float = 0.0) -> list[float]:
        return [t for t, ok in self.attempts if ok and t >= after]


@pytest.fixture
def fault_settings() -> Settings:
    return replace(FAST, stale_after=1.5, retention=30.0, warmup=0.0)


RESTART_WARMUP = 3.0


@pytest.fixture
async def scaler(fault_settings: Settings) -> AsyncIterator[Scaler]:
    running = await start(fault_settings)
    yield running
    await running.stop()


def _load() -> list[PodMetrics]:
    return [kserve_pod("p1", 3), kserve_pod("p2", 4)]


async def test_restart_mid_load_answers_errors_until_data_returns_never_zero(fault_settings: Settings) -> None:
    first = await start(replace(fault_settings, warmup=RESTART_WARMUP))
    scalers = [first]
    pusher = Pusher(lambda: f"127.0.0.1:{first.ports['otlp-grpc']}", _load)
    stop = asyncio.Event()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{first.ports['scaler']}", options=FAST_RECONNECT)
    poller = Poller(KedaClient(channel), KedaClient.ref(KSERVE_METADATA))
    polling = asyncio.create_task(poller.run(stop))
    pusher.start()
    try:
        await eventually(lambda: sum(r.value == 7.0 for r in poller.readings) >= 5)
        await first.stop()
        stopped = time.monotonic()
        await asyncio.sleep(0.5)  # down: the pusher's exports and the poller's calls fail
        ports = first.ports
        second = await start(
            replace(
                fault_settings,
                warmup=RESTART_WARMUP,
                otlp_grpc_port=ports["otlp-grpc"],
                otlp_http_port=ports["otlp-http"],
                scaler_port=ports["scaler"],
                http_port=ports["http"],
            )
        )
        scalers.append(second)
        restarted = time.monotonic()
        assert second.ports == ports
        await eventually(lambda: pusher.successes(after=restarted), timeout=RESTART_WARMUP)
        await eventually(lambda: sum(r.value == 7.0 and r.at > restarted for r in poller.readings) >= 5)
    finally:
        stop.set()
        await polling
        pusher.stop()
        await channel.close()
        for running in scalers:
            await running.stop()

    first_push = pusher.successes(after=restarted)[0]
    values = {r.value for r in poller.readings if r.value is not None}
    before_data = [r for r in poller.readings if restarted <= r.at < first_push]
    warming = [r for r in before_data if "warming up" in r.details]
    down = [r for r in poller.readings if stopped <= r.at < restarted]
    print(
        f"\nrestart: down {restarted - stopped:.2f}s, first push {first_push - restarted:.2f}s after the restart; "
        f"{len(down)} answers while down ({', '.join(sorted({r.code for r in down}))}), "
        f"{len(before_data)} before data returned ({len(warming)} 'warming up'), "
        f"{len(poller.readings)} in all, values seen {sorted(values)}"
    )
    assert all(r.value is None for r in before_data), "an answer before data returned was a value"
    assert all(r.code == "UNAVAILABLE" for r in before_data + down)
    assert warming, "the restarted scaler said 'warming up' before data returned"
    assert values == {7.0}, "never 0 while the load is 7"
    assert min(poller.held()) == 7.0


async def test_triggers_error_once_pushes_stop_never_answering_zero_first(
    scaler: Scaler, fault_settings: Settings
) -> None:
    endpoint = f"127.0.0.1:{scaler.ports['otlp-grpc']}"
    quiet = Pusher(lambda: endpoint, _load)  # its collector will go away
    steady = Pusher(lambda: endpoint, lambda: [kserve_pod("q1", 2, deployment="other")])
    stop = asyncio.Event()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
    keda = KedaClient(channel)
    policy = {"policy": "vllm", "deployment": "isvc-predictor", "targetRunningPerPod": "2", "phase": "decode"}
    other = {**KSERVE_METADATA, "metricQuery": 'sum(vllm:num_requests_running{deployment="other"})'}
    pollers = [Poller(keda, keda.ref(KSERVE_METADATA)), Poller(keda, keda.ref(policy)), Poller(keda, keda.ref(other))]
    tasks = [asyncio.create_task(p.run(stop)) for p in pollers]
    quiet.start()
    steady.start()

    def errors_since(poller: Poller, since: float) -> int:
        return sum(r.value is None for r in poller.readings if r.at > since)

    try:
        await eventually(lambda: all(sum(r.value is not None for r in p.readings) >= 5 for p in pollers))
        flowing = time.monotonic()
        quiet.stop()  # the collector is gone
        last_push = max(t for t, ok in quiet.attempts if ok)
        # until a few errors have come in on both affected triggers (a generous deadline: a hang guard)
        await eventually(lambda: all(errors_since(p, last_push) >= 3 for p in pollers[:2]), timeout=30.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        quiet.stop()
        steady.stop()
        await channel.close()

    query, pool, unaffected = pollers
    delays = {}
    for name, poller in (("query", query), ("policy", pool)):
        first_error = next(r for r in poller.readings if r.value is None and r.at > last_push)
        assert first_error.code == "UNAVAILABLE", first_error
        delays[name] = first_error.at - last_push
        before = [r.value for r in poller.readings if flowing <= r.at < first_error.at]
        assert all(v is not None and v > 0 for v in before), "the value holds until the error, never 0"
        assert name != "query" or set(before) <= {7.0}, before
        later = [r for r in poller.readings if r.at >= first_error.at]
        assert all(r.value is None for r in later), "once stale, stays an error until data returns"
        # Causal, not timed: a reading is stamped after its answer, a push before it is sent, so an error
        # stamped sooner than --stale-after after the last push was given on data that was still fresh.
        assert delays[name] >= fault_settings.stale_after, f"{name}: an error while the data was fresh"
    print(
        f"\npushes stop: stale-after {fault_settings.stale_after}s, export interval {EXPORT_INTERVAL}s; "
        + ", ".join(
            f"{name} trigger errored {delay:.2f}s after the last push ({delay - EXPORT_INTERVAL:.2f}s after the "
            "push that did not come)"
            for name, delay in delays.items()
        )
        + f"; the other deployment answered {len(unaffected.readings)} times without an error"
    )
    assert all(r.value == 2.0 for r in unaffected.readings if r.at >= flowing)


def _wave(wave: int, pods: int) -> ExportMetricsServiceRequest:
    """One collector batch of a short-lived wave of pods, each running `wave % 3 + 1` requests."""
    resource_metrics = []
    for index in range(pods):
        name = f"churn-{wave}-{index}"
        attributes = {"k8s.pod.name": name, "k8s.namespace.name": "churn", "k8s.deployment.name": "llama"}
        resource = Resource(attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items()])
        point = NumberDataPoint(as_double=wave % 3 + 1)
        metrics = [Metric(name=n, gauge=Gauge(data_points=[point])) for n in ("vllm:num_requests_running", "up")]
        resource_metrics.append(ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=metrics)]))
    return ExportMetricsServiceRequest(resource_metrics=resource_metrics)


@pytest.mark.parametrize("fault_settings", [replace(FAST, stale_after=0.5, retention=1.0, warmup=0.0)])
async def test_churning_pods_count_only_while_alive_and_the_store_stays_bounded(scaler: Scaler) -> None:
    pods_per_wave, waves, every = 40, 24, 0.25  # 160 new pods a second: 576,000 an hour
    otlp = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['otlp-grpc']}")
    stub = metrics_service_pb2_grpc.MetricsServiceStub(otlp)  # type: ignore[no-untyped-call]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
    keda = KedaClient(channel)
    ref = keda.ref({**KSERVE_METADATA, "metricQuery": 'sum(vllm:num_requests_running{namespace="churn"})'})
    series: list[int] = []
    freed_during: list[float] = []
    try:
        for wave in range(waves):
            await stub.Export(_wave(wave, pods_per_wave))
            value = await keda.value(ref)
            # A pod counts until it has been quiet for --stale-after: this wave, and the last one or two.
            live = [w for w in range(max(0, wave - 2), wave + 1)]
            assert value <= sum((w % 3 + 1) * pods_per_wave for w in live), (wave, value)
            assert value >= (wave % 3 + 1) * pods_per_wave
            series.append(scaler.store.stats(0, 1e9).series)
            freed_during.append(scaler.registry.get_sample_value("keda_llm_scaler_series_freed_total") or 0.0)
            await asyncio.sleep(every)
        await eventually(lambda: scaler.store.stats(0, 1e9).series == 0, timeout=8.0)  # all freed after retention
    finally:
        await otlp.close()
        await channel.close()
    created = pods_per_wave * waves * 2
    freed = scaler.registry.get_sample_value("keda_llm_scaler_series_freed_total")
    print(
        f"\nchurn: {pods_per_wave * waves} pods in {waves * every:.0f}s; "
        f"at most {max(series)} series held, {freed:g} freed"
    )
    assert freed == created
    # the sweep frees while the churn goes on, not only once it ends: the store does not hold every wave
    assert freed_during[-1] > 0 and max(series) < created, (freed_during, series)


@dataclass
class Flipper:
    """A pod whose load goes 0, 3, 0, 3... with each export: every other push is an activation."""

    pushes: int = 0

    def __call__(self) -> list[PodMetrics]:
        self.pushes += 1
        return [kserve_pod("f1", 3 if self.pushes % 2 else 0, deployment="flip")]


def _stream_tasks() -> list[asyncio.Task[object]]:
    """The server's StreamIsActive handlers, and the waits for new data they start."""
    return [
        t
        for t in asyncio.all_tasks()
        if "StreamIsActive" in t.get_name() or t.get_coro().__qualname__ == "Event.wait"  # type: ignore[union-attr]
    ]


FLIP_METADATA = {**KSERVE_METADATA, "metricQuery": 'sum(vllm:num_requests_running{deployment="flip"})'}


async def _evaluate_until(keda: KedaClient, ref: object, stop: asyncio.Event) -> list[float]:
    """Concurrent evaluations as KEDA makes them; every answer must be the true load. Returns latencies."""
    latencies = []
    while not stop.is_set():
        started = time.monotonic()
        assert await keda.value(ref) == 7.0
        assert await keda.is_active(ref) is True
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.01)
    return latencies


async def test_streams_cancelled_at_random_leave_nothing_behind(scaler: Scaler) -> None:
    endpoint = f"127.0.0.1:{scaler.ports['otlp-grpc']}"
    pushers = [Pusher(lambda: endpoint, _load), Pusher(lambda: endpoint, Flipper())]
    for pusher in pushers:
        pusher.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
    keda = KedaClient(channel)
    ref, flip = keda.ref(KSERVE_METADATA), keda.ref(FLIP_METADATA)
    rng = random.Random(7)
    opened = received = 0
    most = 0

    async def stream_client() -> None:
        nonlocal opened, received, most
        stream = keda.stream_is_active(rng.choice([ref, flip]))
        opened += 1
        try:
            await asyncio.sleep(0.05)
            most = max(most, len(_stream_tasks()))
            if rng.random() < 0.7:  # read the first `true` (sent on opening while active, or on activation)
                reply = await asyncio.wait_for(stream.read(), 3.0)
                assert reply.result is True
                received += 1
            await asyncio.sleep(rng.uniform(0, 0.4))
        finally:
            stream.cancel()  # as KEDA does when a ScaledObject changes or its scale loop stops

    try:
        await eventually(lambda: all(p.successes() for p in pushers))
        await keda.value(ref)
        stop = asyncio.Event()
        evaluators = [asyncio.create_task(_evaluate_until(keda, ref, stop)) for _ in range(4)]
        for _ in range(6):  # 6 rounds of 40 streams opened together, each cancelled at a random moment
            await asyncio.gather(*(stream_client() for _ in range(40)))
        stop.set()
        latencies = [t for batch in await asyncio.gather(*evaluators) for t in batch]
        await eventually(lambda: not _stream_tasks(), timeout=5.0)
        fresh = keda.stream_is_active(ref)
        assert (await asyncio.wait_for(fresh.read(), 3.0)).result is True  # streams still work afterwards
        fresh.cancel()
    finally:
        for pusher in pushers:
            pusher.stop()
        await channel.close()
    print(
        f"\nstreams: {opened} opened and cancelled ({received} read their `true` first), "
        f"{len(latencies)} concurrent evaluations all right, p50 {statistics.median(latencies) * 1000:.1f}ms "
        f"max {max(latencies) * 1000:.1f}ms; up to {most} stream tasks at once, none left"
    )
    assert opened == 240 and received > 100 and most >= 40


async def test_a_cancelled_wait_for_data_ends_even_when_data_arrives_in_the_same_tick() -> None:
    """The race behind leaked streams: asyncio.wait_for on Python 3.11 swallows this cancellation."""
    changes = Changes()
    waiting = asyncio.create_task(changes.wait(changes.current(), 5.0))
    await asyncio.sleep(0)
    changes.notify()  # a push arrives...
    waiting.cancel()  # ...as KEDA cancels the stream
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def _stall_http_body(port: int) -> asyncio.StreamWriter:
    """Headers announcing a large body, ten bytes of it, then nothing: a slow-loris sender."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/metrics HTTP/1.1\r\nHost: scaler\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 100000\r\n\r\n" + bytes(10)
    )
    await writer.drain()
    return writer


async def test_stuck_clients_block_no_one_else(scaler: Scaler) -> None:
    endpoint = f"127.0.0.1:{scaler.ports['otlp-grpc']}"
    flipper = Flipper()
    pushers = [Pusher(lambda: endpoint, _load), Pusher(lambda: endpoint, flipper)]
    for pusher in pushers:
        pusher.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scaler.ports['scaler']}")
    keda = KedaClient(channel)
    ref = keda.ref(KSERVE_METADATA)
    unread = []
    stalled: list[asyncio.StreamWriter] = []
    http_push = f"http://127.0.0.1:{scaler.ports['otlp-http']}"
    try:
        await eventually(lambda: all(p.successes() for p in pushers))
        unread = [keda.stream_is_active(keda.ref(FLIP_METADATA)) for _ in range(50)]  # opened, never read
        stalled = [await _stall_http_body(scaler.ports["otlp-http"]) for _ in range(50)]
        flips = flipper.pushes
        latencies: dict[str, list[float]] = {"GetMetrics": [], "HTTP push": []}
        # Others' calls, until the load has flipped a few times (each flip wakes all 50 unread streams). Every
        # call must be answered: the deadlines only turn a blocked server into a failure instead of a hang.
        while len(latencies["GetMetrics"]) < 15 or flipper.pushes - flips < 4:
            started = time.monotonic()
            assert await asyncio.wait_for(keda.value(ref), 10.0) == 7.0
            latencies["GetMetrics"].append(time.monotonic() - started)
            exporter = make_exporter("http", http_push, timeout=10.0)
            started = time.monotonic()
            try:
                assert await asyncio.wait_for(
                    asyncio.to_thread(push, exporter, [kserve_pod("h1", 1, deployment="http")], time.time_ns(), 0), 20.0
                ), "an HTTP push beside the stalled bodies was refused"
            finally:
                await asyncio.to_thread(exporter.shutdown)
            latencies["HTTP push"].append(time.monotonic() - started)
            await asyncio.sleep(0.1)
        flips = flipper.pushes - flips
    finally:
        for pusher in pushers:
            pusher.stop()
        for stream in unread:
            stream.cancel()
        for writer in stalled:
            writer.close()
            await writer.wait_closed()
        await channel.close()
    print(
        f"\nstuck clients: {len(unread)} unread streams through {flips} load flips, {len(stalled)} stalled HTTP "
        "bodies; others' calls: "
        + ", ".join(
            f"{name} p50 {statistics.median(ts) * 1000:.1f}ms max {max(ts) * 1000:.1f}ms"
            for name, ts in latencies.items()
        )
    )
    assert flips >= 4 and len(latencies["GetMetrics"]) == len(latencies["HTTP push"]) >= 15
