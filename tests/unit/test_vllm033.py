"""vLLM 0.33's metrics in the policy: the capacity queue, sleeping engines, refused requests, new-only pods."""

from __future__ import annotations

import pytest

from scaler.errors import StaleData
from scaler.otlp import Kind, Sample
from scaler.policy import Decision, pool_metrics
from scaler.policy_spec import parse_policy
from scaler.signals import ADMISSION_REJECTIONS, SLEEP_STATE, WAITING_BY_REASON, read_pool
from scaler.store import Store
from scaler.triggers import Evaluation, Triggers
from tests.support.pods import FakePod, feed

BASE = {"policy": "vllm", "deployment": "llama"}
PREFILL = {"phase": "prefill", "prefillTokensPerSecondPerPod": "1e9"}  # only the waiting signal can bind


def run(pods: list[FakePod], seconds: float = 60.0, **metadata: str) -> Evaluation:
    store = Store(retention=300.0, max_series=100_000)
    triggers = Triggers(store, stale_after=5.0, warmup_until=0.0)
    now = feed(store, pods, 0.0, seconds)
    return triggers.evaluate("ns", "so", {**BASE, **metadata}, now)


def decided(answer: Evaluation) -> Decision:
    assert answer.decision is not None
    return answer.decision


def signal(decision: Decision, name: str) -> float:
    return next(s.replicas for s in decision.stable.signals if s.name == name)


# -- num_requests_waiting_by_reason ------------------------------------------------------------------


def test_waiting_counts_only_the_capacity_reason_when_a_pod_splits_it() -> None:
    # each pod: 10 waiting, 6 of them deferred (LoRA budget, KV transfer) -> 3 x 4 = 12 over 5/pod -> 3
    answer = run([FakePod(f"p{i}", waiting=10, deferred=6) for i in range(3)], **PREFILL)
    decision = decided(answer)
    assert [p.waiting for p in decision.pods] == [4.0, 4.0, 4.0]
    assert signal(decision, "waiting") == pytest.approx(12 / 5)
    assert answer.value == 3.0  # the whole num_requests_waiting would say 30 / 5 = 6
    assert "waiting (capacity) 12.0 at 5/pod" in decision.reason
    note = next(n for n in decision.notes if n.startswith("waiting:"))
    assert 'num_requests_waiting_by_reason{reason="capacity"} on 3 of 3 pods' in note
    assert "leaving out 18.0 deferred" in note


def test_a_pod_without_the_split_keeps_num_requests_waiting() -> None:
    # p0 splits (10 - 6 = 4), p1 does not (10) -> 14 over 5/pod -> 3
    answer = run([FakePod("p0", waiting=10, deferred=6), FakePod("p1", waiting=10)], **PREFILL)
    decision = decided(answer)
    assert [(p.waiting, p.waiting_by_reason) for p in decision.pods] == [(4.0, True), (10.0, False)]
    assert answer.value == 3.0
    assert "waiting (capacity on 1/2 pods) 14.0" in decision.reason
    assert any("num_requests_waiting on the other 1" in n for n in decision.notes)


def test_without_any_split_the_explanation_says_num_requests_waiting() -> None:
    decision = decided(run([FakePod("p0", waiting=5)], **PREFILL))
    assert any(n.startswith("waiting: num_requests_waiting on 1 pods") for n in decision.notes)


def test_decode_running_plus_waiting_uses_the_capacity_queue() -> None:
    # 2 pods x (8 running + 8 - 8 deferred) = 16 over 8/pod -> 2; KV transfers in flight are no batch demand
    pods = [FakePod(f"p{i}", running=8, waiting=8, deferred=8, kv=0.1) for i in range(2)]
    answer = run(pods, phase="decode", targetRunningPerPod="8", decodeTokensPerSecondPerPod="1e9")
    assert answer.value == 2.0
    assert "running+waiting (capacity) 16.0 at 8/pod" in decided(answer).reason


def test_deferred_requests_do_not_teach_capacity() -> None:
    # a queue of deferred requests is not a pod running flat out: nothing to learn from its token rate
    pods = [FakePod(f"p{i}", waiting=4, deferred=4, generation_rate=800, kv=0.1) for i in range(2)]
    decision = decided(run(pods, phase="decode"))
    assert "decode capacity not learned yet (no pod has had a queue)" in decision.notes


# -- engine_sleep_state -----------------------------------------------------------------------------


def test_a_sleeping_pod_is_held_not_counted_as_capacity_or_idleness() -> None:
    # two awake pods with 5 waiting each need 2; the sleeping one is held on top -> 3, never scaled away
    pods = [FakePod("p0", waiting=5), FakePod("p1", waiting=5), FakePod("p2", asleep=True)]
    answer = run(pods, **PREFILL)
    decision = decided(answer)
    assert decision.reporting_pods == 2 and decision.asleep_pods == 1
    assert answer.value == 3.0  # counted as a reporting pod, its zero load would allow 2
    assert "holds 1 asleep" in decision.reason
    assert any("1 pods asleep (engine_sleep_state)" in n for n in decision.notes)
    assert [p.asleep for p in decision.pods] == [False, False, True]


