"""The gateway in front of the virtual fleet: arrivals counted, flow control holding and releasing, its metrics."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

from scaler.otlp import Kind, decode_export_request
from scaler.sim.fleet_spec import FleetSpec, PoolSpec
from scaler.sim.gateway import QUEUE_SIZE, FlowControl, queue_query
from scaler.sim.otlp_push import metrics_data, metrics_samples
from scaler.sim.profiles import DEMO
from scaler.sim.virtual_fleet import VirtualFleet
from scaler.store import Store
from scaler.triggers import Triggers


def fleet(flow_control: FlowControl | None, replicas: int = 1, cold_start: float = 5.0) -> VirtualFleet:
    spec = FleetSpec((PoolSpec("qwen", "unified", DEMO, replicas),), "ns", "qwen", cold_start, 1.0, flow_control)
    return VirtualFleet(spec)


def test_saturation_is_the_queue_depth_or_the_kv_cache_and_kv_only_when_needed() -> None:
    limits = FlowControl()
    asked: list[bool] = []

    def kv() -> float:
        asked.append(True)
        return 0.5

    assert limits.saturated(5, kv) and not asked  # the queue decides alone
    assert not limits.saturated(4, kv) and asked
    assert limits.saturated(0, lambda: 0.8)


def test_with_flow_control_requests_wait_at_the_gateway_and_leave_first_come_first_served() -> None:
    f = fleet(FlowControl())
    for i in range(30):
        f.submit(100, 20, i * 0.001)
    pod = next(iter(f.pods.values()))
    assert pod.waiting == 5 and len(f.gateway.queue) == 24  # one runs, and the pod's queue stops at the depth
    assert f.gateway_metrics().gauges[QUEUE_SIZE][0][1] == 24.0
    outcomes = []
    for step in range(1, 200):
        outcomes += f.advance(step * 0.5)
        assert pod.waiting <= 5
    assert len(outcomes) == 30 and all(o.ok for o in outcomes) and not f.gateway.queue
    firsts = [o.first_token for o in sorted(outcomes, key=lambda o: o.arrival)]
    assert firsts[6:] == sorted(firsts[6:])  # the held ones, in order of arrival
    assert f.gateway.received == 30


def test_without_flow_control_the_gateway_only_counts() -> None:
    f = fleet(None)
    for i in range(30):
        f.submit(100, 20, i * 0.001)
    assert not f.gateway.queue and next(iter(f.pods.values())).waiting == 29  # one runs
    assert f.gateway_metrics().counters["llm_d_epp_request_total"][0][1] == 30.0


def test_with_flow_control_and_no_pod_requests_wait_for_one() -> None:
    held = fleet(FlowControl(), replicas=0)
    held.submit(100, 20, 0.0)
    held.scale("qwen", 1, 1.0)
    outcomes = []
    for step in range(1, 40):
        outcomes += held.advance(step * 0.5)
    assert [o.finish_reason for o in outcomes] == ["stop"] and outcomes[0].first_token is not None
    assert outcomes[0].first_token >= 6.0  # the pod served after its 5 s cold start
    lost = fleet(None, replicas=0)
    lost.submit(100, 20, 0.0)
    assert [o.finish_reason for o in lost.advance(1.0)] == ["unrouted"]


def test_a_request_held_past_the_ttl_is_shed_at_its_deadline_and_the_rest_still_go() -> None:
    assert FlowControl().request_ttl == 60.0  # llm-d's defaultRequestTTL and defaultNoEndpointRequestTTL
    f = fleet(FlowControl(request_ttl=10.0), replicas=0, cold_start=12.0)
    f.submit(100, 20, 0.0)
    f.submit(100, 20, 3.0)
    f.scale("qwen", 1, 0.5)
    assert f.advance(9.9) == [] and len(f.gateway.queue) == 2
    shed = f.advance(11.0)
    assert [(o.request_id, o.finish_reason, o.finish, o.first_token) for o in shed] == [("req-1", "shed", 10.0, None)]
    assert not shed[0].ok and len(f.gateway.queue) == 1
    served: list[str] = []
    for step in range(23, 60):
        served += [o.finish_reason for o in f.advance(step * 0.5)]
    assert served == ["stop"]  # the pod came at 12.5 s, before the second one's deadline at 13 s
    patient = fleet(FlowControl(request_ttl=None), replicas=0, cold_start=100.0)
    patient.submit(100, 20, 0.0)
    assert patient.advance(99.0) == [] and len(patient.gateway.queue) == 1


def test_the_gateway_pushes_what_the_receiver_decodes_and_a_query_sums_it() -> None:
    f = fleet(FlowControl())
    for _ in range(12):
        f.submit(100, 20, 0.0)
    metrics = f.gateway_metrics()
    wire = decode_export_request(encode_metrics(metrics_data([metrics], 10**18, 10**18))).samples

    def key(s: object) -> str:
        return repr(s)

    assert sorted(metrics_samples([metrics]), key=key) == sorted(wire, key=key)
    kinds = {s.name: s.kind for s in wire}
    assert kinds == {QUEUE_SIZE: Kind.GAUGE, "llm_d_epp_request": Kind.COUNTER}  # `_total` goes, as for vLLM's
    store = Store(120.0, 1000)
    store.append(metrics_samples([metrics]), 1.0)
    triggers = Triggers(store, 30.0, warmup_until=0.0)
    answer = triggers.evaluate("ns", "so", {"metricQuery": queue_query("ns", "qwen"), "targetValue": "1"}, 1.0)
    assert answer.value == len(f.gateway.queue) == 6.0  # of 12 at once, one runs and 5 wait at the pod
