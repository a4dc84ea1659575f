"""Policy triggers with worked numbers: each signal, the windows, panic, caps, cold start, zero."""

from __future__ import annotations

import math

import pytest

from scaler.errors import InvalidTrigger, StaleData, WarmingUp
from scaler.otlp import Kind, Sample
from scaler.policy import Decision, Learned, PolicyState, learn_capacity, pool_metrics
from scaler.policy_spec import parse_policy
from scaler.signals import (
    ADMISSION_REJECTIONS,
    GENERATION_TOKENS,
    ITL,
    KV,
    PREEMPTIONS,
    PROMPT_TOKENS,
    RUNNING,
    TTFT,
    PodSignals,
    PoolWindow,
)
from scaler.store import Store
from scaler.triggers import Evaluation, Triggers
from tests.support.pods import FakePod, feed

BASE = {"policy": "vllm", "deployment": "llama"}


def make(warmup_until: float = 0.0) -> tuple[Store, Triggers]:
    store = Store(retention=300.0, max_series=100_000)
    return store, Triggers(store, stale_after=5.0, warmup_until=warmup_until)


def ask(triggers: Triggers, now: float, **metadata: str) -> Evaluation:
    return triggers.evaluate("ns", "so", {**BASE, **metadata}, now)


def steady(pods: list[FakePod], seconds: float = 60.0) -> tuple[Triggers, float]:
    store, triggers = make()
    return triggers, feed(store, pods, 0.0, seconds)


def test_decode_kv_pressure_worked_example() -> None:
    triggers, now = steady([FakePod(f"p{i}", kv=0.93) for i in range(4)])
    answer = ask(triggers, now, phase="decode")
    assert answer.decision is not None
    kv = next(s for s in answer.decision.stable.signals if s.name == "kv")
    assert kv.replicas == pytest.approx(4 * 0.93 / 0.8)  # 4.65
    assert answer.value == 5.0 and answer.active
    assert answer.decision.reason == "decode: kv 0.93 > 0.80 on 4 pods -> 5"


def test_decode_running_per_pod_and_engines_summed_within_a_pod() -> None:
    # 3 pods x 2 engines x 5 running = 30 running; 30 / 8 per pod = 3.75 -> 4
    triggers, now = steady([FakePod(f"p{i}", engines=2, running=5, kv=0.1) for i in range(3)])
    answer = ask(triggers, now, phase="decode", targetRunningPerPod="8")
    assert answer.decision is not None
    assert [p.running for p in answer.decision.pods] == [10.0, 10.0, 10.0]
    assert answer.value == 4.0
    assert "running+waiting 30.0 at 8/pod" in answer.decision.reason


def test_decode_token_demand_over_configured_capacity() -> None:
    # 2 pods x 1500 tok/s = 3000 tok/s over 1000 tok/s per pod -> 3
    triggers, now = steady([FakePod(f"p{i}", generation_rate=1500, kv=0.1) for i in range(2)])
    answer = ask(triggers, now, phase="decode", decodeTokensPerSecondPerPod="1000")
    assert answer.decision is not None
    figure = next(s for s in answer.decision.stable.signals if s.name == "decode_tokens")
    assert figure.replicas == pytest.approx(3.0)
    assert answer.value == 3.0


def test_itl_correction_scales_by_observed_over_slo() -> None:
    # every token at 0.15 s lands in the (0.1, 0.15] bucket; p90 interpolates to 0.145 -> 2 x 1.45 = 2.9 -> 3
    triggers, now = steady([FakePod(f"p{i}", requests_rate=10, itl=0.15, kv=0.1) for i in range(2)])
    answer = ask(triggers, now, phase="decode", itlSeconds="0.1")
    assert answer.decision is not None and answer.decision.itl == pytest.approx(0.145)
    assert answer.value == 3.0
    assert "itl p90 145ms > 100ms on 2 pods" in answer.decision.reason


def test_itl_correction_is_bounded_by_max_scale_up_rate() -> None:
    triggers, now = steady([FakePod(f"p{i}", requests_rate=10, itl=2.0) for i in range(2)])
    answer = ask(triggers, now, phase="decode", itlSeconds="0.05", maxScaleUpRate="1.5")
    assert answer.value == 3.0  # 2 pods x min(observed/SLO, 1.5)


def test_prefill_waiting_over_target() -> None:
    # 3 pods x 4 waiting = 12 over 5 per pod = 2.4 -> 3
    triggers, now = steady([FakePod(f"p{i}", waiting=4) for i in range(3)])
    answer = ask(triggers, now, phase="prefill", prefillTokensPerSecondPerPod="1e9")
    assert answer.value == 3.0
    assert answer.decision is not None and answer.decision.reason.startswith("prefill: waiting 12.0 at 5/pod -> 3")


