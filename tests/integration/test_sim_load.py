"""Real load tools against a small simulated fleet on loopback: the seed's hey command, and locust."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.sim.fleet_server import FleetOptions, LiveFleet
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.profiles import DEMO

ROOT = Path(__file__).resolve().parents[2]
LOCUST = shutil.which("locust", path=str(Path(sys.executable).parent)) or shutil.which("locust")


@pytest.fixture
async def fleet() -> AsyncIterator[LiveFleet]:
    spec = FleetSpec((PoolSpec("huggingface-qwen-predictor", "unified", DEMO, 2),), namespace="ns")
    live = LiveFleet(spec, FleetOptions())
    await live.start()
    yield live
    await live.stop()


async def run(*argv: str, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def served(fleet: LiveFleet) -> float:
    """request_success_total summed over the fleet's pods, read from their /metrics pages."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for pod in fleet.pods.values():
            async with session.get(pod.url + "/metrics") as response:
                text = await response.text()
            for family in text_string_to_metric_families(text):
                total += sum(s.value for s in family.samples if s.name == "vllm:request_success_total")
    return total


@pytest.mark.skipif(shutil.which("hey") is None, reason="the hey binary is not installed (apt-get install -y hey)")
async def test_the_seeds_hey_command_drives_the_fleet(fleet: LiveFleet) -> None:
    env = {"DURATION": "3s", "CONCURRENCY": "5", "MAX_TOKENS": "20"}
    code, out, err = await run("bash", str(ROOT / "load" / "hey.sh"), fleet.url, timeout=30.0, env=env)
    assert code == 0, err
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    assert set(statuses) == {"200"}, out
    assert int(statuses["200"]) >= 10
    assert await served(fleet) >= int(statuses["200"])  # every reply counted by some pod's vLLM metrics


async def test_hey_sh_refuses_anything_but_loopback() -> None:
    code, _, err = await run("bash", str(ROOT / "load" / "hey.sh"), "http://example.com", timeout=10.0)
    assert code == 2 and "only loopback" in err


@pytest.mark.skipif(LOCUST is None, reason="locust is not installed (pip install locust)")
async def test_locust_headless_drives_the_fleet(fleet: LiveFleet) -> None:
    assert LOCUST is not None
    argv = [LOCUST, "-f", str(ROOT / "load" / "locustfile.py"), "--headless", "-u", "4", "-r", "4", "-t", "4s"]
    argv += ["--host", fleet.url, "--only-summary", "--json", "--stop-timeout", "10", "--skip-log"]
    env = {"LOCUST_PROMPT_MEDIAN": "64", "LOCUST_OUTPUT_MEDIAN": "16"}
    code, out, err = await run(*argv, timeout=60.0, env=env)
    assert code == 0, err[-2000:]
    stats = json.loads(out)
    requests = sum(s["num_requests"] for s in stats)
    assert requests >= 4 and sum(s["num_failures"] for s in stats) == 0
    assert await served(fleet) >= requests
