"""Reaction benchmark: how soon a KEDA-like client learns of a load change, through our scaler and through Prometheus.

Both paths watch the same simulated components in the same run, all on 127.0.0.1:

- ours: each component pushes OTLP with the real OTel SDK exporter every --export-interval (1 s) into
  the scaler (`python -m scaler serve`, its own process as in production); KEDA's side is
  StreamIsActive or GetMetrics over gRPC.
- Prometheus's: a real Prometheus server (Debian package `prometheus`, started here with a temporary
  config and TSDB) scrapes the same components' /metrics every --scrape-interval (15 s), as KServe and
  vLLM production-stack set it up; KEDA's side queries /api/v1/query as KEDA's prometheus scaler does
  (`time=` now in RFC 3339, so truncated to the second).

Three scenarios run at once; each trial has its own components, hence its own push and scrape phase:

- activation: a pool at zero whose router starts queuing. The router holds the requests, exposes
  `router_pending_requests{pool}` on /metrics and pushes it over OTLP, as a collector sidecar would.
  Measured from the instant the router queues the first request to the instant a client learns the
  pool is active: ours, a StreamIsActive stream on a `policy: vllm` trigger with
  `activationQuery: sum(router_pending_requests{pool=...})`; Prometheus's, KEDA pollers querying
  every pollingInterval (30 s), each started at a random phase, active when the value is > 0.
- freshness: a step of --step-requests long requests sent to a running simulated vLLM pod (PodServer).
  Measured from sending the step to the first answer that shows all of it, for clients polling every
  100 ms: ours GetMetrics, Prometheus's the same PromQL query (evaluated at Prometheus's own now).
- end to end (1->N): the same step, watched by the KEDA+HPA emulator (scaler.sim.keda, pollingInterval
  30 s, HPA sync 15 s) on each path, both emulators of a trial on the same random phase. Measured from
  the step to the replica change. The HPA's sync is in both paths.

    python load/bench_reaction.py            # full size: two rounds, about two and a half minutes
    python load/bench_reaction.py --smoke    # a few seconds, every interval scaled down (CI); not a measurement

Without a prometheus binary it prints a SKIPPED summary and exits 0; any other failure exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from scaler_process import ScalerProcess, spawn, terminate

from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.sim.keda import KedaHpaEmulator, ScaledObject, Trigger, TriggerAnswer
from scaler.sim.keda_grpc import GrpcScaler, run_emulator
from scaler.sim.otlp_push import PodMetrics, make_exporter, push
from scaler.sim.pod import PodIdentity
from scaler.sim.pod_server import PodConfig, PodServer
from scaler.sim.profiles import DEMO

NAMESPACE = "ns"
SCALER_ADDRESS = "keda-otel-scaler.keda.svc:4318"  # what a ScaledObject names; the benchmark dials the real port
ACTIVATION_TARGET_FACTOR = 1.2  # our p95 <= 1.2 x export interval + 100 ms
ACTIVATION_TARGET_EXTRA = 0.1
SPEEDUP_TARGET = 10.0  # at least 10x faster than the Prometheus path's median
ROUTER_QUEUED_REQUESTS = 3
PROMPT = [{"role": "user", "content": "Summarise the history of the printing press in detail."}]


@dataclass(frozen=True)
class Plan:
    export_interval: float = 1.0  # ours: OTLP push period of every component
    scrape_interval: float = 15.0  # Prometheus: scrape_interval (KServe's and production-stack's)
    polling_interval: float = 30.0  # KEDA's default pollingInterval
    hpa_sync: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    activation_trials: int = 40  # routers, each in front of its own pool at zero
    pollers: int = 3  # KEDA-like Prometheus pollers per router, each at its own random phase
    step_trials: int = 32  # running pods, each given one step
    step_requests: int = 8  # the step: this many long requests at once (the demo profile runs 8 at a time)
    target_per_pod: float = 2.0  # the trigger's AverageValue target: the step asks for step_requests / 2 pods
    client_poll: float = 0.1  # freshness clients poll this often
    settle: float = 2.0  # after Prometheus has scraped every target once, before the first step
    stagger: float = 15.0  # steps are spread uniformly over this long
    slack: float = 10.0  # a trial gives up this long after the slowest path's worst case
    max_tokens: int = 1500  # long enough to keep the step running until every trial ends
    rounds: int = 2  # the whole measurement again on the same servers, for more trials
    seed: int | None = None
    smoke: bool = False


SMOKE = Plan(
    export_interval=0.2,
    scrape_interval=1.0,
    polling_interval=2.0,
    hpa_sync=1.0,
    activation_trials=2,
    pollers=1,
    step_trials=2,
    settle=0.5,
    stagger=1.0,
    slack=3.0,
    max_tokens=400,
    rounds=1,
    smoke=True,
)


def now() -> float:
    return time.monotonic()


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - now()))


# -- the processes: the scaler and Prometheus ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PromError(RuntimeError):
    pass


class PrometheusServer:
    """A real Prometheus on 127.0.0.1 with a temporary config and TSDB, scraping static targets."""

    def __init__(
        self, binary: str, scrape_interval: float, jobs: dict[str, list[tuple[str, dict[str, str]]]], workdir: Path
    ) -> None:
        self.binary = binary
        self.scrape_interval = scrape_interval
        self.jobs = jobs
        self.dir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        interval = f"{self.scrape_interval:g}s"
        timeout = f"{min(self.scrape_interval, 10.0):g}s"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": timeout, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [address], "labels": labels} for address, labels in targets],
                }
                for job, targets in self.jobs.items()
            ],
        }
        config_file = self.dir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.port = free_port()
        command = [
            self.binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=1h",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc = spawn(command, self.dir / "prometheus.log")

    def log_tail(self) -> str:
        path = self.dir / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float) -> None:
        deadline = now() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise PromError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(self.url + "/-/ready") as reply:
                    if reply.status == 200:
                        return
            if now() > deadline:
                raise PromError(f"prometheus not ready after {timeout:g}s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def wait_scraped(self, session: aiohttp.ClientSession, count: int, timeout: float) -> None:
        """Until every target has been scraped once and is up."""
        deadline = now() + timeout
        while True:
            async with session.get(self.url + "/api/v1/targets", params={"state": "active"}) as reply:
                targets = (await reply.json())["data"]["activeTargets"]
            up = [t for t in targets if t["health"] == "up"]
            if len(up) >= count:
                return
            if now() > deadline:
                down = [f"{t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}" for t in targets if t not in up]
                raise PromError(f"{len(up)} of {count} targets up after {timeout:g}s: {down[:5]}")
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        terminate(self.proc)


async def prom_query(session: aiohttp.ClientSession, base: str, expr: str, keda_time: bool) -> float:
    """An instant query's single value (0 when empty, as KEDA's ignoreNullValues does by default).

    keda_time: send `time=` now in RFC 3339 as KEDA's prometheus scaler does (second precision, so it
    evaluates up to a second in the past); otherwise Prometheus evaluates at its own now.
    """
    params = {"query": expr}
    if keda_time:
        params["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with session.get(base + "/api/v1/query", params=params) as reply:
        body = await reply.json(content_type=None)
        if reply.status != 200 or body.get("status") != "success":
            raise PromError(f"query {expr!r}: HTTP {reply.status}: {body.get('error', body)}")
    result = body["data"]["result"]
    if not result:
        return 0.0
    if len(result) > 1:
        raise PromError(f"query {expr!r} returned {len(result)} series")
    return float(result[0]["value"][1])


class PrometheusAsk:
    """KEDA's prometheus scaler as the emulator's AsyncAskScaler: the trigger's `query` against `serverAddress`.

    Same shape as `GrpcScaler` for `run_emulator` (which only calls `ask` when push is off).
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def ask(self, so: ScaledObject, trigger: Trigger, at: float) -> TriggerAnswer:
        meta = dict(trigger.metadata)
        target = float(meta["threshold"])
        name = "s0-prometheus"
        try:
            value = await prom_query(self.session, meta["serverAddress"], meta["query"], keda_time=True)
        except (aiohttp.ClientError, PromError, TimeoutError, ValueError, KeyError) as exc:
            return TriggerAnswer.failed(f"prometheus: {exc}", name, target)
        return TriggerAnswer(name, target, value, value > float(meta.get("activationThreshold", "0")))


