"""Properties of the policy: more load never means fewer replicas, growth is rate-bounded, rates >= 0."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.expression import Selector
from scaler.otlp import Kind, Sample
from scaler.policy import Learned, PolicyState, recommend, replicas_for
from scaler.policy_spec import parse_policy
from scaler.signals import PodSignals, PoolWindow, read_pool
from scaler.store import Store

SPEC = parse_policy(
    {
        "policy": "vllm",
        "deployment": "llama",
        "targetRunningPerPod": "4",
        "decodeTokensPerSecondPerPod": "1000",
        "prefillTokensPerSecondPerPod": "2000",
    },
    "ns",
)

load = st.fixed_dictionaries(
    {
        "running": st.floats(0, 64),
        "waiting": st.floats(0, 64),
        "kv": st.floats(0, 1),
        "generation_rate": st.floats(0, 5000),
        "prompt_rate": st.floats(0, 20000),
    }
)
extra = st.fixed_dictionaries({k: st.floats(0, 10) for k in ("running", "waiting", "generation_rate", "prompt_rate")})


def pool_of(loads: list[dict[str, float]], window: float) -> PoolWindow:
    pool = PoolWindow(window)
    for i, values in enumerate(loads):
        pod = PodSignals(f"ns/p{i}", **values)  # type: ignore[arg-type]
        pod.running_peak, pod.waiting_peak, pod.kv_peak = pod.running, pod.waiting, pod.kv
        pool.pods[pod.pod] = pod
    return pool


def replicas(loads: list[dict[str, float]]) -> int:
    decision, _ = recommend(SPEC, PolicyState(), pool_of(loads, 60), pool_of(loads, 6), now=100.0)
    return decision.replicas


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(load, extra, st.floats(0, 1)), min_size=1, max_size=8))
def test_more_load_never_yields_fewer_replicas(pods: list[tuple[dict[str, float], dict[str, float], float]]) -> None:
    less = [base for base, _, _ in pods]
    more = [
        {**base, **{k: base[k] + inc[k] for k in inc}, "kv": min(1.0, base["kv"] + kv_inc)}
        for base, inc, kv_inc in pods
    ]
    assert replicas(more) >= replicas(less)


LEARNING = parse_policy({"policy": "vllm", "deployment": "llama", "targetRunningPerPod": "4"}, "ns")
UNCONFIRMED = PolicyState(prefill=Learned(2000.0, 90.0, 100.0), decode=Learned(1000.0, 90.0, 100.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(load, min_size=1, max_size=8))
def test_only_unconfirmed_capacities_and_latency_are_bounded_by_the_rate(loads: list[dict[str, float]]) -> None:
    pods = len(loads)
    cap = max(math.ceil(LEARNING.max_scale_up_rate * pods), pods + 1)
    decision, _ = recommend(LEARNING, UNCONFIRMED, pool_of(loads, 60), pool_of(loads, 6), now=100.0)
    for figures in (decision.stable, decision.panic):
        assert all(s.replicas <= cap for s in figures.signals if s.bounded)
        absolute = max((s.replicas for s in figures.signals if not s.bounded), default=0.0)
        assert decision.replicas >= replicas_for(absolute)  # absolute demand is never capped


def test_unconfirmed_capacities_are_flagged_and_confirmed_ones_are_not() -> None:
    loads = [{"running": 0.0, "waiting": 0.0, "kv": 0.0, "generation_rate": 5000.0, "prompt_rate": 20000.0}]
    decision, _ = recommend(LEARNING, UNCONFIRMED, pool_of(loads, 60), pool_of(loads, 6), now=100.0)
    assert {s.name: s.bounded for s in decision.stable.signals} == {
        "kv": False,
        "decode_tokens": True,
        "prefill_tokens": True,
        "running": False,
        "waiting": False,
        "gpu_time": True,
    }
    assert decision.replicas == 2  # 5, 10 and 15 wanted, capped at 2x 1 pod
    confirmed = PolicyState(prefill=Learned(2000.0, 0.0, 60.0), decode=Learned(1000.0, 0.0, 60.0))
    decision, _ = recommend(LEARNING, confirmed, pool_of(loads, 60), pool_of(loads, 6), now=100.0)
    assert not any(s.bounded for s in decision.stable.signals) and decision.replicas == 15  # 10 + 5: one GPU


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e9), min_size=2, max_size=40))
def test_a_counter_reset_never_produces_a_negative_rate(values: list[float]) -> None:
    store = Store(retention=600.0, max_series=10)
    labels = (("k8s.pod.name", "p0"), ("k8s.namespace.name", "ns"), ("k8s.deployment.name", "llama"))
    for t, value in enumerate(values):
        store.append([Sample("vllm:prompt_tokens", labels, Kind.COUNTER, value)], float(t))
    now = float(len(values) - 1)
    for window in (1.0, 3.0, 6.0, 600.0):
        pool = read_pool(store, Selector("", ()), now, window, stale_after=5.0)
        rate = pool.pods["ns/p0"].prompt_rate
        assert rate is None or rate >= 0
