"""OTLP receivers: the gRPC MetricsService and HTTP `POST /v1/metrics`, two thin callers of one ingest.

Both authenticate the sender (bearer tokens, when configured), apply the request limits, decode with
scaler.otlp, append to the store at the receive time, report refused points through OTLP partial
success, and wake StreamIsActive waiters.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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

from scaler.admission import Limits, count_datapoints, screen
from scaler.changes import Changes
from scaler.errors import (
    DecodeError,
    LimitExceeded,
    RateLimited,
    ScalerError,
    Unauthenticated,
    UnsupportedMediaType,
)
from scaler.otlp import LabelCache, decode_export_request, read_json, read_protobuf
from scaler.ratelimit import PushRateLimiter
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store
from scaler.tokens import Principal, TokenFile, authenticate

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass
class PushPolicy:
    """Who may push, and how much."""

    tokens: TokenFile | None = None
    limits: Limits = field(default_factory=Limits)
    max_datapoints: int = 200_000
    limiter: PushRateLimiter = field(default_factory=lambda: PushRateLimiter(0))
    max_request_bytes: int = 16 * 1024 * 1024


class Ingest:
    """Authenticate, limit, decode, store and account for one export request."""

    def __init__(
        self, store: Store, metrics: SelfMetrics, clock: Callable[[], float], changes: Changes, policy: PushPolicy
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.changes = changes
        self.policy = policy
        self.labels = LabelCache()

    def authenticate(self, authorization: str | None, peer: str) -> Principal:
        if self.policy.tokens is None:
            return Principal(f"peer {peer}")
        principal = authenticate(self.policy.tokens.tokens, authorization)
        if principal is None:
            reason = "missing" if not authorization else "unknown"
            raise Unauthenticated(f"OTLP push refused: {reason} bearer token (--otlp-token-file is set)")
        return principal

    def __call__(
        self, request: ExportMetricsServiceRequest, transport: str, principal: Principal
    ) -> ExportMetricsServiceResponse:
        points = count_datapoints(request)
        if points > self.policy.max_datapoints:
            raise LimitExceeded(
                f"request has {points} datapoints; --max-datapoints-per-request is {self.policy.max_datapoints}"
            )
        now = self.clock()
        wait = self.policy.limiter.take(principal.name, points, now)
        if wait > 0:
            rate = self.policy.limiter.rate
            raise RateLimited(
                f"{principal.name} is over --max-push-rate ({rate:g} datapoints/s); retry in {wait:.1f}s", wait
            )
        decoded = screen(decode_export_request(request, self.labels), self.policy.limits, principal.namespace)
        store_refused = self.store.append(decoded.samples, now)
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

    def failed(self, transport: str, exc: ScalerError) -> None:
        self.metrics.requests_failed.labels(transport, type(exc).__name__).inc()
        logger.debug("OTLP %s push refused: %s", transport, exc)


class OtlpGrpcService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def Export(  # noqa: N802 - the gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ExportMetricsServiceResponse:
        with self.ingest.metrics.rpc_duration.labels("otlp.Export").time():
            try:
                authorization = dict(context.invocation_metadata() or ()).get("authorization")
                principal = self.ingest.authenticate(authorization, context.peer())
                return self.ingest(read_protobuf(request), "grpc", principal)
            except ScalerError as exc:
                self.ingest.failed("grpc", exc)
                await context.abort(grpc.StatusCode[exc.grpc_code], str(exc))
                raise  # abort raises; this line only satisfies the type checker


def add_otlp_grpc(server: grpc.aio.Server, ingest: Ingest) -> None:
    """Export takes the raw bytes and decodes them as HTTP does: grpc answers UNKNOWN when its own decoding fails."""
    export = grpc.unary_unary_rpc_method_handler(
        OtlpGrpcService(ingest).Export, response_serializer=ExportMetricsServiceResponse.SerializeToString
    )
    service = ExportMetricsServiceRequest.DESCRIPTOR.file.services_by_name["MetricsService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": export}),))


def otlp_http_app(ingest: Ingest) -> web.Application:
    app = web.Application(client_max_size=ingest.policy.max_request_bytes)
    app.router.add_post("/v1/metrics", _http_handler(ingest))
    return app


def _http_handler(ingest: Ingest) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        content_type = request.content_type
        try:
            principal = ingest.authenticate(request.headers.get("Authorization"), request.remote or "unknown")
            if content_type not in (PROTOBUF, JSON):
                raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}")
            body = await _read_body(request, ingest.policy.max_request_bytes)
            parsed = read_protobuf(body) if content_type == PROTOBUF else read_json(body)
            reply = ingest(parsed, "http", principal)
        except ScalerError as exc:
            ingest.failed("http", exc)
            status = status_pb2.Status(code=grpc_code_number(exc), message=str(exc))
            response = _encode(status, content_type, exc.http_status)
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            if request.content.exception() is not None:  # the body stream broke: this connection is done
                response.force_close()
            return response
        finally:
            ingest.metrics.rpc_duration.labels("otlp.http").observe(time.perf_counter() - started)
        return _encode(reply, content_type, 200)

    return handle


async def _read_body(request: web.Request, limit: int) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise LimitExceeded(f"request body is over --max-request-bytes ({limit} bytes, after decompression)") from None
    except web.RequestPayloadError as exc:  # a corrupt gzip or deflate body: aiohttp would answer 500
        raise DecodeError(f"cannot read the request body: {exc}") from None


def grpc_code_number(exc: ScalerError) -> int:
    code: int = grpc.StatusCode[exc.grpc_code].value[0]
    return code


def _encode(message: Any, content_type: str, status: int) -> web.Response:
    if content_type == JSON:
        text = json_format.MessageToJson(message, indent=None)
        return web.Response(status=status, text=text, content_type=JSON)
    return web.Response(status=status, body=message.SerializeToString(), content_type=PROTOBUF)