# -- the simulated components ----------------------------------------------------------------------------------


class QueueingRouter:
    """A gateway in front of a pool at zero: it holds requests (503 + Retry-After when released).

    Its pending-requests gauge is on /metrics for Prometheus and pushed over OTLP with the real SDK
    exporter every export interval, as a collector sidecar would.
    """

    def __init__(self, name: str, pool: str, otlp_endpoint: str, export_interval: float, phase: float) -> None:
        self.name = name
        self.pool = pool
        self.otlp_endpoint = otlp_endpoint
        self.export_interval = export_interval
        self.phase = phase
        self.registry = CollectorRegistry()
        self.gauge = Gauge(
            "router_pending_requests",
            "Requests the router holds for a pool with no ready replica.",
            ["pool"],
            registry=self.registry,
        )
        self.gauge.labels(pool).set(0)
        self.pending = 0
        self.first_queued: float | None = None
        self.port = 0
        self.pushes = 0
        self.push_starts: list[float] = []  # when each export began (its value is read then)
        self.export_seconds: list[float] = []  # how long each export took, until the scaler answered
        self._release = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._pusher: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._queue)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        self._pusher = asyncio.create_task(self._push_loop())

    def reset(self) -> None:
        """For the next round: nothing queued yet."""
        self.first_queued = None
        self._release = asyncio.Event()

    def release(self) -> None:
        """Answer every held request (503, Retry-After), as when the pool's first replica is ready."""
        self._release.set()

    async def stop(self) -> None:
        self.release()
        self._stopping.set()
        if self._pusher is not None:
            await self._pusher
        if self._runner is not None:
            await self._runner.cleanup()

    async def _queue(self, _: web.Request) -> web.Response:
        self.pending += 1
        self.gauge.labels(self.pool).set(self.pending)
        if self.first_queued is None:
            self.first_queued = now()
        try:
            await self._release.wait()
        finally:
            self.pending -= 1
            self.gauge.labels(self.pool).set(self.pending)
        body = {"error": {"message": f"pool {self.pool} is waking up", "type": "ServiceUnavailable", "code": 503}}
        return web.json_response(body, status=503, headers={"Retry-After": "1"})

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _push_loop(self) -> None:
        exporter = make_exporter("grpc", self.otlp_endpoint)
        resource = {"service.name": "router", "service.instance.id": self.name, "k8s.namespace.name": NAMESPACE}
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.phase)
            while not self._stopping.is_set():
                labels = {"pool": self.pool}
                metrics = PodMetrics(resource).gauge("router_pending_requests", float(self.pending), labels)
                stamp, began = time.time_ns(), now()
                self.push_starts.append(began)
                if await asyncio.to_thread(push, exporter, [metrics], stamp, stamp):
                    self.pushes += 1
                self.export_seconds.append(now() - began)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.export_interval)
        finally:
            await asyncio.to_thread(exporter.shutdown)


