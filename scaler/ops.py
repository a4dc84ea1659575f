"""Ops HTTP: /metrics, /healthz, /readyz and the read-only /debug views.

`/metrics`, `/healthz` and `/readyz` stay open for probes and Prometheus. `/debug/*` shows every
namespace's series and triggers, so with `--ops-token-file` it needs a bearer token (a token bound
to a namespace sees only that namespace), and with `--isolate-namespaces` but no token file it is off.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from scaler.errors import PermissionDenied, ScalerError, Unauthenticated
from scaler.explain import describe_series, describe_triggers, preview_query
from scaler.store import Store
from scaler.tokens import Principal, TokenFile, authenticate
from scaler.triggers import Triggers

MAX_SERIES_LISTED = 10_000
Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class DebugAccess:
    """Who may read /debug/*: anyone (no token file, no isolation), holders of an ops token, or no one."""

    tokens: TokenFile | None = None
    isolate: bool = False

    def principal(self, authorization: str | None) -> Principal:
        if self.tokens is None:
            if self.isolate:
                raise PermissionDenied(
                    "/debug/* is off: it shows every namespace, "
                    "and --isolate-namespaces is set without --ops-token-file"
                )
            return Principal("anyone")
        found = authenticate(self.tokens.tokens, authorization)
        if found is None:
            raise Unauthenticated("/debug/* needs 'Authorization: Bearer <token>' with a token from --ops-token-file")
        return found


def ops_app(
    registry: CollectorRegistry,
    store: Store,
    triggers: Triggers,
    clock: Callable[[], float],
    stale_after: float,
    ready: asyncio.Event,
    access: DebugAccess | None = None,
) -> web.Application:
    access = access or DebugAccess()

    def guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                principal = access.principal(request.headers.get("Authorization"))
            except ScalerError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
                return web.json_response({"error": str(exc)}, status=exc.http_status, headers=headers)
            return await handler(request, principal)

        return handle

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        """`?warm=1` also waits for --warmup: HA readiness over plain HTTP, as the Warm gRPC health name."""
        if not ready.is_set():
            return web.Response(status=503, text="not ready\n")
        if request.query.get("warm") == "1" and clock() < triggers.warmup_until:
            return web.Response(status=503, text="warming up\n")
        return web.Response(text="ready\n")

    async def series(request: web.Request, principal: Principal) -> web.Response:
        metric = request.query.get("metric")
        if not metric:
            known = store.names() if principal.namespace is None else "(not listed for a namespace-bound token)"
            return _json({"error": "query parameter 'metric' is required", "metrics": known}, 400)
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _json({"error": "query parameter 'limit' must be an integer"}, 400)
        limit = max(1, min(limit, MAX_SERIES_LISTED))
        return _json(describe_series(store, metric, clock(), stale_after, limit, principal.namespace))

    async def query(request: web.Request, principal: Principal) -> web.Response:
        if "metricQuery" not in request.query:
            return _json({"error": "query parameter 'metricQuery' is required"}, 400)
        params, now = dict(request.query), clock()
        answer = preview_query(store, params, now, stale_after, triggers.warmup_until, principal.namespace)
        return _json(answer, int(answer.get("http_status", 200)))

    async def scaledobjects(_: web.Request, principal: Principal) -> web.Response:
        return _json(describe_triggers(triggers, clock(), principal.namespace))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/series", guarded(series))
    app.router.add_get("/debug/query", guarded(query))
    app.router.add_get("/debug/scaledobjects", guarded(scaledobjects))
    return app


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=_dumps)


def _dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=False)