def test_prefill_token_demand_includes_draining_the_backlog_within_ttft() -> None:
    # 2 pods: 4000 prompt tok/s and 4 first tokens/s each -> 1000 tokens per request.
    # 5 waiting each = 10 prompts = 10000 tokens to drain in 2 s = 5000 tok/s.
    # (8000 + 5000) / 4000 per pod = 3.25 -> 4
    pods = [FakePod(f"p{i}", waiting=5, prompt_rate=4000, requests_rate=4) for i in range(2)]
    triggers, now = steady(pods)
    answer = ask(triggers, now, phase="prefill", prefillTokensPerSecondPerPod="4000", ttftSeconds="2")
    assert answer.decision is not None
    figure = next(s for s in answer.decision.stable.signals if s.name == "prefill_tokens")
    assert figure.replicas == pytest.approx(3.25, rel=1e-3)
    assert answer.value == 4.0


def test_ttft_correction() -> None:
    triggers, now = steady([FakePod(f"p{i}", requests_rate=5, ttft=0.9) for i in range(3)])
    answer = ask(triggers, now, phase="prefill", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    assert answer.decision is not None
    # 0.9 s lands in (0.75, 1.0]; p90 = 0.975 -> 3 x 1.95 = 5.85 -> 6
    assert answer.decision.ttft == pytest.approx(0.975)
    assert answer.value == 6.0


def test_unified_takes_the_max_of_both_phases() -> None:
    pods = [FakePod(f"p{i}", kv=0.4, waiting=9) for i in range(2)]
    triggers, now = steady(pods)
    unified = ask(triggers, now)
    decode = ask(triggers, now, phase="decode")
    prefill = ask(triggers, now, phase="prefill")
    assert decode.value == 1.0  # kv 0.8 / 0.8
    assert prefill.value == 4.0  # waiting 18 / 5 = 3.6
    assert unified.value == 4.0


def test_preemptions_count_as_full_kv() -> None:
    pods = [FakePod("p0", kv=0.5, preemption_rate=0.2), FakePod("p1", kv=0.5)]
    triggers, now = steady(pods)
    answer = ask(triggers, now, phase="decode")
    assert answer.value == 2.0  # (1.0 + 0.5) / 0.8 = 1.875
    assert answer.decision is not None and "1 preempting" in answer.decision.reason


def test_capacity_is_learned_from_queued_pods_and_said_so() -> None:
    pods = [FakePod(f"p{i}", waiting=3, generation_rate=800, kv=0.2) for i in range(2)]
    triggers, now = steady(pods)
    answer = ask(triggers, now, phase="decode")
    assert answer.decision is not None
    assert any("decode capacity learned: 800 tok/s/pod from 2 queued pods" in n for n in answer.decision.notes)
    figure = next(s for s in answer.decision.stable.signals if s.name == "decode_tokens")
    assert "(learned)" in figure.detail and figure.replicas == pytest.approx(2.0)


def test_capacity_not_learned_is_explained() -> None:
    triggers, now = steady([FakePod("p0", kv=0.2, generation_rate=100)])
    answer = ask(triggers, now, phase="decode")
    assert answer.decision is not None
    assert "decode capacity not learned yet (no pod has had a queue)" in answer.decision.notes
    assert all(s.name != "decode_tokens" for s in answer.decision.stable.signals)


def test_absolute_demand_is_asked_for_at_once_however_few_pods_report() -> None:
    triggers, now = steady([FakePod(f"p{i}", waiting=50) for i in range(2)])
    answer = ask(triggers, now, phase="prefill")  # 100 / 5 = 20 wanted: no ladder of doublings
    assert answer.value == 20.0
    assert answer.decision is not None and answer.decision.reason == "prefill: waiting 100.0 at 5/pod -> 20 (panic)"


def test_a_learned_capacity_grows_at_most_max_scale_up_rate_until_a_stable_window_confirms_it() -> None:
    # 2 queued pods serve 1000 tok/s each: learned 1000/pod, and their 10,000 tok/s of queue growth ask for 12
    pods = [FakePod(f"p{i}", waiting=1, prompt_rate=1000, requests_rate=1) for i in range(2)]
    store, triggers = make()
    now = feed(store, pods, 0, 60)
    first = ask(triggers, now, phase="prefill")
    assert first.decision is not None
    assert any("prefill capacity learned: 1000 tok/s/pod from 2 queued pods" in n for n in first.decision.notes)
    for pod in pods:
        pod.requests_rate, pod.waiting = 1, 1
    for t in range(61, 81):  # each pod's queue grows by 5 requests a second: 10,000 more tok/s
        for pod in pods:
            pod.waiting += 5
            store.append(pod.samples(float(t)), float(t))
    grown = ask(triggers, 80.0, phase="prefill")
    assert grown.decision is not None
    figure = next(s for s in grown.decision.panic.signals if s.name == "prefill_tokens")
    assert figure.replicas == 4.0 and "capped at 2x 2 pods" in figure.detail
    one = ask(triggers, 80.0, phase="prefill", maxScaleUpRate="1")
    assert one.decision is not None
    assert next(s for s in one.decision.panic.signals if s.name == "prefill_tokens").replicas == 3.0  # one more


def test_panic_uses_the_short_window_and_holds_until_calm_for_a_stable_window() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", kv=0.2) for i in range(2)]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, phase="prefill").value == 0.0
    for pod in pods:
        pod.waiting = 12  # 24 waiting / 5 = 4.8 -> 5 >= 2 x 2 pods
    now = feed(store, pods, 61, 66)
    burst = ask(triggers, now, phase="prefill", maxScaleUpRate="10")
    assert burst.decision is not None and burst.decision.in_panic
    assert burst.value == 5.0  # stable window alone: 6 of 61 samples at 24 -> 2.4 -> 3
    for pod in pods:
        pod.waiting = 0
    now = feed(store, pods, 67, 100)
    held = ask(triggers, now, phase="prefill", maxScaleUpRate="10")
    assert held.decision is not None and held.decision.in_panic and held.value == 5.0
    now = feed(store, pods, 101, 190)
    calm = ask(triggers, now, phase="prefill", maxScaleUpRate="10")
    assert calm.decision is not None and not calm.decision.in_panic
    assert calm.value == 0.0


def test_scale_down_only_as_far_as_the_window_peak_fits() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}") for i in range(4)]
    now = feed(store, pods, 0, 50)
    for pod in pods:
        pod.waiting = 4  # 16 waiting for 5 s: peak 16 / 5 = 3.2 -> 4 pods
    now = feed(store, pods, 51, 55)
    for pod in pods:
        pod.waiting = 0
    now = feed(store, pods, 56, 60)
    answer = ask(triggers, now, phase="prefill", panicThreshold="100")
    assert answer.decision is not None
    assert answer.decision.stable.demand == pytest.approx(16 * 5 / 61 / 5)  # the mean asks for 1
    assert answer.value == 4.0 and "peak holds 4" in answer.decision.reason


