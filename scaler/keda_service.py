"""KEDA's ExternalScaler over gRPC: translates ScaledObjectRefs to trigger evaluations and back.

It computes nothing itself. Errors map to gRPC codes in one place (`_answer`): stale or missing data
becomes UNAVAILABLE so that KEDA's fallback acts, bad metadata INVALID_ARGUMENT naming the key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError

from scaler.changes import Changes
from scaler.errors import InvalidInput, InvalidTrigger, ScalerError
from scaler.externalscaler import externalscaler_pb2 as pb
from scaler.externalscaler import externalscaler_pb2_grpc as pb_grpc
from scaler.listeners import add_methods
from scaler.selfmetrics import SelfMetrics
from scaler.streams import Basis, StreamHub
from scaler.triggers import Evaluation, Prepared, Trigger, Triggers, metric_name_matches, parse_trigger

logger = logging.getLogger(__name__)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
_INT64_MAX = 2**63 - 1
STREAM_MIN_INTERVAL = 0.1  # re-evaluate a stream at most this often, however often data arrives
STREAM_IDLE_RECHECK = 1.0  # and at least this often, for activity that comes from time passing
STREAM_RESEND = 5.0  # while active, `true` again this often (see KedaService.StreamIsActive)


def as_int64(value: float) -> int:
    """KEDA reads the int field when the float is not > 0; round up as kedify does, within int64."""
    return max(-_INT64_MAX - 1, min(_INT64_MAX, math.ceil(value)))


class KedaService(pb_grpc.ExternalScalerServicer):
    def __init__(
        self,
        triggers: Triggers,
        metrics: SelfMetrics,
        clock: Callable[[], float],
        changes: Changes,
        stopping: asyncio.Event,
        stream_resend: float = STREAM_RESEND,
    ) -> None:
        self.triggers = triggers
        self.metrics = metrics
        self.clock = clock
        self.stopping = stopping
        self.streams: StreamHub[Prepared] = StreamHub(  # refuses a stream_resend that is not positive
            self._check_stream,
            changes,
            stopping,
            stream_resend,
            STREAM_MIN_INTERVAL,
            STREAM_IDLE_RECHECK,
            clock=clock,
        )

    def _check_stream(self, prepared: Prepared) -> tuple[bool, Basis | None]:
        """Whether an open stream's trigger is active, and what says so (a query trigger's view)."""
        evaluation = self.triggers.evaluate_prepared(prepared, self.clock())
        return evaluation.active, evaluation.result.basis if evaluation.result is not None else None

    async def _answer(self, method: str, context: Context, compute: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return compute()
        except ScalerError as exc:
            self.metrics.rpc_errors.labels(method, exc.grpc_code).inc()
            logger.debug("%s failed: %s", method, exc)
            await context.abort(grpc.StatusCode[exc.grpc_code], str(exc))
            raise  # abort raises; this line only satisfies the type checker
        finally:
            self.metrics.rpc_duration.labels(method).observe(time.perf_counter() - started)

    def _evaluate(self, ref: pb.ScaledObjectRef) -> Evaluation:
        return self.triggers.evaluate(ref.namespace, ref.name, ref.scalerMetadata, self.clock())

    async def IsActive(self, request: pb.ScaledObjectRef, context: Context) -> pb.IsActiveResponse:  # noqa: N802
        evaluation = await self._answer("IsActive", context, lambda: self._evaluate(request))
        return pb.IsActiveResponse(result=evaluation.active)

    async def GetMetricSpec(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: Context
    ) -> pb.GetMetricSpecResponse:
        spec = await self._answer("GetMetricSpec", context, lambda: self._spec_of(request))
        metric = pb.MetricSpec(
            metricName=spec.metric_name, targetSize=as_int64(spec.target), targetSizeFloat=spec.target
        )
        return pb.GetMetricSpecResponse(metricSpecs=[metric])

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Context) -> pb.GetMetricsResponse:  # noqa: N802
        def compute() -> pb.GetMetricsResponse:
            ref = request.scaledObjectRef
            spec = self._spec_of(ref)
            if request.metricName and not metric_name_matches(request.metricName, spec.metric_name):
                raise InvalidTrigger(
                    f"metricName {request.metricName!r} is not served by this trigger, whose metric is "
                    f"{spec.metric_name!r}"
                )
            value = self._evaluate(ref).value
            name = request.metricName or spec.metric_name
            return pb.GetMetricsResponse(
                metricValues=[pb.MetricValue(metricName=name, metricValue=as_int64(value), metricValueFloat=value)]
            )

        return await self._answer("GetMetrics", context, compute)

    async def StreamIsActive(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.IsActiveResponse]:
        """Send `true` at once on each transition to active (opening while active is one), and again
        every `stream_resend` while active; nothing while inactive.

        KEDA ignores `false` (its polling handles deactivation), and it drops a `true` that arrives
        before the ScaledObject's status has its external metric names: kedacore/keda
        pkg/scaling/scale_handler.go, "Could not resolve metric name for push scaler, will retry on
        next activation". So one `true` per activation can be lost for good; the resend recovers it.
        kedify's otel-add-on (scaler/handlers.go) sends IsActive's answer every 500 ms instead.
        On shutdown the stream ends with OK, which resets KEDA's reconnect backoff.
        """
        prepared = await self._answer("StreamIsActive", context, lambda: self._prepare(request))
        watch = self.streams.watch(prepared)  # checked once here; then the hub re-checks it (scaler.streams)
        try:
            while True:
                if watch.error is not None:
                    await self._answer("StreamIsActive", context, functools.partial(_raise, watch.error))
                message = watch.take()
                if message is not None:
                    self.metrics.stream_messages.labels(message).inc()
                    yield pb.IsActiveResponse(result=True)
                if self.stopping.is_set():
                    return
                await self.streams.wait(watch)
        finally:
            self.streams.unwatch(watch)

    async def StreamMetricSpec(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        """Our targets never change while metadata stays the same; KEDA falls back to GetMetricSpec."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "StreamMetricSpec is not implemented; use GetMetricSpec")
        yield pb.GetMetricSpecResponse()  # pragma: no cover - abort raises

    def _prepare(self, ref: pb.ScaledObjectRef) -> Prepared:
        """Parsed once for the stream's life: a stream's request, its metadata with it, is fixed when it opens."""
        return self.triggers.prepare(ref.namespace, ref.name, ref.scalerMetadata)

    def _spec_of(self, ref: pb.ScaledObjectRef) -> Trigger:
        return parse_trigger(ref.scalerMetadata, ref.namespace, self.triggers.isolate)


