"""The policy reads a pool view's kept figures, not its pods: the same decisions and explanations as a scan's.

A view-built window visits no pod for GetMetrics; it builds PodSignals only when something lists the
pods, from what the read saw, however much is pushed after it.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from scaler.explain import describe_decision, describe_trigger
from scaler.policy import Decision, PolicyState, pool_metrics, recommend
from scaler.policy_spec import PolicySpec, parse_policy
from scaler.signals import POOL_FIGURES, PoolWindow, read_pools, read_pools_scan
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