def test_cold_start_does_not_cascade_into_runaway_scale_up() -> None:
    """Offered load exceeds 2 pods; new pods take 3 minutes to load and report nothing meanwhile."""
    store, triggers = make()
    pods = [FakePod(f"p{i}", kv=0.9) for i in range(2)]
    answers = []
    for second in range(181):
        for pod in pods:
            pod.waiting += 0.5  # the queue keeps growing while capacity is short
            store.append(pod.samples(float(second)), float(second))
        if second % 15 == 0:
            answers.append(ask(triggers, float(second)))
    # kv 1.8 / 0.8 asks for 3; the queue that grows while the third pod loads buys nothing more
    assert {a.value for a in answers} == {3.0}, [a.value for a in answers]
    last = answers[-1].decision
    assert last is not None and (last.in_flight, last.late) == (0, 1)  # awaited for 180 s, a 60 s cold start
    assert "held at 3: 1 pods asked for are not serving yet" in next(
        s.detail for s in last.stable.signals if s.name == "waiting"
    )
    assert "0 pods in flight, 1 late; cold start 60s (default: no scale-up has reported yet)" in last.notes


def test_min_and_max_replicas_clamp() -> None:
    triggers, now = steady([FakePod(f"p{i}", waiting=40) for i in range(4)])
    assert ask(triggers, now, phase="prefill", maxReplicas="6").value == 6.0
    idle, idle_now = steady([FakePod("p0")])
    assert ask(idle, idle_now, minReplicas="2").value == 2.0


def test_activation_replicas_sets_is_active() -> None:
    triggers, now = steady([FakePod("p0", kv=0.7)])
    assert ask(triggers, now).active  # 1 > 0
    assert not ask(triggers, now, activationReplicas="1").active


def test_scale_from_zero_by_activation_query() -> None:
    store, triggers = make()
    meta = {"activationQuery": 'sum(router_pending_requests{pool="llama"})', "minReplicas": "0"}
    router = (("pool", "llama"), ("service.instance.id", "router-0"))
    for t in range(10):
        store.append([Sample("router_pending_requests", router, Kind.GAUGE, 0.0)], float(t))
    asleep = ask(triggers, 9.0, **meta)
    assert asleep.value == 0.0 and not asleep.active
    store.append([Sample("router_pending_requests", router, Kind.GAUGE, 3.0)], 10.0)
    woken = ask(triggers, 10.0, **meta)
    assert woken.value == 1.0 and woken.active
    assert woken.decision is not None and "woken by activation 3 > 0" in woken.decision.reason
    with_min = ask(triggers, 10.0, **{**meta, "minReplicas": "2"})
    assert with_min.value == 2.0


def test_scale_from_zero_with_a_rate_of_a_router_counter() -> None:
    store, triggers = make()
    meta = {
        "activationQuery": "sum(router_requests_total)",
        "activationOperationOverTime": "rate",
        "activationThreshold": "0.5",
    }
    router = (("service.instance.id", "router-0"),)
    for t in range(15):
        store.append([Sample("router_requests", router, Kind.COUNTER, 10.0)], float(t))
    assert not ask(triggers, 14.0, **meta).active
    for t in range(15, 20):
        store.append([Sample("router_requests", router, Kind.COUNTER, 10.0 + (t - 14) * 2)], float(t))
    woken = ask(triggers, 19.0, **meta)  # 10 requests over the 6 s panic window
    assert woken.active and woken.decision is not None
    assert woken.decision.activation_value == pytest.approx(10 / 6)


def test_stale_activation_data_is_an_error() -> None:
    store, triggers = make()
    meta = {"activationQuery": "sum(router_pending_requests)"}
    store.append([Sample("router_pending_requests", (("pod", "r"),), Kind.GAUGE, 1.0)], 0.0)
    assert ask(triggers, 1.0, **meta).value == 1.0
    with pytest.raises(StaleData, match="router_pending_requests"):
        ask(triggers, 30.0, **meta)


