"""OTLP receivers: the gRPC MetricsService and HTTP `POST /v1/metrics`, two thin callers of one ingest.

Both authenticate the sender (bearer tokens, when configured), hold the request's bytes against the
in-flight budget, apply the request limits, decode with scaler.otlp, append to the store at the
receive time, report refused points through OTLP partial success, and wake StreamIsActive waiters.

Ingest shares the event loop with every other call, so its work (inflating, parsing, decoding,
storing) goes through one lane: one request at a time, SLICE_SECONDS of work, then GAP_SECONDS in
which the loop serves everything else. A gRPC call needs a dozen loop turns, each waiting for grpc's
poller thread, so one slice per turn would still make it wait a dozen slices: the gap lets it finish
between two slices. Under sustained ingest this leaves a third of the loop to others (CPU per
datapoint is unchanged; a request that works less than a slice never pauses). The lane is never
held across a read from the network.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
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
from scaler.listeners import add_methods
from scaler.otlp import (
    LABEL_CACHE_BYTES,
    LABEL_CACHE_BYTES_PER_SERIES,
    MAX_BUCKETS,
    Decoded,
    LabelCache,
    LabelReader,
    PointLimits,
    decode_steps,
    read_protobuf,
)
from scaler.otlp_pieces import PIECE_BYTES, json_pieces, protobuf_pieces
from scaler.ratelimit import PushRateLimiter, sender_address
from scaler.selfmetrics import SelfMetrics
from scaler.store import Store
from scaler.tokens import Principal, TokenFile, authenticate

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SLICE_SECONDS = 0.002  # ingest work between two yields to the loop (parsing a piece may add about 3 ms)
GAP_SECONDS = 0.001  # then the loop is left to everything else (epoll's granularity is 1 ms)
APPEND_SAMPLES = 1024  # samples stored between two checks of the slice
SMALL_REQUEST_BYTES = 1024 * 1024  # a request this size may use the in-flight reserve (see InflightBytes)
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
    limit is refused at once (Overloaded) rather than queued, so a flood of bombs costs its size.

    Small requests, whose size is known before they are read (gRPC, or an uncompressed HTTP body of
    at most SMALL_REQUEST_BYTES), may also use a reserve of an eighth of the limit: a flood of large
    or compressed bodies then fills the budget, but never refuses the small pushes of everyone else.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserve = limit // 8
        self.held = 0
        self.peak = 0

    @contextmanager
    def hold(self, small: bool = False) -> Iterator[Holding]:
        holding = Holding(self, small)
        try:
            yield holding
        finally:
            self.held -= holding.size

    def _grow(self, holding: Holding, size: int) -> None:
        if self.held + size > self.limit + (self.reserve if holding.small else 0):
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

    __slots__ = ("budget", "size", "small")

    def __init__(self, budget: InflightBytes, small: bool = False) -> None:
        self.budget = budget
        self.size = 0
        self.small = small

    def grow(self, size: int) -> None:
        self.budget._grow(self, size)


class Lane:
    """Ingest work, one request at a time; `turn` holds it, and `Turn.step` lets others in once a slice is spent."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()  # FIFO: a request that yields queues behind those waiting

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[Turn]:
        turn = Turn(self._lock)
        await turn.enter()
        try:
            yield turn
        finally:
            turn.leave()


