"""OTLP receivers: the gRPC MetricsService and HTTP `POST /v1/metrics`, two thin callers of one ingest.

Both decode with scaler.otlp, append to the store at the receive time, report refused points through
OTLP partial success, and wake StreamIsActive waiters.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from scaler.changes import Changes
from scaler.errors import ScalerError, UnsupportedMediaType
from scaler.otlp import decode_export_request, read_json, read_protobuf
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class Ingest:
    """Decode, store and account for one export request."""

    def __init__(self, store: Store, metrics: SelfMetrics, clock: Callable[[], float], changes: Changes) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.changes = changes

    def __call__(self, request: ExportMetricsServiceRequest, transport: str) -> ExportMetricsServiceResponse:
        decoded = decode_export_request(request)
        store_refused = self.store.append(decoded.samples, self.clock())
        refused: Counter[str] = decoded.refused + store_refused
        stored = sum(1 for s in decoded.samples if not s.no_value) - sum(store_refused.values())
        self.metrics.accepted.labels(transport).inc(stored)
        for reason, count in refused.items():
            self.metrics.refused.labels(reason).inc(count)
        self.changes.notify()
        if not refused:
            return ExportMetricsServiceResponse()
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(refused.items()))
        partial = ExportMetricsPartialSuccess(
            rejected_data_points=sum(refused.values()), error_message=f"refused datapoints: {detail}"
        )
        return ExportMetricsServiceResponse(partial_success=partial)


class OtlpGrpcService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(  # noqa: N802 - the gRPC method name
        self, request: ExportMetricsServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ExportMetricsServiceResponse:
        with self.ingest.metrics.rpc_duration.labels("otlp.Export").time():
            return self.ingest(request, "grpc")


def add_otlp_grpc(server: grpc.aio.Server, ingest: Ingest) -> None:
    register: Callable[[OtlpGrpcService, grpc.aio.Server], None] = (
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server
    )
    register(OtlpGrpcService(ingest), server)


def otlp_http_app(ingest: Ingest, max_body: int) -> web.Application:
    app = web.Application(client_max_size=max_body)
    app.router.add_post("/v1/metrics", _http_handler(ingest))
    return app


def _http_handler(ingest: Ingest) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        content_type = request.content_type
        try:
            if content_type not in (PROTOBUF, JSON):
                raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}")
            body = await request.read()
            parsed = read_protobuf(body) if content_type == PROTOBUF else read_json(body)
            reply = ingest(parsed, "http")
        except ScalerError as exc:
            ingest.metrics.requests_failed.labels("http", type(exc).__name__).inc()
            status = status_pb2.Status(code=grpc_code_number(exc), message=str(exc))
            return _encode(status, content_type, exc.http_status)
        except web.HTTPRequestEntityTooLarge:
            ingest.metrics.requests_failed.labels("http", "LimitExceeded").inc()
            raise
        finally:
            ingest.metrics.rpc_duration.labels("otlp.http").observe(time.perf_counter() - started)
        return _encode(reply, content_type, 200)

    return handle


def grpc_code_number(exc: ScalerError) -> int:
    code: int = grpc.StatusCode[exc.grpc_code].value[0]
    return code


def _encode(message: Any, content_type: str, status: int) -> web.Response:
    if content_type == JSON:
        text = json_format.MessageToJson(message, indent=None)
        return web.Response(status=status, text=text, content_type=JSON)
    return web.Response(status=status, body=message.SerializeToString(), content_type=PROTOBUF)
