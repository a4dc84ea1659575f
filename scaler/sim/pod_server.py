"""A simulated vLLM pod as a real HTTP server, with an OTLP push loop as its collector sidecar.

It translates and delegates: HTTP requests become `SimPod.submit` calls, one driver task advances
the pod to the event loop's clock at each engine step end, and responses (JSON or SSE) are written
when the model says tokens exist. Routes: POST /v1/completions and /v1/chat/completions (also under
/openai, as KServe serves them), GET /v1/models, /health, /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from scaler.sim import openai_api as api
from scaler.sim.engine import Finished, RequestRejected, RequestSpec
from scaler.sim.exposition import CONTENT_TYPE, registry_for
from scaler.sim.otlp_push import PodMetrics, make_exporter, pod_metrics, push
from scaler.sim.pod import PodIdentity, SimPod
from scaler.sim.profiles import HardwareProfile
from scaler.sim.vllm_metrics import MetricNaming

logger = logging.getLogger(__name__)

MIN_TICK = 0.002  # never spin faster than this, however short the engine's steps


@dataclass(frozen=True, slots=True)
class PodConfig:
    identity: PodIdentity
    profile: HardwareProfile
    host: str = "127.0.0.1"
    port: int = 0
    data_parallel_size: int = 1
    otlp_endpoint: str | None = None  # host:port (grpc) or http://host:port (http); None: no push
    otlp_protocol: str = "grpc"
    export_interval: float = 1.0
    naming: MetricNaming = field(default_factory=MetricNaming)
    output_median: float = 256.0  # median of the drawn response length when max_tokens does not cut it
    seed: int = 0


async def push_loop(
    protocol: str,
    endpoint: str,
    interval: float,
    collect: Callable[[], Sequence[PodMetrics]],
    who: str,
    pushed: Callable[[], None] = lambda: None,
) -> None:
    """Every `interval`, export what `collect` returns through a real OTLP exporter, until cancelled."""
    exporter = make_exporter(protocol, endpoint)
    export: asyncio.Future[bool] | None = None
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                metrics = collect()
                now_ns = time.time_ns()
                export = asyncio.ensure_future(asyncio.to_thread(push, exporter, metrics, now_ns, now_ns))
                if await asyncio.shield(export):
                    pushed()
            except Exception:
                logger.exception("%s: OTLP push failed", who)
    finally:
        if export is not None:  # let an export in flight finish before the channel closes
            with contextlib.suppress(Exception):
                await export
        await asyncio.to_thread(exporter.shutdown)


class PodServer:
    def __init__(
        self,
        config: PodConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall = wall
        self.pod = SimPod(config.identity, config.profile, clock(), wall(), config.data_parallel_size)
        self.port = 0
        self.pushes = 0  # successful OTLP exports
        self._rng = random.Random(f"{config.seed}/{config.identity.pod}")
        self._ids = itertools.count()
        self._done: dict[str, asyncio.Future[Finished]] = {}
        self._kick = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._registry = registry_for(self.pod.snapshot, config.naming)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        # handler_cancellation: a client that hangs up aborts its request, as vLLM does
        self._runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        self.port = self._runner.addresses[0][1]
        self._tasks.append(asyncio.create_task(self._drive()))
        if self.config.otlp_endpoint:
            self._tasks.append(asyncio.create_task(self._push_loop(self.config.otlp_endpoint)))
        logger.info("pod %s (%s) listening on %s", self.config.identity.pod, self.config.identity.role, self.url)

    async def stop(self) -> None:
        """Abort what is in flight, stop listening, stop pushing."""
        self._resolve(self.pod.shutdown(self.clock()))
        self._tick()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- the engine driver ------------------------------------------------------------------------

    async def _drive(self) -> None:
        while True:
            try:
                self._tick()
            except Exception:
                logger.exception("pod %s: engine step failed", self.config.identity.pod)
            wake = self.pod.next_event_time()
            self._kick.clear()
            timeout = None if wake is None else max(MIN_TICK, wake - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    def _tick(self) -> None:
        self._resolve(self.pod.advance(self.clock()))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _resolve(self, finished: list[Finished]) -> None:
        for done in finished:
            waiter = self._done.pop(done.request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(done)

    # -- OTLP push, as a sidecar collector would ----------------------------------------------------

    async def _push_loop(self, endpoint: str) -> None:
        def collect() -> list[PodMetrics]:
            self._tick()
            return [pod_metrics(self.pod.snapshot(), self.config.naming)]

        def pushed() -> None:
            self.pushes += 1

        config = self.config
        who = f"pod {config.identity.pod}"
        await push_loop(config.otlp_protocol, endpoint, config.export_interval, collect, who, pushed)

    # -- HTTP -----------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", "/openai"):
            app.router.add_post(prefix + "/v1/chat/completions", self._chat)
            app.router.add_post(prefix + "/v1/completions", self._completion)
            app.router.add_get(prefix + "/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response()

    async def _metrics(self, _: web.Request) -> web.Response:
        self._tick()
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE})

    async def _models(self, _: web.Request) -> web.Response:
        ident, profile = self.config.identity, self.config.profile
        return web.json_response(api.models_body(ident.model, int(self.pod.created), profile.max_model_len))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, http: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await http.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(api.ApiError("the request body is not valid JSON"))
        profile = self.config.profile
        try:
            request = api.parse_request(body, chat, self.config.identity.model)
            tokens, reason = api.output_plan(request, self._rng, self.config.output_median, profile.max_model_len)
            if request.remote_decode:
                tokens, reason = 1, "length"
            transfer = profile.kv_transfer_seconds(request.prompt_tokens) if request.remote_prefill else None
            request_id = ("chatcmpl-" if chat else "cmpl-") + f"{self.config.identity.pod}-{next(self._ids)}"
            spec = RequestSpec(request_id, request.prompt_tokens, tokens, reason, transfer)
            self.pod.submit(spec, self.clock())
        except api.ApiError as exc:
            return _error(exc)
        except RequestRejected as exc:
            return _error(api.ApiError(str(exc)))
        done = asyncio.get_running_loop().create_future()
        self._done[request_id] = done
        self._kick.set()
        try:
            if request.stream:
                return await self._stream(http, request, request_id, done)
            finished = await done
            if finished.finish_reason == "abort":
                return _error(api.ApiError("the request was aborted: the pod is stopping", 503, "ServiceUnavailable"))
            answer = api.response_body(
                request, request_id, int(self.wall()), finished.output_tokens, finished.finish_reason
            )
            if request.remote_decode:
                answer["kv_transfer_params"] = self._transfer_params(request)
            return web.json_response(answer)
        finally:
            # the client went away: its cancellation cancels `done` too, so a cancelled future counts
            if done.cancelled() or not done.done():
                self._done.pop(request_id, None)
                self.pod.abort(request_id, self.clock())
                self._kick.set()

    async def _stream(
        self, http: web.Request, request: api.ApiRequest, request_id: str, done: asyncio.Future[Finished]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(http)
        created = int(self.wall())

        async def send(chunk: dict[str, Any]) -> None:
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send(api.stream_chunk(request, request_id, created, 0, 0, role=True))
        sent = 0
        while True:
            changed = self._changed
            if done.done():
                finished = done.result()
                for i in range(sent, finished.output_tokens):
                    await send(api.stream_chunk(request, request_id, created, i, 1))
                await send(api.stream_chunk(request, request_id, created, 0, 0, finished.finish_reason))
                if request.include_usage:
                    await send(api.usage_chunk(request, request_id, created, finished.output_tokens))
                break
            progress = self.pod.progress(request_id)
            for i in range(sent, progress.generated if progress else sent):
                await send(api.stream_chunk(request, request_id, created, i, 1))
                sent = i + 1
            await changed.wait()
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _transfer_params(self, request: api.ApiRequest) -> dict[str, Any]:
        """What vLLM's NIXL connector hands the router for the decode pod to pull the KV from."""
        return {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_engine_id": self.config.identity.pod,
            "remote_host": self.config.host,
            "remote_port": self.port,
            "remote_block_ids": [],
            "prompt_tokens": request.prompt_tokens,
        }


def _error(exc: api.ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)