def test_pool_that_went_quiet_while_serving_is_stale_not_zero() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", kv=0.7) for i in range(3)]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now).value == 3.0
    with pytest.raises(StaleData, match="pool ns/llama: no pod has reported for .* while 3 replicas"):
        ask(triggers, now + 30)
    store.sweep(now + 400)  # even after the series are freed
    with pytest.raises(StaleData):
        ask(triggers, now + 400)


def test_pool_scaled_to_zero_on_our_recommendation_keeps_answering_zero() -> None:
    store, triggers = make()
    pods = [FakePod("p0")]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now).value == 0.0
    assert ask(triggers, now + 30).value == 0.0  # the pod is gone: KEDA removed it on our 0


def others_push(store: Store, t: float) -> None:
    """Another workload's pod reports, so the scaler is reached: a pool never seen is then at zero."""
    labels = (("k8s.pod.name", "other-0"), ("k8s.namespace.name", "elsewhere"), ("k8s.deployment.name", "other"))
    store.append([Sample("vllm:num_requests_running", labels, Kind.GAUGE, 1.0)], t)


def test_never_seen_pool_warms_up_then_answers_zero() -> None:
    store, triggers = make(warmup_until=30.0)
    others_push(store, 0.0)
    with pytest.raises(WarmingUp, match="warming up, 20s left"):
        ask(triggers, 10.0)
    assert ask(triggers, 31.0).value == 0.0


def test_overflow_pool_gets_what_the_primary_cannot_hold() -> None:
    primary = [FakePod(f"a{i}", deployment="llama", kv=0.9) for i in range(4)]
    burst = [FakePod("b0", deployment="llama-burst", kv=0.9)]
    triggers, now = steady(primary + burst)
    meta = {"deployment": "llama-burst", "overflowOf": "llama", "primaryMaxReplicas": "4"}
    answer = ask(triggers, now, phase="decode", **meta)
    # 5 pods x 0.9 / 0.8 = 5.625 -> 6 for the whole pool; the primary holds 4
    assert answer.value == 2.0 and answer.active
    assert answer.decision is not None and answer.decision.pool_replicas == 6
    calm, calm_now = steady([FakePod(f"a{i}", deployment="llama", kv=0.5) for i in range(4)])
    rest = ask(calm, calm_now, phase="decode", **meta)
    assert rest.value == 0.0 and not rest.active


def test_canary_versions_scale_on_their_own_pods() -> None:
    v1 = [FakePod(f"v1-{i}", labels={"version": "v1"}, kv=0.4) for i in range(2)]
    v2 = [FakePod(f"v2-{i}", labels={"version": "v2"}, kv=0.95) for i in range(2)]
    triggers, now = steady(v1 + v2)
    first = triggers.evaluate("ns", "llama-v1", {**BASE, "podSelector": 'version="v1"'}, now)
    second = triggers.evaluate("ns", "llama-v2", {**BASE, "podSelector": 'version="v2"'}, now)
    assert first.value == 1.0  # 0.8 / 0.8
    assert second.value == 3.0  # 1.9 / 0.8 = 2.375
    assert first.spec.metric_name != second.spec.metric_name


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"policy": "vllm"}, "deployment"),
        ({**BASE, "phase": "both"}, "phase"),
        ({**BASE, "targetKvCacheUsage": "1.5"}, "targetKvCacheUsage"),
        ({**BASE, "stableWindow": "5s", "panicWindow": "10s"}, "panicWindow"),
        ({**BASE, "maxScaleUpRate": "0.5"}, "maxScaleUpRate"),
        ({**BASE, "minReplicas": "1.5"}, "minReplicas"),
        ({**BASE, "minReplicas": "3", "maxReplicas": "2"}, "minReplicas"),
        ({**BASE, "overflowOf": "x"}, "primaryMaxReplicas"),
        ({**BASE, "activationThreshold": "1"}, "activationQuery"),
        ({**BASE, "activationQuery": "sum(x{"}, "activationQuery"),
        ({**BASE, "podSelector": "role=="}, "podSelector"),
        ({**BASE, "targetValue": "3"}, "targetValue"),
        ({"policy": "knative", "deployment": "x"}, "policy"),
    ],
)
def test_bad_policy_metadata_names_the_key(metadata: dict[str, str], key: str) -> None:
    _, triggers = make()
    with pytest.raises(InvalidTrigger, match=key):
        triggers.evaluate("ns", "so", metadata, 0.0)


def test_policy_metric_name_and_target() -> None:
    _, triggers = make()
    store = Store(300.0, 100)
    feed(store, [FakePod("p0")], 0, 1)
    answer = Triggers(store, 5.0, 0.0).evaluate("ns", "so", {**BASE, "phase": "decode"}, 1.0)
    assert answer.spec.target == 1.0
    assert answer.spec.metric_name.startswith("vllm-decode-ns-llama-")
    assert math.isfinite(answer.value)


