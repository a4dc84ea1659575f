"""Router choice, replica lifecycles and the virtual fleet, all in plain numbers."""

from __future__ import annotations

import random

from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.otlp_push import snapshot_samples
from scaler.sim.profiles import DEMO
from scaler.sim.replicas import Phase, ReplicaController
from scaler.sim.routing import Router, least_outstanding
from scaler.sim.virtual_fleet import VirtualFleet


def test_least_outstanding_takes_turns_among_equals() -> None:
    assert least_outstanding(["a", "b", "c"], {"a": 2, "b": 1, "c": 1}, turn=0) == "b"
    assert least_outstanding(["a", "b", "c"], {"a": 2, "b": 1, "c": 1}, turn=1) == "c"
    assert least_outstanding([], {}) is None
    router = Router()
    picks = []
    for _ in range(6):
        pod = router.pick(["a", "b", "c"])
        assert pod is not None
        router.started(pod)
        picks.append(pod)
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]
    router.finished("b")
    assert router.pick(["a", "b", "c"]) == "b"


def test_pods_serve_after_the_cold_start() -> None:
    controller = ReplicaController("qwen", cold_start=60.0, replicas=1, now=0.0)
    changes = controller.scale(3, 10.0)
    assert [c.phase for c in changes] == [Phase.STARTING, Phase.STARTING]
    assert controller.replicas == 3 and len(controller.ready()) == 1
    assert controller.next_event() == 70.0
    assert controller.advance(69.9) == []
    assert {c.phase for c in controller.advance(70.0)} == {Phase.READY}
    assert len(controller.ready()) == 3


def test_scale_down_cancels_starting_pods_first_then_drains_the_newest() -> None:
    controller = ReplicaController("qwen", cold_start=60.0, drain_grace=30.0, replicas=2, now=0.0)
    controller.scale(3, 0.0)
    controller.advance(60.0)
    controller.scale(4, 100.0)  # qwen-4 starting
    changes = controller.scale(2, 110.0)
    assert [(c.name, c.phase) for c in changes] == [("qwen-4", Phase.GONE), ("qwen-3", Phase.DRAINING)]
    assert controller.replicas == 2 and controller.ready() == ["qwen-1", "qwen-2"]
    assert [c.phase for c in controller.drained("qwen-3", 115.0)] == [Phase.GONE]
    controller.scale(1, 200.0)
    assert [(c.name, c.at) for c in controller.advance(230.0)] == [("qwen-2", 230.0)]  # grace ran out


def test_virtual_fleet_serves_a_trace_and_scales_with_cold_starts() -> None:
    spec = FleetSpec((PoolSpec("qwen", "unified", DEMO, 1),), namespace="ns", cold_start=30.0)
    fleet = VirtualFleet(spec)
    rng = random.Random(7)
    outcomes, t = [], 0.0
    while t < 120.0:
        t += rng.expovariate(2.0)
        outcomes += fleet.advance(t)
        if len(fleet.pods) == 1 and t > 10:
            fleet.scale("qwen", 3, t)
            assert fleet.replicas("qwen") == 3 and fleet.ready("qwen") == 1
        fleet.submit(rng.randint(50, 400), rng.randint(20, 200), t)
    outcomes += fleet.advance(10_000.0)
    assert fleet.ready("qwen") == 3 and fleet.in_flight() == 0
    assert all(o.ok for o in outcomes)
    used = {o.pods[0] for o in outcomes}
    assert used == {"qwen-1", "qwen-2", "qwen-3"}
    first_new = min(o.arrival for o in outcomes if o.pods[0] != "qwen-1")
    assert 40.0 <= first_new < 45.0  # scaled a little after 10 s, ready 30 s later


def test_prefill_then_decode_under_disaggregation() -> None:
    spec = FleetSpec((PoolSpec("p", "prefill", DEMO, 1), PoolSpec("d", "decode", DEMO, 2)), namespace="ns")
    fleet = VirtualFleet(spec)
    for i in range(6):
        fleet.submit(300, 50, 0.1 * i)
    outcomes = fleet.advance(1000.0)
    assert len(outcomes) == 6 and all(o.ok and o.output_tokens == 50 for o in outcomes)
    assert all(o.pods[0] == "p-1" and o.pods[1] in ("d-1", "d-2") for o in outcomes)
    assert {o.pods[1] for o in outcomes} == {"d-1", "d-2"}
    prefill = fleet.pods["p-1"].snapshot()
    decode = fleet.pods["d-1"].snapshot()
    assert prefill.role == "prefill" and decode.role == "decode"
    samples = snapshot_samples([prefill, decode])
    prompt = {dict(s.labels)["k8s.pod.name"]: s.value for s in samples if s.name == "vllm:prompt_tokens"}
    assert prompt == {"p-1": 1800.0, "d-1": 0.0}  # decode pods pull the KV, they compute no prompt


def test_no_ready_pod_means_unrouted_and_drained_pods_finish_their_work() -> None:
    spec = FleetSpec((PoolSpec("qwen", "unified", DEMO, 1),), cold_start=60.0, drain_grace=1000.0)
    fleet = VirtualFleet(spec)
    fleet.submit(100, 400, 0.0)
    fleet.scale("qwen", 0, 1.0)
    fleet.submit(100, 10, 2.0)
    outcomes = fleet.advance(1000.0)
    assert sorted(o.finish_reason for o in outcomes) == ["stop", "unrouted"]
    assert [o.output_tokens for o in outcomes if o.ok] == [400]
    assert fleet.pods == {}  # gone once empty


def test_a_drain_that_runs_out_of_grace_aborts_and_loses_nothing() -> None:
    spec = FleetSpec((PoolSpec("qwen", "unified", DEMO, 2),), drain_grace=5.0)
    fleet = VirtualFleet(spec)
    ids = {fleet.submit(100, 1000, 0.1 * i) for i in range(10)}
    fleet.scale("qwen", 1, 1.0)
    outcomes = fleet.advance(10_000.0)
    assert {o.request_id for o in outcomes} == ids and fleet.in_flight() == 0
    aborted = [o for o in outcomes if o.finish_reason == "abort"]
    assert aborted and all(o.finish == 6.0 and o.pods == ("qwen-2",) for o in aborted)