class Deployment:
    """A scale subresource for the emulator (`keda_grpc.ReplicaTarget`) that notes when it changes."""

    def __init__(self, replicas: int) -> None:
        self.count = replicas
        self.changes: list[tuple[float, int]] = []
        self.changed = asyncio.Event()

    def replicas(self) -> int:
        return self.count

    def ready(self) -> int:
        return self.count

    def scale(self, replicas: int) -> None:
        if replicas != self.count:
            self.changes.append((now(), replicas))
            self.count = replicas
            self.changed.set()


# -- the trials ------------------------------------------------------------------------------------------------


@dataclass
class Shared:
    plan: Plan
    keda: GrpcScaler
    session: aiohttp.ClientSession
    prometheus: str  # base URL
    rng: random.Random
    anomalies: list[str] = field(default_factory=list)


@dataclass
class ActivationTrial:
    router: QueueingRouter
    step_at: float
    ours: float | None = None
    prometheus: list[float | None] = field(default_factory=list)
    split: tuple[float, float, float] | None = None  # taken when the trial ends, before the router is reset

    def ours_split(self) -> tuple[float, float, float] | None:
        """Ours in three: waiting for the router's next export; that export (until the scaler answered);
        from its answer to the stream's `true` reaching the client (scaler evaluation, stream, client)."""
        router, queued = self.router, self.router.first_queued
        if self.ours is None or queued is None:
            return None
        index = next((i for i, t in enumerate(router.push_starts) if t >= queued), None)
        if index is None or index >= len(router.export_seconds):
            return None
        wait, export = router.push_starts[index] - queued, router.export_seconds[index]
        return wait, export, self.ours - wait - export


@dataclass
class StepTrial:
    pod: PodServer
    step_at: float
    phase: float  # when both emulators of this trial first poll and sync
    sent_at: float | None = None
    fresh_ours: float | None = None
    fresh_prometheus: float | None = None
    e2e_ours: float | None = None
    e2e_prometheus: float | None = None
    replicas_ours: int | None = None
    replicas_prometheus: int | None = None

    @property
    def deployment(self) -> str:
        return self.pod.config.identity.deployment


def activation_trigger(pool: str) -> Trigger:
    return Trigger.of(
        {
            "scalerAddress": SCALER_ADDRESS,
            "policy": "vllm",
            "deployment": pool,
            "activationQuery": f'sum(router_pending_requests{{pool="{pool}"}})',
        }
    )


