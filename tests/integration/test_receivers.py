"""OTLP in: gRPC and HTTP (protobuf and JSON, with and without gzip), partial success, errors."""

from __future__ import annotations

import gzip
import math

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.integration.conftest import Harness, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA


def otlp_request(pod: str, *values: float) -> ExportMetricsServiceRequest:
    attrs = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in (("namespace", "ns"), ("pod", pod))]
    attrs.append(KeyValue(key="deployment", value=AnyValue(string_value="isvc-predictor")))
    points = [NumberDataPoint(attributes=attrs + [_engine(i)], as_double=v) for i, v in enumerate(values)]
    metric = Metric(name="vllm:num_requests_running", gauge=Gauge(data_points=points))
    resource = Resource(attributes=[KeyValue(key="k8s.pod.name", value=AnyValue(string_value=pod))])
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=[metric])])]
    )


def _engine(index: int) -> KeyValue:
    return KeyValue(key="engine", value=AnyValue(string_value=str(index)))


async def test_http_exporter_protobuf_with_and_without_gzip(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 2)], protocol="http")
    await harness.push([kserve_pod("p2", 5)], protocol="http", gzip=True)
    assert await harness.keda.value(harness.keda.ref(KSERVE_METADATA)) == 7.0


@pytest.mark.parametrize("compress", [False, True])
async def test_http_json_payload(harness: Harness, compress: bool) -> None:
    body = json_format.MessageToJson(otlp_request("json-pod", 1.5, 2.5)).encode()
    headers = {"Content-Type": "application/json"}
    if compress:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    async with (
        aiohttp.ClientSession() as session,
        session.post(harness.otlp_http + "/v1/metrics", data=body, headers=headers) as reply,
    ):
        assert reply.status == 200
        assert reply.content_type == "application/json"
        assert (
            json_format.Parse(await reply.text(), ExportMetricsServiceResponse()).partial_success.rejected_data_points
            == 0
        )
    assert await harness.keda.value(harness.keda.ref(KSERVE_METADATA)) == 4.0


async def test_http_errors_use_otlp_status_codes(harness: Harness) -> None:
    url = harness.otlp_http + "/v1/metrics"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"x", headers={"Content-Type": "text/plain"}) as reply:
            assert reply.status == 415
        async with session.post(url, data=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"}) as reply:
            assert reply.status == 400
            status = status_pb2.Status.FromString(await reply.read())
            assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "protobuf" in status.message
        async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as reply:
            assert reply.status == 400
            assert "JSON" in (await reply.json())["message"]
        async with session.get(url) as reply:
            assert reply.status == 405


async def test_refused_points_are_reported_through_partial_success(harness: Harness) -> None:
    stub = metrics_service_pb2_grpc.MetricsServiceStub(harness.channel_otlp)  # type: ignore[attr-defined]
    reply = await stub.Export(otlp_request("nan-pod", 3.0, math.nan, math.inf), compression=grpc.Compression.Gzip)
    assert reply.partial_success.rejected_data_points == 2
    assert "2 non_finite" in reply.partial_success.error_message
    value = harness.scaler.registry.get_sample_value(
        "keda_llm_scaler_datapoints_refused_total", {"reason": "non_finite"}
    )
    assert value == 2.0
    assert await harness.keda.value(harness.keda.ref(KSERVE_METADATA)) == 3.0
