"""Drop-in cases a KServe user meets, end to end: real OTel exporters push, a KEDA client asks over gRPC."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import grpc
import pytest

from scaler.sim.otlp_push import PodMetrics
from tests.integration.conftest import Harness, kserve_pod
from tests.integration.test_keda_service import KSERVE_METADATA


def pod_without_deployment(pod: str, running: float) -> PodMetrics:
    """A sidecar whose collector could not resolve the pod's Deployment: no `k8s.deployment.name`."""
    resource = {"k8s.pod.name": pod, "k8s.namespace.name": "ns"}
    return PodMetrics(resource).gauge("vllm:num_requests_running", running, {"namespace": "ns", "pod": pod})


async def _get_json(url: str) -> tuple[int, dict[str, object]]:
    def get() -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(get)


async def test_kserve_query_over_pods_without_deployment_is_unavailable_naming_the_label(harness: Harness) -> None:
    await harness.push([pod_without_deployment("p1", 3), pod_without_deployment("p2", 4)])
    ref = harness.keda.ref(KSERVE_METADATA)
    for call in (harness.keda.value(ref), harness.keda.is_active(ref)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "2 fresh series of vllm:num_requests_running lack the label 'deployment'" in (info.value.details() or "")
    query = urllib.parse.quote(KSERVE_METADATA["metricQuery"])
    status, preview = await _get_json(harness.url(f"/debug/query?metricQuery={query}"))
    assert status == 503 and "lack the label 'deployment'" in str(preview["error"])
    status, described = await _get_json(harness.url("/debug/scaledobjects"))
    (trigger,) = described["triggers"]  # type: ignore[misc]
    assert "lack the label 'deployment'" in trigger["error"]


async def test_keda_tls_keys_in_the_metadata_are_accepted_over_the_wire(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 5)])
    metadata = {
        **KSERVE_METADATA,
        "enableTLS": "false",
        "unsafeSsl": "false",
        "caCert": "/path/to/tls/ca.pem",
        "tlsCertFile": "/path/to/tls/cert.pem",
        "tlsClientCert": "/path/to/tls/cert.pem",
        "tlsClientKey": "/path/to/tls/key.pem",
    }
    assert await harness.keda.value(harness.keda.ref(metadata)) == 5.0


async def test_kserve_016_quantity_target(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 5)])
    ref = harness.keda.ref({**KSERVE_METADATA, "targetValue": "500m"})
    spec = (await harness.keda.get_metric_spec(ref)).metricSpecs[0]
    assert spec.targetSizeFloat == 0.5 and spec.targetSize == 1
