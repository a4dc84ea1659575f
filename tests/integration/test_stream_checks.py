"""An open StreamIsActive is re-checked when what its trigger reads changed, not on every push.

KEDA holds one stream per push-scaler trigger, so a scaler with thousands of ScaledObjects has
thousands of streams, and each push used to re-evaluate every one of them (scaler.streams). A query
trigger's answer rests on its view (scaler.views `View.version`); a push into another deployment's
series, or one that repeats a value, leaves it standing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from scaler.settings import Settings
from scaler.streams import StreamHub
from scaler.triggers import Prepared
from tests.integration.conftest import FAST, Harness, eventually, kserve_pod, running

STALE_AFTER = 3.0


def metadata(deployment: str) -> dict[str, str]:
    query = f'sum(vllm:num_requests_running{{namespace="ns", deployment="{deployment}"}})'
    return {"metricQuery": query, "targetValue": "4", "activationThreshold": "2"}


@pytest.fixture
def settings() -> Settings:
    return replace(FAST, stale_after=30.0)  # longer than the test: nothing goes stale in it


def hub_of(harness: Harness) -> StreamHub[Prepared]:
    assert harness.scaler.streams is not None
    return harness.scaler.streams


async def test_a_push_re_checks_only_the_streams_whose_data_it_changed(harness: Harness) -> None:
    await harness.push([kserve_pod("a-0", 1, deployment="a"), kserve_pod("b-0", 1, deployment="b")])
    streams = {name: harness.keda.stream_is_active(harness.keda.ref(metadata(name), name=name)) for name in "ab"}
    try:
        hub = hub_of(harness)
        await eventually(lambda: len(hub) == 2 and all(w.basis is not None for w in hub.watches()))
        asked_a = harness.asked_at("a")
        for running in (0, 1, 0, 1):  # b changes every time; a is pushed its same value
            await harness.push([kserve_pod("a-0", 1, deployment="a"), kserve_pod("b-0", running, deployment="b")])
            await harness.evaluated_after(harness.asked_at("b"), "b")
        assert harness.asked_at("a") == asked_a, "a's data did not change: its stream was not re-evaluated"

        await harness.push([kserve_pod("a-0", 3, deployment="a")])  # over the activation target
        reply = await asyncio.wait_for(streams["a"].read(), 3.0)
        assert reply.result is True
        assert harness.asked_at("a") > asked_a
    finally:
        for stream in streams.values():
            stream.cancel()


async def test_time_alone_re_checks_a_stream_when_a_series_goes_stale() -> None:
    """min() over two pods goes up when the lower one goes quiet: an activation no push announces."""
    async with running(replace(FAST, stale_after=STALE_AFTER)) as harness:
        await _stale_series_activates(harness)


async def _stale_series_activates(harness: Harness) -> None:
    meta = {"metricQuery": 'min(vllm:num_requests_running{namespace="ns", deployment="c"})', "targetValue": "4"}
    meta["activationThreshold"] = "2"
    await harness.push([kserve_pod("c-0", 0, deployment="c"), kserve_pod("c-1", 3, deployment="c")])
    stream = harness.keda.stream_is_active(harness.keda.ref(meta, name="c"))
    try:
        hub = hub_of(harness)
        await eventually(lambda: len(hub) == 1 and hub.watches()[0].basis is not None)
        [watch] = hub.watches()
        assert watch.basis is not None and watch.basis.until < float("inf")
        read = asyncio.ensure_future(stream.read())
        for _ in range(5):  # c-1 stays fresh; c-0 goes quiet, and stale after STALE_AFTER
            await asyncio.sleep(STALE_AFTER / 3)
            await harness.push([kserve_pod("c-1", 3, deployment="c")])
        reply = await asyncio.wait_for(read, 5.0)
        assert reply.result is True
    finally:
        stream.cancel()
