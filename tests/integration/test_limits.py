"""Hard caps: at --max-series new series are refused through partial success; stored data is intact."""

from __future__ import annotations

from dataclasses import replace

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

from scaler.settings import Settings
from tests.integration.conftest import FAST, Harness
from tests.integration.test_keda_service import KSERVE_METADATA
from tests.integration.test_receivers import otlp_request


@pytest.fixture
def settings() -> Settings:
    return replace(FAST, max_series=2)


async def test_series_cap_refuses_new_series_and_keeps_old_data(harness: Harness) -> None:
    stub = metrics_service_pb2_grpc.MetricsServiceStub(harness.channel_otlp)  # type: ignore[attr-defined]
    first = await stub.Export(otlp_request("a", 1.0, 2.0))
    assert first.partial_success.rejected_data_points == 0
    second = await stub.Export(otlp_request("b", 10.0))
    assert second.partial_success.rejected_data_points == 1
    assert "series_limit" in second.partial_success.error_message
    again = await stub.Export(otlp_request("a", 4.0, 5.0))
    assert again.partial_success.rejected_data_points == 0
    assert await harness.keda.value(harness.keda.ref(KSERVE_METADATA)) == 9.0
