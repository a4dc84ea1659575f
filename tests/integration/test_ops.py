"""Ops HTTP: self-metrics, probes and the read-only debug views."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.integration.conftest import Harness, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA


async def _get(harness: Harness, path: str, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(harness.url(path), params=params) as reply:
        body = await reply.json() if reply.content_type == "application/json" else await reply.text()
        return reply.status, body


async def test_probes(harness: Harness) -> None:
    assert await _get(harness, "/healthz") == (200, "ok\n")
    assert await _get(harness, "/readyz") == (200, "ready\n")


async def test_self_metrics_describe_ingest_store_rpcs_and_triggers(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 2), kserve_pod("p2", 3)])
    await harness.keda.value(harness.keda.ref(KSERVE_METADATA))
    status, text = await _get(harness, "/metrics")
    assert status == 200
    for name in (
        'keda_llm_scaler_datapoints_accepted_total{transport="grpc"} 2.0',
        "keda_llm_scaler_series 2.0",
        "keda_llm_scaler_pods 2.0",
        "keda_llm_scaler_stale_pods 0.0",
        'keda_llm_scaler_rpc_duration_seconds_count{method="GetMetrics"} 1.0',
        'keda_llm_scaler_trigger_value{metric="vllm-num-requests-running-',
        'namespace="ns",scaledobject="isvc-predictor"} 5.0',
    ):
        assert name in text, name


async def test_debug_series_and_query_explain_values(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 2), kserve_pod("p2", 3)])
    status, series = await _get(harness, "/debug/series", metric="vllm.num_requests_running")
    assert status == 200
    assert series["canonical_name"] == "vllm:num_requests_running"
    assert sorted(s["pod"] for s in series["series"]) == ["ns/p1", "ns/p2"]
    assert all(s["fresh"] for s in series["series"])

    status, answer = await _get(
        harness, "/debug/query", metricQuery='max(vllm:num_requests_running{pod=~"p.*"})', operationOverTime="max"
    )
    assert status == 200
    assert answer["value"] == 3.0 and answer["matched"] == 2
    assert {s["value"] for s in answer["series"]} == {2.0, 3.0}

    status, error = await _get(harness, "/debug/query", metricQuery="sum(x{")
    assert status == 400 and "metricQuery" in error["error"]


async def test_debug_scaledobjects_lists_each_trigger_asked_for(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 4)])
    await harness.keda.value(harness.keda.ref(KSERVE_METADATA))
    status, body = await _get(harness, "/debug/scaledobjects")
    assert status == 200
    [trigger] = body["triggers"]
    assert trigger["name"] == "isvc-predictor" and trigger["namespace"] == "ns"
    assert trigger["value"] == 4.0 and trigger["active"] is True and trigger["error"] is None
    assert trigger["series"][0]["pod"] == "ns/p1"
