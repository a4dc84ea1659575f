"""A selector that finds nothing because the collector did not set a label is an error naming the label.

kedify matches a series that lacks a queried label (kedify otel-add-on `metric/mem_store.go`, `get`: a
label is compared only `if v, found := md.Labels[name]; found`). We keep PromQL's rule (it does not
match), so without this diagnosis KServe's `sum(q{namespace="ns", deployment="name"})` over pods whose
collector never resolved `k8s.deployment.name` would answer 0 and scale the fleet to its minimum.
"""

from __future__ import annotations

import pytest

from scaler.errors import MissingLabel, StaleData
from scaler.explain import describe_triggers, preview_query
from scaler.otlp import Histogram, Kind, Sample
from scaler.store import Store
from scaler.triggers import Triggers

KSERVE_QUERY = 'sum(vllm:num_requests_running{namespace="ns", deployment="isvc-predictor"})'
STALE_AFTER = 30.0


def meta(query: str = KSERVE_QUERY) -> dict[str, str]:
    return {"metricQuery": query, "targetValue": "4"}


def running(value: float, pod: str, **labels: str) -> Sample:
    found = {"k8s.namespace.name": "ns", "k8s.pod.name": pod, **labels}
    return Sample("vllm:num_requests_running", tuple(sorted(found.items())), Kind.GAUGE, value)


def make() -> tuple[Store, Triggers]:
    store = Store(retention=120.0, max_series=100)
    return store, Triggers(store, stale_after=STALE_AFTER, warmup_until=0.0)


def test_series_without_the_deployment_label_make_the_trigger_unavailable_not_zero() -> None:
    store, triggers = make()
    store.append([running(3, "p0"), running(5, "p1")], now=10)
    with pytest.raises(MissingLabel) as info:
        triggers.evaluate("ns", "so", meta(), now=11)
    message = str(info.value)
    assert "vllm:num_requests_running" in message
    assert "2 fresh series" in message
    assert "'deployment'" in message
    assert "k8sattributes" in message and "drop it from the query" in message
    assert MissingLabel.grpc_code == "UNAVAILABLE"


def test_the_label_is_named_even_when_another_is_present() -> None:
    store, triggers = make()
    store.append([running(3, "p0", deployment="isvc-predictor")], now=10)
    with pytest.raises(MissingLabel, match="lack the label 'model'"):
        triggers.evaluate("ns", "so", meta('vllm:num_requests_running{deployment="isvc-predictor", model="m"}'), 11)


def test_other_namespaces_do_not_count() -> None:
    """Within the selector's namespace: a series of namespace `other` that lacks `deployment` is not ours."""
    store, triggers = make()
    store.append([running(3, "p0", **{"k8s.namespace.name": "other"})], now=10)
    evaluation = triggers.evaluate("ns", "so", meta(), now=11)
    assert (evaluation.value, evaluation.active) == (0.0, False)


def test_a_metric_with_no_fresh_series_keeps_answering_zero() -> None:
    store, triggers = make()
    store.append([running(3, "p0")], now=10)
    evaluation = triggers.evaluate("ns", "so", meta(), now=10 + STALE_AFTER + 1)
    assert (evaluation.value, evaluation.active) == (0.0, False)
    assert triggers.evaluate("ns", "so", meta("vllm:other{deployment='x'}"), now=11).value == 0.0


def test_series_that_differ_on_a_label_they_have_are_not_a_missing_label() -> None:
    store, triggers = make()
    store.append([running(3, "p0", deployment="other")], now=10)
    assert triggers.evaluate("ns", "so", meta(), now=11).value == 0.0


def test_regex_and_negative_matchers_still_exclude() -> None:
    store, triggers = make()
    store.append([running(3, "p0", role="prefill")], now=10)
    query = 'vllm:num_requests_running{deployment="isvc-predictor", role!="prefill"}'
    assert triggers.evaluate("ns", "so", meta(query), now=11).value == 0.0


def test_an_empty_value_is_not_a_required_label() -> None:
    store, triggers = make()
    store.append([running(3, "p0")], now=10)
    query = 'vllm:num_requests_running{deployment=""}'
    assert triggers.evaluate("ns", "so", meta(query), now=11).value == 3.0


def test_matching_series_win_over_ones_that_lack_the_label() -> None:
    store, triggers = make()
    store.append([running(3, "p0", deployment="isvc-predictor"), running(5, "p1")], now=10)
    assert triggers.evaluate("ns", "so", meta(), now=11).value == 3.0


def test_a_label_that_disappears_is_named_in_the_stale_error() -> None:
    """A collector change drops `deployment`: the old series go stale, the new ones lack the label."""
    store, triggers = make()
    store.append([running(3, "p0", deployment="isvc-predictor")], now=10)
    assert triggers.evaluate("ns", "so", meta(), now=11).value == 3.0
    store.append([running(3, "p0")], now=50)
    with pytest.raises(StaleData, match="lack the label 'deployment'") as info:
        triggers.evaluate("ns", "so", meta(), now=51)
    assert isinstance(info.value, MissingLabel)


def test_histogram_columns_are_diagnosed_too() -> None:
    store, triggers = make()
    labels = (("k8s.namespace.name", "ns"), ("k8s.pod.name", "p0"))
    hist = Histogram(4.0, 2.0, (0.1, 1.0), (1.0, 2.0, 1.0))
    store.append([Sample("vllm:e2e_request_latency_seconds", labels, Kind.HISTOGRAM, 4.0, histogram=hist)], now=10)
    query = 'sum(vllm:e2e_request_latency_seconds_count{namespace="ns", deployment="d"})'
    with pytest.raises(MissingLabel, match="lack the label 'deployment'"):
        triggers.evaluate("ns", "so", meta(query), now=11)


def test_debug_query_and_scaledobjects_show_the_same_diagnosis() -> None:
    store, triggers = make()
    store.append([running(3, "p0")], now=10)
    preview = preview_query(store, meta(), 11, STALE_AFTER)
    assert preview["code"] == "UNAVAILABLE" and preview["http_status"] == 503
    assert "lack the label 'deployment'" in preview["error"]
    with pytest.raises(MissingLabel):
        triggers.evaluate("ns", "so", meta(), now=11)
    (described,) = describe_triggers(triggers, 11)["triggers"]
    assert "lack the label 'deployment'" in described["error"]


def test_policy_pool_whose_pods_lack_the_deployment_label_is_unavailable() -> None:
    store, triggers = make()
    store.append([running(3, "p0")], now=10)
    policy = {"policy": "vllm", "deployment": "llama", "phase": "decode"}
    with pytest.raises(MissingLabel, match=r"pool ns/llama: no pod reports; .*lack the label 'deployment'"):
        triggers.evaluate("ns", "so", policy, now=11)
