"""Ops HTTP: /metrics, /healthz, /readyz and the read-only /debug views."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from scaler.explain import describe_series, describe_triggers, preview_query
from scaler.store import Store
from scaler.triggers import Triggers

MAX_SERIES_LISTED = 10_000


def ops_app(
    registry: CollectorRegistry,
    store: Store,
    triggers: Triggers,
    clock: Callable[[], float],
    stale_after: float,
    ready: asyncio.Event,
) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def series(request: web.Request) -> web.Response:
        metric = request.query.get("metric")
        if not metric:
            return _json({"error": "query parameter 'metric' is required", "metrics": store.names()}, 400)
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _json({"error": "query parameter 'limit' must be an integer"}, 400)
        limit = max(1, min(limit, MAX_SERIES_LISTED))
        return _json(describe_series(store, metric, clock(), stale_after, limit))

    async def query(request: web.Request) -> web.Response:
        if "metricQuery" not in request.query:
            return _json({"error": "query parameter 'metricQuery' is required"}, 400)
        answer = preview_query(store, dict(request.query), clock(), stale_after, triggers.warmup_until)
        return _json(answer, int(answer.get("http_status", 200)))

    async def scaledobjects(_: web.Request) -> web.Response:
        return _json(describe_triggers(triggers, clock()))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/series", series)
    app.router.add_get("/debug/query", query)
    app.router.add_get("/debug/scaledobjects", scaledobjects)
    return app


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=_dumps)


def _dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=False)
