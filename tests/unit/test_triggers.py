"""Trigger metadata, KEDA metric names, and evaluation with memory: missing data is never a silent 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from scaler.errors import InvalidTrigger, NothingReceived, StaleData, WarmingUp
from scaler.otlp import Kind, Sample
from scaler.store import Store
from scaler.triggers import (
    IDLE_EXPIRY,
    QueryTrigger,
    Triggers,
    clamp,
    confine,
    is_pass_through,
    metric_name_matches,
    parse_trigger,
)

KSERVE_QUERY = 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})'
K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def meta(**extra: str) -> dict[str, str]:
    return {"metricQuery": KSERVE_QUERY, "targetValue": "4.000000", **extra}


# -- parsing -----------------------------------------------------------------------------------------


def test_kserve_metadata_parses() -> None:
    spec = parse_trigger(meta())
    assert isinstance(spec, QueryTrigger)
    assert spec.target == 4.0
    assert str(spec.query) == KSERVE_QUERY
    assert (spec.operation, spec.window, spec.clamp_min, spec.clamp_max, spec.activation_threshold) == (
        "last_one",
        None,
        None,
        None,
        0.0,
    )


def test_every_key_parses() -> None:
    spec = parse_trigger(
        meta(operationOverTime="rate", window="1m30s", clampMin="1", clampMax="10.5", activationThreshold="0.5")
    )
    assert (spec.operation, spec.window, spec.clamp_min, spec.clamp_max, spec.activation_threshold) == (
        "rate",
        90.0,
        1.0,
        10.5,
        0.5,
    )


@pytest.mark.parametrize("key", ["scalerAddress", "enableTLS", "unsafeSsl", "anythingFromEnv", "targetValueFromEnv"])
def test_pass_through_keys_are_accepted_and_ignored(key: str) -> None:
    assert is_pass_through(key)
    spec = parse_trigger(meta(**{key: "keda-otel-scaler.keda.svc:4318"}))
    assert spec == parse_trigger(meta())


def test_is_pass_through_rejects_other_keys() -> None:
    assert not is_pass_through("metricQuery")
    assert not is_pass_through("FromEnvSuffixNot")


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        (meta(bogus="1"), "'bogus'"),
        (meta(metricquery="x"), "'metricquery'"),  # keys are case-sensitive
        ({"targetValue": "1"}, "'metricQuery'"),
        ({"metricQuery": "m"}, "'targetValue'"),
        (meta(targetValue="four"), "targetValue"),
        (meta(targetValue=""), "targetValue"),
        (meta(targetValue="inf"), "targetValue"),
        (meta(targetValue="0"), "targetValue"),
        (meta(targetValue="-1"), "targetValue"),
        (meta(targetValue="nan"), "targetValue"),
        (meta(clampMin="low"), "clampMin"),
        (meta(clampMax="nan"), "clampMax"),
        (meta(activationThreshold="x"), "activationThreshold"),
        (meta(operationOverTime="sum"), "operationOverTime"),
        (meta(operationOverTime="Rate"), "operationOverTime"),
        (meta(window="30"), "window"),
        (meta(window="soon"), "window"),
        (meta(window="0s"), "window"),
        (meta(metricQuery="sum(m"), "metricQuery"),
    ],
)
def test_errors_name_the_key(metadata: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidTrigger) as info:
        parse_trigger(metadata)
    assert key in str(info.value)


def test_unknown_key_error_lists_the_known_keys() -> None:
    with pytest.raises(InvalidTrigger, match="known keys: metricQuery, targetValue, operationOverTime"):
        parse_trigger(meta(query="m"))


def test_clamp_min_above_clamp_max_is_refused() -> None:
    with pytest.raises(InvalidTrigger, match=r"clampMin \(5\) is greater than clampMax \(2\)"):
        parse_trigger(meta(clampMin="5", clampMax="2"))
    assert parse_trigger(meta(clampMin="2", clampMax="2")).clamp_min == 2.0


def test_bad_number_message_quotes_the_value() -> None:
    with pytest.raises(InvalidTrigger, match="targetValue: 'four' is not a number"):
        parse_trigger(meta(targetValue="four"))


def test_syntax_error_in_query_is_reported_as_invalid_trigger() -> None:
    with pytest.raises(InvalidTrigger, match=r"metricQuery: invalid query 'sum\(m': expected '\)'"):
        parse_trigger(meta(metricQuery="sum(m"))


@pytest.mark.parametrize(
    ("text", "value"), [("4.000000", 4.0), ("4", 4.0), ("0.25", 0.25), ("1e3", 1000.0), (" 7 ", 7.0)]
)
def test_target_value_forms(text: str, value: float) -> None:
    assert parse_trigger(meta(targetValue=text)).target == value


# -- metric names ------------------------------------------------------------------------------------


def test_metric_name_is_deterministic_lowercase_and_k8s_safe() -> None:
    name = parse_trigger(meta()).metric_name
    assert name == parse_trigger(dict(reversed(list(meta().items())))).metric_name  # key order does not matter
    assert name.startswith("vllm-num-requests-running-")
    assert re.fullmatch(r"vllm-num-requests-running-[0-9a-f]{10}", name)
    assert name == name.lower()
    assert K8S_NAME.fullmatch(name)
    assert len(name) <= 63


def test_metric_name_is_the_same_in_another_process() -> None:
    """KEDA keeps the name across scaler restarts: it must not depend on hash seeds or caches."""
    code = (
        "import sys; from scaler.triggers import parse_trigger; "
        f"print(parse_trigger({{'metricQuery': {KSERVE_QUERY!r}, 'targetValue': '4.000000'}}).metric_name)"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == parse_trigger(meta()).metric_name


def test_metric_name_ignores_pass_through_keys() -> None:
    assert parse_trigger(meta(scalerAddress="a:1")).metric_name == parse_trigger(meta()).metric_name


def test_metric_name_differs_for_different_queries() -> None:
    names = {
        parse_trigger(meta()).metric_name,
        parse_trigger(meta(metricQuery=KSERVE_QUERY.replace('"ns"', '"other"'))).metric_name,
        parse_trigger(meta(metricQuery="avg(vllm:num_requests_running)")).metric_name,
        parse_trigger(meta(metricQuery="vllm:num_requests_waiting")).metric_name,
        parse_trigger(meta(operationOverTime="max")).metric_name,
    }
    assert len(names) == 5


@pytest.mark.parametrize(
    "query",
    ["m", "A_Very:Mixed.Case_Name", "_" * 5, ":::", "x" * 200, 'vllm:kv_cache_usage_perc{pod=~"a.*"}'],
)
def test_metric_names_are_always_k8s_safe(query: str) -> None:
    name = parse_trigger(meta(metricQuery=query)).metric_name
    assert K8S_NAME.fullmatch(name), name
    assert len(name) <= 63


def test_metric_name_falls_back_when_the_name_has_no_letters() -> None:
    assert re.fullmatch(r"metric-[0-9a-f]{10}", parse_trigger(meta(metricQuery="___")).metric_name)


def test_metric_name_matches() -> None:
    ours = parse_trigger(meta()).metric_name
    assert metric_name_matches(ours, ours)
    assert metric_name_matches(ours.upper(), ours)
    assert metric_name_matches("s0-" + ours, ours)
    assert metric_name_matches("S12-" + ours.upper(), ours)
    for other in ["x-" + ours, "s-" + ours, "s0" + ours, "s0-s1-" + ours, ours + "x", ours[:-1], "-" + ours, "", "s0-"]:
        assert not metric_name_matches(other, ours), other


# -- evaluation --------------------------------------------------------------------------------------

STALE_AFTER = 30.0
WARMUP_UNTIL = 30.0


def running(value: float, pod: str = "p0", namespace: str = "ns") -> Sample:
    labels = (("k8s.deployment.name", "isvc-predictor"), ("k8s.namespace.name", namespace), ("k8s.pod.name", pod))
    return Sample("vllm:num_requests_running", labels, Kind.GAUGE, value)


def make(retention: float = 120.0, received: bool = True) -> tuple[Store, Triggers]:
    """A store that has received something (another team's metric) unless `received` is False."""
    store = Store(retention=retention, max_series=100)
    if received:
        store.append([Sample("other_team_metric", (("k8s.namespace.name", "elsewhere"),), Kind.GAUGE, 1.0)], now=0)
    return store, Triggers(store, stale_after=STALE_AFTER, warmup_until=WARMUP_UNTIL)


def test_nothing_received_since_start_is_unavailable_not_zero() -> None:
    """A scaler that no collector reaches must not answer 0 for every trigger once warm-up ends."""
    store, triggers = make(received=False)
    with pytest.raises(NothingReceived, match=r"no OTLP datapoint has reached this scaler since it started"):
        triggers.evaluate("ns", "so", meta(), now=WARMUP_UNTIL)
    with pytest.raises(NothingReceived):
        triggers.evaluate("ns", "so", meta(clampMin="2"), now=WARMUP_UNTIL)
    assert NothingReceived.grpc_code == "UNAVAILABLE"
    store.append([Sample("other_team_metric", (("k8s.namespace.name", "elsewhere"),), Kind.GAUGE, 1.0)], now=40)
    evaluation = triggers.evaluate("ns", "so", meta(), now=41)  # now a pool that never reported reads 0
    assert (evaluation.value, evaluation.active) == (0.0, False)


def test_never_matched_is_warming_up_then_zero_and_inactive() -> None:
    _, triggers = make()
    with pytest.raises(WarmingUp, match=r"warming up, 20s left"):
        triggers.evaluate("ns", "so", meta(), now=10)
    evaluation = triggers.evaluate("ns", "so", meta(), now=WARMUP_UNTIL)
    assert (evaluation.value, evaluation.active, evaluation.result) == (0.0, False, None)


def test_warm_up_is_all_or_nothing() -> None:
    """Data that arrived during warm-up may be a partial sum (pods push at their own phases): no value."""
    store, triggers = make()
    store.append([running(3, "p0"), running(5, "p1")], now=5)
    with pytest.raises(WarmingUp, match=r"warming up, 24s left"):
        triggers.evaluate("ns", "so", meta(), now=6)
    store.append([running(3, "p0"), running(5, "p1"), running(7, "p2")], now=29)
    with pytest.raises(WarmingUp, match=r"warming up, 100ms left"):
        triggers.evaluate("ns", "so", meta(), now=29.95)
    evaluation = triggers.evaluate("ns", "so", meta(), now=WARMUP_UNTIL)
    assert (evaluation.value, evaluation.active) == (15.0, True)
    assert evaluation.result is not None
    assert len(evaluation.result.series) == 3


def test_data_that_went_stale_is_an_error_not_zero() -> None:
    store, triggers = make()
    store.append([running(3)], now=40)
    assert triggers.evaluate("ns", "so", meta(), now=45).value == 3.0
    with pytest.raises(StaleData, match="none fresh"):
        triggers.evaluate("ns", "so", meta(), now=80)


def test_data_that_expired_after_sweep_is_an_error_not_zero() -> None:
    store, triggers = make(retention=60, received=False)
    store.append([running(3)], now=40)
    assert triggers.evaluate("ns", "so", meta(), now=45).value == 3.0
    assert store.sweep(now=200) == 1
    assert len(store) == 0
    with pytest.raises(StaleData) as info:
        triggers.evaluate("ns", "so", meta(), now=200)
    assert "expired" in str(info.value)
    assert "160s ago" in str(info.value)
    assert not isinstance(info.value, WarmingUp)
    (state,) = triggers.states()
    assert (state.value, state.active) == (None, False)
    assert state.error is not None and "expired" in state.error
    # and it stays an error on every later call
    with pytest.raises(StaleData):
        triggers.evaluate("ns", "so", meta(), now=300)


def test_recovery_after_stale_data() -> None:
    store, triggers = make()
    store.append([running(3)], now=40)
    triggers.evaluate("ns", "so", meta(), now=40)
    with pytest.raises(StaleData):
        triggers.evaluate("ns", "so", meta(), now=100)
    store.append([running(6)], now=101)
    assert triggers.evaluate("ns", "so", meta(), now=101).value == 6.0
    (state,) = triggers.states()
    assert (state.value, state.active, state.error) == (6.0, True, None)


@pytest.mark.parametrize(
    ("extra", "value"),
    [
        ({}, 6.0),
        ({"clampMax": "4"}, 4.0),
        ({"clampMin": "10"}, 10.0),
        ({"clampMin": "1", "clampMax": "8"}, 6.0),
    ],
)
def test_clamps_are_applied(extra: dict[str, str], value: float) -> None:
    store, triggers = make()
    store.append([running(6)], now=40)
    assert triggers.evaluate("ns", "so", meta(**extra), now=40).value == value


def test_clamp_min_applies_to_the_zero_of_a_never_matched_query() -> None:
    _, triggers = make()
    evaluation = triggers.evaluate("ns", "so", meta(clampMin="2"), now=100)
    assert (evaluation.value, evaluation.active) == (2.0, True)


@pytest.mark.parametrize(("threshold", "active"), [(None, True), ("5.9", True), ("6", False), ("10", False)])
def test_activation_threshold(threshold: str | None, active: bool) -> None:
    store, triggers = make()
    store.append([running(6)], now=40)
    extra = {"activationThreshold": threshold} if threshold is not None else {}
    evaluation = triggers.evaluate("ns", "so", meta(**extra), now=40)
    assert (evaluation.value, evaluation.active) == (6.0, active)


def test_zero_value_is_inactive() -> None:
    store, triggers = make()
    store.append([running(0)], now=40)
    evaluation = triggers.evaluate("ns", "so", meta(), now=40)
    assert (evaluation.value, evaluation.active) == (0.0, False)


def test_window_and_operation_come_from_metadata() -> None:
    store, triggers = make()
    for now, value in [(40, 2), (50, 4), (60, 9)]:
        store.append([running(value)], now=now)
    assert triggers.evaluate("ns", "so", meta(operationOverTime="avg", window="15s"), now=60).value == 6.5
    assert triggers.evaluate("ns", "so", meta(operationOverTime="avg"), now=60).value == 5.0  # whole retention
    assert triggers.evaluate("ns", "so", meta(operationOverTime="max"), now=60).value == 9.0


def test_invalid_metadata_raises_and_creates_no_state() -> None:
    _, triggers = make()
    with pytest.raises(InvalidTrigger):
        triggers.evaluate("ns", "so", {"metricQuery": "m"}, now=40)
    assert list(triggers.states()) == []


def test_states_are_per_scaled_object() -> None:
    store, triggers = make()
    store.append([running(6)], now=40)
    triggers.evaluate("ns", "a", meta(), now=40)
    triggers.evaluate("ns", "b", meta(clampMax="1"), now=41)
    triggers.evaluate("other", "a", meta(), now=42)
    states = sorted(triggers.states(), key=lambda s: (s.key.namespace, s.key.name))
    assert [(s.key.namespace, s.key.name, s.value, s.last_asked) for s in states] == [
        ("ns", "a", 6.0, 40),
        ("ns", "b", 1.0, 41),
        ("other", "a", 6.0, 42),
    ]
    assert states[0].last_data == 40
    assert states[0].key.metric_name == parse_trigger(meta()).metric_name


def test_expire_forgets_idle_triggers() -> None:
    _, triggers = make()
    triggers.evaluate("ns", "old", meta(), now=100)
    triggers.evaluate("ns", "recent", meta(), now=500)
    assert IDLE_EXPIRY == 600.0
    assert triggers.expire(now=700) == 0  # exactly 600 s idle is not yet "more than" 600 s
    assert triggers.expire(now=700.5) == 1
    assert [s.key.name for s in triggers.states()] == ["recent"]
    assert triggers.expire(now=2000) == 1
    assert list(triggers.states()) == []


def test_expire_with_a_custom_idle_time() -> None:
    _, triggers = make()
    triggers.evaluate("ns", "so", meta(), now=100)
    assert triggers.expire(now=111, idle=10) == 1


def test_asking_again_keeps_a_trigger_alive() -> None:
    _, triggers = make()
    for now in (100, 400, 650):
        triggers.evaluate("ns", "so", meta(), now=now)
    assert triggers.expire(now=1200) == 0
    (state,) = triggers.states()
    assert state.last_asked == 650


def test_confine_adds_a_namespace_matcher() -> None:
    query = parse_trigger(meta(metricQuery='sum(m{a="b"})')).query
    confined = confine(query, "team")
    assert str(confined) == 'sum(m{a="b", namespace="team"})'
    assert confined.selector.matches({"a": "b", "k8s.namespace.name": "team"})
    assert not confined.selector.matches({"a": "b", "k8s.namespace.name": "other"})
    assert str(query) == 'sum(m{a="b"})'  # the original is untouched


def test_isolated_triggers_read_only_their_own_namespace() -> None:
    store = Store(retention=120, max_series=100)
    store.append([running(3, "p0", namespace="ns"), running(50, "p1", namespace="other")], now=40)
    metadata = meta(metricQuery="sum(vllm:num_requests_running)")
    shared = Triggers(store, stale_after=STALE_AFTER, warmup_until=WARMUP_UNTIL)
    isolated = Triggers(store, stale_after=STALE_AFTER, warmup_until=WARMUP_UNTIL, isolate=True)
    assert shared.evaluate("ns", "so", metadata, now=40).value == 53.0
    assert isolated.evaluate("ns", "so", metadata, now=40).value == 3.0
    assert isolated.evaluate("other", "so", metadata, now=40).value == 50.0
    assert isolated.evaluate("empty", "so", metadata, now=40).value == 0.0


@pytest.mark.parametrize(
    ("value", "low", "high", "expected"),
    [(5, None, None, 5), (5, 6, None, 6), (5, None, 4, 4), (5, 1, 9, 5), (-3, 0, None, 0)],
)
def test_clamp(value: float, low: float | None, high: float | None, expected: float) -> None:
    assert clamp(value, low, high) == expected