def test_decisions_are_reused_within_the_refresh_but_never_for_a_pool_at_zero() -> None:
    store = Store(retention=300.0, max_series=1000)
    triggers = Triggers(store, stale_after=5.0, warmup_until=0.0, policy_refresh=0.5)
    pods = [FakePod("p0", kv=0.7)]
    now = feed(store, pods, 0, 10)
    assert ask(triggers, now, phase="decode").value == 1.0
    pods[0].kv = 1.0
    pods.append(FakePod("p1", kv=1.0))
    store.append(pods[0].samples(now + 0.2) + pods[1].samples(now + 0.2), now + 0.2)
    assert ask(triggers, now + 0.2, phase="decode").value == 1.0  # reused
    assert ask(triggers, now + 0.6, phase="decode").value == 3.0  # recomputed: (0.725 + 1.0) / 0.8 = 2.16

    meta = {"activationQuery": "sum(router_pending_requests)"}
    router = (("service.instance.id", "r"),)
    store.append([Sample("router_pending_requests", router, Kind.GAUGE, 0.0)], 20.0)
    assert ask(triggers, 20.0, deployment="empty", **meta).value == 0.0
    store.append([Sample("router_pending_requests", router, Kind.GAUGE, 2.0)], 20.1)
    assert ask(triggers, 20.1, deployment="empty", **meta).value == 1.0  # no pods: answered at once


def test_decode_counts_requests_queued_behind_a_full_batch() -> None:
    # 2 pods, each with a full batch of 8 and 4 more queued: (16 + 8) / 6 per pod = 4 pods
    triggers, now = steady([FakePod(f"p{i}", running=8, waiting=4) for i in range(2)])
    answer = ask(triggers, now, phase="decode", targetRunningPerPod="6")
    assert answer.value == 4.0


# -- edges that pin the policy (each kills a mutant that changed an answer; docs/policy.md) ----------------


def decided(answer: Evaluation) -> Decision:
    assert answer.decision is not None
    return answer.decision


def test_an_itl_within_its_slo_leaves_the_other_signals_standing() -> None:
    triggers, now = steady([FakePod(f"p{i}", kv=0.93, requests_rate=10, itl=0.02) for i in range(4)])
    answer = ask(triggers, now, phase="decode", itlSeconds="0.1")
    assert answer.value == 5.0
    assert decided(answer).reason == "decode: kv 0.93 > 0.80 on 4 pods -> 5"


