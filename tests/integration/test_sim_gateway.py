"""The live router's gateway: a request held by flow control past its TTL gets a 429, as llm-d sheds it."""

from __future__ import annotations

import asyncio

import aiohttp

from scaler.sim.fleet_server import FleetOptions, LiveFleet
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.gateway import FlowControl
from scaler.sim.profiles import DEMO

BODY = {"model": "qwen", "prompt": "hello", "max_tokens": 4}


def no_pods(ttl: float | None) -> LiveFleet:
    """A fleet whose one pool is at zero, so flow control holds every request."""
    spec = FleetSpec((PoolSpec("qwen", "unified", DEMO, 0),), "ns", "qwen", 60.0, 1.0, FlowControl(request_ttl=ttl))
    return LiveFleet(spec, FleetOptions())


async def complete(session: aiohttp.ClientSession, fleet: LiveFleet) -> tuple[int, dict[str, object]]:
    async with session.post(fleet.url + "/v1/completions", json=BODY) as response:
        return response.status, await response.json()


async def test_a_request_held_past_the_ttl_is_refused_with_429_and_leaves_the_queue() -> None:
    fleet = no_pods(0.3)
    await fleet.start()
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await complete(session, fleet)
        assert status == 429 and body["type"] == "TooManyRequests"
        assert body["message"] == "held by flow control past its request TTL"
        assert not fleet.gateway.queue and fleet.gateway.received == 1
    finally:
        await fleet.stop()


async def test_without_a_ttl_a_held_request_waits_until_the_fleet_stops() -> None:
    fleet = no_pods(None)
    await fleet.start()
    async with aiohttp.ClientSession() as session:
        answer = asyncio.ensure_future(complete(session, fleet))
        try:
            while not fleet.gateway.queue:
                await asyncio.sleep(0.01)
        finally:
            await fleet.stop()
        status, body = await answer
    assert status == 503 and body["type"] == "ServiceUnavailable"
