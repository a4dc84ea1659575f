"""A live simulated fleet: real pod servers behind a real HTTP router, with replica controllers.

Thin adapters around the pure parts: `Router` picks pods, `ReplicaController` decides lifecycles,
and this module starts a `PodServer` when a pod becomes ready, takes it out of the router when it
drains, and stops it when it is gone. The router serves the OpenAI routes (also under /openai),
streams SSE through, and under P/D sends each request to a prefill pod (max_tokens 1, keeping the
KV) and then to a decode pod with the prefill pod's kv_transfer_params. GET /fleet shows the pods;
POST /fleet/scale {"deployment": ..., "replicas": n} scales by hand. In front of it all sits the
`Gateway`: it counts requests, holds them while the entry pool is saturated when the spec asks for
flow control, and pushes its metrics over OTLP beside the pods'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from scaler.sim import openai_api as api
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.gateway import Gateway
from scaler.sim.otlp_push import PodMetrics
from scaler.sim.pod import PodIdentity
from scaler.sim.pod_server import PodConfig, PodServer, push_loop
from scaler.sim.replicas import Phase, ReplicaController, Transition
from scaler.sim.routing import Router
from scaler.sim.vllm_metrics import DEFAULT_NAMING, MetricNaming

logger = logging.getLogger(__name__)

DRAIN_CHECK = 0.2  # how often draining pods are checked for an empty router queue
RELEASE_CHECK = 0.02  # how often the gateway looks for room for the requests it holds


@dataclass(frozen=True, slots=True)
class FleetOptions:
    host: str = "127.0.0.1"
    port: int = 0  # the router's
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    export_interval: float = 1.0
    naming: MetricNaming = field(default_factory=lambda: DEFAULT_NAMING)
    output_median: float = 256.0
    seed: int = 0


class PoolTarget:
    """One Deployment's scale subresource, for the KEDA/HPA emulator (`keda_grpc.ReplicaTarget`)."""

    def __init__(self, fleet: LiveFleet, deployment: str) -> None:
        self.fleet = fleet
        self.deployment = deployment

    def replicas(self) -> int:
        return self.fleet.controllers[self.deployment].replicas

    def ready(self) -> int:
        """Pods serving: ready and started."""
        return len(self.fleet.routable(self.fleet.spec_of(self.deployment)))

    def scale(self, replicas: int) -> None:
        self.fleet.scale(self.deployment, replicas)


