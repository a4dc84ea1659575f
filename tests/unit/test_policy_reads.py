"""The policy reads a pool view's kept figures, not its pods: the same decisions and explanations as a scan's.

A view-built window visits no pod for GetMetrics; it builds PodSignals only when something lists the
pods, from what the read saw, however much is pushed after it.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from scaler.explain import describe_decision, describe_trigger
from scaler.otlp import Kind, Sample
from scaler.policy import Decision, PolicyState, pool_metrics, recommend
from scaler.policy_spec import PolicySpec, parse_policy
from scaler.signals import KV, POOL_FIGURES, RUNNING, SLEEP_STATE, PoolWindow, read_pool, read_pools, read_pools_scan
from scaler.store import Store
from scaler.triggers import Triggers
from tests.support.pods import FakePod, feed

WINDOWS = (60.0, 6.0)
STALE_AFTER = 5.0
POLICY = {"policy": "vllm", "deployment": "llama", "phase": "unified", "ttftSeconds": "0.5", "itlSeconds": "0.05"}


def fleet() -> list[FakePod]:
    """Pods that exercise every figure the policy derives: preemption, a queue, the waiting split, sleep."""
    return [
        FakePod("p0", kv=0.7, running=6, waiting=3, prompt_rate=900, generation_rate=400, requests_rate=2),
        FakePod("p1", kv=0.95, running=9, preemption_rate=0.5, generation_rate=350, requests_rate=1, ttft=0.9),
        FakePod("p2", engines=2, kv=0.4, waiting=4, deferred=1.5, prompt_rate=300, generation_rate=0, itl=0.2),
        FakePod("p3", kv=0.1, running=1, asleep=True),
        FakePod("p4", kv=0.3, waiting=0.5, prompt_rate=100, generation_rate=50, asleep=False),
    ]


def spec() -> PolicySpec:
    return parse_policy(POLICY, "ns")


def pools(store: Store, now: float, scan: bool) -> list[PoolWindow]:
    read = read_pools_scan if scan else read_pools
    return read(store, spec().selector, now, WINDOWS, STALE_AFTER, pool_metrics(spec()))


def decide(store: Store, now: float, scan: bool) -> Decision:
    stable, panic = pools(store, now, scan)
    return recommend(spec(), PolicyState(), stable, panic, now)[0]


def test_every_pool_figure_the_policy_reads_is_kept_as_the_pods_give_it() -> None:
    store = Store(retention=300.0, max_series=10_000)
    now = feed(store, fleet(), 0.0, 30.0)
    for kept, scanned in zip(pools(store, now, scan=False), pools(store, now, scan=True), strict=True):
        assert kept.kept is not None and scanned.kept is None
        for name in POOL_FIGURES:
            assert (kept.total(name), kept.count(name)) == (scanned.total(name), scanned.count(name)), name
        assert kept.count("serving") == 4 and kept.asleep_count == 1 and kept.pod_count == 5
        assert kept.count("kv_preempting") == 1 and kept.total("kv_load") == math.fsum((0.7, 1.0, 0.4, 0.3))
        assert kept.count("saturated_prompt_rate") == 2  # p0 and p2 have a queue and prompt tokens
        assert kept.count("saturated_generation_rate") == 1  # p2 generates nothing
        assert kept.count("waiting_split") == 1 and kept.total("waiting_split_deferred") == 3.0  # 2 engines x 1.5
        assert kept.youngest_age == scanned.youngest_age == 0.0


def test_decisions_and_explanations_from_a_view_are_those_of_a_scan() -> None:
    store = Store(retention=300.0, max_series=10_000)
    now = feed(store, fleet(), 0.0, 30.0)
    kept, scanned = decide(store, now, scan=False), decide(store, now, scan=True)
    assert describe_decision(kept) == describe_decision(scanned)
    assert [p.pod for p in kept.pods] == ["ns/p0", "ns/p1", "ns/p2", "ns/p3", "ns/p4"]
    assert kept.pods == scanned.pods  # every field, age included
    kv = next(s for s in kept.stable.signals if s.name == "kv")
    assert kv.detail == "kv 0.60 <= 0.80 on 4 pods (1 preempting)"  # p1 counts as full, p3 sleeps
    assert any("capacity learned" in note and "from 2 queued pods" in note for note in kept.notes)


def test_a_decision_lists_the_pods_its_read_saw_whatever_is_pushed_after() -> None:
    store = Store(retention=300.0, max_series=10_000)
    pods = fleet()
    now = feed(store, pods, 0.0, 30.0)
    decision = decide(store, now, scan=False)
    expected = [asdict(p) for p in decide(store, now, scan=True).pods]
    for pod in pods:
        pod.kv, pod.running = 0.99, 50.0
    feed(store, pods[:2], now + 1.0, now + 4.0)  # two pods change, the others go on ageing
    decide(store, now + 4.0, scan=False)  # the view moves on
    assert [asdict(p) for p in decision.pods] == expected
    assert len(decision.pods) == 5 and decision.pods[0].pod == "ns/p0"


def test_the_debug_view_of_a_policy_trigger_shows_every_pod_with_its_live_age() -> None:
    store = Store(retention=300.0, max_series=10_000)
    triggers = Triggers(store, stale_after=STALE_AFTER, warmup_until=0.0)
    now = feed(store, fleet(), 0.0, 30.0)
    answer = triggers.evaluate("ns", "so", POLICY, now)
    assert answer.decision is not None
    [state] = triggers.states()
    shown = describe_trigger(state, now + 2.0, store)
    assert [row["pod"] for row in shown["pods"]] == ["ns/p0", "ns/p1", "ns/p2", "ns/p3", "ns/p4"]
    assert {row["age"] for row in shown["pods"]} == {2.0}  # each pod's newest sample, read at explain time
    assert shown["pods"][1]["preemption_rate"] == 0.5 and shown["pods"][3]["asleep"] is True
    assert shown["last_data_seconds_ago"] == 2.0


def test_reporting_lists_the_serving_pods_a_figure_counts() -> None:
    store = Store(retention=300.0, max_series=10_000)
    now = feed(store, fleet(), 0.0, 30.0)
    for pool in pools(store, now, scan=True):
        assert [p.pod for p in pool.reporting("kv_preempting")] == ["ns/p1"]
        assert [p.pod for p in pool.reporting("waiting_split")] == ["ns/p2"]
        assert {p.pod for p in pool.reporting("kv")} == {"ns/p0", "ns/p1", "ns/p2", "ns/p4"}  # p3 sleeps
        for name in POOL_FIGURES:
            assert len(pool.reporting(name)) == pool.count(name), name


def test_a_pool_is_read_from_the_metrics_asked_for_only() -> None:
    store = Store(retention=300.0, max_series=10_000)
    now = feed(store, fleet(), 0.0, 30.0)
    pool = read_pool(store, spec().selector, now, 60.0, STALE_AFTER, (KV,))
    assert pool.count("kv") == 5 and pool.count("running") == 0  # engine_sleep_state unread: p3 counts
    both = read_pool(store, spec().selector, now, 60.0, STALE_AFTER, (KV, RUNNING))
    assert both.count("running") == 5


def test_a_series_emptied_by_retention_is_passed_over_and_the_rest_still_read() -> None:
    store = Store(retention=300.0, max_series=10_000)
    now = feed(store, fleet(), 0.0, 30.0)
    for series in store.select(KV, spec().selector):
        if series.pod == "ns/p0":
            series.trim(now + 1.0)  # every sample older than the horizon: not swept yet
    assert not any(s.has_data() for s in store.select(KV, spec().selector) if s.pod == "ns/p0")
    for pool in pools(store, now, scan=True):
        assert pool.count("kv") == 3 and pool.total("kv_load") == math.fsum((1.0, 0.4, 0.3))


def test_an_engine_sleeps_by_its_awake_series_or_by_either_sleep_level() -> None:
    """Each series is judged alone: vLLM sets all three, but one is enough, and an unknown level says nothing."""
    reported = {
        "p0": {"awake": 0.0},
        "p1": {"weights_offloaded": 1.0},
        "p2": {"discard_all": 1.0},
        "p3": {"awake": 1.0, "weights_offloaded": 0.0, "hibernating": 1.0},
        "p4": {"hibernating": 1.0},
        "p5": {"awake": 0.5},  # the midpoint: awake series under it say asleep, sleep levels at it say so
        "p6": {"discard_all": 0.5},
    }
    store = Store(retention=300.0, max_series=10_000)
    for t in (1.0, 2.0):
        for pod, states in reported.items():
            labels = (("deployment", "llama"), ("namespace", "ns"), ("pod", pod))
            samples = [Sample(KV, labels, Kind.GAUGE, 0.5)]
            for state, value in states.items():
                samples.append(Sample(SLEEP_STATE, (*labels, ("sleep_state", state)), Kind.GAUGE, value))
            store.append(samples, t)
    for scan in (True, False):
        stable, _ = pools(store, 2.0, scan)
        assert sorted(p.pod for p in stable.asleep) == ["ns/p0", "ns/p1", "ns/p2", "ns/p6"], scan
        assert stable.count("serving") == 3 and stable.asleep_count == 4


def test_a_flag_figure_is_one_a_pod_and_the_deferred_queue_only_that_of_split_pods() -> None:
    store = Store(retention=300.0, max_series=10_000)
    now = feed(store, fleet(), 0.0, 30.0)
    for pool in (*pools(store, now, scan=False), *pools(store, now, scan=True)):
        for flag in ("serving", "waiting_split", "kv_preempting"):
            assert pool.total(flag) == pool.count(flag), flag
        assert pool.count("waiting_split_deferred") == pool.count("waiting_split") == 1  # p2 alone splits


def test_rates_need_two_rows_and_take_any_span_between_them() -> None:
    """One push is no rate yet (not a division by zero); half a second between two is a rate."""
    pod = FakePod("p0", kv=0.1, waiting=2, prompt_rate=100, requests_rate=4, itl=0.02)
    store = Store(retention=300.0, max_series=10_000)
    store.append(pod.samples(10.0), 10.0)
    [one] = read_pools_scan(store, spec().selector, 10.0, (60.0,), STALE_AFTER, pool_metrics(spec()))
    assert one.count("prompt_rate") == one.count("requests_rate") == one.count("waiting_growth") == 0
    pod.waiting = 3
    store.append(pod.samples(10.5), 10.5)
    [two] = read_pools_scan(store, spec().selector, 10.5, (60.0,), STALE_AFTER, pool_metrics(spec()))
    assert two.total("prompt_rate") == 100.0 and two.total("waiting_growth") == 2.0  # 1 more over 0.5 s
    assert two.total("requests_rate") == 4.0  # first tokens only: inter-token latencies are not requests