class Turn:
    """One request's hold on the lane."""

    __slots__ = ("_lock", "_held", "_since")

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock
        self._held = False
        self._since = 0.0

    async def enter(self) -> None:
        await self._lock.acquire()
        self._held = True
        self._since = time.perf_counter()

    def leave(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    async def step(self) -> None:
        """Once this request has worked SLICE_SECONDS: leave the loop to others for GAP_SECONDS, lane held,
        then queue behind the requests waiting for the lane."""
        if time.perf_counter() - self._since >= SLICE_SECONDS:
            await asyncio.sleep(GAP_SECONDS)
            self.leave()
            await asyncio.sleep(0)
            await self.enter()


_ACCEPTED = ExportMetricsServiceResponse()  # every point stored; never mutated


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
        self.labels = LabelCache(max(LABEL_CACHE_BYTES, LABEL_CACHE_BYTES_PER_SERIES * store.max_series))
        self.inflight = InflightBytes(policy.max_inflight_bytes)
        limits = policy.limits
        self.point_limits = PointLimits(policy.max_buckets, limits.max_labels, limits, limits.max_label_length)
        self.lane = Lane()
        self._accepted = {transport: metrics.accepted.labels(transport) for transport in ("grpc", "http")}

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
        async with self.lane.turn() as turn:
            refused = await self._ingest(body, content_type, transport, principal, holding, turn)
        self.changes.notify()
        if not refused:
            return _ACCEPTED
        for reason, count in refused.items():
            self.metrics.refused.labels(reason).inc(count)
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(refused.items()))
        partial = ExportMetricsPartialSuccess(
            rejected_data_points=sum(refused.values()), error_message=f"refused datapoints: {detail}"
        )
        return ExportMetricsServiceResponse(partial_success=partial)

    async def _ingest(
        self, body: bytes, content_type: str, transport: str, principal: Principal, holding: Holding, turn: Turn
    ) -> Counter[str]:
        """A request of one piece is parsed once and decoded (and counted) before anything is stored. A
        larger one is parsed twice: piece by piece to count it, so that over a limit it is refused whole
        while only its bytes are held (parsed pieces would be several times larger), then again to store
        each piece as it is decoded, a few hundred samples at a time: samples that live for a whole piece
        outlive the young garbage collections and make the full ones come often."""
        refused: Counter[str] = Counter()
        reader = self.labels.reader()
        if content_type != JSON and len(body) <= PIECE_BYTES:
            self._admit(principal, 0)  # a sender already in debt is refused before its request is decoded
            decoded = await self._decode(read_protobuf(body), principal, reader, turn)
            self._admit(principal, decoded.datapoints)
            return await self._store(decoded, reader, transport, turn)
        pieces, points = await self._split(body, content_type, holding, turn)
        self._admit(principal, points)
        for piece in pieces:
            async for decoded in self._decode_runs(read_protobuf(piece), principal, reader, turn):
                refused += await self._store(decoded, reader, transport, turn)
        return refused

    def _admit(self, principal: Principal, points: int) -> None:
        limit = self.policy.max_datapoints
        if points > limit:
            raise LimitExceeded(f"request has over {limit} datapoints; --max-datapoints-per-request is {limit}")
        if self.policy.limiter.rate <= 0:
            return
        wait = self.policy.limiter.take(principal.name, points, self.clock())
        if wait > 0:
            rate = self.policy.limiter.rate
            raise RateLimited(
                f"{principal.name} is over --max-push-rate ({rate:g} datapoints/s); retry in {wait:.1f}s", wait
            )

    async def _decode(
        self, request: ExportMetricsServiceRequest, principal: Principal, reader: LabelReader, turn: Turn
    ) -> Decoded:
        decoded = Decoded()
        async for run in self._decode_runs(request, principal, reader, turn, whole=True):
            decoded = run
        return decoded

    async def _decode_runs(
        self,
        request: ExportMetricsServiceRequest,
        principal: Principal,
        reader: LabelReader,
        turn: Turn,
        whole: bool = False,
    ) -> AsyncIterator[Decoded]:
        """The request decoded: in one Decoded if `whole`, else in runs of about APPEND_SAMPLES samples."""
        namespace = principal.namespace
        counted = count_datapoints(request) if namespace is not None else 0  # before confine drops resources
        confined = confine(request, namespace)
        out = Decoded()
        for _ in decode_steps(request, reader, self.point_limits, out):
            if not whole and len(out.samples) >= APPEND_SAMPLES:
                # the resource (pod) being decoded may go on in the next step: its samples wait, so a
                # run holds whole pods (scaler.series.Timeline), unless one alone reaches APPEND_SAMPLES
                starts = out.resource_starts
                start = starts[-1] if starts else 0
                cut = start if len(out.samples) - start < APPEND_SAMPLES else len(out.samples)
                if cut:
                    tail = out.samples[cut:]
                    del out.samples[cut:]
                    ended = sum(1 for sample in tail if sample.no_value)
                    out.ended -= ended
                    starts[:] = [s for s in starts if s < cut]
                    yield self._screened(out, namespace, copy=True)
                    out.samples[:] = tail  # decode_steps appends to this list
                    out.refused.clear()
                    out.ended = ended
                    starts[:] = [0] if tail else []
            await turn.step()
        out.refused += confined
        if namespace is not None:
            out.datapoints = counted
        yield self._screened(out, namespace, copy=False)

    def _screened(self, decoded: Decoded, namespace: str | None, copy: bool) -> Decoded:
        """What was decoded so far (a copy, if asked), less what a token bound to `namespace` may not write."""
        if namespace is not None:
            return screen(decoded, self.policy.limits, namespace)
        if not copy:
            return decoded
        copied = Counter(decoded.refused)
        return Decoded(list(decoded.samples), copied, decoded.datapoints, decoded.ended, list(decoded.resource_starts))

    async def _store(self, decoded: Decoded, reader: LabelReader, transport: str, turn: Turn) -> Counter[str]:
        """Append at the receive time, a slice at a time; what the store refused is not cached either."""
        samples, now = decoded.samples, self.clock()
        store_refused: Counter[str] = Counter()
        for chunk in decoded.runs(APPEND_SAMPLES):
            store_refused += self.store.append(chunk, now)
            await turn.step()
        reader.keep(() if store_refused else samples)
        self._accepted[transport].inc(len(samples) - decoded.ended - sum(store_refused.values()))
        return decoded.refused + store_refused

    async def _split(self, body: bytes, content_type: str, holding: Holding, turn: Turn) -> tuple[list[bytes], int]:
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
            await turn.step()
        return pieces, points

    def failed(self, transport: str, exc: ScalerError) -> None:
        self.metrics.requests_failed.labels(transport, type(exc).__name__).inc()
        logger.debug("OTLP %s push refused: %s", transport, exc)


