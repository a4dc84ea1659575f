"""The KEDA side of the wire, for tests: a client that calls our server as KEDA's scaler_handler does.

It is built from our proto (the generated stubs in scaler/externalscaler), with plain channel calls so
that every test goes over the wire. That our proto is KEDA's contract is proved once, against KEDA's own
externalscaler.proto, by tests/unit/test_proto_contract.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from scaler.externalscaler import externalscaler_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
OUR_PROTO = ROOT / "proto" / "externalscaler.proto"
SERVICE = pb.DESCRIPTOR.services_by_name["ExternalScaler"]


def compile_descriptor_set(proto: Path) -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["protoc", f"-I{proto.parent}", f"--descriptor_set_out={out}", "--include_imports", proto.name]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def message(name: str) -> Any:
    return getattr(pb, name)


class KedaClient:
    """What KEDA's scaler_handler does over the wire: the five ExternalScaler methods, KEDA's reading of values."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.calls: dict[str, Any] = {}
        for method in SERVICE.methods:
            make = channel.unary_stream if method.server_streaming else channel.unary_unary
            self.calls[method.name] = make(
                f"/{SERVICE.full_name}/{method.name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=message(method.output_type.name).FromString,
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
