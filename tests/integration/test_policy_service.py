"""Policy triggers through the live gRPC service, fed by the real OTel exporter."""

from __future__ import annotations

import asyncio
import sys
import time

import grpc

from scaler.sim.otlp_push import PodMetrics
from tests.integration.conftest import Harness, values_until_error

WINDOWS = {"stableWindow": "3s", "panicWindow": "1s"}


def llmd_pod(pod: str, role: str, **gauges: float) -> PodMetrics:
    deployment = f"llama-{role}"
    resource = {"k8s.pod.name": pod, "k8s.namespace.name": "ns", "k8s.deployment.name": deployment}
    labels = {"model_name": "llama", "engine": "0", "llm-d.ai/role": role}
    metrics = PodMetrics(resource)
    for name, value in gauges.items():
        metrics.gauge(f"vllm:{name}", value, labels)
    return metrics


def pool(role: str, **extra: str) -> dict[str, str]:
    return {
        "scalerAddress": "keda-otel-scaler.keda.svc:4318",
        "policy": "vllm",
        "deployment": f"llama-{role}",
        "podSelector": f'llm-d.ai/role="{role}"',
        "phase": role,
        **WINDOWS,
        **extra,
    }


async def test_prefill_and_decode_pools_scale_separately(harness: Harness) -> None:
    prefill = [llmd_pod(f"pf{i}", "prefill", num_requests_waiting=8, kv_cache_usage_perc=0.1) for i in range(2)]
    decode = [llmd_pod(f"dc{i}", "decode", num_requests_waiting=0, kv_cache_usage_perc=0.9) for i in range(3)]
    await harness.push(prefill + decode)
    keda = harness.keda
    prefill_ref = keda.ref(pool("prefill"), name="llama-prefill")
    decode_ref = keda.ref(pool("decode"), name="llama-decode")

    for ref in (prefill_ref, decode_ref):
        [spec] = (await keda.get_metric_spec(ref)).metricSpecs
        assert spec.targetSizeFloat == 1.0 and spec.targetSize == 1
    assert await keda.value(prefill_ref) == 4.0  # waiting 16 / 5 = 3.2
    assert await keda.value(decode_ref) == 4.0  # kv 3 x 0.9 / 0.8 = 3.375
    assert await keda.is_active(prefill_ref) and await keda.is_active(decode_ref)

    status, body = await _debug(harness)
    assert status == 200
    reasons = {t["name"]: t["reason"] for t in body["triggers"]}
    assert reasons["llama-prefill"] == "prefill: waiting 16.0 at 5/pod -> 4 (panic)"  # 4 >= 2 x 2 pods
    assert reasons["llama-decode"] == "decode: kv 0.90 > 0.80 on 3 pods -> 4"
    metric = 'keda_llm_scaler_signal_replicas{metric="'
    text = await _metrics(harness)
    assert metric in text and 'signal="kv"' in text and "keda_llm_scaler_recommendation{" in text


async def test_pool_whose_pods_stop_reporting_is_unavailable(harness: Harness) -> None:
    ref = harness.keda.ref(pool("decode"), name="llama-decode")
    await harness.push([llmd_pod("dc0", "decode", kv_cache_usage_perc=0.5)])
    # the pod stops reporting: the answers hold until the first error, never 0
    values, error = await values_until_error(harness.keda, ref)
    assert values and set(values) == {1.0}
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "pool ns/llama-decode" in (error.details() or "")