def _raise(error: Exception) -> NoReturn:
    raise error


class _Undecodable:
    """Stands in for a request that did not decode; reading it raises InvalidInput, which `_answer` maps.

    Left to grpc, a failed decoding answers UNKNOWN.
    """

    def __init__(self, error: str) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        raise InvalidInput(self._error)


def _lenient(message: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            return _Undecodable(f"cannot decode the {message.DESCRIPTOR.name}: {exc}")

    return parse


def add_keda_service(server: grpc.aio.Server, service: KedaService) -> None:
    unary, stream = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    ref, metrics_request = _lenient(pb.ScaledObjectRef), _lenient(pb.GetMetricsRequest)
    handlers = {
        "IsActive": unary(service.IsActive, ref, pb.IsActiveResponse.SerializeToString),
        "StreamIsActive": stream(service.StreamIsActive, ref, pb.IsActiveResponse.SerializeToString),
        "GetMetricSpec": unary(service.GetMetricSpec, ref, pb.GetMetricSpecResponse.SerializeToString),
        "GetMetrics": unary(service.GetMetrics, metrics_request, pb.GetMetricsResponse.SerializeToString),
        "StreamMetricSpec": stream(service.StreamMetricSpec, ref, pb.GetMetricSpecResponse.SerializeToString),
    }
    name = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
    add_methods(server, name, handlers)
