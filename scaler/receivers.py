"""OTLP receivers: the gRPC MetricsService and HTTP `POST /v1/metrics`, two thin callers of one ingest.

Both authenticate the sender (bearer tokens, when configured), hold the request's bytes against the
in-flight budget, apply the request limits, decode with scaler.otlp in pieces (pausing between them
so that no request holds the event loop for long), append to the store at the receive time, report
refused points through OTLP partial success, and wake StreamIsActive waiters.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from scaler.admission import Limits, confine, count_datapoints, screen
from scaler.changes import Changes
from scaler.errors import (
    DecodeError,
    LimitExceeded,
    Overloaded,
    RateLimited,
    ScalerError,
    Unauthenticated,
    UnsupportedMediaType,
)
from scaler.otlp import MAX_BUCKETS, LabelCache, PointLimits, decode_export_request, read_protobuf
from scaler.otlp_pieces import json_pieces, protobuf_pieces
from scaler.ratelimit import PushRateLimiter, sender_address
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store
from scaler.tokens import Principal, TokenFile, authenticate

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SLICE_SECONDS = 0.005  # how long a request works before letting others run (a piece may add a few ms)
OVERLOADED_RETRY = 1.0  # seconds a sender refused for --max-inflight-bytes is asked to wait
_INFLATE_STEP = 64 * 1024
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"  # what the OTel SDKs read; collectors read the rich status
_STATUS_DETAILS_KEY = "grpc-status-details-bin"  # gRPC's rich status: a google.rpc.Status


@dataclass
class PushPolicy:
    """Who may push, and how much."""

    tokens: TokenFile | None = None
    limits: Limits = field(default_factory=Limits)
    max_datapoints: int = 200_000
    limiter: PushRateLimiter = field(default_factory=lambda: PushRateLimiter(0))
    max_request_bytes: int = 16 * 1024 * 1024
    max_buckets: int = MAX_BUCKETS
    max_inflight_bytes: int = 64 * 1024 * 1024


class InflightBytes:
    """Request bytes the receivers hold at once, over all requests; a request that would pass the
    limit is refused at once (Overloaded) rather than queued, so a flood of bombs costs its size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0

    @contextmanager
    def hold(self) -> Iterator[Holding]:
        holding = Holding(self)
        try:
            yield holding
        finally:
            self.held -= holding.size

    def _grow(self, holding: Holding, size: int) -> None:
        if self.held + size > self.limit:
            raise Overloaded(
                f"the receivers hold {self.held} bytes of requests, --max-inflight-bytes is {self.limit}; "
                f"retry in {OVERLOADED_RETRY:g}s",
                OVERLOADED_RETRY,
            )
        self.held += size
        holding.size += size
        self.peak = max(self.peak, self.held)