async def run_activation(trial: ActivationTrial, shared: Shared) -> None:
    plan, router = shared.plan, trial.router
    so = ScaledObject(NAMESPACE, router.pool, (activation_trigger(router.pool),))
    expr = f'sum(router_pending_requests{{pool="{router.pool}"}})'
    deadline = trial.step_at + plan.scrape_interval + plan.polling_interval + plan.slack
    learned = asyncio.Event()

    def on_active() -> None:
        if router.first_queued is None:
            shared.anomalies.append(f"{router.pool}: StreamIsActive sent true before the router queued")
        elif trial.ours is None:
            trial.ours = now() - router.first_queued
            learned.set()

    async def keda_poller(origin: float) -> float | None:
        """KEDA's pollingInterval loop for a prometheus trigger, started at `origin`."""
        moment = origin
        while moment < deadline:
            await sleep_until(moment)
            try:
                value = await prom_query(shared.session, shared.prometheus, expr, keda_time=True)
            except (aiohttp.ClientError, PromError) as exc:
                shared.anomalies.append(f"{router.pool}: KEDA poll failed: {exc}")
                value = 0.0
            if value > 0:
                if router.first_queued is None:
                    shared.anomalies.append(f"{router.pool}: Prometheus showed requests before the router queued")
                else:
                    return now() - router.first_queued
            moment += plan.polling_interval
        return None

    watcher = asyncio.create_task(shared.keda.watch(so, so.triggers[0], on_active))
    pollers = [
        asyncio.create_task(keda_poller(now() + shared.rng.uniform(0, plan.polling_interval)))
        for _ in range(plan.pollers)
    ]
    clients: list[asyncio.Task[Any]] = []
    try:
        await sleep_until(trial.step_at)
        url = f"http://{router.address}/v1/chat/completions"
        clients = [
            asyncio.create_task(_post(shared.session, url, {"model": "qwen", "messages": PROMPT}))
            for _ in range(ROUTER_QUEUED_REQUESTS)
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(learned.wait(), max(0.0, deadline - now()))
        trial.prometheus = list(await asyncio.gather(*pollers))
        trial.split = trial.ours_split()
    finally:
        for task in (watcher, *pollers):
            task.cancel()
        await asyncio.gather(watcher, *pollers, return_exceptions=True)
        router.release()
        await asyncio.gather(*clients, return_exceptions=True)


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with session.post(url, json=body) as reply:
        await reply.read()
        return reply.status


def step_triggers(deployment: str, prometheus: str, target: float) -> tuple[Trigger, Trigger, str]:
    """The same PromQL-compatible query as our query trigger (kedify/KServe style) and as a KEDA prometheus trigger."""
    expr = f'sum(vllm:num_requests_running{{namespace="{NAMESPACE}", deployment="{deployment}"}})'
    ours = Trigger.of({"scalerAddress": SCALER_ADDRESS, "metricQuery": expr, "targetValue": f"{target:f}"})
    theirs = Trigger.of({"serverAddress": prometheus, "query": expr, "threshold": f"{target:g}"})
    return ours, theirs, expr


async def run_step(trial: StepTrial, shared: Shared) -> None:
    plan = shared.plan
    ours_trigger, prom_trigger, expr = step_triggers(trial.deployment, shared.prometheus, plan.target_per_pod)

    def scaled_object(trigger: Trigger) -> ScaledObject:
        return ScaledObject(
            NAMESPACE,
            trial.deployment,
            (trigger,),
            min_replicas=1,
            max_replicas=64,
            polling_interval=plan.polling_interval,
            hpa_sync_period=plan.hpa_sync,
        )

    ours_target, prom_target = Deployment(1), Deployment(1)
    stop = asyncio.Event()
    # push=False on both: StreamIsActive only acts at zero replicas (the activation scenario); 1->N is the HPA's.
    emulators = [
        asyncio.create_task(
            run_emulator(
                KedaHpaEmulator(scaled_object(ours_trigger), trial.phase),
                shared.keda,
                ours_target,
                now,
                stop,
                push=False,
            )
        ),
        asyncio.create_task(
            run_emulator(
                KedaHpaEmulator(scaled_object(prom_trigger), trial.phase),
                PrometheusAsk(shared.session),  # duck-typed: with push off, run_emulator only calls ask()
                prom_target,
                now,
                stop,
                push=False,
            )
        ),
    ]
    ref = GrpcScaler.ref(scaled_object(ours_trigger), ours_trigger)
    spec = (await shared.keda.stub.GetMetricSpec(ref, timeout=5)).metricSpecs[0]
    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)

    async def ours_value() -> float:
        answer = (await shared.keda.stub.GetMetrics(request, timeout=5)).metricValues[0]
        return answer.metricValueFloat if answer.metricValueFloat > 0 else float(answer.metricValue)

    async def prom_value() -> float:
        return await prom_query(shared.session, shared.prometheus, expr, keda_time=False)

    async def poll(read: Callable[[], Awaitable[float]], deadline: float) -> float | None:
        """A client polling every client_poll from a random phase: seconds from the step to a value showing it."""
        assert trial.sent_at is not None
        await asyncio.sleep(shared.rng.uniform(0, plan.client_poll))
        while now() < deadline:
            try:
                value = await read()
            except (grpc.aio.AioRpcError, aiohttp.ClientError, PromError) as exc:
                shared.anomalies.append(f"{trial.deployment}: freshness poll failed: {exc}")
                value = 0.0
            if value >= plan.step_requests:
                return now() - trial.sent_at
            await asyncio.sleep(plan.client_poll)
        return None

    url = trial.pod.url + "/v1/chat/completions"
    body = {"model": "qwen", "messages": PROMPT, "max_tokens": plan.max_tokens, "ignore_eos": True}
    clients: list[asyncio.Task[int]] = []
    try:
        await sleep_until(trial.step_at - 0.3)
        before = (await ours_value(), await prom_value())
        if max(before) > 0:
            shared.anomalies.append(f"{trial.deployment}: load before the step: ours {before[0]}, Prom. {before[1]}")
        await sleep_until(trial.step_at)
        trial.sent_at = now()
        clients = [asyncio.create_task(_post(shared.session, url, body)) for _ in range(plan.step_requests)]
        fresh_deadline = trial.sent_at + plan.scrape_interval + plan.slack
        trial.fresh_ours, trial.fresh_prometheus = await asyncio.gather(
            poll(ours_value, fresh_deadline), poll(prom_value, fresh_deadline)
        )
        e2e_deadline = trial.sent_at + plan.scrape_interval + plan.hpa_sync + plan.slack
        for target in (ours_target, prom_target):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(target.changed.wait(), max(0.0, e2e_deadline - now()))
        if ours_target.changes:
            at, trial.replicas_ours = ours_target.changes[0]
            trial.e2e_ours = at - trial.sent_at
        if prom_target.changes:
            at, trial.replicas_prometheus = prom_target.changes[0]
            trial.e2e_prometheus = at - trial.sent_at
    finally:
        stop.set()
        await asyncio.gather(*emulators, return_exceptions=True)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)