def test_a_latency_within_its_slo_asks_for_nothing_and_idle_pods_scale_away() -> None:
    triggers, now = steady([FakePod(f"p{i}", requests_rate=5, ttft=0.05) for i in range(3)])
    answer = ask(triggers, now, phase="prefill", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    assert answer.value == 0.0
    assert all(s.name != "ttft" for s in decided(answer).stable.signals)


def test_a_latency_exactly_at_its_slo_asks_for_nothing() -> None:
    triggers, now = steady([FakePod(f"p{i}", requests_rate=5, ttft=0.9) for i in range(3)])
    observed = decided(ask(triggers, now, phase="prefill", ttftSeconds="0.5")).ttft
    at_slo = decided(ask(triggers, now, phase="prefill", ttftSeconds=repr(observed)))
    assert all(s.name != "ttft" for s in (*at_slo.stable.signals, *at_slo.panic.signals))


def test_one_pod_gets_a_latency_correction() -> None:
    triggers, now = steady([FakePod("p0", requests_rate=5, ttft=0.9)])
    answer = ask(triggers, now, phase="prefill", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    assert answer.value == 2.0  # 1 x 1.95
    assert decided(answer).reason == "prefill: ttft p90 975ms > 500ms on 1 pods -> 2 (panic)"


def test_no_first_tokens_is_no_latency_signal() -> None:
    triggers, now = steady([FakePod("p0", waiting=5)])
    answer = ask(triggers, now, phase="prefill", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    assert answer.value == 1.0 and decided(answer).ttft is None


def test_a_latency_correction_is_capped_at_max_scale_up_rate_saying_so() -> None:
    # 4.5 s lands in (2.5, 5]: p90 4.75 s over a 0.5 s SLO asks for 2 x 9.5 = 19; at most 2x 2 pods
    triggers, now = steady([FakePod(f"p{i}", requests_rate=5, ttft=4.5) for i in range(2)])
    answer = ask(triggers, now, phase="prefill", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    assert answer.value == 4.0
    ttft = next(s for s in decided(answer).stable.signals if s.name == "ttft")
    assert ttft.detail == "ttft p90 4750ms > 500ms on 2 pods (19.0); capped at 2x 2 pods"
    once = ask(triggers, now, phase="prefill", ttftSeconds="0.5", maxScaleUpRate="1")
    assert once.value == 3.0  # always one more


def test_a_preempting_pod_counts_as_full_kv() -> None:
    pods = [FakePod("p0", kv=0.1, preemption_rate=0.2), FakePod("p1", kv=0.1)]
    triggers, now = steady(pods)
    answer = ask(triggers, now, phase="decode")
    assert answer.value == 2.0  # (1.0 + 0.1) / 0.8 = 1.375; without the rule 0.25 -> 1
    assert decided(answer).reason == "decode: kv 0.55 <= 0.80 on 2 pods (1 preempting) -> 2"


def test_kv_at_its_target_is_not_over_it() -> None:
    triggers, now = steady([FakePod("p0", kv=0.8)])
    assert decided(ask(triggers, now, phase="decode")).reason == "decode: kv 0.80 <= 0.80 on 1 pods -> 1"


def spike(pods: list[FakePod], **values: float) -> tuple[Triggers, float]:
    """A minute of baseline load with `values` on every pod for 5 s in the middle of it."""
    store, triggers = make()
    feed(store, pods, 0, 19)
    baseline = {k: getattr(pods[0], k) for k in values}
    for pod in pods:
        for key, value in values.items():
            setattr(pod, key, value)
    feed(store, pods, 20, 24)
    for pod in pods:
        for key, value in baseline.items():
            setattr(pod, key, value)
    return triggers, feed(store, pods, 25, 60)


def test_scale_down_keeps_what_the_kv_peaks_need_counting_a_preempting_pod_full() -> None:
    pods = [FakePod("p0", kv=0.1, preemption_rate=0.2), *(FakePod(f"p{i}", kv=0.1) for i in range(1, 6))]
    store, triggers = make()
    feed(store, pods, 0, 19)
    for pod in pods[1:]:
        pod.kv = 0.5
    feed(store, pods, 20, 24)
    for pod in pods[1:]:
        pod.kv = 0.1
    now = feed(store, pods, 25, 60)
    answer = ask(triggers, now, phase="decode", panicThreshold="100")
    # means: (1.0 + 5 x 0.133) / 0.8 = 2.08 -> 3; peaks: (1.0 + 5 x 0.5) / 0.8 = 4.375 -> 5
    assert answer.value == 5.0 and "(peak holds 5)" in decided(answer).reason


def test_scale_down_keeps_what_running_and_waiting_peaks_need() -> None:
    pods = [FakePod(f"p{i}", running=0.5) for i in range(8)]
    triggers, now = spike(pods, running=1.5, waiting=1.5)
    answer = ask(triggers, now, phase="decode", targetRunningPerPod="6", panicThreshold="100")
    assert answer.value == 4.0  # peak 8 x 3 / 6; the means ask for 1
    assert decided(answer).reason.endswith("-> 4 (peak holds 4)")


def test_scale_down_keeps_what_waiting_peaks_and_refused_requests_need() -> None:
    pods = [FakePod(f"p{i}", rejection_rate=0.5) for i in range(8)]
    triggers, now = spike(pods, waiting=1.0)
    answer = ask(triggers, now, phase="prefill", prefillTokensPerSecondPerPod="1e9", panicThreshold="100")
    assert answer.value == 3.0  # peak (8 + 4 refused/s x 1 s) / 5 = 2.4; the means ask for 1


def test_scale_down_keeps_what_the_prompt_peak_needs() -> None:
    # 8 pods at 100 prompt tok/s (1 request/s of 100 tokens) and 0.3 refused/s each; 7.5 waiting each for
    # 5 s: peak (800 + 240 refused + 60 x 100 / 2 s backlog) / 1000 = 4.04 -> 5
    pods = [FakePod(f"p{i}", prompt_rate=100, requests_rate=1, rejection_rate=0.3) for i in range(8)]
    triggers, now = spike(pods, waiting=7.5)
    meta = {"prefillTokensPerSecondPerPod": "1000", "ttftSeconds": "2", "targetWaitingPerPod": "100"}
    answer = ask(triggers, now, phase="prefill", panicThreshold="100", **meta)
    assert answer.value == 5.0 and decided(answer).reason.endswith("(peak holds 5)")


def test_a_backlog_is_drained_even_below_one_request_a_second() -> None:
    triggers, now = steady([FakePod("p0", waiting=2, prompt_rate=500, requests_rate=0.5)])
    meta = {"phase": "prefill", "prefillTokensPerSecondPerPod": "1000", "ttftSeconds": "2", "targetWaitingPerPod": "10"}
    answer = ask(triggers, now, **meta)
    assert answer.value == 2.0  # (500 + 2 x 1000 tokens / 2 s) / 1000 = 1.5
    figure = next(s for s in decided(answer).stable.signals if s.name == "prefill_tokens")
    assert figure.detail == "prompt 1500 tok/s at 1000/pod, incl. backlog 1000 tok/s to drain in 2s"


def test_the_prompt_detail_names_every_part_of_the_demand() -> None:
    store, triggers = make()
    pods = [FakePod("p0", prompt_rate=1000, requests_rate=1, rejection_rate=1)]
    for t in range(61):
        pods[0].waiting = t / 10  # growing by 0.1 request a second
        store.append(pods[0].samples(float(t)), float(t))
    meta = {"phase": "prefill", "prefillTokensPerSecondPerPod": "1000", "ttftSeconds": "2"}
    figure = next(s for s in decided(ask(triggers, 60.0, **meta)).stable.signals if s.name == "prefill_tokens")
    assert figure.detail == (
        "prompt 3600 tok/s at 1000/pod, incl. queue growth 100 tok/s, incl. backlog 1500 tok/s to drain in 2s,"
        " incl. refused 1000 tok/s"
    )


def test_configured_and_learned_capacities_are_labelled() -> None:
    triggers, now = steady([FakePod("p0", prompt_rate=3200, generation_rate=800)])
    configured = decided(ask(triggers, now, prefillTokensPerSecondPerPod="4000", decodeTokensPerSecondPerPod="1000"))
    details = {s.name: s.detail for s in configured.stable.signals}
    assert details["prefill_tokens"] == "prompt 3200 tok/s at 4000/pod"
    assert details["decode_tokens"] == "generation 800 tok/s at 1000/pod"
    queued, queued_now = steady([FakePod(f"p{i}", waiting=3, generation_rate=800, kv=0.2) for i in range(2)])
    learned = decided(ask(queued, queued_now, phase="decode"))
    assert next(s.detail for s in learned.stable.signals if s.name == "decode_tokens") == (
        "generation 1600 tok/s at 800/pod (learned)"
    )


def test_a_learned_capacity_is_smoothed_over_evaluations() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", waiting=2, prompt_rate=4000) for i in range(2)] + [FakePod("idle", waiting=2)]
    now = feed(store, pods, 0, 60)
    first = decided(ask(triggers, now, phase="prefill"))
    assert "prefill capacity learned: 4000 tok/s/pod from 2 queued pods" in first.notes  # the idle pod taught nothing
    for pod in pods[:2]:
        pod.prompt_rate = 2000
    now = feed(store, pods, 61, 130)
    second = decided(ask(triggers, now, phase="prefill"))
    assert "prefill capacity learned: 3400 tok/s/pod from 2 queued pods" in second.notes  # 4000 + 0.3 x (2000 - 4000)


def test_a_capacity_is_learned_however_slow_the_pods() -> None:
    pool = PoolWindow(60.0)
    pool.pods["ns/p0"] = PodSignals("ns/p0", waiting=1.0, prompt_rate=0.5)
    state, notes = learn_capacity(PolicyState(), pool, 10.0)
    assert state.prefill == Learned(0.5, 10.0, 10.0) and notes == [
        "prefill capacity learned: 0 tok/s/pod from 1 queued pods"
    ]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"phase": "decode"}, ["decode capacity not learned yet (no pod has had a queue)"]),
        ({"phase": "prefill"}, ["prefill capacity not learned yet (no pod has had a queue)"]),
        ({"phase": "prefill", "prefillTokensPerSecondPerPod": "1000"}, []),
        ({"phase": "decode", "decodeTokensPerSecondPerPod": "1000"}, []),
        (
            {"phase": "unified", "decodeTokensPerSecondPerPod": "1000"},
            ["prefill capacity not learned yet (no pod has had a queue)"],
        ),
        (
            {"phase": "unified", "prefillTokensPerSecondPerPod": "1000"},
            ["decode capacity not learned yet (no pod has had a queue)"],
        ),
    ],
)
def test_a_capacity_not_learned_is_said_once_per_phase(metadata: dict[str, str], expected: list[str]) -> None:
    triggers, now = steady([FakePod("p0", kv=0.2)])
    notes = decided(ask(triggers, now, **metadata)).notes
    assert [n for n in notes if "not learned" in n] == expected


