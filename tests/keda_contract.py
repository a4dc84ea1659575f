"""KEDA's own externalscaler.proto, compiled at test time into a private descriptor pool.

Tests talk to our server through message classes built from KEDA's file, not ours, so a drift in our
proto shows up as a failing call. A private pool keeps KEDA's `externalscaler.*` symbols from
colliding with our generated ones in the default pool.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(os.environ.get("KEDA_SCHEMAS_DIR", ROOT.parent / "shared" / "vendor-schemas" / "keda"))
KEDA_PROTO = SCHEMAS / "externalscaler.proto"


def compile_descriptor_set(proto: Path) -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["protoc", f"-I{proto.parent}", f"--descriptor_set_out={out}", "--include_imports", proto.name]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@cache
def keda_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file_proto in compile_descriptor_set(KEDA_PROTO).file:
        pool.Add(file_proto)
    return pool


def message(name: str) -> Any:
    return message_factory.GetMessageClass(keda_pool().FindMessageTypeByName(f"externalscaler.{name}"))


class KedaClient:
    """What KEDA's scaler_handler does over the wire, with KEDA's message definitions."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        service = keda_pool().FindServiceByName("externalscaler.ExternalScaler")
        self.calls: dict[str, Any] = {}
        for method in service.methods:
            make = channel.unary_stream if method.server_streaming else channel.unary_unary
            self.calls[method.name] = make(
                f"/externalscaler.ExternalScaler/{method.name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
            )

    @staticmethod
    def ref(metadata: dict[str, str], name: str = "isvc-predictor", namespace: str = "ns") -> Any:
        return message("ScaledObjectRef")(name=name, namespace=namespace, scalerMetadata=metadata)

    async def get_metric_spec(self, ref: Any) -> Any:
        return await self.calls["GetMetricSpec"](ref)

    async def get_metrics(self, ref: Any, metric_name: str) -> Any:
        request = message("GetMetricsRequest")(scaledObjectRef=ref, metricName=metric_name)
        return await self.calls["GetMetrics"](request)

    async def is_active(self, ref: Any) -> bool:
        return bool((await self.calls["IsActive"](ref)).result)

    def stream_is_active(self, ref: Any) -> Any:
        return self.calls["StreamIsActive"](ref)

    async def value(self, ref: Any) -> float:
        """GetMetricSpec then GetMetrics, reading the value as KEDA does (float if > 0, else the int)."""
        spec = (await self.get_metric_spec(ref)).metricSpecs[0]
        answer = (await self.get_metrics(ref, spec.metricName)).metricValues[0]
        return float(answer.metricValueFloat) if answer.metricValueFloat > 0 else float(answer.metricValue)