class LiveFleet:
    def __init__(self, spec: FleetSpec, options: FleetOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.options = options
        self.clock = clock
        now = clock()
        self.controllers = {
            p.deployment: ReplicaController(p.deployment, spec.cold_start, spec.drain_grace, p.replicas, now)
            for p in spec.pools
        }
        self.pods: dict[str, PodServer] = {}
        self.router = Router()
        self.port = 0
        self._pool_of = {p.deployment: p for p in spec.pools}
        self._pending: list[tuple[PoolSpec, Transition]] = []
        self._kick = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lifecycle: asyncio.Task[None] | None = None
        self.gateway: Gateway[asyncio.Future[bool]] = Gateway(
            spec.namespace, spec.inference_pool, spec.model, spec.flow_control
        )
        self._created = time.time()
        self._gateway_tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def target(self, deployment: str) -> PoolTarget:
        return PoolTarget(self, deployment)

    async def start(self) -> None:
        for deployment, controller in self.controllers.items():
            for name in controller.ready():
                await self._start_pod(self._pool_of[deployment], name)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
        )
        self._runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.options.host, self.options.port).start()
        self.port = self._runner.addresses[0][1]
        self._lifecycle = asyncio.create_task(self._run_lifecycle())
        if self.gateway.flow_control is not None:
            self._gateway_tasks.append(asyncio.create_task(self._run_gateway()))
        endpoint, opts = self.options.otlp_endpoint, self.options
        if endpoint:
            push = push_loop(opts.otlp_protocol, endpoint, opts.export_interval, self._gateway_metrics, "gateway")
            self._gateway_tasks.append(asyncio.create_task(push))
        logger.info("fleet router listening on %s", self.url)

    async def stop(self) -> None:
        for task in [*self._gateway_tasks, *([self._lifecycle] if self._lifecycle is not None else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._gateway_tasks.clear()
        while self.gateway.queue:  # held requests get their 503
            waiter = self.gateway.queue.popleft()
            if not waiter.done():
                waiter.set_result(False)
        await asyncio.gather(*(pod.stop() for pod in self.pods.values()))  # in-flight requests end
        self.pods.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def scale(self, deployment: str, replicas: int) -> None:
        pool = self._pool_of[deployment]
        self._pending += [(pool, c) for c in self.controllers[deployment].scale(replicas, self.clock())]
        self._kick.set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def _run_lifecycle(self) -> None:
        while True:
            try:
                await self._lifecycle_step()
            except Exception:
                logger.exception("fleet lifecycle step failed")
            due = [t for t in (c.next_event() for c in self.controllers.values()) if t is not None]
            timeout = DRAIN_CHECK if not due else max(0.0, min(min(due) - self.clock(), DRAIN_CHECK))
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    async def _lifecycle_step(self) -> None:
        now = self.clock()
        changes, self._pending = self._pending, []
        for deployment, controller in self.controllers.items():
            pool = self._pool_of[deployment]
            changes += [(pool, c) for c in controller.advance(now)]
            for name in controller.in_phase(Phase.DRAINING):
                if self.router.in_flight[name] == 0:
                    changes += [(pool, c) for c in controller.drained(name, now)]
        for pool, change in changes:
            await self._apply(pool, change)

    async def _apply(self, pool: PoolSpec, change: Transition) -> None:
        if change.phase is Phase.READY:
            await self._start_pod(pool, change.name)
        elif change.phase is Phase.GONE and change.name in self.pods:
            await self.pods.pop(change.name).stop()
            logger.info("pod %s gone", change.name)
        elif change.phase is Phase.DRAINING:
            logger.info("pod %s draining", change.name)

    async def _start_pod(self, pool: PoolSpec, name: str) -> None:
        opts = self.options
        identity = PodIdentity(name, pool.deployment, self.spec.namespace, pool.role, self.spec.model)
        config = PodConfig(
            identity,
            pool.profile,
            host=opts.host,
            data_parallel_size=pool.data_parallel_size,
            otlp_endpoint=opts.otlp_endpoint,
            otlp_protocol=opts.otlp_protocol,
            export_interval=opts.export_interval,
            naming=opts.naming,
            output_median=opts.output_median,
            seed=opts.seed,
        )
        server = PodServer(config, self.clock)
        await server.start()
        self.pods[name] = server

    def spec_of(self, deployment: str) -> PoolSpec:
        return self._pool_of[deployment]

    def routable(self, pool: PoolSpec) -> list[str]:
        return [n for n in self.controllers[pool.deployment].ready() if n in self.pods]

    # -- the gateway ----------------------------------------------------------------------------

    def _gateway_metrics(self) -> list[PodMetrics]:
        return [self.gateway.metrics(self._created)]

    def _open(self, names: list[str]) -> list[str]:
        """The entry pods a request may go to: all, or with flow control those not saturated."""
        limits = self.gateway.flow_control
        if limits is None:
            return names
        return [n for n in names if not limits.saturated(self.pods[n].pod.waiting, self.pods[n].pod.kv_usage)]

    async def _through_gateway(self) -> web.Response | None:
        """Wait while the gateway holds the request: None when it may go, else the answer (503 when the
        fleet stopped first, 429 when its TTL ran out, as llm-d's flow controller sheds it)."""
        if not self.gateway.holds(len(self._open(self.routable(self.spec.entry)))):
            return None
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()  # False: the fleet stops
        self.gateway.queue.append(waiter)
        limits = self.gateway.flow_control
        try:
            released = await asyncio.wait_for(waiter, None if limits is None else limits.request_ttl)
        except TimeoutError:
            error = api.ApiError("held by flow control past its request TTL", 429, "TooManyRequests")
            return web.json_response(error.body(), status=429)
        else:
            if released:
                return None
            stopping = api.ApiError("the fleet is stopping", 503, "ServiceUnavailable")
            return web.json_response(stopping.body(), status=503)
        finally:
            if waiter in self.gateway.queue:  # the client went away while held
                self.gateway.queue.remove(waiter)

    async def _run_gateway(self) -> None:
        while True:
            await asyncio.sleep(RELEASE_CHECK)
            try:
                self._release()
            except Exception:
                logger.exception("gateway release failed")

    def _release(self) -> None:
        """Let held requests go, oldest first, as many as the open pods have room below the queue depth."""
        limits, queue = self.gateway.flow_control, self.gateway.queue
        if limits is None or not queue:
            return
        open_pods = self._open(self.routable(self.spec.entry))
        room = sum(max(1, math.ceil(limits.queue_depth - self.pods[n].pod.waiting)) for n in open_pods)
        while queue and room > 0:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(True)
                room -= 1

    # -- HTTP -----------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", "/openai"):
            app.router.add_post(prefix + "/v1/chat/completions", self._serve)
            app.router.add_post(prefix + "/v1/completions", self._serve)
            app.router.add_get(prefix + "/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/fleet", self._describe)
        app.router.add_post("/fleet/scale", self._scale)
        return app

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response()

    async def _models(self, _: web.Request) -> web.Response:
        entry = self.spec.entry
        return web.json_response(api.models_body(self.spec.model, 0, entry.profile.max_model_len))

    async def _describe(self, _: web.Request) -> web.Response:
        pools: dict[str, Any] = {}
        for pool in self.spec.pools:
            controller = self.controllers[pool.deployment]
            pods = [
                {
                    "name": p.name,
                    "phase": p.phase.value,
                    "url": self.pods[p.name].url if p.name in self.pods else None,
                    "in_flight": self.router.in_flight[p.name],
                }
                for p in controller.pods.values()
            ]
            pools[pool.deployment] = {"role": pool.role, "replicas": controller.replicas, "pods": pods}
        return web.json_response({"namespace": self.spec.namespace, "model": self.spec.model, "pools": pools})

    async def _scale(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            deployment, replicas = body["deployment"], int(body["replicas"])
            if deployment not in self.controllers or replicas < 0:
                raise ValueError(deployment)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.json_response({"error": 'want {"deployment": <known pool>, "replicas": <n >= 0>}'}, status=400)
        self.scale(deployment, replicas)
        return web.json_response({"deployment": deployment, "replicas": replicas})

    async def _serve(self, http: web.Request) -> web.StreamResponse:
        self.gateway.arrived()
        raw = await http.read()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response(api.ApiError("the request body is not valid JSON").body(), status=400)
        if not isinstance(payload, dict):
            return web.json_response(api.ApiError("the request body must be a JSON object").body(), status=400)
        path = http.path.removeprefix("/openai")
        refused = await self._through_gateway()
        if refused is not None:
            return refused
        if not self.spec.disaggregated:
            return await self._forward(http, self.spec.entry, path, payload)
        prefill = dict(payload, max_tokens=1, stream=False, kv_transfer_params={"do_remote_decode": True})
        prefill.pop("max_completion_tokens", None)
        prefill.pop("stream_options", None)
        status, answer = await self._call(self.spec.pool("prefill"), path, prefill)
        if status != 200 or not isinstance(answer, dict) or "kv_transfer_params" not in answer:
            return web.json_response(answer, status=status if status != 200 else 502)
        decode = dict(payload, kv_transfer_params=answer["kv_transfer_params"])
        return await self._forward(http, self.spec.pool("decode"), path, decode)

    def _pick(self, pool: PoolSpec) -> PodServer | None:
        names = self.routable(pool)
        name = self.router.pick(self._open(names) if pool is self.spec.entry else names)
        return self.pods[name] if name is not None else None

    async def _call(self, pool: PoolSpec, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        pod = self._pick(pool)
        if pod is None:
            return 503, api.ApiError(f"no ready pod in {pool.deployment}", 503, "ServiceUnavailable").body()
        assert self._session is not None
        name = pod.config.identity.pod
        self.router.started(name)
        try:
            async with self._session.post(pod.url + path, json=payload) as upstream:
                return upstream.status, await upstream.json(content_type=None)
        except aiohttp.ClientError as exc:
            return 502, api.ApiError(f"pod {name}: {exc}", 502, "BadGateway").body()
        finally:
            self.router.finished(name)
            self._kick.set()

    async def _forward(
        self, http: web.Request, pool: PoolSpec, path: str, payload: dict[str, Any]
    ) -> web.StreamResponse:
        pod = self._pick(pool)
        if pod is None:
            error = api.ApiError(f"no ready pod in {pool.deployment}", 503, "ServiceUnavailable")
            return web.json_response(error.body(), status=503)
        assert self._session is not None
        name = pod.config.identity.pod
        self.router.started(name)
        try:
            async with self._session.post(pod.url + path, json=payload) as upstream:
                if upstream.content_type != "text/event-stream":
                    body = await upstream.read()
                    return web.Response(status=upstream.status, body=body, content_type=upstream.content_type)
                response = web.StreamResponse(
                    status=upstream.status, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
                )
                await response.prepare(http)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            error = api.ApiError(f"pod {name}: {exc}", 502, "BadGateway")
            return web.json_response(error.body(), status=502)
        finally:
            self.router.finished(name)
            self._kick.set()
