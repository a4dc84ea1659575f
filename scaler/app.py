"""Wiring: builds the store, the core and every adapter, starts the listeners, and stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from scaler.admission import Limits
from scaler.changes import Changes
from scaler.externalscaler import externalscaler_pb2
from scaler.keda_service import KedaService, add_keda_service
from scaler.listeners import (
    AcceptErrors,
    HttpListener,
    connection_limits,
    grpc_options,
    log_connection_limits,
    stream_options,
)
from scaler.ops import DebugAccess, ops_app
from scaler.ratelimit import PushRateLimiter
from scaler.receivers import Ingest, PushPolicy, add_otlp_grpc, otlp_http_app
from scaler.selfmetrics import SelfMetrics
from scaler.settings import Settings, SettingsError
from scaler.store import Store
from scaler.streams import StreamHub
from scaler.tls import TlsError, TlsFiles
from scaler.tokens import TokenFile, TokenFileError
from scaler.triggers import Prepared, Triggers

logger = logging.getLogger(__name__)

POLICY_REFRESH = 0.5  # seconds a policy decision is reused for further KEDA calls and stream checks
POOL_UPKEEP = 0.25  # seconds between passes that bring pool views up to date between calls
KEDA_SERVICE = externalscaler_pb2.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
# A gRPC health service name that is SERVING only once warm-up has passed. A readiness probe on it
# keeps a restarted HA replica out of the ClusterIP Service until its answers can be whole, as long
# as pushes reach it another way (a headless Service that publishes not-ready addresses). With one
# replica, probe KEDA_SERVICE instead: pushes come through the same Service and must reach it to warm up.
WARM_SERVICE = "keda-llm-scaler.Warm"


@dataclass
class Scaler:
    """A running scaler: its parts (for tests and the simulator) and the ports it listens on."""

    settings: Settings
    store: Store
    triggers: Triggers
    registry: CollectorRegistry
    metrics: SelfMetrics
    tls: TlsFiles | None = None
    push: PushPolicy = field(default_factory=PushPolicy)
    ports: dict[str, int] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _grpc_servers: list[grpc.aio.Server] = field(default_factory=list)
    _runners: list[web.AppRunner] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _health: Any = None  # grpc_health's asyncio HealthServicer (its stubs predate grpc.aio)
    _changes: Changes = field(default_factory=Changes)
    _accept_errors: AcceptErrors | None = None
    debug_access: DebugAccess = field(default_factory=DebugAccess)
    streams: StreamHub[Prepared] | None = None  # the open StreamIsActive streams, once the scaler port serves

    async def stop(self) -> None:
        """Stop accepting, end StreamIsActive streams with OK, and finish in-flight calls within grace."""
        if self.stopping.is_set():
            return
        logger.info("stopping: finishing in-flight calls within %.1fs", self.settings.grace)
        self.ready.clear()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        self.stopping.set()
        self._changes.notify()
        await asyncio.gather(*(s.stop(self.settings.grace) for s in self._grpc_servers))
        for runner in self._runners:
            await runner.cleanup()
        if self._accept_errors is not None:
            self._accept_errors.uninstall()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        logger.info("stopped")


def push_policy(settings: Settings) -> PushPolicy:
    """Who may push and how much, from the settings; a bad token file stops start-up."""
    try:
        tokens = TokenFile(settings.otlp_token_file) if settings.otlp_token_file else None
    except TokenFileError as exc:
        raise SettingsError(f"--otlp-token-file: {exc}") from None
    return PushPolicy(
        tokens=tokens,
        limits=Limits(settings.max_labels_per_series, settings.max_label_length),
        max_datapoints=settings.max_datapoints_per_request,
        limiter=PushRateLimiter(settings.max_push_rate),
        max_request_bytes=settings.max_request_bytes,
        max_buckets=settings.max_buckets_per_point,
        max_inflight_bytes=settings.max_inflight_bytes,
    )


def debug_access(settings: Settings) -> DebugAccess:
    """Who may read /debug/*; a bad ops token file stops start-up."""
    try:
        tokens = TokenFile(settings.ops_token_file) if settings.ops_token_file else None
    except TokenFileError as exc:
        raise SettingsError(f"--ops-token-file: {exc}") from None
    return DebugAccess(tokens, settings.isolate_namespaces)


def tls_files(settings: Settings) -> TlsFiles | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    except TlsError as exc:
        raise SettingsError(f"--tls-cert/--tls-key: {exc}") from None


async def start(settings: Settings, clock: Callable[[], float] = time.monotonic) -> Scaler:
    """Build and start everything; raise SettingsError for unusable files, OSError for busy ports."""
    policy = push_policy(settings)
    tls = tls_files(settings)
    store = Store(settings.retention, settings.max_series)
    triggers = Triggers(
        store,
        settings.stale_after,
        warmup_until=clock() + settings.warmup,
        isolate=settings.isolate_namespaces,
        policy_refresh=POLICY_REFRESH,
        max_triggers=settings.max_triggers,
    )
    registry = CollectorRegistry()
    for standard in (ProcessCollector, PlatformCollector, GCCollector):  # process_* and python_*
        standard(registry=registry)
    metrics = SelfMetrics(registry, store, triggers, clock, settings.stale_after)
    scaler = Scaler(settings, store, triggers, registry, metrics, tls=tls, push=policy)
    scaler.debug_access = debug_access(settings)
    ingest = Ingest(store, metrics, clock, scaler._changes, policy)

    limits = connection_limits(settings)
    options = [("grpc.max_receive_message_length", settings.max_request_bytes), *grpc_options(limits)]
    otlp_server = grpc.aio.server(options=options)
    add_otlp_grpc(otlp_server, ingest)
    scaler.ports["otlp-grpc"] = _bind_grpc(otlp_server, settings.host, settings.otlp_grpc_port, "--otlp-grpc-port", tls)

    keda_options = [*grpc_options(limits), *stream_options(settings.max_streams)]
    keda_server = grpc.aio.server(options=keda_options, maximum_concurrent_rpcs=settings.max_streams)
    keda = KedaService(triggers, metrics, clock, scaler._changes, scaler.stopping, settings.stream_resend)
    add_keda_service(keda_server, keda)
    scaler.streams = keda.streams
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, keda_server)
    service_names = (KEDA_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(service_names, keda_server)
    scaler.ports["scaler"] = _bind_grpc(keda_server, settings.host, settings.scaler_port, "--scaler-port", tls)
    scaler._health = health_servicer

    for server in (otlp_server, keda_server):
        await server.start()
        scaler._grpc_servers.append(server)
    for status_name in ("", KEDA_SERVICE):
        await health_servicer.set(status_name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(WARM_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    scaler._tasks.append(asyncio.create_task(_warm_when_due(scaler, health_servicer, clock)))

    http_apps = {
        "otlp-http": (otlp_http_app(ingest), settings.otlp_http_port),
        "http": (
            ops_app(registry, store, triggers, clock, settings.stale_after, scaler.ready, scaler.debug_access),
            settings.http_port,
        ),
    }
    accept_errors = AcceptErrors(metrics.accept_errors)
    for name, (app, port) in http_apps.items():
        ssl_context = tls.ssl_context() if tls is not None and name == "otlp-http" else None  # ops stays plain
        listener = HttpListener(name, limits, metrics.connections_closed)
        runner = await listener.start(app, settings.host, port, ssl_context, settings.grace)
        scaler._runners.append(runner)
        scaler.ports[name] = runner.addresses[0][1]
        accept_errors.watch(scaler.ports[name], name)
    accept_errors.install(asyncio.get_running_loop())
    scaler._accept_errors = accept_errors

    scaler._tasks.append(asyncio.create_task(_housekeeping(scaler, clock)))
    scaler._tasks.append(asyncio.create_task(_pool_upkeep(scaler, clock)))
    scaler.ready.set()
    logger.info(
        "listening on %s: otlp-grpc=%d otlp-http=%d scaler=%d http=%d",
        settings.host,
        scaler.ports["otlp-grpc"],
        scaler.ports["otlp-http"],
        scaler.ports["scaler"],
        scaler.ports["http"],
    )
    log_connection_limits(limits)
    return scaler


def _bind_grpc(server: grpc.aio.Server, host: str, port: int, flag: str, tls: TlsFiles | None) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.grpc_credentials())
    except RuntimeError as exc:
        raise OSError(f"{flag}: cannot listen on {address}: {exc}") from exc
    return bound


async def _warm_when_due(scaler: Scaler, health_servicer: Any, clock: Callable[[], float]) -> None:
    """Turn the WARM_SERVICE health status to SERVING once `--warmup` has passed (never during shutdown)."""
    while (left := scaler.triggers.warmup_until - clock()) > 0:
        await asyncio.sleep(min(1.0, left))
    if not scaler.stopping.is_set():
        await health_servicer.set(WARM_SERVICE, health_pb2.HealthCheckResponse.SERVING)


async def _housekeeping(scaler: Scaler, clock: Callable[[], float]) -> None:
    """Free expired series and forget triggers nobody asks about; log and go on after any failure."""
    interval = min(5.0, scaler.settings.stale_after)
    # A sweep walks every series, so it runs every quarter retention: a stale series is still freed
    # within one retention of going stale (stale_after + retention / 4 <= retention + stale_after).
    sweep_every = max(interval, scaler.settings.retention / 4)
    last_sweep = clock()
    while True:
        await asyncio.sleep(interval)
        try:
            now = clock()
            if now - last_sweep >= sweep_every:
                for freed in scaler.store.sweep_slices(now):
                    scaler.metrics.series_freed.inc(freed)
                    await asyncio.sleep(0)  # let calls and pushes in between slices
                last_sweep = now
            scaler.triggers.expire(now)
            for tokens in (scaler.push.tokens, scaler.debug_access.tokens):
                if tokens is not None:
                    tokens.refresh()
            if scaler.tls is not None:
                scaler.tls.refresh()
            scaler.push.limiter.forget_idle(now)
        except Exception:
            logger.exception("housekeeping failed")


async def _pool_upkeep(scaler: Scaler, clock: Callable[[], float]) -> None:
    """Bring the policy triggers' pool views up to date in slices as soon as time changes them (and at
    least every POOL_UPKEEP seconds), so that the moment a fleet's rows leave a window together costs
    no KEDA call its wait (Store.advance_views)."""
    while True:
        await asyncio.sleep(min(POOL_UPKEEP, max(0.001, scaler.store.next_due() - clock())))
        try:
            for _ in scaler.store.advance_views(clock()):
                await asyncio.sleep(0)  # let calls and pushes in between slices
        except Exception:
            logger.exception("pool upkeep failed")


def tune_gc() -> None:
    """Fewer young collections (700 -> 10,000 allocations), and what start-up built (modules, descriptors,
    grpc) frozen out of every later full collection. Measured with this in the scaler's process, 2026-12-01:
    the hostile benchmark's good client p99 16 ms instead of 74-91 ms beside 200k-point requests (row 9),
    and ingest 113k instead of 86k datapoints/s per core (load/bench_ingest.py, 100 pods per request).
    Only `serve` calls it: the in-process tests keep the interpreter's defaults.
    """
    gc.set_threshold(10_000, 10, 10)
    gc.collect()
    gc.freeze()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (a signal during start-up stops it once started)."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    scaler = await start(settings)
    tune_gc()
    await done.wait()
    await scaler.stop()
