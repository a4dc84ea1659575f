"""The demo's plan: its timeline, its ScaledObjects (which our own parser must accept), its summary."""

from __future__ import annotations

from scaler.policy_spec import PolicySpec
from scaler.sim.demo_plan import (
    DECODE,
    PREFILL,
    DemoPlan,
    PoolRow,
    RequestRecord,
    format_row,
    header,
    row_for,
    scaled_objects,
    summarize,
)
from scaler.triggers import parse_trigger


def test_clients_follow_the_burst_on_the_run_clock() -> None:
    plan = DemoPlan(base_clients=2, burst_clients=24, burst_start=30, burst_end=90, speed=3)
    assert [plan.clients_at(t) for t in (0, 9.9, 10, 29.9, 30)] == [2, 2, 24, 24, 2]
    assert plan.run_seconds == 60


def test_scaledobjects_are_policy_triggers_for_each_phase() -> None:
    objects = scaled_objects(DemoPlan(speed=2), "127.0.0.1:6000")
    assert [so.name for so in objects] == [PREFILL, DECODE]
    for so, phase in zip(objects, ("prefill", "decode"), strict=True):
        spec = parse_trigger(dict(so.triggers[0].metadata), so.namespace)
        assert isinstance(spec, PolicySpec) and spec.phase == phase
        assert spec.stable_window == 15 and spec.panic_window == 2.5
        assert so.polling_interval == 2.5 and so.hpa_sync_period == 2.5 and so.min_replicas == 1


def test_rows_and_summary_from_worked_numbers() -> None:
    plan = DemoPlan(burst_start=10, burst_end=20)
    records = [RequestRecord(1, True, 0.2, 0.01), RequestRecord(2, True, 0.4, 0.03), RequestRecord(3, False)]
    row = row_for(10, 2, 5, records, {PREFILL: PoolRow(2, 1, 3, "x")})
    assert row.completed_per_s == 3 / 5 and row.ttft_p90 == 0.4 and row.itl_p90 == 0.03
    assert "1/2" in format_row(row) and len(format_row(row)) == len(header())  # columns line up
    timeline = [
        (5.0, {PREFILL: PoolRow(1, 1, 1, ""), DECODE: PoolRow(1, 1, 1, "")}),
        (12.5, {PREFILL: PoolRow(3, 1, 3, ""), DECODE: PoolRow(1, 1, 1, "")}),
        (40.0, {PREFILL: PoolRow(1, 1, 1, ""), DECODE: PoolRow(2, 2, 2, "")}),
    ]
    summary = summarize(plan, timeline, records)
    assert summary.requests == 3 and summary.failed == 1
    assert summary.peak == {PREFILL: 3, DECODE: 2}
    assert summary.first_scale_up == {PREFILL: 2.5, DECODE: 30.0}
    assert summary.scaled_down == {PREFILL: True, DECODE: False}
    assert "qwen-prefill: peak 3 replicas, first scale-up 2.5s after the burst began, scaled back down" in "\n".join(
        summary.lines()
    )
