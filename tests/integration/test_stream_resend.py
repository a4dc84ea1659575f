"""StreamIsActive keeps KEDA told: `true` at once on activation, again every --stream-resend while active.

KEDA drops a `true` that arrives before the ScaledObject has its external metric names, so a single
`true` per activation can be lost; these tests pin the resend, its silence while inactive, and the
self-metric that counts the messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import grpc
import pytest

from scaler.settings import Settings
from tests.integration.conftest import FAST, Harness, eventually, kserve_pod

RESEND = 0.3
METADATA = {
    "scalerAddress": "keda-otel-scaler.keda.svc:4318",
    "metricQuery": 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})',
    "targetValue": "4.000000",
}
COUNTER = "keda_llm_scaler_stream_messages_total"
STREAM_SETTLE = 0.5  # several STREAM_MIN_INTERVALs: the stream has seen the last push


@pytest.fixture
def settings() -> Settings:
    # stale_after well beyond the test's reads, so the load stays fresh without a pusher running
    return replace(FAST, stream_resend=RESEND, stale_after=10.0)


def sent(harness: Harness, reason: str) -> float:
    value = harness.scaler.registry.get_sample_value(COUNTER, {"reason": reason})
    assert value is not None, f"{COUNTER}{{reason={reason!r}}} is not exported"
    return value


async def read_timed(stream: Any, count: int, timeout: float = 5.0) -> list[tuple[float, bool]]:
    """The next `count` messages with their arrival time."""
    out = []
    for _ in range(count):
        reply = await asyncio.wait_for(stream.read(), timeout)
        out.append((time.monotonic(), bool(reply.result)))
    return out


async def inactive(harness: Harness, ref: Any) -> bool:
    return not await harness.keda.is_active(ref)


async def test_true_is_sent_at_once_on_the_transition_to_active(harness: Harness) -> None:
    ref = harness.keda.ref(METADATA)
    await harness.push([kserve_pod("p1", 0)])
    stream = harness.keda.stream_is_active(ref)
    try:
        await asyncio.sleep(0.2)
        assert sent(harness, "activation") == 0.0
        await harness.push([kserve_pod("p1", 3)])
        [(_, result)] = await read_timed(stream, 1)
        assert result is True
        assert sent(harness, "activation") == 1.0
    finally:
        stream.cancel()


async def test_true_is_resent_while_active_at_the_configured_interval(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 3)])
    stream = harness.keda.stream_is_active(harness.keda.ref(METADATA))
    try:
        messages = await read_timed(stream, 4)
        assert [result for _, result in messages] == [True] * 4
        gaps = [b - a for (a, _), (b, _) in zip(messages, messages[1:], strict=False)]
        assert all(gap >= RESEND * 0.8 for gap in gaps), gaps  # never sooner than the interval
        assert sent(harness, "activation") == 1.0  # opened while active: one activation
        assert sent(harness, "resend") >= 3.0
    finally:
        stream.cancel()


async def test_nothing_is_sent_while_inactive(harness: Harness) -> None:
    ref = harness.keda.ref(METADATA)
    await harness.push([kserve_pod("p1", 0)])
    stream = harness.keda.stream_is_active(ref)
    read = asyncio.ensure_future(stream.read())
    try:
        await asyncio.sleep(RESEND * 4)
        assert not read.done(), "nothing is sent while inactive, not even a false"

        await harness.push([kserve_pod("p1", 2)])
        assert (await asyncio.wait_for(read, 5.0)).result is True
        await read_timed(stream, 1)  # and at least one resend
        await harness.push([kserve_pod("p1", 0)])
        await eventually(lambda: inactive(harness, ref))
        await asyncio.sleep(STREAM_SETTLE)  # let the stream see the push that ended the activity
        before = sent(harness, "activation") + sent(harness, "resend")
        await asyncio.sleep(RESEND * 4)
        assert sent(harness, "activation") + sent(harness, "resend") == before, "resent while inactive"
    finally:
        stream.cancel()


async def test_each_activation_is_counted_apart_from_the_resends(harness: Harness) -> None:
    ref = harness.keda.ref(METADATA)
    await harness.push([kserve_pod("p1", 0)])
    stream = harness.keda.stream_is_active(ref)  # unread: a few small messages wait in the window
    try:
        for round_ in (1.0, 2.0):
            resent = sent(harness, "resend")
            await harness.push([kserve_pod("p1", 5)])
            await eventually(lambda resent=resent: sent(harness, "resend") >= resent + 2)
            assert sent(harness, "activation") == round_
            await harness.push([kserve_pod("p1", 0)])
            await eventually(lambda: inactive(harness, ref))
            await asyncio.sleep(STREAM_SETTLE)
        assert sent(harness, "activation") == 2.0
    finally:
        stream.cancel()


async def test_a_resending_stream_still_ends_ok_on_shutdown(harness: Harness) -> None:
    await harness.push([kserve_pod("p1", 1)])
    stream = harness.keda.stream_is_active(harness.keda.ref(METADATA))
    await read_timed(stream, 2)
    await harness.scaler.stop()
    while (reply := await asyncio.wait_for(stream.read(), 5.0)) is not grpc.aio.EOF:
        assert reply.result is True
    assert await stream.code() == grpc.StatusCode.OK