async def test_scale_from_zero_pushes_activation_over_the_stream(harness: Harness) -> None:
    router = PodMetrics({"service.instance.id": "router-0", "k8s.namespace.name": "ns"})
    router.gauge("router_pending_requests", 0, {"pool": "llama-decode"})
    await harness.push([router])
    ref = harness.keda.ref(
        pool("decode", activationQuery='sum(router_pending_requests{pool="llama-decode"})'), name="llama-decode"
    )
    assert await harness.keda.value(ref) == 0.0
    asked = harness.asked_at("llama-decode")
    stream = harness.keda.stream_is_active(ref)
    read = asyncio.ensure_future(stream.read())
    # the stream's first check, then one more after a push wakes it: by then a `true` from the first is here
    checked = await harness.evaluated_after(asked, "llama-decode")
    await harness.push([router])
    await harness.evaluated_after(checked, "llama-decode")
    assert not read.done(), "nothing is sent while the pool and its router are idle"
    router = PodMetrics({"service.instance.id": "router-0", "k8s.namespace.name": "ns"})
    router.gauge("router_pending_requests", 3, {"pool": "llama-decode"})
    await harness.push([router])
    assert (await asyncio.wait_for(read, 3.0)).result is True
    assert await harness.keda.value(ref) == 1.0
    stream.cancel()


async def test_overflow_and_canary_pools_through_the_service(harness: Harness) -> None:
    def pod(name: str, deployment: str, version: str, kv: float) -> PodMetrics:
        resource = {"k8s.pod.name": name, "k8s.namespace.name": "ns", "k8s.deployment.name": deployment}
        return PodMetrics(resource).gauge("vllm:kv_cache_usage_perc", kv, {"version": version})

    await harness.push(
        [pod(f"a{i}", "chat", "v1", 0.9) for i in range(4)]
        + [pod("b0", "chat-burst", "v1", 0.9)]
        + [pod(f"c{i}", "chat-v2", "v2", 0.95) for i in range(2)]
    )
    burst = {"policy": "vllm", "deployment": "chat-burst", "overflowOf": "chat", "primaryMaxReplicas": "4"}
    assert await harness.keda.value(harness.keda.ref({**burst, **WINDOWS}, name="chat-burst")) == 2.0
    canary = {"policy": "vllm", "deployment": "chat-v2", "podSelector": 'version="v2"', **WINDOWS}
    assert await harness.keda.value(harness.keda.ref(canary, name="chat-v2")) == 3.0


async def _debug(harness: Harness) -> tuple[int, dict[str, object]]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(harness.url("/debug/scaledobjects")) as reply:
        return reply.status, await reply.json()


async def _metrics(harness: Harness) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(harness.url("/metrics")) as reply:
        return await reply.text()


async def test_explain_prints_the_decision_table(harness: Harness) -> None:
    await harness.push([llmd_pod(f"dc{i}", "decode", kv_cache_usage_perc=0.9) for i in range(3)])
    await harness.keda.value(harness.keda.ref(pool("decode"), name="llama-decode"))
    url = f"http://127.0.0.1:{harness.scaler.ports['http']}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scaler",
        "explain",
        "--scaler-url",
        url,
        "--namespace",
        "ns",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0
    assert 'ns/llama-decode  policy decode  pool ns/llama-decode{llm-d.ai/role="decode"}  -> 4 (active)' in text
    assert "reason: decode: kv 0.90 > 0.80 on 3 pods -> 4" in text
    assert "kv " in text and "ns/dc0" in text


async def test_the_pool_upkeep_brings_views_up_to_date_between_calls(harness: Harness) -> None:
    """Once the pods' rows leave the stable window, the server makes the view's changes itself: the
    next KEDA call finds nothing due (scaler/app.py `_pool_upkeep`)."""
    ref = harness.keda.ref(pool("decode"), name="llama-decode")
    await harness.push([llmd_pod(f"dc{i}", "decode", kv_cache_usage_perc=0.9) for i in range(3)])
    assert await harness.keda.value(ref) == 4.0
    [view] = harness.scaler.store._pool_views.values()
    clock = time.monotonic  # the scaler's clock
    first_due = harness.scaler.store.next_due()
    assert first_due < float("inf")
    await asyncio.sleep(max(0.0, first_due - clock()) + 0.6)  # past the moment, and one upkeep pass
    assert not view.due(clock())