class Holding:
    """One request's share of the in-flight budget, given back when the request is done."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: InflightBytes) -> None:
        self.budget = budget
        self.size = 0

    def grow(self, size: int) -> None:
        self.budget._grow(self, size)


class _Pacer:
    """Yields to the event loop once a request has worked for SLICE_SECONDS since it last did."""

    def __init__(self) -> None:
        self.since = time.perf_counter()

    async def step(self) -> None:
        if time.perf_counter() - self.since >= SLICE_SECONDS:
            await asyncio.sleep(0)
            self.since = time.perf_counter()


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
        self.inflight = InflightBytes(policy.max_inflight_bytes)
        self.point_limits = PointLimits(policy.max_buckets, policy.limits.max_labels)

    def authenticate(self, authorization: str | None, peer: str) -> Principal:
        if self.policy.tokens is None:
            return Principal(f"peer {sender_address(peer)}")  # the address, not the port: one bucket a client
        principal = authenticate(self.policy.tokens.tokens, authorization)
        if principal is None:
            reason = "missing" if not authorization else "unknown"
            raise Unauthenticated(f"OTLP push refused: {reason} bearer token (--otlp-token-file is set)")
        return principal

    async def __call__(
        self, body: bytes, content_type: str, transport: str, principal: Principal, holding: Holding
    ) -> ExportMetricsServiceResponse:
        pacer = _Pacer()
        pieces, points = await self._split(body, content_type, holding, pacer)
        wait = self.policy.limiter.take(principal.name, points, self.clock())
        if wait > 0:
            rate = self.policy.limiter.rate
            raise RateLimited(
                f"{principal.name} is over --max-push-rate ({rate:g} datapoints/s); retry in {wait:.1f}s", wait
            )
        refused: Counter[str] = Counter()
        reader = self.labels.reader()
        for piece in pieces:
            request = read_protobuf(piece)
            refused += confine(request, principal.namespace)
            decoded = screen(
                decode_export_request(request, reader, self.point_limits), self.policy.limits, principal.namespace
            )
            store_refused = self.store.append(decoded.samples, self.clock())
            reader.keep(() if store_refused else decoded.samples)  # what the store refused is not cached either
            refused += decoded.refused + store_refused
            stored = sum(1 for s in decoded.samples if not s.no_value) - sum(store_refused.values())
            self.metrics.accepted.labels(transport).inc(stored)
            await pacer.step()
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

    async def _split(self, body: bytes, content_type: str, holding: Holding, pacer: _Pacer) -> tuple[list[bytes], int]:
        """The request in pieces, each checked to parse, and its datapoints; refused whole over the limit."""
        steps = json_pieces(body) if content_type == JSON else protobuf_pieces(body)
        pieces: list[bytes] = []
        points = 0
        limit = self.policy.max_datapoints
        for piece in steps:
            if piece is not None:
                if piece is not body:
                    holding.grow(len(piece))
                points += count_datapoints(read_protobuf(piece))
                if points > limit:
                    raise LimitExceeded(f"request has over {limit} datapoints; --max-datapoints-per-request is {limit}")
                pieces.append(piece)
            await pacer.step()
        return pieces, points

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
                with self.ingest.inflight.hold() as holding:
                    holding.grow(len(request))  # grpc has inflated it, within --max-request-bytes
                    return await self.ingest(request, PROTOBUF, "grpc", principal, holding)
            except ScalerError as exc:
                self.ingest.failed("grpc", exc)
                await context.abort(grpc.StatusCode[exc.grpc_code], str(exc), trailing_metadata=_grpc_details(exc))
                raise  # abort raises; this line only satisfies the type checker


def rich_status(exc: ScalerError) -> status_pb2.Status:
    """The google.rpc.Status for an error, with a RetryInfo when the sender should retry later."""
    status = status_pb2.Status(code=grpc_code_number(exc), message=str(exc))
    if isinstance(exc, RateLimited):
        status.details.add().Pack(_retry_info(exc.retry_after))
    return status


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(math.ceil(_retry_seconds(seconds) * 1e9))
    return info


def _retry_seconds(seconds: float) -> float:
    return min(max(seconds, 0.001), 3600.0) if math.isfinite(seconds) else 3600.0


def _grpc_details(exc: ScalerError) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(exc, RateLimited):
        return ()
    info = _retry_info(exc.retry_after).SerializeToString()
    return ((_STATUS_DETAILS_KEY, rich_status(exc).SerializeToString()), (_RETRY_INFO_KEY, info))


def add_otlp_grpc(server: grpc.aio.Server, ingest: Ingest) -> None:
    """Export takes the raw bytes and decodes them as HTTP does: grpc answers UNKNOWN when its own decoding fails."""
    export = grpc.unary_unary_rpc_method_handler(
        OtlpGrpcService(ingest).Export, response_serializer=ExportMetricsServiceResponse.SerializeToString
    )
    service = ExportMetricsServiceRequest.DESCRIPTOR.file.services_by_name["MetricsService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": export}),))


def otlp_http_app(ingest: Ingest) -> web.Application:
    # Bodies are inflated here, a step at a time against the in-flight budget, not by aiohttp.
    app = web.Application(client_max_size=ingest.policy.max_request_bytes, handler_args={"auto_decompress": False})
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
            with ingest.inflight.hold() as holding:
                body = await _read_body(request, ingest.policy.max_request_bytes, holding)
                reply = await ingest(body, content_type, "http", principal, holding)
        except ScalerError as exc:
            ingest.failed("http", exc)
            response = _encode(rich_status(exc), content_type, exc.http_status)
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(math.ceil(_retry_seconds(exc.retry_after)))
            if request.content.exception() is not None or not request.content.at_eof():
                response.force_close()  # the body is broken or unread: this connection is done
            return response
        finally:
            ingest.metrics.rpc_duration.labels("otlp.http").observe(time.perf_counter() - started)
        return _encode(reply, content_type, 200)

    return handle


async def _read_body(request: web.Request, limit: int, holding: Holding) -> bytes:
    """The body, inflated a step at a time: a bomb stops at the size limit or the in-flight budget."""
    too_large = f"request body is over --max-request-bytes ({limit} bytes, after decompression)"
    inflater = _Inflater.for_encoding(request.headers.get("Content-Encoding", ""))
    if inflater is None and request.content_length is not None and request.content_length > limit:
        raise LimitExceeded(too_large)
    body = bytearray()
    received = 0
    try:
        async for chunk in request.content.iter_any():
            received += len(chunk)
            if received > limit:
                raise LimitExceeded(too_large)
            for part in inflater.feed(chunk) if inflater is not None else (chunk,):
                if len(body) + len(part) > limit:
                    raise LimitExceeded(too_large)
                holding.grow(len(part))
                body += part
                await asyncio.sleep(0)  # a small chunk inflates to many steps: others run between them
    except (web.RequestPayloadError, zlib.error) as exc:  # a broken body stream or corrupt compressed data
        raise DecodeError(f"cannot read the request body: {exc}") from None
    if inflater is not None and received and not inflater.complete:
        raise DecodeError("cannot read the request body: the compressed data is truncated")
    return bytes(body)


class _Inflater:
    """gzip (several members allowed) or deflate (zlib-wrapped, or raw as some clients send it),
    inflated at most _INFLATE_STEP bytes at a time so that each step is held before the next exists."""

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self._zlib: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None

    @classmethod
    def for_encoding(cls, encoding: str) -> _Inflater | None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip", "deflate"):
            return cls(gzip=encoding != "deflate")
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none")

    @property
    def complete(self) -> bool:
        return self._zlib is not None and bool(self._zlib.eof)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._zlib is None:  # deflate: the first byte tells zlib's header from a raw stream
                self._zlib = zlib.decompressobj(zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
            elif self._zlib.eof:
                if not self.gzip:
                    raise zlib.error("data after the end of the deflate stream")
                self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next gzip member
            part: bytes = self._zlib.decompress(data, _INFLATE_STEP)
            data = self._zlib.unconsumed_tail or (self._zlib.unused_data if self._zlib.eof else b"")
            if part:
                yield part


def grpc_code_number(exc: ScalerError) -> int:
    code: int = grpc.StatusCode[exc.grpc_code].value[0]
    return code


def _encode(message: Any, content_type: str, status: int) -> web.Response:
    if content_type == JSON:
        text = json_format.MessageToJson(message, indent=None)
        return web.Response(status=status, text=text, content_type=JSON)
    return web.Response(status=status, body=message.SerializeToString(), content_type=PROTOBUF)
