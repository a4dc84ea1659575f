"""Scaling that catches a flash crowd: no ladder, capacity in flight, the cold start, forecast, gateway demand.

Time is an argument throughout: pools are PoolWindow values or FakePods fed to a Store in virtual time.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler import inflight
from scaler.errors import InvalidTrigger, MissingLabel, StaleData
from scaler.explain import describe_triggers
from scaler.explain_text import render
from scaler.inflight import Ask, Flight
from scaler.otlp import Kind, Sample
from scaler.policy import (
    SLO_BOUND,
    SLO_DECAY,
    Decision,
    GatewayDemand,
    Learned,
    PolicyState,
    pool_metrics,
    recommend,
    replicas_for,
    slo_correction,
)
from scaler.policy_spec import parse_policy
from scaler.signals import TTFT, WAITING_BY_REASON, Latency, PodSignals, PoolWindow
from scaler.store import Store
from scaler.triggers import Evaluation, Triggers
from tests.support.pods import FakePod, feed

BASE = {"policy": "vllm", "deployment": "llama"}


def make() -> tuple[Store, Triggers]:
    store = Store(retention=300.0, max_series=100_000)
    return store, Triggers(store, stale_after=5.0, warmup_until=0.0)


def ask(triggers: Triggers, now: float, **metadata: str) -> Evaluation:
    return triggers.evaluate("ns", "so", {**BASE, **metadata}, now)


def pool_of(pods: list[PodSignals], window: float) -> PoolWindow:
    pool = PoolWindow(window)
    for pod in pods:
        pool.pods[pod.pod] = pod
    return pool


# -- no ladder ----------------------------------------------------------------------------------------

crowd = st.fixed_dictionaries(
    {
        "running": st.floats(0, 500),
        "waiting": st.floats(0, 500),
        "kv": st.floats(0, 1),
        "generation_rate": st.floats(0, 50_000),
        "prompt_rate": st.floats(0, 200_000),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(crowd, min_size=1, max_size=8), st.floats(0.3, 1.0))
def test_a_flash_crowd_reaches_the_needed_count_in_one_evaluation(
    loads: list[dict[str, float]], headroom: float
) -> None:
    """However few pods report, one evaluation asks for the whole absolute demand (over headroom)."""
    spec = parse_policy(
        {
            **BASE,
            "targetRunningPerPod": "8",
            "targetWaitingPerPod": "4",
            "targetKvCacheUsage": "0.8",
            "decodeTokensPerSecondPerPod": "1000",
            "prefillTokensPerSecondPerPod": "5000",
            "headroom": f"{headroom!r}",
        },
        "ns",
    )
    pods = []
    for i, load in enumerate(loads):
        pod = PodSignals(f"ns/p{i}", **load)  # type: ignore[arg-type]
        pod.running_peak, pod.waiting_peak, pod.kv_peak = pod.running, pod.waiting, pod.kv
        pods.append(pod)
    total = {k: math.fsum(load[k] for load in loads) for k in crowd_keys()}
    needed = max(
        (total["running"] + total["waiting"]) / 8,
        total["waiting"] / 4,
        total["kv"] / 0.8,
        total["generation_rate"] / 1000 + total["prompt_rate"] / 5000,  # a unified pod: one GPU, both phases
    )
    decision, _ = recommend(spec, PolicyState(), pool_of(pods, 60), pool_of(pods, 6), now=100.0)
    assert decision.replicas == replicas_for(needed / headroom)


def crowd_keys() -> tuple[str, ...]:
    return ("running", "waiting", "kv", "generation_rate", "prompt_rate")


# -- capacity in flight -------------------------------------------------------------------------------


def saturated_pool(store: Store, pods: list[FakePod], t: float, queue: float, served: float, prompt: float) -> None:
    """Each pod serves `served` prompt tokens/s (requests of `prompt` tokens) with `queue` waiting in all."""
    for pod in pods:
        pod.waiting = queue / len(pods)
        pod.prompt_rate = served
        pod.requests_rate = served / prompt
        store.append(pod.samples(t), t)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.floats(1.2, 8.0),
    st.sampled_from([200.0, 1000.0, 4000.0]),
    st.sampled_from([0.5, 2.0, 5.0]),
    st.integers(1, 15),
    st.sampled_from([None, 30.0, 90.0]),
    st.booleans(),
)
def test_a_queue_growing_while_pods_load_never_asks_beyond_demand_over_capacity_plus_in_flight(
    reporting: int, multiple: float, prompt: float, ttft: float, every: int, cold: float | None, forecast: bool
) -> None:
    """R saturated pods at 2000 tok/s each, arrivals at `multiple` x their capacity; new pods never report.
    With the forecast on, the step in arrivals is extrapolated too: it is held by the same accounting."""
    capacity = 2000.0
    arrivals = multiple * reporting * capacity  # prompt tokens/s offered
    store, triggers = make()
    pods = [FakePod(f"p{i}") for i in range(reporting)]
    meta = {"phase": "prefill", "prefillTokensPerSecondPerPod": f"{capacity:g}", "ttftSeconds": f"{ttft:g}"}
    meta["forecast"] = "true" if forecast else "false"
    if cold is not None:
        meta["coldStart"] = f"{cold:g}s"
    for t in range(61):  # a steady minute: the pods keep up exactly
        saturated_pool(store, pods, float(t), 0.0, capacity, prompt)
    ask(triggers, 60.0, **meta)
    queue = 0.0
    asked = False
    for t in range(61, 241):
        queue += (arrivals - reporting * capacity) / prompt
        saturated_pool(store, pods, float(t), queue, capacity, prompt)
        if (t - 61) % every:
            continue
        answer = ask(triggers, float(t), **meta)
        decision = answer.decision
        assert decision is not None and decision.reporting_pods == reporting
        awaited = decision.in_flight + decision.late
        if asked:
            assert answer.value <= replicas_for(arrivals / capacity) + awaited, decision.reason
        asked = asked or answer.value > reporting


def test_pods_asked_for_are_in_flight_then_late_then_arrive_and_teach_the_cold_start() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", waiting=20) for i in range(2)]  # 40 waiting at 5/pod: 8 wanted
    now = feed(store, pods, 0, 60)
    first = ask(triggers, now, phase="prefill")
    assert first.value == 8.0
    assert first.decision is not None and first.decision.in_flight == 0  # the ask is this answer
    assert first.decision.cold_start == inflight.ColdStart(60.0, "default")
    now = feed(store, pods, 61, 90)
    waiting = ask(triggers, now, phase="prefill")
    assert waiting.decision is not None and (waiting.decision.in_flight, waiting.decision.late) == (6, 0)
    assert "6 pods in flight, 0 late; cold start 60s (default: no scale-up has reported yet)" in waiting.decision.notes
    now = feed(store, pods, 91, 130)
    late = ask(triggers, now, phase="prefill")
    assert late.decision is not None and (late.decision.in_flight, late.decision.late) == (0, 6)
    pods += [FakePod(f"n{i}", waiting=5) for i in range(6)]  # the 6 report, 80 s after they were asked for
    now = feed(store, pods, 140, 140)
    arrived = ask(triggers, now, phase="prefill")
    decision = arrived.decision
    assert decision is not None and (decision.in_flight, decision.late) == (0, 0)
    assert decision.cold_start == inflight.ColdStart(80.0, "learned")
    assert not any("in flight" in n for n in decision.notes)


def test_a_configured_cold_start_wins() -> None:
    store, triggers = make()
    now = feed(store, [FakePod("p0", waiting=20)], 0, 60)
    ask(triggers, now, phase="prefill", coldStart="2m")
    now = feed(store, [FakePod("p0", waiting=20)], 61, 150)
    decision = ask(triggers, now, phase="prefill", coldStart="2m").decision
    assert decision is not None and (decision.in_flight, decision.late) == (3, 0)
    assert decision.cold_start == inflight.ColdStart(120.0, "configured")
    assert "3 pods in flight, 0 late; cold start 120s (configured)" in decision.notes


def test_the_cold_start_is_learned_as_a_moving_mean_of_arrivals() -> None:
    flight = inflight.ask(Flight(), 3, 1, now=0.0)  # pods 2 and 3 asked at 0
    assert flight.asks == (Ask(0.0, 2, 3),) and flight.target == 3
    flight = inflight.arrive(flight, 2, now=40.0)  # pod 2 after 40 s
    assert flight.asks == (Ask(0.0, 3, 3),) and (flight.learned, flight.arrivals, flight.arrived_at) == (40.0, 1, 40.0)
    flight = inflight.arrive(flight, 3, now=80.0)  # pod 3 after 80 s: halfway from 40 to 80
    assert flight.asks == () and (flight.learned, flight.arrivals, flight.arrived_at) == (60.0, 2, 80.0)
    assert inflight.cold_start(None, flight) == inflight.ColdStart(60.0, "learned")
    assert inflight.cold_start(None, flight).describe(2) == "cold start 60s (learned from 2 scale-ups)"


def test_asks_are_withdrawn_when_the_recommendation_falls_and_forgotten_past_the_horizon() -> None:
    flight = inflight.ask(Flight(), 6, 2, now=0.0)
    assert inflight.awaited(flight, 10.0, 60.0) == (4, 0)
    assert inflight.awaited(flight, 60.0, 60.0) == (0, 4)  # as old as the cold start: late
    fewer = inflight.ask(flight, 4, 2, now=10.0)
    assert fewer.asks == (Ask(0.0, 3, 4),) and fewer.target == 4
    assert inflight.ask(flight, 2, 2, now=10.0).asks == ()
    again = inflight.ask(fewer, 7, 2, now=20.0)  # only the rise above the last recommendation is asked
    assert again.asks == (Ask(0.0, 3, 4), Ask(20.0, 5, 7))
    draining = inflight.ask(Flight(target=2), 5, 4, now=0.0)  # 4 report: only the fifth is asked for
    assert draining.asks == (Ask(0.0, 5, 5),)
    assert inflight.arrive(flight, 2, now=inflight.HORIZON + 1).asks == ()
    assert inflight.arrive(flight, 2, now=inflight.HORIZON).asks == flight.asks


def test_arrivals_are_recent_for_one_cold_start() -> None:
    assert not inflight.arrived_within(Flight(), 0.0, 60.0)
    arrived = Flight(arrived_at=100.0)
    assert inflight.arrived_within(arrived, 159.0, 60.0) and not inflight.arrived_within(arrived, 160.0, 60.0)


def test_a_queue_built_while_pods_load_buys_no_pods_while_they_drain_it() -> None:
    """3 pods asked for arrive into a queue that built while they loaded; draining it buys nothing more."""
    store, triggers = make()
    pods = [FakePod("p0", waiting=20)]
    now = feed(store, pods, 0, 10)
    assert ask(triggers, now, phase="prefill").value == 4.0  # 20 / 5
    for t in range(11, 60):
        pods[0].waiting = 20 + (t - 10) * 80 / 50  # growing to 100 while the 3 load
        store.append(pods[0].samples(float(t)), float(t))
    pods += [FakePod(f"n{i}") for i in range(3)]
    for t in range(60, 71):
        for pod in pods:
            pod.waiting = 100 - 5 * (t - 60)  # the 4 drain it: 50 each at 70 s
            store.append(pod.samples(float(t)), float(t))
    held = ask(triggers, 70.0, phase="prefill")
    decision = decided(held)
    assert held.value == 4.0 and decision.cold_start == inflight.ColdStart(60.0, "learned")
    detail = next(s.detail for s in decision.panic.signals if s.name == "waiting")
    assert detail == (
        "waiting 260.0 at 5/pod (52.0); held at 4: pods that began serving within a cold start drain what built up"
        " while they loaded"
    )
    now = feed(store, pods, 71, 76)  # at 50 each, still less than the 65 each they arrived into
    assert ask(triggers, now, phase="prefill").value == 4.0
    for pod in pods:
        pod.waiting = 80
    now = feed(store, pods, 77, 82)  # more than they arrived into: new demand, whatever the cold start
    assert ask(triggers, now, phase="prefill").value == 61.0  # 4 x (50 + 6 x 80) / 7 / 5


# -- forecast -----------------------------------------------------------------------------------------


def rising(store: Store) -> float:
    """4 pods at KV 0.4 for 55 s, then at 0.8 for the last 6 (the panic window)."""
    pods = [FakePod(f"p{i}", kv=0.4) for i in range(4)]
    feed(store, pods, 0, 54)
    for pod in pods:
        pod.kv = 0.8
    return feed(store, pods, 55, 60)


def test_forecast_is_off_by_default_and_extrapolates_rising_demand_over_the_cold_start() -> None:
    store, triggers = make()
    now = rising(store)
    plain = ask(triggers, now, phase="decode")
    assert plain.decision is not None and all(s.name != "forecast" for s in plain.decision.panic.signals)
    store, triggers = make()
    now = rising(store)
    ahead = ask(triggers, now, phase="decode", forecast="true", coldStart="30s")
    decision = ahead.decision
    assert decision is not None
    signal = next(s for s in decision.panic.signals if s.name == "forecast")
    panic = next(s.replicas for s in decision.panic.signals if s.name == "kv")  # 4 x (0.4 + 6 x 0.8) / 7 / 0.8
    stable = next(s.replicas for s in decision.stable.signals if s.name == "kv")  # 4 x (55 x 0.4 + 6 x 0.8) / 61 / 0.8
    assert (panic, stable) == (pytest.approx(4 * 5.2 / 7 / 0.8), pytest.approx(4 * 26.8 / 61 / 0.8))
    slope = (panic - stable) / 27  # the windows' centres are (60 - 6) / 2 s apart
    assert signal.replicas == pytest.approx(panic + 30 * slope)
    assert ahead.value == replicas_for(panic + 30 * slope) == 6.0
    assert signal.detail == "forecast: arrivals 3.7 rising 0.056/s, over a 30s cold start -> 5.4 (at most 2x)"


def test_a_forecast_asks_at_most_twice_todays_demand() -> None:
    store, triggers = make()
    now = rising(store)
    decision = ask(triggers, now, phase="decode", forecast="true", coldStart="10m").decision
    assert decision is not None and decision.replicas == 8
    panic = next(s.replicas for s in decision.panic.signals if s.name == "kv")
    assert next(s.replicas for s in decision.panic.signals if s.name == "forecast") == 2 * panic


FORECAST_PREFILL = {**BASE, "phase": "prefill", "prefillTokensPerSecondPerPod": "1000", "forecast": "true"}


def prefill_pool(window: float, prompt_rate: float, waiting: float) -> PoolWindow:
    pod = PodSignals("ns/p0", waiting=waiting, waiting_peak=waiting)
    pod.prompt_rate, pod.requests_rate = prompt_rate, prompt_rate / 1000
    return pool_of([pod], window)


def test_a_forecast_extrapolates_arrivals_and_is_held_while_pods_are_awaited() -> None:
    spec = parse_policy(FORECAST_PREFILL, "ns")
    stable, panic = prefill_pool(60, 1000.0, 0.0), prefill_pool(6, 2000.0, 0.0)  # arrivals 1 pod, then 2
    decision, _ = recommend(spec, PolicyState(), stable, panic, now=100.0)
    ahead = next(s for s in decision.panic.signals if s.name == "forecast")
    # 2 rising 1/27 per s, over the default 60 s cold start: 4.2, at most twice 2
    assert ahead.replicas == 4.0 and decision.replicas == 4
    assert ahead.detail == "forecast: arrivals 2.0 rising 0.037/s, over a 60s cold start -> 4.0 (at most 2x)"
    awaited = PolicyState(flight=Flight(asks=(Ask(90.0, 2, 3),), target=3))  # 2 pods in flight already
    decision, _ = recommend(spec, awaited, stable, panic, now=100.0)
    held = next(s for s in decision.panic.signals if s.name == "forecast")
    # K 2, plus min(2 awaited, K - R 1): the pods asked for count against the forecast
    assert held.replicas == 3.0 and decision.replicas == 3
    assert held.detail.endswith("-> 4.0 (at most 2x) (4.0); held at 3: 2 pods asked for are not serving yet")
    enough = PolicyState(flight=Flight(asks=(Ask(90.0, 2, 4),), target=4))  # R + A = 4: the forecast fits
    decision, _ = recommend(spec, enough, stable, panic, now=100.0)
    fits = next(s for s in decision.panic.signals if s.name == "forecast")
    assert fits.replicas == 4.0 and fits.detail.endswith("cold start -> 4.0 (at most 2x)")


def test_a_queue_that_grows_at_a_steady_arrival_rate_is_no_forecast() -> None:
    spec = parse_policy(FORECAST_PREFILL, "ns")
    stable, panic = prefill_pool(60, 1000.0, 10.0), prefill_pool(6, 1000.0, 40.0)  # the queue grew, arrivals did not
    decision, _ = recommend(spec, PolicyState(), stable, panic, now=100.0)
    assert "forecast" not in {s.name for s in decision.panic.signals}
    assert decision.replicas == 8  # 40 waiting at 5/pod: the queue signal alone


def test_no_forecast_while_demand_falls() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", kv=0.8) for i in range(4)]
    now = feed(store, pods, 0, 54)
    for pod in pods:
        pod.kv = 0.4
    now = feed(store, pods, 55, 60)
    decision = ask(triggers, now, phase="decode", forecast="true").decision
    assert decision is not None and all(s.name != "forecast" for s in decision.panic.signals)


# -- gateway demand -----------------------------------------------------------------------------------

QUEUE = "llm_d_epp_flow_control_queue_size"
EPP = (("k8s.namespace.name", "ns"), ("k8s.pod.name", "epp-0"), ("inference_pool", "llama"))
DEMAND = {"demandQuery": f'sum({QUEUE}{{inference_pool="llama"}})', "phase": "prefill"}


def gateway(store: Store, value: float, start: float, end: float) -> None:
    t = start
    while t <= end:
        store.append([Sample(QUEUE, EPP, Kind.GAUGE, value)], t)
        t += 1.0


def test_gateway_demand_scales_a_pool_from_zero_to_what_the_queue_holds() -> None:
    store, triggers = make()
    gateway(store, 0.0, 0.0, 10.0)
    assert ask(triggers, 10.0, **DEMAND).value == 0.0
    gateway(store, 42.0, 11.0, 11.0)
    answer = ask(triggers, 11.0, **DEMAND)
    assert answer.value == 9.0 and answer.active  # 42 queued at 5 per replica (targetWaitingPerPod)
    decision = answer.decision
    assert decision is not None and decision.demand_value == 42.0
    assert decision.reason.startswith(
        f'prefill: gateway demand 42 at 5/replica (sum({QUEUE}{{inference_pool="llama"}})'
    )
    assert ask(triggers, 11.0, **DEMAND, demandPerReplica="2").value == 21.0


def test_gateway_demand_is_the_max_with_the_pods_signals() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", waiting=10) for i in range(2)]
    now = feed(store, pods, 0, 60)
    gateway(store, 5.0, 0.0, 60.0)
    assert ask(triggers, now, **DEMAND).value == 4.0  # pods: 20 / 5 = 4; gateway: 5 / 5 = 1
    fresh = Triggers(store, stale_after=5.0, warmup_until=0.0)  # no pods asked for yet
    gateway(store, 50.0, 61.0, 61.0)
    now = feed(store, pods, 61, 61)
    assert ask(fresh, now, **DEMAND).value == 10.0  # 50 held at the gateway while the pods are full


def test_a_gateway_rate_is_arrivals_and_a_queue_is_held_while_pods_load() -> None:
    store, triggers = make()
    counter = "llm_d_epp_request"
    for t in range(11):
        store.append([Sample(counter, EPP, Kind.COUNTER, 12.0 * t)], float(t))
    meta = {"demandQuery": f"sum({counter})", "demandOperationOverTime": "rate", "demandPerReplica": "3"}
    answer = ask(triggers, 10.0, phase="prefill", **meta)
    assert answer.value == 4.0  # 12 requests/s at 3/s per replica
    assert answer.decision is not None
    assert [s.kind for s in answer.decision.panic.signals if s.name == "demand"] == ["rate"]


def test_gateway_demand_that_went_quiet_is_an_error_not_a_zero() -> None:
    store, triggers = make()
    gateway(store, 3.0, 0.0, 1.0)
    assert ask(triggers, 1.0, **DEMAND).value == 1.0
    with pytest.raises(StaleData, match=QUEUE):
        ask(triggers, 30.0, **DEMAND)


def test_gateway_demand_missing_its_label_names_it() -> None:
    store, triggers = make()
    store.append([Sample(QUEUE, (("k8s.pod.name", "epp-0"), ("k8s.namespace.name", "ns")), Kind.GAUGE, 3.0)], 0.0)
    with pytest.raises(MissingLabel, match="inference_pool"):
        ask(triggers, 1.0, **DEMAND)


def test_an_isolating_scaler_confines_the_demand_query_to_the_namespace() -> None:
    store = Store(retention=300.0, max_series=1000)
    triggers = Triggers(store, stale_after=5.0, warmup_until=0.0, isolate=True)
    other = (("k8s.namespace.name", "other"), ("k8s.pod.name", "epp-0"), ("inference_pool", "llama"))
    store.append([Sample(QUEUE, other, Kind.GAUGE, 40.0)], 0.0)
    store.append([Sample(QUEUE, EPP, Kind.GAUGE, 5.0)], 0.0)
    assert ask(triggers, 1.0, **DEMAND).value == 1.0  # 5 of ours, not 45


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"demandPerReplica": "2"}, "demandPerReplica needs demandQuery"),
        ({"demandOperationOverTime": "rate"}, "demandOperationOverTime needs demandQuery"),
        ({"demandQuery": "sum(x{"}, "demandQuery"),
        ({"demandQuery": "sum(x)", "demandOperationOverTime": "p99"}, "demandOperationOverTime: 'p99'"),
        ({"demandQuery": "sum(x)", "demandPerReplica": "0"}, "demandPerReplica: must be greater than 0"),
        ({"headroom": "0"}, r"headroom: must be in \(0, 1\]"),
        ({"headroom": "1.2"}, "headroom"),
        ({"forecast": "yes"}, 'forecast: must be "true" or "false"'),
        ({"coldStart": "60"}, "coldStart: invalid duration"),
        ({"coldStart": "0s"}, "coldStart: must be longer than 0"),
    ],
)
def test_bad_burst_metadata_names_the_key(metadata: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidTrigger, match=key):
        parse_policy({**BASE, **metadata}, "ns")


def test_burst_metadata_parses() -> None:
    spec = parse_policy(
        {**BASE, "coldStart": "90s", "forecast": "TRUE", "headroom": "0.7", "demandQuery": "sum(q)"}, "ns"
    )
    assert (spec.cold_start, spec.forecast, spec.headroom) == (90.0, True, 0.7)
    assert spec.demand is not None and (spec.demand.operation, spec.demand.per_replica) == ("last_one", 5.0)
    assert parse_policy({**BASE, "targetWaitingPerPod": "3", "demandQuery": "q"}, "ns").demand.per_replica == 3.0  # type: ignore[union-attr]
    default = parse_policy(BASE, "ns")
    assert (default.cold_start, default.forecast, default.headroom, default.demand) == (None, False, 1.0, None)


# -- headroom -----------------------------------------------------------------------------------------


def test_headroom_divides_absolute_demand_but_not_latency_corrections() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", kv=0.56, requests_rate=5, ttft=0.9) for i in range(3)]
    now = feed(store, pods, 0, 60)
    answer = ask(triggers, now, headroom="0.7", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    decision = answer.decision
    assert decision is not None
    figures = {s.name: s.replicas for s in decision.stable.signals}
    assert figures["kv"] == pytest.approx(3 * 0.56 / 0.8 / 0.7)  # 3.0
    assert figures["ttft"] == pytest.approx(3 * 1.95)  # not divided
    assert "headroom 0.7: rate and queue signals are demand / 0.7" in decision.notes
    plain = ask(triggers, now, ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9").decision
    assert plain is not None and not any(n.startswith("headroom") for n in plain.notes)


# -- after a burst ------------------------------------------------------------------------------------


def test_pods_that_arrive_after_a_burst_ended_do_not_scale_the_pool_up() -> None:
    """The stable window still holds the burst; the pods it asked for arrive after it ended."""
    store, triggers = make()
    pods = [FakePod(f"d{i}", running=12, kv=0.5) for i in range(2)]
    now = feed(store, pods, 0, 40)
    meta = {"phase": "decode", "targetRunningPerPod": "6", "panicThreshold": "10"}
    assert ask(triggers, now, **meta).value == 4.0  # 24 running at 6/pod
    for pod in pods:
        pod.running, pod.kv = 2, 0.1  # the burst ends
    pods += [FakePod(f"n{i}", running=2, kv=0.1) for i in range(2)]  # the two asked for arrive
    now = feed(store, pods, 41, 50)
    after = ask(triggers, now, **meta)
    decision = after.decision
    assert decision is not None
    stable = next(s for s in decision.stable.signals if s.name == "running")
    assert stable.replicas > 4  # the window mean still counts the burst, and the new pods on top of it
    assert after.value == 4.0
    assert "(held at 4: the panic window asks 2)" in decision.reason


def test_a_latency_over_its_slo_in_the_stable_window_alone_does_not_add_pods() -> None:
    store, triggers = make()
    pods = [FakePod(f"d{i}", requests_rate=10, itl=0.15, kv=0.1) for i in range(2)]
    now = feed(store, pods, 0, 50)
    for pod in pods:
        pod.itl = 0.02
    pods.append(FakePod("d2", requests_rate=10, itl=0.02, kv=0.1))
    now = feed(store, pods, 51, 60)
    meta = {"phase": "decode", "itlSeconds": "0.1", "panicThreshold": "10"}
    decision = ask(triggers, now, **meta).decision
    assert decision is not None
    itl = next(s for s in decision.stable.signals if s.name == "itl")
    assert decision.itl is not None and decision.itl > 0.1
    assert itl.replicas == pytest.approx(3 * decision.itl / 0.1)  # 3 pods x the stable window's p90 over the SLO
    assert not any(s.name == "itl" for s in decision.panic.signals)  # the tokens now are fast
    assert decision.replicas == 3  # the pods serving: the stable window holds, never adds


# -- the worked example of docs/policy.md -------------------------------------------------------------


def fluid_crowd(meta: dict[str, str], seconds: int = 300) -> list[tuple[int, int, int]]:
    """One prefill pod at 4000 tok/s (1000-token prompts: 4 requests/s), arrivals ramping from 0.8x to 5x
    its capacity over t = 100..110 s; every 5 s the answer is applied, and new pods serve 60 s later.
    Returns (t, answer, pods serving) at each evaluation."""
    mu, prompt = 4.0, 1000.0
    store, triggers = make()
    pods, ready_at = [FakePod("p0")], []
    queue, out = 0.0, []
    for t in range(seconds):
        arrivals = mu * (0.8 + 4.2 * min(1.0, max(0.0, (t - 100) / 10)))
        served = min(queue + arrivals, len(pods) * mu)
        queue += arrivals - served
        for pod in pods:
            pod.waiting, pod.requests_rate = queue / len(pods), served / len(pods)
            pod.prompt_rate = pod.requests_rate * prompt
            store.append(pod.samples(float(t)), float(t))
        pods += [FakePod(f"n{len(pods) + i}") for i in range(ready_at.count(t))]
        if t and t % 5 == 0:
            answer = int(ask(triggers, float(t), **meta).value)
            ready_at += [t + 60] * (answer - len(pods) - sum(1 for at in ready_at if at > t))
            out.append((t, answer, len(pods)))
    return out


def test_the_worked_example_meets_a_flash_crowd_in_three_evaluations_and_holds() -> None:
    meta = {"phase": "prefill", "ttftSeconds": "2", "prefillTokensPerSecondPerPod": "4000"}
    answers = {t: (answer, serving) for t, answer, serving in fluid_crowd(meta, 400)}
    assert answers[100] == (1, 1)
    assert [answers[t][0] for t in (105, 110, 115)] == [3, 6, 9]  # arrivals need 5; the queue buys 4 more
    assert {answers[t][0] for t in range(120, 300, 5)} == {9}  # held while the 8 load, and while they drain
    assert answers[175] == (9, 9)
    assert {answers[t][0] for t in range(300, 400, 5)} == {5}  # drained: what the arrivals need


# -- capacity in flight, the edges ---------------------------------------------------------------------


def test_asks_are_kept_in_order_and_only_very_old_ones_are_forgotten() -> None:
    flight = Flight(asks=(Ask(10.0, 3, 3), Ask(1000.0, 4, 5)), target=5)
    assert inflight.arrive(flight, 2, now=1100.0).asks == flight.asks  # both still awaited
    later = inflight.arrive(flight, 2, now=10.0 + inflight.HORIZON + 1)
    assert later.asks == (Ask(1000.0, 4, 5),)  # the first is past the horizon, the second is not
    assert inflight.arrive(flight, 4, now=1100.0).asks == (Ask(1000.0, 5, 5),)


def test_the_pods_asked_for_are_serving_pods_asleep_ones_held_aside() -> None:
    store, triggers = make()
    pods = [FakePod("p0", waiting=20), FakePod("s0", asleep=True)]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, phase="prefill").value == 5.0  # 4 for the queue + 1 asleep
    now = feed(store, pods, 61, 65)
    assert decided(ask(triggers, now, phase="prefill")).in_flight == 3  # 4 serving wanted, 1 serves


def test_an_overflow_pool_asks_for_pods_of_the_whole_pool() -> None:
    store, triggers = make()
    pods = [FakePod(f"a{i}", deployment="llama", kv=0.8) for i in range(2)]
    meta = {"phase": "decode", "deployment": "llama-burst", "overflowOf": "llama", "primaryMaxReplicas": "2"}
    now = feed(store, pods, 0, 60)
    for pod in pods:
        pod.kv = 1.0
    now = feed(store, pods, 61, 70)
    first = ask(triggers, now, **meta)
    assert decided(first).pool_replicas == 3 and first.value == 1.0
    now = feed(store, pods, 71, 75)
    assert decided(ask(triggers, now, **meta)).in_flight == 1  # the pool's third pod, not 1 - 2


def test_a_learned_cold_start_is_named_with_its_arrivals() -> None:
    store, triggers = make()
    pods = [FakePod("p0", waiting=10)]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, phase="prefill").value == 2.0
    pods[0].waiting = 5
    pods.append(FakePod("p1", waiting=5))
    now = feed(store, pods, 61, 62)
    assert decided(ask(triggers, now, phase="prefill")).cold_start == inflight.ColdStart(2.0, "learned")
    for pod in pods:
        pod.waiting = 30
    now = feed(store, pods, 63, 72)
    assert ask(triggers, now, phase="prefill").value == 12.0
    now = feed(store, pods, 73, 73)
    decision = decided(ask(triggers, now, phase="prefill"))
    assert "10 pods in flight, 0 late; cold start 2s (learned from 1 scale-ups)" in decision.notes


def test_decode_running_and_waiting_is_held_while_pods_load() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", running=6, waiting=12) for i in range(2)]
    meta = {"phase": "decode", "targetRunningPerPod": "6"}
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, **meta).value == 6.0  # (12 + 24) / 6
    for pod in pods:
        pod.waiting = 30
    now = feed(store, pods, 61, 70)
    held = decided(ask(triggers, now, **meta))
    assert held.replicas == 6  # (12 + 60) / 6 = 12 while the 4 asked for load
    running = next(s for s in held.panic.signals if s.name == "running")
    assert running.kind == "queue" and running.detail.endswith("held at 6: 4 pods asked for are not serving yet")


def test_a_latency_that_grows_while_pods_load_is_held() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", waiting=20, requests_rate=5) for i in range(2)]
    meta = {"phase": "prefill", "ttftSeconds": "0.5", "maxScaleUpRate": "10", "prefillTokensPerSecondPerPod": "1e9"}
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, **meta).value == 8.0  # 40 waiting / 5
    for pod in pods:
        pod.ttft = 4.5  # the queue shows in the first tokens
    now = feed(store, pods, 61, 70)
    held = ask(triggers, now, **meta)
    assert held.value == 8.0  # 2 pods x 9.5 = 19 would ask for 11 more
    ttft = next(s for s in decided(held).panic.signals if s.name == "ttft")
    assert ttft.detail == "ttft p90 4750ms > 500ms on 2 pods (19.0); held at 8: 6 pods asked for are not serving yet"


def test_an_unconfirmed_capacity_cannot_raise_the_in_flight_bound_beyond_its_cap() -> None:
    spec = parse_policy({**BASE, "phase": "prefill"}, "ns")
    state = PolicyState(prefill=Learned(1000.0, 100.0, 100.0), flight=Flight(asks=(Ask(100.0, 3, 3),), target=3))
    pods = []
    for i in range(2):  # each serves 1000 tok/s of 1000-token prompts, its queue growing by 4.5 a second
        pod = PodSignals(f"ns/p{i}", waiting=50.0, waiting_peak=50.0, waiting_growth=4.5)
        pod.prompt_rate, pod.requests_rate = 1000.0, 1.0
        pods.append(pod)
    decision, _ = recommend(spec, state, pool_of(pods, 60), pool_of(pods, 6), now=110.0)
    # arrivals 11,000 tok/s would be 11 pods, but an unconfirmed capacity counts at most 2x 2 pods:
    # the queue (100 / 5 = 20) is held at 4 + 1 awaited
    assert decision.replicas == 5
    prompt = next(s for s in decision.stable.signals if s.name == "prefill_tokens")
    assert (prompt.replicas, prompt.keep_up) == (4.0, 4.0)


def test_without_gateway_values_a_demand_spec_adds_no_signal() -> None:
    spec = parse_policy({**BASE, "phase": "prefill", "demandQuery": "sum(q)"}, "ns")
    decision, _ = recommend(spec, PolicyState(), PoolWindow(60.0), PoolWindow(6.0), now=1.0)
    assert decision.replicas == 0 and decision.stable.signals == () and decision.demand_value is None


def test_the_stable_window_reads_the_gateway_over_the_stable_window() -> None:
    store, triggers = make()
    gateway(store, 10.0, 0.0, 54.0)
    meta = {**DEMAND, "demandOperationOverTime": "avg", "panicThreshold": "100"}
    first = decided(ask(triggers, 54.0, **meta))
    assert first.replicas == 2  # 10 queued at 5 per replica
    gateway(store, 0.0, 55.0, 60.0)
    later = decided(ask(triggers, 60.0, **meta))
    assert later.demand_value == pytest.approx(10.0 * 55 / 61)  # the stable window's average
    assert later.replicas == 2  # 9.0 / 5 -> 2 held by the stable window; the panic window's 0 asks for none
    queue = next(s for s in later.stable.signals if s.name == "demand")
    assert queue.kind == "queue"


# -- forecast, the edges -------------------------------------------------------------------------------


def test_no_forecast_for_an_empty_pool_or_flat_demand() -> None:
    store, triggers = make()
    feed(store, [FakePod("other-0", namespace="elsewhere", deployment="other", kv=0.5)], 0, 0)  # the scaler is reached
    assert ask(triggers, 0.0, phase="decode", forecast="true").value == 0.0
    flat, now = make()[1], 60.0
    store = flat.store
    feed(store, [FakePod(f"p{i}", kv=0.6) for i in range(2)], 0, 60)
    decision = decided(ask(flat, now, phase="decode", forecast="true"))
    assert decision.replicas == 2 and all(s.name != "forecast" for s in decision.panic.signals)


def test_a_forecast_needs_windows_apart() -> None:
    store, triggers = make()
    now = rising(store)
    same = decided(ask(triggers, now, phase="decode", forecast="true", stableWindow="6s", panicWindow="6s"))
    assert all(s.name != "forecast" for s in same.panic.signals)
    close = decided(ask(triggers, now, phase="decode", forecast="true", stableWindow="8s", panicWindow="6s"))
    assert any(s.name == "forecast" for s in close.panic.signals)  # centres 1 s apart


def test_a_forecast_of_small_demand_still_counts() -> None:
    store, triggers = make()
    pods = [FakePod("p0", kv=0.2)]
    feed(store, pods, 0, 54)
    pods[0].kv = 0.4
    now = feed(store, pods, 55, 60)
    decision = decided(ask(triggers, now, phase="decode", forecast="true"))
    assert any(s.name == "forecast" for s in decision.panic.signals)  # 0.21 rising to 0.46 of a pod


# -- explaining it -------------------------------------------------------------------------------------


def test_explain_shows_the_pods_in_flight_the_cold_start_and_the_forecast() -> None:
    store, triggers = make()
    now = rising(store)
    ask(triggers, now, phase="decode", forecast="true", coldStart="30s")
    now = feed(store, [FakePod(f"p{i}", kv=0.8) for i in range(4)], 61, 70)
    ask(triggers, now, phase="decode", forecast="true", coldStart="30s")
    [described] = describe_triggers(triggers, now)["triggers"]
    assert (described["in_flight_pods"], described["late_pods"]) == (2, 0)
    assert (described["cold_start_seconds"], described["cold_start_source"]) == (30.0, "configured")
    forecast = described["panic_window"]["signals"]["forecast"]
    assert forecast["kind"] == "forecast" and forecast["peak_replicas"] == forecast["replicas"]
    text = render({"triggers": [described]})
    assert "  reporting pods 4  in flight 2  cold start 30s (configured)  panic no" in text


def test_explain_shows_late_pods_and_the_gateway_demand() -> None:
    store, triggers = make()
    gateway(store, 42.0, 0.0, 0.0)
    ask(triggers, 0.0, **DEMAND)
    gateway(store, 42.0, 1.0, 100.0)
    ask(triggers, 100.0, **DEMAND)
    [described] = describe_triggers(triggers, 100.0)["triggers"]
    text = render({"triggers": [described]})
    assert "  reporting pods 0  in flight 0 (+9 late)  cold start 60s (default)  panic yes  gateway demand 42" in text
    older = {**described}
    for key in ("in_flight_pods", "late_pods", "cold_start_seconds", "cold_start_source", "demand_value"):
        del older[key]
    assert "  reporting pods 0  panic yes\n" in render({"triggers": [older]})  # a scaler from before them


def test_the_waiting_note_says_exactly_which_queue_each_pod_gave() -> None:
    store, triggers = make()
    labels = (("k8s.deployment.name", "llama"), ("k8s.namespace.name", "ns"), ("k8s.pod.name", "only"))
    for t in range(61):
        store.append([Sample(WAITING_BY_REASON, (*labels, ("reason", "capacity")), Kind.GAUGE, 4.0)], float(t))
    feed(store, [FakePod("split", waiting=10, deferred=6)], 0, 60)
    decision = decided(ask(triggers, 60.0, phase="prefill", prefillTokensPerSecondPerPod="1e9"))
    note = next(n for n in decision.notes if n.startswith("waiting:"))
    assert note == (
        'waiting: num_requests_waiting_by_reason{reason="capacity"} on 2 of 2 pods, '
        "leaving out 6.0 deferred (LoRA budget, KV transfer)"
    )
    mixed = [FakePod("p0", waiting=10, deferred=6), FakePod("p1", waiting=10)]
    store, triggers = make()
    now = feed(store, mixed, 0, 60)
    note = next(n for n in decided(ask(triggers, now, phase="prefill")).notes if n.startswith("waiting:"))
    assert note == (
        'waiting: num_requests_waiting_by_reason{reason="capacity"} on 1 of 2 pods, '
        "leaving out 6.0 deferred (LoRA budget, KV transfer); num_requests_waiting on the other 1"
    )


def decided(answer: Evaluation) -> Decision:
    assert answer.decision is not None
    return answer.decision


def test_an_answer_that_does_not_rise_asks_for_nothing() -> None:
    assert inflight.ask(Flight(target=2), 2, 2, now=0.0).asks == ()
    assert inflight.ask(Flight(target=2), 3, 3, now=0.0).asks == ()  # 3 report already
    assert inflight.ask(Flight(target=2), 3, 1, now=0.0).asks == (Ask(0.0, 3, 3),)


def test_a_phase_reads_only_its_own_signals() -> None:
    pod = PodSignals("ns/p0", running=40.0, running_peak=40.0, kv=0.9, kv_peak=0.9, waiting=20.0, waiting_peak=20.0)
    pod.generation_rate, pod.prompt_rate = 5000.0, 9000.0
    state = PolicyState(prefill=Learned(1000.0, 0.0, 100.0), decode=Learned(1000.0, 0.0, 100.0))
    names = {}
    for phase in ("prefill", "decode", "unified"):
        spec = parse_policy({**BASE, "phase": phase, "targetRunningPerPod": "8"}, "ns")
        decision, _ = recommend(spec, state, pool_of([pod], 60), pool_of([pod], 6), now=100.0)
        names[phase] = {s.name for s in decision.stable.signals}
    assert names["prefill"] == {"waiting", "prefill_tokens"}
    assert names["decode"] == {"running", "kv", "decode_tokens"}
    assert names["unified"] == names["prefill"] | names["decode"] | {"gpu_time"}


def test_headroom_divides_gateway_demand_too() -> None:
    store, triggers = make()
    gateway(store, 42.0, 0.0, 0.0)
    assert ask(triggers, 0.0, **DEMAND, headroom="0.5").value == 17.0  # 42 / 5 / 0.5 = 16.8


def test_the_latency_detail_gives_both_in_milliseconds() -> None:
    store, triggers = make()
    now = feed(store, [FakePod(f"p{i}", requests_rate=5, ttft=4.5) for i in range(2)], 0, 60)
    meta = {"phase": "prefill", "ttftSeconds": "2.5", "prefillTokensPerSecondPerPod": "1e9"}
    ttft = next(s for s in decided(ask(triggers, now, **meta)).stable.signals if s.name == "ttft")
    assert ttft.detail == "ttft p90 4750ms > 2500ms on 2 pods"  # 2 x 1.9 = 3.8: under the cap of 4


def test_a_signal_at_its_limit_is_not_held() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", waiting=20) for i in range(2)]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, phase="prefill").value == 8.0
    now = feed(store, pods, 61, 70)
    decision = decided(ask(triggers, now, phase="prefill"))
    assert decision.in_flight == 6
    assert next(s.detail for s in decision.panic.signals if s.name == "waiting") == "waiting 40.0 at 5/pod"  # = 8
    store, triggers = make()
    now = feed(store, [FakePod(f"p{i}", requests_rate=5, ttft=0.9) for i in range(2)], 0, 60)
    observed = decided(ask(triggers, now, phase="prefill", ttftSeconds="1")).ttft
    assert observed is not None
    meta = {"phase": "prefill", "ttftSeconds": repr(observed / 2), "prefillTokensPerSecondPerPod": "1e9"}
    ttft = next(s for s in decided(ask(triggers, now, **meta)).stable.signals if s.name == "ttft")
    assert (ttft.replicas, ttft.detail) == (4.0, "ttft p90 975ms > 488ms on 2 pods")  # 2 x 2 = the cap of 2x 2 pods


def test_a_forecast_that_asks_for_no_more_is_not_named() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", kv=0.55) for i in range(4)]
    feed(store, pods, 0, 54)
    for pod in pods:
        pod.kv = 0.6
    now = feed(store, pods, 55, 60)
    decision = decided(ask(triggers, now, phase="decode", forecast="true", coldStart="5s"))
    ahead = next(s.replicas for s in decision.panic.signals if s.name == "forecast")
    assert 2 < ahead <= 3 and decision.replicas == 3  # stable 2.77, panic 2.96, forecast 3.0: all 3
    assert decision.reason.startswith("decode: kv 0.55 <= 0.80 on 4 pods -> 3")


# -- one GPU for both phases, arrivals in the pods' own units ---------------------------------------


UNIFIED_CAPACITIES = {
    "targetRunningPerPod": "256",
    "prefillTokensPerSecondPerPod": "10000",
    "decodeTokensPerSecondPerPod": "8000",
}


def test_a_unified_pod_spends_one_gpu_on_both_phases() -> None:
    pods = []
    for i in range(3):
        pod = PodSignals(f"ns/p{i}", running=10.0, running_peak=10.0, waiting=0.0, waiting_peak=0.0)
        pod.prompt_rate, pod.generation_rate = 6000.0, 4000.0  # 0.6 and 0.5 of a pod: 1.1 together
        pods.append(pod)
    spec = parse_policy({**BASE, **UNIFIED_CAPACITIES}, "ns")
    decision, _ = recommend(spec, PolicyState(), pool_of(pods, 60), pool_of(pods, 6), now=100.0)
    figures = {s.name: s.replicas for s in decision.stable.signals}
    assert figures["prefill_tokens"] == pytest.approx(1.8) and figures["decode_tokens"] == pytest.approx(1.5)
    assert figures["gpu_time"] == pytest.approx(3.3)
    assert decision.replicas == 4 and decision.reason == (
        "unified: gpu time: prompt 1.80 + generation 1.50 pods (one GPU serves both phases) -> 4"
    )
    gpu = next(s for s in decision.stable.signals if s.name == "gpu_time")
    assert (gpu.kind, gpu.bounded, gpu.peak) == ("rate", False, pytest.approx(3.3))
    for phase in ("prefill", "decode"):  # disaggregated pods run one phase each: no sum
        split = parse_policy({**BASE, **UNIFIED_CAPACITIES, "phase": phase}, "ns")
        decision, _ = recommend(split, PolicyState(), pool_of(pods, 60), pool_of(pods, 6), now=100.0)
        assert "gpu_time" not in {s.name for s in decision.stable.signals}


def test_the_gpu_time_of_a_unified_pool_counts_queue_growth_but_not_the_backlog() -> None:
    pod = PodSignals("ns/p0", waiting=4.0, waiting_peak=4.0, requests_rate=10.0, waiting_growth=2.0)
    pod.prompt_rate, pod.generation_rate = 5000.0, 0.0
    spec = parse_policy({**BASE, **UNIFIED_CAPACITIES, "ttftSeconds": "2", "headroom": "0.5"}, "ns")
    decision, _ = recommend(spec, PolicyState(), pool_of([pod], 60), pool_of([pod], 6), now=100.0)
    figures = {s.name: s for s in decision.stable.signals}
    # 500 tokens a request: 5000 served + 1000 queue growth, 1000 backlog (4 waiting over 2 s), at 50 %
    assert figures["prefill_tokens"].replicas == pytest.approx(1.4)
    assert figures["prefill_tokens"].keep_up == pytest.approx(1.2)
    assert figures["gpu_time"].replicas == pytest.approx(1.2)  # generation 0: the arrivals alone


def test_an_unconfirmed_capacity_bounds_the_gpu_time_it_enters() -> None:
    pod = PodSignals("ns/p0")
    pod.prompt_rate, pod.generation_rate = 20_000.0, 0.0
    spec = parse_policy({**BASE, "targetRunningPerPod": "256", "decodeTokensPerSecondPerPod": "8000"}, "ns")
    unconfirmed = PolicyState(prefill=Learned(2000.0, 90.0, 100.0))
    decision, _ = recommend(spec, unconfirmed, pool_of([pod], 60), pool_of([pod], 6), now=100.0)
    gpu = next(s for s in decision.stable.signals if s.name == "gpu_time")
    assert gpu.bounded and gpu.replicas == 2.0  # 10 wanted, capped at 2x 1 pod
    assert decision.replicas == 2


RATE_DEMAND = {
    "phase": "decode",
    "targetRunningPerPod": "100",
    "demandQuery": "sum(llm_d_epp_request)",
    "demandOperationOverTime": "rate",
}


def test_gateway_arrivals_without_a_per_replica_figure_are_sized_by_what_the_pods_serve() -> None:
    spec = parse_policy({**BASE, **RATE_DEMAND}, "ns")
    assert spec.demand is not None and spec.demand.per_replica is None
    pods = [PodSignals(f"ns/p{i}", running=60.0, running_peak=60.0, requests_rate=3.0) for i in range(2)]
    pool = pool_of(pods, 60)
    decision, _ = recommend(spec, PolicyState(), pool, pool, now=100.0, demand=GatewayDemand(24.0, 24.0))
    demand = next(s for s in decision.stable.signals if s.name == "demand")
    # the pods need 1.2 replicas (120 running at 100/pod) for the 6 requests/s they serve: 5/s a replica
    assert (demand.replicas, demand.peak, demand.kind, demand.keep_up) == (
        pytest.approx(4.8),
        pytest.approx(4.8),
        "rate",
        None,
    )
    assert demand.detail == (
        "gateway arrivals 24.00/s at 5.00/s per replica (pods serve 6.00/s) (sum(llm_d_epp_request) [rate])"
    )
    assert decision.replicas == 5
    assert TTFT in pool_metrics(spec)  # first tokens/s: what the pods serve
    assert TTFT not in pool_metrics(parse_policy({**BASE, "phase": "decode"}, "ns"))
    explicit = parse_policy({**BASE, **RATE_DEMAND, "demandPerReplica": "2"}, "ns")
    assert TTFT not in pool_metrics(explicit)
    decision, _ = recommend(explicit, PolicyState(), pool, pool, now=100.0, demand=GatewayDemand(24.0, 25.0))
    assert decision.replicas == 13  # 25/s at 2/s per replica in the panic window
    stable = next(s for s in decision.stable.signals if s.name == "demand")
    assert (stable.replicas, stable.peak, stable.kind, stable.keep_up) == (12.0, 12.0, "rate", None)
    assert stable.detail == "gateway demand 24 at 2/replica (sum(llm_d_epp_request) [rate])"


def test_gateway_arrivals_need_pods_that_serve_something_to_be_sized() -> None:
    spec = parse_policy({**BASE, **RATE_DEMAND}, "ns")
    idle = [PodSignals("ns/p0", running=0.0, running_peak=0.0, requests_rate=0.0)]
    busy_but_silent = [PodSignals("ns/p0", running=50.0, running_peak=50.0, requests_rate=0.0)]
    serving_nothing_needed = [PodSignals("ns/p0", running=0.0, running_peak=0.0, requests_rate=5.0)]
    no_load_signal = [PodSignals("ns/p0", requests_rate=5.0)]  # serves, but reports no running, KV or tokens
    for pods in (idle, busy_but_silent, serving_nothing_needed, no_load_signal):
        pool = pool_of(pods, 60)
        decision, _ = recommend(spec, PolicyState(), pool, pool, now=100.0, demand=GatewayDemand(24.0, 24.0))
        assert "demand" not in {s.name for s in decision.stable.signals}
    assert parse_policy({**BASE, "demandQuery": "q"}, "ns").demand.per_replica == 5.0  # type: ignore[union-attr]


def test_a_gateway_queue_that_grows_counts_as_arrivals_in_the_in_flight_bound() -> None:
    spec = parse_policy({**BASE, "phase": "prefill", "prefillTokensPerSecondPerPod": "1000", "demandQuery": "q"}, "ns")
    pods = [PodSignals(f"ns/p{i}", waiting=0.0, waiting_peak=0.0, requests_rate=1.0) for i in range(2)]
    for pod in pods:
        pod.prompt_rate = 1000.0  # full: a request/s of 1000-token prompts is a pod's capacity
    pool = pool_of(pods, 60)
    flight = Flight(asks=(Ask(90.0, 3, 3),), target=3)  # one pod asked for before the crowd came
    state = PolicyState(flight=flight, queue_seen=(94.0, 30.0))
    decision, after = recommend(spec, state, pool, pool, now=100.0, demand=GatewayDemand(80.0, 60.0))
    demand = next(s for s in decision.panic.signals if s.name == "demand")
    # 60 queued at 5/replica asks 12; the queue grew 5/s beside the 2/s served: arrivals need
    # 2 pods x 7/2 = 7, so the bound is 7 + 1 awaited instead of the pods reporting and asked for (3)
    assert (demand.keep_up, demand.replicas, demand.kind) == (pytest.approx(7.0), 8.0, "queue")
    assert demand.detail == (
        "gateway demand 60 at 5/replica (sum(q) [last_one]), growing 5.00/s: arrivals need 7.0 (12.0); "
        "held at 8: 1 pods asked for are not serving yet"
    )
    assert decision.replicas == 8 and after.queue_seen == (100.0, 60.0)
    stable = next(s for s in decision.stable.signals if s.name == "demand")
    # the stable window's 80 (16) is held at the same bound
    assert (stable.replicas, stable.peak, stable.keep_up) == (8.0, 16.0, pytest.approx(7.0))
    assert stable.detail.endswith("(16.0); held at 8: 1 pods asked for are not serving yet")
    soon, kept = recommend(spec, after, pool, pool, now=103.0, demand=GatewayDemand(60.0, 60.0))
    flat = next(s for s in soon.panic.signals if s.name == "demand")  # no growth since: arrivals are the served
    assert flat.keep_up == pytest.approx(2.0) and flat.detail == (
        "gateway demand 60 at 5/replica (sum(q) [last_one]) (12.0); held at 8: 6 pods asked for are not serving yet"
    )
    assert kept.queue_seen == (100.0, 60.0)  # a reading less than a panic window later is not kept
    later = recommend(spec, after, pool, pool, now=106.0, demand=GatewayDemand(60.0, 60.0))[1]
    assert later.queue_seen == (106.0, 60.0)  # one a panic window later is
    first, fresh = recommend(spec, PolicyState(flight=flight), pool, pool, 100.0, demand=GatewayDemand(60.0, 60.0))
    assert fresh.queue_seen == (100.0, 60.0) and first.replicas == 3  # no growth known yet: held at R + A
    shrinking = PolicyState(flight=flight, queue_seen=(94.0, 90.0))
    drained = recommend(spec, shrinking, pool, pool, now=100.0, demand=GatewayDemand(60.0, 60.0))[0]
    assert next(s for s in drained.panic.signals if s.name == "demand").keep_up == pytest.approx(2.0)
    light = PodSignals("ns/p0", waiting=0.0, waiting_peak=0.0, requests_rate=0.5)
    light.prompt_rate = 500.0  # half a pod's prompts: the load is below one replica
    one = pool_of([light], 60)
    slow = PolicyState(queue_seen=(90.0, 25.0))  # 0.5/s of growth
    small = recommend(spec, slow, one, one, now=100.0, demand=GatewayDemand(30.0, 30.0))[0]
    gentle = next(s for s in small.panic.signals if s.name == "demand")
    assert gentle.keep_up == pytest.approx(1.0) and gentle.detail.endswith("growing 0.50/s: arrivals need 1.0")
    rate = parse_policy({**BASE, "phase": "prefill", "demandQuery": "q", "demandOperationOverTime": "rate"}, "ns")
    assert recommend(rate, PolicyState(), pool, pool, 100.0, demand=GatewayDemand(4.0, 4.0))[1].queue_seen is None


def test_a_gateway_queue_without_served_requests_has_no_arrivals_part() -> None:
    spec = parse_policy({**BASE, "phase": "prefill", "demandQuery": "q"}, "ns")
    pool = pool_of([PodSignals("ns/p0", waiting=0.0, waiting_peak=0.0)], 60)
    state = PolicyState(queue_seen=(94.0, 0.0))
    decision, _ = recommend(spec, state, pool, pool, now=100.0, demand=GatewayDemand(30.0, 30.0))
    demand = next(s for s in decision.stable.signals if s.name == "demand")
    assert demand.keep_up is None and demand.detail == "gateway demand 30 at 5/replica (sum(q) [last_one])"
    assert decision.replicas == 6


def test_decode_arrivals_are_what_is_served_plus_what_piles_up() -> None:
    spec = parse_policy({**BASE, "phase": "decode", "targetRunningPerPod": "100"}, "ns")
    pod = PodSignals("ns/p0", running=100.0, running_peak=100.0, waiting=50.0, waiting_peak=50.0)
    pod.requests_rate, pod.waiting_growth = 0.5, 1.5
    decision, _ = recommend(spec, PolicyState(), pool_of([pod], 60), pool_of([pod], 6), now=100.0)
    running = next(s for s in decision.stable.signals if s.name == "running")
    assert running.replicas == pytest.approx(1.5) and running.keep_up == pytest.approx(4.0)  # 1 x (1 + 1.5 / 0.5)
    for served, growth in ((0.0, 12.0), (4.0, 0.0), (4.0, -3.0)):
        pod.requests_rate, pod.waiting_growth = served, growth
        decision, _ = recommend(spec, PolicyState(), pool_of([pod], 60), pool_of([pod], 6), now=100.0)
        assert next(s for s in decision.stable.signals if s.name == "running").keep_up == pytest.approx(1.0)


QUEUED_FOR_DECODE = {**BASE, "phase": "decode", "targetRunningPerPod": "100", "demandQuery": "sum(q)"}


def decode_pod(running: float, waiting: float) -> PodSignals:
    pod = PodSignals("ns/p0", running=running, running_peak=running + 10, waiting=waiting, waiting_peak=waiting + 10)
    pod.requests_rate = 4.0
    return pod


def test_a_decode_pool_counts_the_gateway_queue_as_batch_slots_to_come() -> None:
    spec = parse_policy(QUEUED_FOR_DECODE, "ns")
    assert spec.demand is not None and spec.demand.per_replica == 100.0  # targetRunningPerPod, not 5 waiting
    pool = pool_of([decode_pod(80.0, 20.0)], 60)
    decision, _ = recommend(spec, PolicyState(), pool, pool, now=100.0, demand=GatewayDemand(150.0, 250.0))
    stable = next(s for s in decision.stable.signals if s.name == "demand")
    # 80 running + 20 waiting at 100/pod (1.0, peak 1.2, arrivals 0.8) + 150 queued at 100/replica
    assert (stable.replicas, stable.peak, stable.keep_up, stable.kind) == (
        pytest.approx(2.5),
        pytest.approx(2.7),
        pytest.approx(2.3),
        "queue",
    )
    assert stable.detail == (
        "running+waiting 100.0 at 100/pod + gateway queue 150 at 100/replica (sum(q) [last_one]), "
        "each to want a batch slot"
    )
    assert decision.replicas == 4 and decision.in_panic  # the panic window's 250: 1.0 + 2.5
    halved = parse_policy({**QUEUED_FOR_DECODE, "headroom": "0.5", "demandPerReplica": "50"}, "ns")
    decision, _ = recommend(halved, PolicyState(), pool, pool, now=100.0, demand=GatewayDemand(250.0, 250.0))
    assert decision.replicas == 12  # 100 / 50 + 250 / 25
    alone = parse_policy({**BASE, "phase": "decode", "demandQuery": "sum(q)", "demandPerReplica": "50"}, "ns")
    decision, _ = recommend(alone, PolicyState(), pool, pool, now=100.0, demand=GatewayDemand(250.0, 250.0))
    demand = next(s for s in decision.stable.signals if s.name == "demand")
    assert (demand.replicas, demand.peak, demand.keep_up, demand.kind) == (5.0, 5.0, 5.0, "queue")  # the queue alone
    assert decision.replicas == 5
    assert demand.detail == "gateway queue 250 at 50/replica (sum(q) [last_one]), each to want a batch slot"
    with pytest.raises(InvalidTrigger, match="decode pool counts queued requests .* set targetRunningPerPod"):
        parse_policy({**BASE, "phase": "decode", "demandQuery": "sum(q)"}, "ns")
    rate = parse_policy({**BASE, "phase": "decode", "demandQuery": "q", "demandOperationOverTime": "rate"}, "ns")
    assert rate.demand is not None and rate.demand.per_replica is None  # arrivals: sized by what the pods serve


def test_a_queue_in_front_of_prefill_is_arrivals_to_decode_where_its_own_queue_is_held() -> None:
    spec = parse_policy(QUEUED_FOR_DECODE, "ns")
    state = PolicyState(flight=Flight(asks=(Ask(90.0, 2, 2),), target=2))  # one pod in flight
    upstream = pool_of([decode_pod(80.0, 20.0)], 60)
    decision, _ = recommend(spec, state, upstream, upstream, now=100.0, demand=GatewayDemand(250.0, 250.0))
    assert decision.in_flight == 1 and decision.replicas == 4  # 3.5: K is 3.3, the bound 5
    own = pool_of([decode_pod(80.0, 400.0)], 60)  # the same demand piled up at the decode pod itself
    decision, _ = recommend(spec, state, own, own, now=100.0, demand=GatewayDemand(0.0, 0.0))
    running = next(s for s in decision.panic.signals if s.name == "demand")
    assert running.replicas == 2.0 and decision.replicas == 2  # 4.8 held at R + A: its arrivals need 0.8
    assert running.detail.endswith("(4.8); held at 2: 1 pods asked for are not serving yet")


SLO_SPEC = {**BASE, "phase": "prefill", "prefillTokensPerSecondPerPod": "1000", "ttftSeconds": "1"}


def slow_pods(count: int, prompt_rate: float, ttft: float | None) -> PoolWindow:
    """`count` pods serving `prompt_rate` each, with every first token of the window near `ttft`."""
    pool = PoolWindow(60)
    for i in range(count):
        pod = PodSignals(f"ns/p{i}", waiting=0.0, waiting_peak=0.0)
        pod.prompt_rate = prompt_rate
        pool.pods[pod.pod] = pod
    if ttft is not None:
        pool.ttft = Latency((ttft - 0.1, ttft), [0.0, 10.0, 0.0])
    return pool


def test_a_latency_missed_on_settled_pods_near_full_load_teaches_a_correction() -> None:
    spec = parse_policy(SLO_SPEC, "ns")
    missed = slow_pods(2, 900.0, ttft=3.0)  # 1.8 pods of prompts on 2 pods, p90 TTFT 3 s > 1 s
    decision, state = recommend(spec, PolicyState(), missed, missed, now=100.0)
    assert state.slo == (100.0, pytest.approx(2.1 / 1.8))  # 1.8 x factor = 2.1: one more pod
    assert "latency correction learned: x1.17 (ttft missed on 2 pods at load 1.80)" in decision.notes
    calm = slow_pods(2, 900.0, ttft=None)
    decision, after = recommend(spec, PolicyState(slo=state.slo), calm, calm, now=101.0)  # no panic from the miss
    assert decision.replicas == 3 and after.slo == state.slo  # 1.8 x 1.17 = 2.1 -> 3; nothing new learned
    assert any(n.startswith("latency correction x1.17: headroom 0.86") for n in decision.notes)
    assert slo_correction(state, 100.0 + SLO_DECAY) == pytest.approx(1.0 + (2.1 / 1.8 - 1.0) / math.e)
    assert slo_correction(state, 50.0) == pytest.approx(2.1 / 1.8)  # never more than when it was learned
    assert slo_correction(PolicyState(), 100.0) == 1.0
    again, _ = recommend(spec, state, missed, missed, now=101.0)
    assert not any(n.startswith("latency correction learned") for n in again.notes)  # x1.17 already covers it


def test_a_correction_is_learned_only_on_settled_busy_pods_and_at_most_doubles() -> None:
    spec = parse_policy(SLO_SPEC, "ns")
    busy = slow_pods(3, 700.0, ttft=3.0)  # load 2.1 on 3 pods: all of them needed
    assert recommend(spec, PolicyState(), busy, busy, now=100.0)[1].slo == (100.0, pytest.approx(3.1 / 2.1))
    light = slow_pods(3, 600.0, ttft=3.0)  # load 1.8 on 3 pods: the third is not needed, the miss is not capacity
    assert recommend(spec, PolicyState(), light, light, now=100.0)[1].slo is None
    edge = slow_pods(2, 500.0, ttft=3.0)  # load 1.0 on 2 pods: at the edge, not beyond it
    assert recommend(spec, PolicyState(), edge, edge, now=100.0)[1].slo is None
    corrected = PolicyState(slo=(100.0, 1.2))  # load 2.5 on 3 pods reads 3.0 under x1.2: learn x1.24
    decision, state = recommend(spec, corrected, slow_pods(3, 2500.0 / 3, 3.0), slow_pods(3, 2500.0 / 3, 3.0), 100.0)
    assert state.slo == (100.0, pytest.approx(3.1 / 2.5))
    assert "latency correction learned: x1.24 (ttft missed on 3 pods at load 3.00)" in decision.notes
    one = slow_pods(1, 100.0, ttft=3.0)  # load 0.1 on one pod: x11 wanted, at most x2
    assert recommend(spec, PolicyState(), one, one, now=100.0)[1].slo == (100.0, SLO_BOUND)
    loading = PolicyState(flight=Flight(asks=(Ask(90.0, 2, 2),), target=2))
    assert recommend(spec, loading, one, one, now=100.0)[1].slo is None  # pods asked for: not settled
    arrived = PolicyState(flight=Flight(target=1, arrived_at=50.0))
    assert recommend(spec, arrived, one, one, now=100.0)[1].slo is None  # began serving within a stable window
    assert recommend(spec, arrived, one, one, now=110.0)[1].slo is not None
    empty = PoolWindow(60)
    assert recommend(spec, PolicyState(), empty, empty, now=100.0)[1].slo is None


def test_no_correction_no_note_and_an_equal_factor_is_not_learned_again() -> None:
    spec = parse_policy(SLO_SPEC, "ns")
    calm = slow_pods(2, 840.0, ttft=None)
    plain = recommend(spec, PolicyState(), calm, calm, now=100.0)[0]
    assert not any(n.startswith("latency correction") for n in plain.notes)
    missed = slow_pods(2, 840.0, ttft=3.0)  # 1.68 pods of prompts: (2 + 0.1) / 1.68 = 1.25 is what it has
    decision, state = recommend(spec, PolicyState(slo=(100.0, 1.25)), missed, missed, now=100.0)
    assert state.slo == (100.0, 1.25) and not any(n.startswith("latency correction learned") for n in decision.notes)


def test_pods_in_flight_and_late_together_keep_a_pool_unsettled() -> None:
    spec = parse_policy(SLO_SPEC, "ns")
    one = slow_pods(1, 100.0, ttft=3.0)
    both = PolicyState(flight=Flight(asks=(Ask(30.0, 2, 2), Ask(90.0, 3, 3)), target=3))  # one late, one young
    decision, state = recommend(spec, both, one, one, now=100.0)
    assert (decision.in_flight, decision.late, state.slo) == (1, 1, None)


def test_the_queue_growth_needs_time_between_readings() -> None:
    spec = parse_policy({**BASE, "phase": "prefill", "prefillTokensPerSecondPerPod": "1000", "demandQuery": "q"}, "ns")
    pod = PodSignals("ns/p0", waiting=0.0, waiting_peak=0.0, requests_rate=1.0)
    pod.prompt_rate = 1000.0
    pool = pool_of([pod], 60)
    same = recommend(spec, PolicyState(queue_seen=(100.0, 10.0)), pool, pool, 100.0, demand=GatewayDemand(40.0, 40.0))
    assert next(s for s in same[0].panic.signals if s.name == "demand").keep_up == pytest.approx(1.0)  # no growth
    big = PolicyState(queue_seen=(94.0, 150.0))  # a queue longer than the clock reads: still 50 over 6 s
    grown = recommend(spec, big, pool, pool, 100.0, demand=GatewayDemand(200.0, 200.0))[0]
    assert next(s for s in grown.panic.signals if s.name == "demand").keep_up == pytest.approx(1.0 + 50.0 / 6.0)


def test_gateway_arrivals_for_a_pool_at_zero_ask_for_one_pod_never_zero() -> None:
    """With no demandPerReplica, what a replica takes is learned from the pods; with none up, one."""
    spec = parse_policy({**BASE, **RATE_DEMAND}, "ns")
    empty = pool_of([], 60)
    decision, _ = recommend(spec, PolicyState(), empty, empty, now=100.0, demand=GatewayDemand(24.0, 24.0))
    demand = next(s for s in decision.stable.signals if s.name == "demand")
    assert (demand.replicas, demand.detail) == (
        1.0,
        "gateway arrivals 24.00/s, no pod up to size by (sum(llm_d_epp_request) [rate])",
    )
    assert decision.replicas == 1
    quiet, _ = recommend(spec, PolicyState(), empty, empty, now=100.0, demand=GatewayDemand(0.0, 0.0))
    assert quiet.replicas == 0  # no arrivals, no pods: zero is the answer


def test_an_evaluation_carries_the_state_it_does_not_change() -> None:
    """The next state is built field by field: what an evaluation does not update passes through as it was."""
    spec = parse_policy({**BASE, "phase": "decode"}, "ns")
    learned = {"prefill": Learned(900.0, 10.0, 20.0), "decode": Learned(1000.0, 10.0, 20.0)}
    state = PolicyState(last_panic=50.0, seen_replicas=7, demand=3, queue_seen=(40.0, 3.0), slo=(30.0, 1.5), **learned)
    pods = [PodSignals(f"p{i}", kv=0.4) for i in range(2)]
    decision, after = recommend(spec, state, pool_of(pods, 60), pool_of(pods, 6), now=100.0)
    assert decision.in_panic and decision.replicas == 3  # panic holds the last demand
    carried = (after.last_panic, after.prefill, after.decode, after.queue_seen, after.slo)
    assert carried == (50.0, learned["prefill"], learned["decode"], (40.0, 3.0), (30.0, 1.5))
    assert (after.seen_replicas, after.demand, after.flight.target) == (3, 3, 3)
    decision, after = recommend(spec, state, PoolWindow(60.0), PoolWindow(6.0), now=100.0)
    assert (decision.replicas, after.seen_replicas, after.demand) == (3, 7, 3)  # no pod reporting: seen kept


def test_a_correction_at_its_bound_when_just_learned_doubles_absolute_demand() -> None:
    spec = parse_policy({**BASE, "phase": "decode"}, "ns")
    pods = [PodSignals(f"p{i}", kv=0.4) for i in range(2)]
    state = PolicyState(slo=(100.0, SLO_BOUND))  # learned now: no decay, exactly 2
    decision, _ = recommend(spec, state, pool_of(pods, 60), pool_of(pods, 6), now=100.0)
    kv = next(s for s in decision.stable.signals if s.name == "kv")
    assert kv.replicas == pytest.approx(2.0)  # 0.8 of usage at 0.8 x 1 / 2 a pod, not 1.0
    assert "latency correction x2.00: headroom 0.50 (learned from an SLO miss)" in decision.notes


def test_a_forecast_joins_the_panic_window_it_was_made_from() -> None:
    spec = parse_policy({**BASE, "phase": "decode", "forecast": "true", "coldStart": "30s"}, "ns")
    stable, panic = [PodSignals(f"p{i}", kv=0.4) for i in range(2)], [PodSignals(f"p{i}", kv=0.8) for i in range(2)]
    decision, _ = recommend(spec, PolicyState(), pool_of(stable, 60), pool_of(panic, 6), now=100.0)
    assert decision.panic.window == 6.0 and decision.stable.window == 60.0
    assert [s.name for s in decision.panic.signals] == ["kv", "forecast"]


def test_any_gateway_arrivals_for_a_pool_at_zero_ask_for_one_pod() -> None:
    spec = parse_policy({**BASE, **RATE_DEMAND}, "ns")
    empty = pool_of([], 60)
    decision, _ = recommend(spec, PolicyState(), empty, empty, now=100.0, demand=GatewayDemand(0.5, 0.5))
    assert decision.replicas == 1  # one request every 2 s is still a request no pod is up to serve
