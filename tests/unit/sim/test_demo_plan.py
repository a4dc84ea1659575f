"""The demo's plan: its timeline, its ScaledObjects (which our own parser must accept), its summary."""

from __future__ import annotations

from scaler.policy import Decision, Signal, WindowFigures
from scaler.policy_spec import PolicySpec
from scaler.sim.demo_plan import (
    DECODE,
    PREFILL,
    DemoPlan,
    PoolRow,
    RequestRecord,
    driving_signal,
    format_row,
    header,
    row_for,
    scaled_objects,
    summarize,
)
from scaler.sim.ours import DEMAND_KEY, GATEWAY_DEMAND
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


def decision(reason: str, *signals: Signal, panic: tuple[Signal, ...] = ()) -> Decision:
    return Decision(
        replicas=3,
        active=True,
        reason=reason,
        reporting_pods=1,
        stable=WindowFigures(30.0, signals),
        panic=WindowFigures(5.0, panic),
        in_panic=bool(panic),
        pods=(),
    )


def test_the_driving_signal_is_the_one_the_reason_names_with_what_bounded_it() -> None:
    waiting = Signal("waiting", 6.0, 6.0, "waiting 12.0 at 2/pod")
    kv = Signal("kv", 2.0, 2.0, "kv 0.90 > 0.80 on 1 pods")
    assert driving_signal(decision("prefill: kv 0.90 > 0.80 on 1 pods -> 2", waiting, kv)) == "kv"
    calm = decision("prefill: waiting 12.0 at 2/pod -> 6 (panic; maxReplicas 6)", kv, panic=(waiting,))
    assert driving_signal(calm) == "waiting/panic/max"
    assert driving_signal(decision("decode: no load signals -> 1 (minReplicas 1)")) == "idle/min"


def test_the_summary_names_each_peaks_signal_and_what_happened_after_the_burst() -> None:
    plan = DemoPlan(burst_start=10, burst_end=20)
    timeline = [
        (5.0, {PREFILL: PoolRow(1, 1, 1, "a", "idle"), DECODE: PoolRow(1, 1, 1, "b", "idle")}),
        (12.0, {PREFILL: PoolRow(1, 1, 4, "c", "waiting/panic"), DECODE: PoolRow(1, 1, 1, "d", "running")}),
        (15.0, {PREFILL: PoolRow(4, 2, 4, "e", "waiting/panic"), DECODE: PoolRow(1, 1, 1, "f", "running")}),
        (19.0, {PREFILL: PoolRow(4, 4, 2, "g", "prefill_tokens"), DECODE: PoolRow(1, 1, 3, "decode: kv -> 3", "kv")}),
        (22.0, {PREFILL: PoolRow(2, 2, 1, "h", "waiting"), DECODE: PoolRow(3, 1, 3, "decode: kv -> 3", "kv")}),
    ]
    summary = summarize(plan, timeline, [])
    assert summary.peak_signal == {PREFILL: "waiting/panic", DECODE: "kv"}
    assert summary.after_burst[PREFILL].startswith("did not rise after the burst ended")
    assert (
        summary.after_burst[DECODE] == "rose from 1 to 3 replicas 2.0s after the burst ended, because decode: kv -> 3"
    )
    text = "\n".join(summary.lines())
    assert "qwen-prefill: peak 4 replicas" in text and "peak driven by waiting/panic" in text
    assert "after the burst: rose from 1 to 3" in text


def test_the_pools_read_the_gateway_when_the_policy_knows_how() -> None:
    prefill, decode = (dict(so.triggers[0].metadata) for so in scaled_objects(DemoPlan(), "127.0.0.1:6000"))
    assert (DEMAND_KEY in prefill) == GATEWAY_DEMAND and (DEMAND_KEY in decode) == GATEWAY_DEMAND
    if GATEWAY_DEMAND:  # both read the queue in front of prefill: decode takes each request next
        assert prefill[DEMAND_KEY] == decode[DEMAND_KEY]
        assert prefill[DEMAND_KEY] == 'sum(llm_d_epp_flow_control_queue_size{namespace="demo", inference_pool="qwen"})'
        assert not {"demandOperationOverTime", "demandPerReplica"} & {*prefill, *decode}
    for so in scaled_objects(DemoPlan(gateway_demand=False), "127.0.0.1:6000"):
        assert DEMAND_KEY not in dict(so.triggers[0].metadata)
