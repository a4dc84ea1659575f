"""A simulated vLLM pod as a real server: OpenAI API, /metrics, and OTLP pushed to the live scaler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.sim.pod import PodIdentity
from scaler.sim.pod_server import PodConfig, PodServer
from scaler.sim.profiles import DEMO
from scaler.sim.vllm_metrics import MetricNaming
from tests.integration.conftest import Harness, eventually

CHAT = {
    "model": "qwen",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a poem about colors"}],
    "max_tokens": 8,
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def started(config: PodConfig) -> PodServer:
    server = PodServer(config)
    await server.start()
    return server


def pod_config(name: str = "qwen-predictor-1", **changes: object) -> PodConfig:
    identity = PodIdentity(name, "qwen-predictor", "ns")
    return PodConfig(identity, DEMO, **changes)  # type: ignore[arg-type]


async def metric_total(session: aiohttp.ClientSession, server: PodServer, name: str, **labels: str) -> float:
    async with session.get(server.url + "/metrics") as response:
        text = await response.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_openai_routes_and_metrics(session: aiohttp.ClientSession) -> None:
    server = await started(pod_config())
    try:
        async with session.post(server.url + "/openai/v1/chat/completions", json=CHAT) as response:
            assert response.status == 200
            body = await response.json()
        assert body["object"] == "chat.completion" and body["model"] == "qwen" and body["id"].startswith("chatcmpl-")
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] <= 8 and body["usage"]["prompt_tokens"] > 10

        completion = {"model": "qwen", "prompt": "Once upon a time", "max_tokens": 5, "ignore_eos": True}
        async with session.post(server.url + "/v1/completions", json=completion) as response:
            body = await response.json()
        assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 5

        async with session.get(server.url + "/v1/models") as response:
            assert (await response.json())["data"][0]["id"] == "qwen"
        async with session.get(server.url + "/health") as response:
            assert response.status == 200
        async with session.post(server.url + "/v1/chat/completions", json={"model": "gpt-4", "messages": []}) as r:
            assert r.status == 404 and (await r.json())["object"] == "error"
        async with session.post(server.url + "/v1/chat/completions", data=b"{") as response:
            assert response.status == 400

        assert await metric_total(session, server, "vllm:request_success_total") == 2
        assert await metric_total(session, server, "vllm:time_to_first_token_seconds_count") == 2
        assert await metric_total(session, server, "vllm:generation_tokens_total") >= 6
    finally:
        await server.stop()


async def test_streaming_sends_one_chunk_per_token_then_done(session: aiohttp.ClientSession) -> None:
    server = await started(pod_config())
    try:
        request = dict(CHAT, stream=True, max_tokens=6, ignore_eos=True, stream_options={"include_usage": True})
        async with session.post(server.url + "/v1/chat/completions", json=request) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = [line async for line in response.content if line.strip()]
        assert events[-1] == b"data: [DONE]\n"
        chunks = [json.loads(e[len(b"data: ") :]) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        tokens = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
        assert len(tokens) == 6 and all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 6
    finally:
        await server.stop()


async def test_timing_comes_from_the_model_so_load_queues(session: aiohttp.ClientSession) -> None:
    server = await started(pod_config())
    long = dict(CHAT, max_tokens=400, ignore_eos=True)
    tasks = [asyncio.create_task(session.post(server.url + "/v1/chat/completions", json=long)) for _ in range(12)]
    try:
        await eventually(lambda: server.pod.outstanding == 12)
        await asyncio.sleep(0.3)
        assert await metric_total(session, server, "vllm:num_requests_running") == DEMO.max_num_seqs
        assert await metric_total(session, server, "vllm:num_requests_waiting") == 12 - DEMO.max_num_seqs
        assert 0 < await metric_total(session, server, "vllm:kv_cache_usage_perc") < 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()


@pytest.mark.parametrize("dotted", [False, True])
async def test_the_pod_pushes_otlp_that_the_scaler_answers_from(
    harness: Harness, session: aiohttp.ClientSession, dotted: bool
) -> None:
    endpoint = f"127.0.0.1:{harness.scaler.ports['otlp-grpc']}"
    naming = MetricNaming(dotted=dotted)
    server = await started(pod_config(otlp_endpoint=endpoint, export_interval=0.1, naming=naming))
    long = dict(CHAT, max_tokens=400, ignore_eos=True)
    tasks = [asyncio.create_task(session.post(server.url + "/v1/chat/completions", json=long)) for _ in range(5)]
    ref = harness.keda.ref(
        {
            "metricQuery": 'sum(vllm:num_requests_running{namespace="ns", deployment="qwen-predictor"})',
            "targetValue": "4.000000",
        }
    )
    try:
        await eventually(lambda: server.pushes > 0)

        async def five_running() -> bool:
            return await harness.keda.value(ref) == 5.0

        await eventually(five_running)
        assert await harness.keda.is_active(ref)
        series = {s.name for s in harness.scaler.store.series_named("vllm:prompt_tokens")}
        assert series  # counters land under their canonical name whatever the spelling
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
