"""`keda-llm-scaler demo`, shortened: the real scaler, fleet, emulator and clients, end to end."""

from __future__ import annotations

from pathlib import Path

from scaler.sim.demo import run_demo
from scaler.sim.demo_plan import DECODE, PREFILL, DemoPlan


async def test_a_short_demo_scales_up_under_the_burst_and_writes_its_plot(tmp_path: Path) -> None:
    plan = DemoPlan(duration=60, speed=3, burst_start=6, burst_end=40, cold_start=6, base_clients=1, burst_clients=24)
    lines: list[str] = []
    summary = await run_demo(plan, tmp_path, echo=lines.append)
    assert summary.requests > 0 and summary.failed == 0
    assert summary.peak[PREFILL] > 1 or summary.peak[DECODE] > 1, "\n".join(lines)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert any("qwen-prefill: peak" in line for line in lines)