class LoopLag:
    """How late the event loop wakes a 20 ms sleeper: the measurements' own noise floor."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            planned = now() + 0.02
            await asyncio.sleep(0.02)
            self.lags.append(max(0.0, now() - planned))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Results:
    """What one run measured, as plain data: seconds per trial (None: missed its deadline). JSON with --json."""

    plan: Plan
    activation_ours: list[float | None]
    activation_prometheus: list[float | None]
    activation_split: list[tuple[float, float, float]]  # ours as (waiting for the next export, export, the rest)
    fresh_ours: list[float | None]
    fresh_prometheus: list[float | None]
    e2e_ours: list[float | None]
    e2e_prometheus: list[float | None]
    replicas: list[int | None]  # after the first change, both paths
    anomalies: list[str]
    lag: list[float]
    export_seconds: list[float]  # every router export, from its start until the scaler answered
    setup_seconds: float
    measure_seconds: float
    scaler_cpu: float  # seconds of CPU the scaler process used during the measurement
    load: list[float]  # the machine's 1-minute load average when each measurement began and ended
    runs: int = 1

    @classmethod
    def of(cls, plan: Plan, activation: list[ActivationTrial], steps: list[StepTrial], **rest: Any) -> Results:
        return cls(
            plan,
            activation_ours=[t.ours for t in activation],
            activation_prometheus=[v for t in activation for v in t.prometheus],
            activation_split=[t.split for t in activation if t.split is not None],
            fresh_ours=[t.fresh_ours for t in steps],
            fresh_prometheus=[t.fresh_prometheus for t in steps],
            e2e_ours=[t.e2e_ours for t in steps],
            e2e_prometheus=[t.e2e_prometheus for t in steps],
            replicas=[t.replicas_ours for t in steps] + [t.replicas_prometheus for t in steps],
            **rest,
        )

    @classmethod
    def load_json(cls, path: Path) -> Results:
        data = json.loads(path.read_text())
        plan = Plan(**data.pop("plan"))
        data["activation_split"] = [tuple(split) for split in data["activation_split"]]
        return cls(plan, **data)

    @classmethod
    def pooled(cls, runs: Sequence[Results]) -> Results:
        """Several runs with the same intervals as one: trials, lags and exports concatenated."""
        first = runs[0]
        keys = ("export_interval", "scrape_interval", "polling_interval", "hpa_sync", "step_requests", "target_per_pod")
        for other in runs[1:]:
            if any(getattr(other.plan, k) != getattr(first.plan, k) for k in keys):
                raise SystemExit(f"cannot pool runs with different intervals: {first.plan} vs {other.plan}")
        out = replace(first, plan=replace(first.plan, rounds=sum(r.plan.rounds for r in runs)))
        for name in (f.name for f in dataclass_fields(cls)):
            values = [getattr(r, name) for r in runs]
            if isinstance(values[0], list):
                setattr(out, name, [v for each in values for v in each])
            elif name in ("setup_seconds", "measure_seconds", "scaler_cpu", "runs"):
                setattr(out, name, sum(values))
        return out


async def bench(plan: Plan, binary: str) -> Results:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="export"))
    rng = random.Random(plan.seed)
    began = now()
    workdir = Path(tempfile.mkdtemp(prefix="bench-reaction-"))
    scaler = ScalerProcess("--warmup", "0s", "--grace", "1s", log=workdir / "scaler.log")
    routers: list[QueueingRouter] = []
    pods: list[PodServer] = []
    prometheus: PrometheusServer | None = None
    channel: grpc.aio.Channel | None = None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
    )
    lag = LoopLag()
    try:
        scaler.start()
        otlp = scaler.address("otlp-grpc")
        channel = grpc.aio.insecure_channel(scaler.address("scaler"))
        for i in range(plan.activation_trials):
            phase = rng.uniform(0, plan.export_interval)
            routers.append(QueueingRouter(f"router-{i}", f"pool-{i}", otlp, plan.export_interval, phase))
            await routers[-1].start()

        async def start_pod(i: int, port: int = 0) -> PodServer:
            identity = PodIdentity(f"step-{i}-0", f"step-{i}", NAMESPACE)
            config = PodConfig(identity, DEMO, port=port, otlp_endpoint=otlp, export_interval=plan.export_interval)
            pod = PodServer(config)
            await pod.start()
            await asyncio.sleep(rng.uniform(0, plan.export_interval / max(1, plan.step_trials)))  # spread push phases
            return pod

        for i in range(plan.step_trials):
            pods.append(await start_pod(i))
        jobs = {
            "router": [(r.address, {}) for r in routers],
            "vllm": [
                (
                    f"127.0.0.1:{p.port}",
                    {"namespace": NAMESPACE, "deployment": p.config.identity.deployment, "pod": p.config.identity.pod},
                )
                for p in pods
            ],
        }
        prometheus = PrometheusServer(binary, plan.scrape_interval, jobs, workdir)
        prometheus.start()
        await prometheus.wait_ready(session, timeout=60)
        await prometheus.wait_scraped(session, len(routers) + len(pods), timeout=plan.scrape_interval + 30)
        setup_seconds = now() - began

        shared = Shared(plan, GrpcScaler(channel), session, prometheus.url, rng)
        activation: list[ActivationTrial] = []
        steps: list[StepTrial] = []
        lag.start()
        measuring, cpu_before, load_before = now(), scaler.cpu_seconds(), os.getloadavg()[0]
        for round_number in range(plan.rounds):
            if round_number:
                # End the load: release the routers' queues, and replace each pod by a fresh one on the same
                # port (a stopped pod aborts what it runs). Then wait until Prometheus has scraped the zeros.
                for router in routers:
                    router.reset()
                for i, pod in enumerate(pods):
                    await pod.stop()
                    pods[i] = await start_pod(i, pod.port)
                await asyncio.sleep(plan.scrape_interval + plan.settle)
            first = now() + plan.settle
            these = [ActivationTrial(r, first + rng.uniform(0, plan.stagger)) for r in routers]
            steps_now = [
                StepTrial(p, first + rng.uniform(0, plan.stagger), now() + rng.uniform(0, plan.hpa_sync)) for p in pods
            ]
            await asyncio.gather(
                *(run_activation(t, shared) for t in these),
                *(run_step(t, shared) for t in steps_now),
            )
            activation += these
            steps += steps_now
        measure_seconds, scaler_cpu = now() - measuring, scaler.cpu_seconds() - cpu_before
        silent = [r.name for r in routers if r.pushes == 0] + [p.config.identity.pod for p in pods if p.pushes == 0]
        if silent:
            shared.anomalies.append(f"never pushed OTLP: {silent}")
        exports = [d for r in routers for d in r.export_seconds]
        return Results.of(
            plan,
            activation,
            steps,
            anomalies=shared.anomalies,
            lag=lag.lags,
            export_seconds=exports,
            setup_seconds=setup_seconds,
            measure_seconds=measure_seconds,
            scaler_cpu=scaler_cpu,
            load=[load_before, os.getloadavg()[0]],
        )
    finally:
        await lag.stop()
        for pod in pods:
            await pod.stop()
        for router in routers:
            await router.stop()
        await session.close()
        if channel is not None:
            await channel.close()
        scaler.stop()
        if prometheus is not None:
            prometheus.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the report ------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Row:
    path: str
    values: list[float]
    missed: int

    @property
    def p50(self) -> float:
        return percentile(self.values, 0.5)

    @property
    def p95(self) -> float:
        return percentile(self.values, 0.95)


def row(path: str, measured: Sequence[float | None], deadline: float) -> Row:
    """Missed trials count at their deadline: a lower bound, so they can only flatter the slower path."""
    values = [v if v is not None else deadline for v in measured]
    return Row(path, values, sum(v is None for v in measured))


def secs(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f} s"


def table(title: str, rows: Sequence[Row]) -> list[str]:
    width = max(len(r.path) for r in rows)
    head = f"{'path':<{width}}  {'n':>4}  {'min':>8}  {'p50':>8}  {'p95':>8}  {'max':>8}  {'missed':>6}"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        low, high = (min(r.values), max(r.values)) if r.values else (math.nan, math.nan)
        lines.append(
            f"{r.path:<{width}}  {len(r.values):>4}  {secs(low):>8}  {secs(r.p50):>8}  {secs(r.p95):>8}  "
            f"{secs(high):>8}  {r.missed:>6}"
        )
    return lines


def bootstrap(
    slow: Sequence[float], fast: Sequence[float], q_slow: float, q_fast: float, rounds: int = 2000
) -> tuple[float, float]:
    """A 95 % bootstrap interval of percentile(slow, q_slow) / percentile(fast, q_fast), resampling both."""
    if not slow or not fast:
        return math.nan, math.nan
    rng = random.Random(0)
    ratios = sorted(
        ratio(percentile(rng.choices(slow, k=len(slow)), q_slow), percentile(rng.choices(fast, k=len(fast)), q_fast))
        for _ in range(rounds)
    )
    return percentile(ratios, 0.025), percentile(ratios, 0.975)


def interval(bounds: tuple[float, float]) -> str:
    return f"95% CI {bounds[0]:.1f}-{bounds[1]:.1f}x"


def ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 1000:.0f} ms"


def ratio(slow: float, fast: float) -> float:
    return slow / fast if fast > 0 else math.inf


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(results: Results) -> tuple[list[str], str]:
    plan = results.plan
    e, s, p, h = plan.export_interval, plan.scrape_interval, plan.polling_interval, plan.hpa_sync
    lines: list[str] = []

    act_deadline = s + p + plan.slack
    ours_act = row(f"ours: StreamIsActive, OTLP push every {e:g} s", results.activation_ours, act_deadline)
    prom_act = row(
        f"Prometheus: scrape {s:g} s, KEDA polls every {p:g} s",
        results.activation_prometheus,
        act_deadline,
    )
    lines += table(
        f"== activation: a pool at zero, its router starts queuing -> a KEDA-like client learns it is active "
        f"({plan.activation_trials} routers x {plan.rounds} rounds, {plan.pollers} KEDA pollers each at a random "
        "phase)",
        [ours_act, prom_act],
    )
    act_limit = ACTIVATION_TARGET_FACTOR * e + ACTIVATION_TARGET_EXTRA
    act_p95_ok = ours_act.missed == 0 and ours_act.p95 <= act_limit
    act_speedup = ratio(prom_act.p50, ours_act.p95)
    act_speedup_ok = ours_act.missed == 0 and act_speedup >= SPEEDUP_TARGET
    lines += [
        f"target: our p95 <= {ACTIVATION_TARGET_FACTOR:g} x {e:g} s + {ACTIVATION_TARGET_EXTRA * 1000:.0f} ms = "
        f"{act_limit:.2f} s: {secs(ours_act.p95)} {met(act_p95_ok)}",
        f"target: Prometheus median / our p95 >= {SPEEDUP_TARGET:g}x: {act_speedup:.1f}x "
        f"({interval(bootstrap(prom_act.values, ours_act.values, 0.5, 0.95))}) {met(act_speedup_ok)} "
        f"(median / median {ratio(prom_act.p50, ours_act.p50):.1f}x)",
    ]
    parts = list(zip(*results.activation_split, strict=True)) or [(), (), ()]

    def spread(values: Sequence[float]) -> str:
        top = max(values, default=math.nan)
        return f"p50 {ms(percentile(values, 0.5))}, p95 {ms(percentile(values, 0.95))}, max {ms(top)}"

    lines += [
        f"ours, split: waiting for the router's next export {spread(parts[0])}; that export, until the scaler "
        f"answered {spread(parts[1])}; from there to the stream's true at the client {spread(parts[2])}",
        "",
    ]

    fresh_deadline = s + plan.slack
    ours_fresh = row("ours: GetMetrics", results.fresh_ours, fresh_deadline)
    prom_fresh = row(f"Prometheus: /api/v1/query (scrape {s:g} s)", results.fresh_prometheus, fresh_deadline)
    lines += table(
        f"== freshness: a step of {plan.step_requests} requests on a running pod -> a client polling every "
        f"{plan.client_poll * 1000:.0f} ms reads it ({plan.step_trials} pods x {plan.rounds} rounds)",
        [ours_fresh, prom_fresh],
    )
    fresh_ratio = ratio(prom_fresh.p50, ours_fresh.p50)
    fresh_ok = ours_fresh.missed == 0 and fresh_ratio >= SPEEDUP_TARGET
    fresh_ci = interval(bootstrap(prom_fresh.values, ours_fresh.values, 0.5, 0.5))
    lines += [
        f"target: Prometheus median / our median >= {SPEEDUP_TARGET:g}x: {fresh_ratio:.1f}x ({fresh_ci}) "
        f"{met(fresh_ok)}",
        "",
    ]

    e2e_deadline = s + h + plan.slack
    want = math.ceil(plan.step_requests / plan.target_per_pod)
    ours_e2e = row("ours: GetMetrics via the HPA", results.e2e_ours, e2e_deadline)
    prom_e2e = row("Prometheus: KEDA prometheus scaler", results.e2e_prometheus, e2e_deadline)
    lines += table(
        f"== end to end (1->{want}): the same step -> the KEDA+HPA emulator changes the replicas "
        f"(pollingInterval {p:g} s, HPA sync {h:g} s, the same random phase for both paths of a trial)",
        [ours_e2e, prom_e2e],
    )
    reached = sorted(set(results.replicas), key=str)
    paired = [
        theirs - ours
        for ours, theirs in zip(results.e2e_ours, results.e2e_prometheus, strict=True)
        if ours is not None and theirs is not None
    ]
    e2e_ratio = ratio(prom_e2e.p50, ours_e2e.p50)
    e2e_ci = interval(bootstrap(prom_e2e.values, ours_e2e.values, 0.5, 0.5))
    remains = ours_e2e.p50 / prom_e2e.p50 if prom_e2e.p50 > 0 else math.nan
    syncs_later = Counter(round(d / h) for d in paired)  # both emulators of a trial sync at the same instants
    lines += [
        f"replicas after the first change: {reached}; per trial, Prometheus - ours: median "
        f"{secs(percentile(paired, 0.5))}, mean {secs(sum(paired) / len(paired) if paired else math.nan)}; "
        f"Prometheus's change came at the same HPA sync as ours in {syncs_later.get(0, 0)} of {len(paired)} "
        f"trials, one sync later in {syncs_later.get(1, 0)}, two in {syncs_later.get(2, 0)}",
        f"gap: ours takes {remains:.0%} of the Prometheus path's median ({secs(ours_e2e.p50)} of "
        f"{secs(prom_e2e.p50)}, {e2e_ratio:.1f}x faster, {e2e_ci}); the HPA's {h:g} s sync alone averages "
        f"{h / 2:g} s of waiting on either path",
        "",
    ]

    lags = results.lag
    lines.append(
        f"event loop lag (noise floor of every figure): p99 {percentile(lags, 0.99) * 1000:.1f} ms, "
        f"max {max(lags, default=math.nan) * 1000:.1f} ms; setup {results.setup_seconds:.1f} s, "
        f"measurement {results.measure_seconds:.1f} s; the scaler process used {results.scaler_cpu:.1f} s of CPU "
        f"({results.scaler_cpu / results.measure_seconds:.0%} of a core); 1-minute load average "
        f"{' -> '.join(f'{v:.1f}' for v in results.load)} on {os.cpu_count()} CPUs"
    )
    if results.anomalies:
        lines.append(f"ANOMALIES ({len(results.anomalies)}): " + "; ".join(results.anomalies[:10]))

    label = "SUMMARY reaction:" + (" (smoke: scaled-down intervals, not a measurement)" if plan.smoke else "")
    label += f" ({results.runs} runs pooled)" if results.runs > 1 else ""
    summary = (
        f"{label} activation p95 {ours_act.p95:.2f}s (target <= {act_limit:.2f}s) {met(act_p95_ok)}, "
        f"Prometheus p50 / our p95 {act_speedup:.1f}x (target >= {SPEEDUP_TARGET:g}x) {met(act_speedup_ok)}; "
        f"freshness p50 ratio {fresh_ratio:.1f}x (target >= {SPEEDUP_TARGET:g}x) {met(fresh_ok)}; "
        f"end-to-end 1->{want} p50 ratio {e2e_ratio:.1f}x (no target; HPA sync {h:g}s in both, "
        f"ours {ours_e2e.p50:.1f}s = {remains:.0%} of Prometheus's {prom_e2e.p50:.1f}s remains)"
    )
    return lines, summary


# -- the command -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, every interval scaled down (CI)")
    parser.add_argument("--prometheus", default=None, help="the prometheus binary [default: prometheus on PATH]")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write every trial's figures here")
    parser.add_argument(
        "--pool", type=Path, nargs="+", default=None, metavar="JSON", help="measure nothing: report these runs as one"
    )
    defaults = Plan()
    knobs = {
        "export-interval": "ours: OTLP export interval, seconds",
        "scrape-interval": "Prometheus scrape_interval, seconds",
        "polling-interval": "KEDA pollingInterval, seconds",
        "hpa-sync": "HPA sync period, seconds",
        "activation-trials": "routers in front of pools at zero",
        "pollers": "KEDA-like Prometheus pollers per router",
        "step-trials": "running pods given a step",
        "rounds": "measure this many times on the same servers",
        "step-requests": "requests in each step",
        "stagger": "steps are spread over this many seconds",
        "seed": "random seed for phases and step times",
    }
    for flag, text in knobs.items():
        attr = flag.replace("-", "_")
        kind = (
            int if attr in ("activation_trials", "pollers", "step_trials", "step_requests", "rounds", "seed") else float
        )
        parser.add_argument(f"--{flag}", type=kind, default=None, help=f"{text} [default: {getattr(defaults, attr)}]")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else defaults
    changes = {k.replace("-", "_"): getattr(args, k.replace("-", "_")) for k in knobs}
    plan = replace(plan, **{k: v for k, v in changes.items() if v is not None})
    return plan, args


async def main_async(plan: Plan, binary: str) -> Results:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # clean up Prometheus and the servers
    one_round = plan.settle * 2 + plan.stagger + plan.scrape_interval * 2 + plan.polling_interval + plan.slack
    budget = (25 if plan.smoke else 90) + plan.rounds * one_round
    return await asyncio.wait_for(bench(plan, binary), budget)


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.pool:
        results = Results.pooled([Results.load_json(path) for path in args.pool])
        print(f"reaction benchmark: {results.runs} runs pooled ({', '.join(str(p) for p in args.pool)})")
        lines, summary = report(results)
        print("\n".join([*lines, summary]))
        return 0
    binary = args.prometheus or shutil.which("prometheus")
    if binary is None or not Path(binary).exists():
        print("SKIP: no prometheus binary (Debian: apt-get install prometheus); this benchmark needs the real server")
        print("SUMMARY reaction: SKIPPED: no prometheus binary")
        return 0
    print(
        f"reaction benchmark{' (smoke)' if plan.smoke else ''}: OTLP export {plan.export_interval:g} s, "
        f"Prometheus scrape {plan.scrape_interval:g} s, KEDA pollingInterval {plan.polling_interval:g} s, "
        f"HPA sync {plan.hpa_sync:g} s; {binary}",
        flush=True,
    )
    try:
        results = asyncio.run(main_async(plan, binary))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: servers stopped, temporary files removed", file=sys.stderr)
        return 130
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(results)))
    lines, summary = report(results)
    print("\n".join(lines))
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
