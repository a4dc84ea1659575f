"""After a restart, no data reads as "warming up" (an error), never as zero load."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from scaler.settings import Settings
from tests.integration.conftest import FAST, Harness, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA


@pytest.fixture
def settings() -> Settings:
    return replace(FAST, warmup=60.0)


async def test_no_data_during_warmup_is_unavailable_then_data_answers(harness: Harness) -> None:
    ref = harness.keda.ref(KSERVE_METADATA)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.keda.value(ref)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "warming up" in (info.value.details() or "")
    await harness.push([kserve_pod("p1", 6)])
    assert await harness.keda.value(ref) == 6.0