def test_a_pool_all_asleep_holds_its_pods_rather_than_answering_zero() -> None:
    answer = run([FakePod(f"p{i}", asleep=True) for i in range(2)], **PREFILL)
    decision = decided(answer)
    assert answer.value == 2.0 and answer.active
    assert decision.reporting_pods == 0
    assert decision.reason == "prefill: no pod awake -> 2 (holds 2 asleep)"


def test_sleeping_pods_are_not_capacity_for_the_growth_cap() -> None:
    # a TTFT 1.95x over its SLO asks for 2x the one awake pod at most (not 2x 4 pods), then the 3 asleep are held
    pods = [FakePod("p0", requests_rate=5, ttft=0.9), *(FakePod(f"s{i}", asleep=True) for i in range(3))]
    decision = decided(run(pods, **PREFILL, ttftSeconds="0.5"))
    assert decision.replicas == 2 + 3
    assert "ttft p90 975ms > 500ms on 1 pods" in decision.reason


def test_an_awake_engine_keeps_its_pod_serving() -> None:
    store = Store(retention=300.0, max_series=100_000)
    half = FakePod("p0", engines=2, waiting=3, asleep=False)
    feed(store, [half], 0.0, 10.0)
    asleep = [("engine", "1"), ("sleep_state", "awake")]
    labels = tuple(sorted({**dict(half._labels(1)), **dict(asleep)}.items()))
    store.append([Sample(SLEEP_STATE, labels, Kind.GAUGE, 0.0)], 10.0)  # engine 1 sleeps, engine 0 not
    spec = parse_policy({**BASE, **PREFILL}, "ns")
    pool = read_pool(store, spec.selector, 10.0, 60.0, 5.0, pool_metrics(spec))
    assert [p.asleep for p in pool.pods.values()] == [False]
    assert pool.total("waiting") == 6.0


# -- admission_rejections ---------------------------------------------------------------------------


def test_refused_requests_count_as_waiting_for_one_second_without_a_ttft_target() -> None:
    # 2 pods x 5 waiting + 10 refused/s x 1 s = 20 over 5/pod -> 4 (the queue alone says 2)
    pods = [FakePod(f"p{i}", waiting=5, rejection_rate=5) for i in range(2)]
    answer = run(pods, **PREFILL)
    assert answer.value == 4.0
    assert "waiting 10.0 + 10.0 refused (10.00/s x 1s) at 5/pod" in decided(answer).reason


def test_refused_requests_add_their_prompt_tokens_to_prefill_demand() -> None:
    # 2 pods: 1000 prompt tok/s and 2 requests/s each -> 500 tokens a request; 10 refused/s add 5000 tok/s;
    # no queue, so no backlog: (2000 + 5000) / 1000 per pod -> 7. Refused as waiting: 10 x 2 s = 20 / 5 -> 4.
    pods = [FakePod(f"p{i}", prompt_rate=1000, requests_rate=2, rejection_rate=5, ttft=0.05) for i in range(2)]
    answer = run(pods, phase="prefill", prefillTokensPerSecondPerPod="1000", ttftSeconds="2", maxScaleUpRate="4")
    decision = decided(answer)
    assert signal(decision, "prefill_tokens") == pytest.approx(7.0)
    assert signal(decision, "waiting") == pytest.approx(4.0)
    assert answer.value == 7.0
    assert "incl. refused 5000 tok/s" in decision.reason


def test_decode_pools_do_not_read_admission_rejections() -> None:
    decode = parse_policy({**BASE, "phase": "decode"}, "ns")
    assert ADMISSION_REJECTIONS not in pool_metrics(decode)
    for phase in ("prefill", "unified"):
        names = pool_metrics(parse_policy({**BASE, "phase": phase}, "ns"))
        assert {ADMISSION_REJECTIONS, WAITING_BY_REASON, SLEEP_STATE} <= set(names)


# -- pods that report only the new metrics ----------------------------------------------------------


def test_a_pod_reporting_only_the_waiting_split_is_read_not_answered_as_zero() -> None:
    pods = [FakePod(f"p{i}", waiting=6, deferred=2, only=frozenset({WAITING_BY_REASON})) for i in range(3)]
    answer = run(pods, **PREFILL)
    assert answer.value == 3.0  # 3 x 4 capacity over 5/pod; unread, the pool would look empty and answer 0


def test_pods_reporting_only_sleep_state_and_rejections_are_an_error_not_zero() -> None:
    only = frozenset({SLEEP_STATE, ADMISSION_REJECTIONS})
    with pytest.raises(StaleData):
        run([FakePod(f"p{i}", asleep=False, rejection_rate=0.0, only=only) for i in range(2)], **PREFILL)


def test_a_pod_seen_only_through_annotations_is_not_a_reporting_pod() -> None:
    only = frozenset({SLEEP_STATE, ADMISSION_REJECTIONS})
    pods = [FakePod("p0", waiting=10), FakePod("p1", asleep=False, rejection_rate=0.0, only=only)]
    decision = decided(run(pods, **PREFILL))
    assert decision.reporting_pods == 1 and [p.pod for p in decision.pods] == ["ns/p0"]
    assert decision.replicas == 2