def test_a_learned_capacity_silences_the_not_learned_note() -> None:
    triggers, now = steady([FakePod("p0", waiting=2, prompt_rate=1000, generation_rate=100)])
    notes = decided(ask(triggers, now)).notes
    assert not [n for n in notes if "not learned" in n]


def test_panic_starts_at_exactly_the_threshold_even_on_one_pod() -> None:
    triggers, now = steady([FakePod("p0", waiting=10)])
    answer = ask(triggers, now, phase="prefill", prefillTokensPerSecondPerPod="1e9")
    assert answer.value == 2.0 and decided(answer).in_panic  # 10 / 5 = 2 >= 2 x 1 pod


def test_demand_equal_to_the_pods_is_no_panic_even_at_threshold_one() -> None:
    triggers, now = steady([FakePod(f"p{i}", waiting=5) for i in range(2)])
    answer = ask(triggers, now, phase="prefill", prefillTokensPerSecondPerPod="1e9", panicThreshold="1")
    assert answer.value == 2.0 and not decided(answer).in_panic


def two_pods_queue_twelve_each() -> tuple[Store, Triggers, list[FakePod], float]:
    """Two calm prefill pods for a minute, then 12 waiting on each for 6 s: a panic asking for 5."""
    store, triggers = make()
    pods = [FakePod(f"p{i}") for i in range(2)]
    feed(store, pods, 0, 60)
    for pod in pods:
        pod.waiting = 12
    return store, triggers, pods, feed(store, pods, 61, 66)


def test_panic_ends_exactly_one_stable_window_after_it_was_last_seen() -> None:
    store, triggers, pods, now = two_pods_queue_twelve_each()
    assert decided(ask(triggers, now, phase="prefill")).in_panic
    for pod in pods:
        pod.waiting = 0
    now = feed(store, pods, 67, 125)
    assert decided(ask(triggers, now, phase="prefill")).in_panic  # 59 s after
    now = feed(store, pods, 126, 126)
    assert not decided(ask(triggers, now, phase="prefill")).in_panic  # 60 s after