class OtlpGrpcService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self._duration = ingest.metrics.rpc_duration.labels("otlp.Export")  # looked up once, not per call

    async def Export(  # noqa: N802 - the gRPC method name
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ExportMetricsServiceResponse:
        with self._duration.time():
            try:
                authorization = dict(context.invocation_metadata() or ()).get("authorization")
                principal = self.ingest.authenticate(authorization, context.peer())
                with self.ingest.inflight.hold(small=len(request) <= SMALL_REQUEST_BYTES) as holding:
                    holding.grow(len(request))  # grpc has inflated it, within --max-request-bytes
                    return await self.ingest(request, PROTOBUF, "grpc", principal, holding)
            except ScalerError as exc:
                self.ingest.failed("grpc", exc)
                # The refusal's traceback holds the request's frames, and grpc.aio keeps the exception in a
                # reference cycle: only a full garbage collection would free the body. Freed now, 40
                # refused 16 MB pushes peak at 244 MiB instead of 1,000 (load/bench_hostile.py row 6).
                exc.__traceback__ = None
                request = b""
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
    add_methods(server, service, {"Export": export})


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
            length, encoding = request.content_length, request.headers.get("Content-Encoding", "identity")
            small = length is not None and length <= SMALL_REQUEST_BYTES and encoding.strip().lower() == "identity"
            with ingest.inflight.hold(small) as holding:
                body = await _read_body(request, ingest.policy.max_request_bytes, holding, ingest.lane)
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


async def _read_body(request: web.Request, limit: int, holding: Holding, lane: Lane) -> bytes:
    """The body, inflated a step at a time in the lane: a bomb stops at the size limit or the in-flight budget."""
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
            if inflater is None:
                holding.grow(len(chunk))
                body += chunk
                continue
            async with lane.turn() as turn:  # left before the next read: a slow sender never holds it
                for part in inflater.feed(chunk):
                    if len(body) + len(part) > limit:
                        raise LimitExceeded(too_large)
                    holding.grow(len(part))
                    body += part
                    await turn.step()  # a small chunk inflates to many steps: others run between slices
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
