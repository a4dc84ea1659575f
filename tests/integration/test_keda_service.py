"""The KEDA side, end to end: real OTel exporters push, a KEDA client asks over the wire."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.integration.conftest import Harness, eventually, kserve_pod, values_until_error

KSERVE_METADATA = {
    "scalerAddress": "keda-otel-scaler.keda.svc:4318",
    "metricQuery": 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})',
    "targetValue": "4.000000",
}


async def _code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


async def test_kserve_generated_trigger_sums_its_own_pods(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 2), kserve_pod("p2", 3), kserve_pod("p3", 7)], gzip=True)
    await harness.push([kserve_pod("other", 50, deployment="another-predictor")])
    ref = harness.keda.ref(KSERVE_METADATA)

    spec = (await harness.keda.get_metric_spec(ref)).metricSpecs
    assert len(spec) == 1
    assert spec[0].targetSizeFloat == 4.0 and spec[0].targetSize == 4
    answer = (await harness.keda.get_metrics(ref, spec[0].metricName)).metricValues[0]
    assert answer.metricName == spec[0].metricName
    assert answer.metricValueFloat == 12.0 and answer.metricValue == 12
    assert await harness.keda.is_active(ref) is True


async def test_metric_names_match_lowercased_or_prefixed_only(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 1)])
    ref = harness.keda.ref(KSERVE_METADATA)
    name = (await harness.keda.get_metric_spec(ref)).metricSpecs[0].metricName
    assert name == name.lower()
    for asked in (name.upper(), f"s0-{name}", f"S3-{name.upper()}"):
        answer = await harness.keda.get_metrics(ref, asked)
        assert answer.metricValues[0].metricName == asked
        assert answer.metricValues[0].metricValueFloat == 1.0
    assert await _code_of(harness.keda.get_metrics(ref, "something-else")) == grpc.StatusCode.INVALID_ARGUMENT


async def test_two_triggers_of_one_scaledobject_get_distinct_names(harness: Harness) -> None:
    waiting = dict(KSERVE_METADATA, metricQuery="sum(vllm:num_requests_waiting)")
    names = {
        (await harness.keda.get_metric_spec(harness.keda.ref(meta))).metricSpecs[0].metricName
        for meta in (KSERVE_METADATA, waiting)
    }
    assert len(names) == 2


async def test_bad_metadata_is_invalid_argument_naming_the_key(harness: Harness) -> None:
    for metadata, key in (
        (dict(KSERVE_METADATA, metricQeury="x"), "metricQeury"),
        (dict(KSERVE_METADATA, operationOverTime="median"), "operationOverTime"),
        (dict(KSERVE_METADATA, metricQuery="sum(x{a=})"), "metricQuery"),
        (dict(KSERVE_METADATA, targetValue="four"), "targetValue"),
    ):
        ref = harness.keda.ref(metadata)
        for call in (harness.keda.get_metric_spec(ref), harness.keda.calls["IsActive"](ref)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert key in (info.value.details() or "")


async def test_selector_that_never_matched_answers_zero_inactive(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 5)])
    ref = harness.keda.ref(dict(KSERVE_METADATA, metricQuery='sum(vllm:num_requests_running{namespace="empty"})'))
    assert await harness.keda.value(ref) == 0.0
    assert await harness.keda.is_active(ref) is False


async def test_stale_data_is_unavailable_never_zero(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 3)])
    ref = harness.keda.ref(KSERVE_METADATA)
    # pushes stop (the collector is gone): the answers hold the last value until the first error, never 0
    values, error = await values_until_error(harness.keda, ref)
    assert values and set(values) == {3.0}
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    assert "vllm:num_requests_running" in details and "ago" in details
    assert await _code_of(harness.keda.calls["IsActive"](ref)) == grpc.StatusCode.UNAVAILABLE
    await harness.push([kserve_pod("p1", 4)])
    assert await harness.keda.value(ref) == 4.0


async def test_stream_is_active_sends_true_on_open_and_on_each_activation(harness: Harness) -> None:
    ref = harness.keda.ref(KSERVE_METADATA)
    await harness.push([kserve_pod("p1", 0)])
    stream = harness.keda.stream_is_active(ref)
    read = asyncio.ensure_future(stream.read())
    # The stream checks the idle load, then again once a push wakes it. It checks again only after what
    # the check before produced was sent, so a message sent while inactive would be here by now.
    checked = await harness.evaluated_after(-math.inf)
    await harness.push([kserve_pod("p2", 0)])  # a series joins: what the stream reads changed, still idle
    await harness.evaluated_after(checked)
    assert not read.done(), "nothing is sent while inactive"
    await harness.push([kserve_pod("p1", 3)])
    first = await asyncio.wait_for(read, 3.0)
    assert first.result is True

    await harness.push([kserve_pod("p1", 0)])

    async def inactive() -> bool:
        return not await harness.keda.is_active(ref)

    await eventually(inactive)
    hub = harness.scaler.streams
    assert hub is not None
    await eventually(lambda: not any(watch.was_active for watch in hub.watches()))  # the stream saw the drop
    await harness.push([kserve_pod("p1", 2)])
    second = await asyncio.wait_for(stream.read(), 3.0)  # the reactivation's `true` (or a resend: also true)
    assert second.result is True
    stream.cancel()

    await harness.push([kserve_pod("p1", 1)])
    opened_active = harness.keda.stream_is_active(ref)
    assert (await asyncio.wait_for(opened_active.read(), 3.0)).result is True
    opened_active.cancel()


async def test_stream_ends_ok_on_shutdown(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 1)])
    stream = harness.keda.stream_is_active(harness.keda.ref(KSERVE_METADATA))
    assert (await asyncio.wait_for(stream.read(), 3.0)).result is True
    await harness.scaler.stop()
    later = []
    while (message := await asyncio.wait_for(stream.read(), 3.0)) is not grpc.aio.EOF:
        later.append(message.result)  # a resend while still active, if it came first: `true` too
    assert all(later)
    assert await stream.code() == grpc.StatusCode.OK


async def test_stream_metric_spec_is_unimplemented(harness: Harness) -> None:
    stream = harness.keda.calls["StreamMetricSpec"](harness.keda.ref(KSERVE_METADATA))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.read()
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_and_reflection_on_the_scaler_port(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    for service in ("", "externalscaler.ExternalScaler"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    listed = [s.name async for r in responses for s in r.list_services_response.service]
    assert "externalscaler.ExternalScaler" in listed and "grpc.health.v1.Health" in listed