def test_a_new_panic_does_not_inherit_an_old_floor() -> None:
    store, triggers, pods, now = two_pods_queue_twelve_each()
    assert ask(triggers, now, phase="prefill").value == 5.0
    for pod in pods:
        pod.waiting = 0
    now = feed(store, pods, 67, 190)
    assert ask(triggers, now, phase="prefill").value == 0.0  # calm: the floor is gone
    for pod in pods:
        pod.waiting = 10
    now = feed(store, pods, 191, 196)
    again = ask(triggers, now, phase="prefill")
    assert decided(again).in_panic and again.value == 4.0  # 20 / 5, not the old 5


def test_panic_never_answers_fewer_than_the_pods_serving() -> None:
    store, triggers, pods, now = two_pods_queue_twelve_each()
    assert ask(triggers, now, phase="prefill").value == 5.0
    for pod in pods:
        pod.waiting = 0
    pods += [FakePod(f"n{i}") for i in range(6)]  # 8 pods serve, more than asked for
    now = feed(store, pods, 67, 80)
    held = ask(triggers, now, phase="prefill")
    assert held.value == 8.0 and decided(held).reason == "prefill: waiting 0.0 at 5/pod -> 8 (panic holds 8)"


def test_the_stable_window_holds_what_was_asked_for_while_it_loads() -> None:
    store, triggers = make()
    pods = [FakePod(f"p{i}", waiting=20) for i in range(2)]
    now = feed(store, pods, 0, 60)
    assert ask(triggers, now, phase="prefill", panicThreshold="100").value == 8.0
    for pod in pods:
        pod.waiting = 0
    now = feed(store, pods, 61, 70)
    held = ask(triggers, now, phase="prefill", panicThreshold="100")
    # the stable window's mean still asks for 7 of the 8 asked; the panic window asks for none
    assert held.value == 7.0 and decided(held).reason.endswith("-> 7")


def test_the_woken_pool_is_active_whatever_activationReplicas_says() -> None:
    store, triggers = make()
    router = (("service.instance.id", "router-0"),)
    store.append([Sample("router_pending_requests", router, Kind.GAUGE, 3.0)], 0.0)
    meta = {"activationQuery": "sum(router_pending_requests)", "activationReplicas": "5"}
    woken = ask(triggers, 0.0, **meta)
    assert woken.value == 1.0 and woken.active is True
    assert decided(woken).reason == "unified: no load signals -> 1 (woken by activation 3 > 0)"
    store.append([Sample("router_pending_requests", router, Kind.GAUGE, 0.0)], 1.0)
    resting = ask(triggers, 1.0, **meta)
    assert resting.value == 0.0 and resting.active is False


def test_clamps_that_do_not_bind_are_not_mentioned() -> None:
    triggers, now = steady([FakePod(f"p{i}", kv=0.5) for i in range(3)])
    answer = ask(triggers, now, phase="decode", minReplicas="2", maxReplicas="2")
    assert decided(answer).reason == "decode: kv 0.50 <= 0.80 on 3 pods -> 2"  # 1.5 / 0.8 = 1.875
    store, woken = make()
    feed(store, [FakePod("p0", kv=0.5)], 0, 10)
    store.append([Sample("router_pending_requests", (("service.instance.id", "r"),), Kind.GAUGE, 3.0)], 10.0)
    once = ask(woken, 10.0, phase="decode", activationQuery="sum(router_pending_requests)")
    assert decided(once).reason == "decode: kv 0.50 <= 0.80 on 1 pods -> 1"


def test_a_pool_without_pods_or_signals_says_so() -> None:
    store, triggers = make()
    others_push(store, 0.0)
    answer = ask(triggers, 0.0, phase="prefill")
    assert answer.value == 0.0 and answer.active is False
    assert decided(answer).reason == "prefill: no load signals -> 0"


def test_a_pool_asleep_with_latencies_still_says_no_pod_awake() -> None:
    triggers, now = steady([FakePod(f"p{i}", asleep=True, requests_rate=5, ttft=0.9) for i in range(2)])
    answer = ask(triggers, now, phase="prefill", ttftSeconds="0.5", prefillTokensPerSecondPerPod="1e9")
    assert decided(answer).reason == "prefill: no pod awake -> 2 (holds 2 asleep)"


def test_qualifiers_are_joined_in_order() -> None:
    pods = [FakePod("p0", waiting=50), FakePod("s0", asleep=True)]
    triggers, now = steady(pods)
    answer = ask(triggers, now, phase="prefill", prefillTokensPerSecondPerPod="1e9", maxReplicas="6")
    assert decided(answer).reason == "prefill: waiting 50.0 at 5/pod -> 6 (panic; holds 1 asleep; maxReplicas 6)"


def test_every_phase_reads_its_own_metrics() -> None:
    decode = set(pool_metrics(parse_policy({**BASE, "phase": "decode", "itlSeconds": "0.1"}, "ns")))
    prefill = set(pool_metrics(parse_policy({**BASE, "phase": "prefill"}, "ns")))
    unified = set(pool_metrics(parse_policy(BASE, "ns")))
    assert {RUNNING, KV, PREEMPTIONS, GENERATION_TOKENS, ITL} <= decode and TTFT not in decode
    assert {PROMPT_TOKENS, TTFT, ADMISSION_REJECTIONS} <= prefill and KV not in prefill
    assert unified == (decode - {ITL}) | prefill
